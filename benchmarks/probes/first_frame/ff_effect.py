"""Scratch probe: how much EVE's output moves when its first-frame edit is made at 30 steps instead of 4."""
import numpy as np
from evedit.eval.editors import PipelineEditor
from evedit.eval.shapeworld import ShapeWorldBenchmark, model_world
model = "models/shapeworld"
items = ShapeWorldBenchmark(8, ("val",), ("color","add"), config=model_world(model)).items(8)
for it in items:
    a = PipelineEditor("eve", model, first_frame_steps=4)(it.frames, it.instruction, it.task, None, 0).astype(float)
    b = PipelineEditor("eve", model, first_frame_steps=30)(it.frames, it.instruction, it.task, None, 0).astype(float)
    c = PipelineEditor("eve", model, first_frame_steps=4, region="full")(it.frames, it.instruction, it.task, None, 0).astype(float)
    d = PipelineEditor("eve", model, first_frame_steps=30, region="full")(it.frames, it.instruction, it.task, None, 0).astype(float)
    print(it.task, "auto: frame0 diff", np.abs(a[0]-b[0]).mean(), "rest", np.abs(a[1:]-b[1:]).mean(), "| full: f0", np.abs(c[0]-d[0]).mean(), "rest", np.abs(c[1:]-d[1:]).mean())
