"""The shipped ShapeWorld model edits the demo clip from the instruction alone (no caption)."""

import json

import pytest

from evedit.demo import BUNDLED_CLIP, BUNDLED_INFO
from evedit.eval.accuracy import color_check
from evedit.eval.metrics import psnr
from evedit.world import WorldConfig, edit_footprint, make_example, visible_masks

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.xfail(strict=True, reason=(
    "ShapeWorld 0.4.4 misses this target (measured 2026-12-06): the circle turns red (the colour "
    "check passes; 0.3.0's turned crimson), but the frame outside it scores 22.5 dB against the "
    "ground truth (0.4.3: 21.5; 0.4.2, unguided: 20.0; 0.3.0: 19.7): the stripes stay pale and the square smears. The "
    "codec is no longer the ceiling (the exact edit through 0.4.0's codec keeps 28.7 dB there, "
    "benchmarks/results/demo_ceiling.md). Strict, so a model that passes makes this test fail until "
    "the mark is removed"))
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
