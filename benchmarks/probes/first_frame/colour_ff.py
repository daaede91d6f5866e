"""Scratch: colour accuracy vs the first-frame edit's settings and the image guidance."""
import sys, time, numpy as np
sys.path.insert(0, "benchmarks")
from color_errors import read_colour
import evedit.editing.editors as E
from evedit.eval.accuracy import item_example
from evedit.eval.editors import PipelineEditor
from evedit.eval.metrics import psnr
from evedit.eval.shapeworld import ShapeWorldBenchmark, model_world
model = "models/shapeworld"; n = int(sys.argv[1])
items = ShapeWorldBenchmark(n, ("val",), ("color",), config=model_world(model)).items(n)
variants = [v.split(":") for v in sys.argv[2:]]  # name:ff_steps:ff_text:image
for name, ffs, fft, img in variants:
    E.FIRST_FRAME_TEXT_GUIDANCE, E.IMAGE_GUIDANCE = float(fft), float(img)
    ed = PipelineEditor("eve", model, first_frame_steps=int(ffs)); t = time.time(); rows = []
    for it in items:
        out = ed(it.frames, it.instruction, "color", None, 0)
        r = read_colour(item_example(it.meta["seed"], "color", it.meta["config"]), out)
        if r is None: continue
        f0 = read_colour(item_example(it.meta["seed"], "color", it.meta["config"]), np.repeat(out[:1], len(out), 0))
        rows.append((r[0] == r[1], f0[0] == f0[1], psnr(out, it.target)))
    a = np.array(rows)
    print(f"{name}: made {a[:,0].mean():.2f} frame0-made {a[:,1].mean():.2f} psnr {a[:,2].mean():.2f} ({time.time()-t:.0f}s)", flush=True)
