"""The shipped ShapeWorld model edits the demo clip from the instruction alone (no caption).

Passes from 0.4.5 (2026-12-06; an expected failure before): the colour task edits the region the
edit adapter finds (``spec.region_tasks``, ``evedit.editing.auto_region``). Measured: the circle's
mean colour red, 26.0 dB outside it against the ground truth (0.4.4, whole frames: 22.5); 0.4.6
(the input's pixels outside the region) 28.1 dB; 0.4.7 (one noise for every frame) 28.9 dB.
"""

import json

import pytest

from evedit.demo import BUNDLED_CLIP, BUNDLED_INFO
from evedit.eval.accuracy import color_check
from evedit.eval.metrics import psnr
from evedit.world import WorldConfig, edit_footprint, make_example, visible_masks

pytestmark = pytest.mark.usefixtures("one_thread")


def test_demo_clip_turns_the_circle_red_and_keeps_the_rest():
    from evedit.editing import EditPipeline

    info = json.loads(BUNDLED_INFO.read_text())
    example = make_example(info["seed"], info["task"], WorldConfig(frames=8, size=64, **info.get("world", {})))
    assert info["instruction"] == example.edit.instruction == "make the blue circle red"
    result = EditPipeline.from_pretrained("shapeworld")(str(BUNDLED_CLIP), info["instruction"],
                                                        task="color", progress=False)
    out, truth = result.frames, example.edited_clip
    circle = visible_masks(example.edit.edited_scene, 8, 64)[:, example.edit.target]  # (F, H, W)
    assert color_check(out, truth, circle, "red"), "the circle's mean colour is not nearest to red"
    outside = ~edit_footprint(example)
    assert psnr(out, truth, mask=outside) >= 25.0
