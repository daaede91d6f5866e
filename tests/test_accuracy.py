"""ShapeWorld edit accuracy: known answers for every rule, both ways, and its wiring into eval and the report."""

import numpy as np
import pytest
import torch

from evedit.eval.accuracy import (
    LOCALITY_PSNR,
    accuracy_checks,
    closer_check,
    color_check,
    fidelity_check,
    edit_accuracy,
    item_example,
    nearest_color,
    task_checks,
)
from evedit.world import COLORS, TASKS, EditTripletDataset, EvalDataset, edit_footprint, image_tensor


@pytest.fixture(scope="module")
def examples():
    """Two examples of every task: one test, one held-out (so held-out compositions are covered)."""
    return {task: [EvalDataset(split, 1, tasks=(task,)).example(0) for split in ("test", "heldout")]
            for task in TASKS}


def _paint_target(ex, rgb):
    """The input with the edited object's visible pixels painted ``rgb`` (a colour edit done right)."""
    from evedit.world import visible_masks

    out = ex.clip.copy()
    out[visible_masks(ex.edit.edited_scene, ex.config.frames, ex.config.size)[:, ex.edit.target]] = rgb
    return out


def test_every_task_has_checks_and_the_palette_names_itself():
    assert all(task_checks(t) for t in TASKS)
    assert all(nearest_color(rgb) == name for name, rgb in COLORS.items())
    assert nearest_color((200, 40, 40)) == "red" and nearest_color((120, 120, 125)) == "gray"


def test_ground_truth_passes_and_the_input_fails_every_task(examples):
    for task, exs in examples.items():
        for ex in exs:
            assert edit_accuracy(ex, ex.edited_clip) is True, (task, ex.seed, accuracy_checks(ex, ex.edited_clip))
            assert edit_accuracy(ex, ex.clip) is False, (task, ex.seed)
            noisy = np.clip(ex.edited_clip + np.random.default_rng(0).normal(0, 6, ex.clip.shape), 0, 255)
            assert edit_accuracy(ex, noisy) is True, (task, "float frames with codec-like noise pass")


def test_colour_rule_looks_at_the_object_and_locality_at_the_rest(examples):
    for ex in examples["color"]:
        asked = ex.edit.edited_scene.objects[ex.edit.target].color
        old = ex.scene.objects[ex.edit.target].color
        assert accuracy_checks(ex, _paint_target(ex, COLORS[asked])) == {"colour": True, "locality": True}
        assert accuracy_checks(ex, _paint_target(ex, COLORS[old]))["colour"] is False  # another colour
        whole = np.broadcast_to(np.array(COLORS[asked], np.uint8), ex.clip.shape).copy()  # everything repainted
        assert accuracy_checks(ex, whole) == {"colour": True, "locality": False}
        assert edit_accuracy(ex, whole) is False


def test_add_needs_the_asked_colour_where_the_new_object_is(examples):
    for ex in examples["add"]:
        new = ex.edit.edited_scene.objects[ex.edit.target]
        assert edit_accuracy(ex, _paint_target(ex, COLORS[new.color])) is True
        wrong = next(c for c in COLORS if c != new.color and c not in ex.scene.background.colors)
        checks = accuracy_checks(ex, _paint_target(ex, COLORS[wrong]))
        assert checks["colour"] is False and checks["locality"] is True


@pytest.mark.parametrize("task", ["remove", "texture", "shape", "background", "invert", "grayscale", "pixelate"])
def test_closer_rule_is_a_halfway_test(examples, task):
    for ex in examples[task]:
        inp, gt = ex.clip.astype(np.float64), ex.edited_clip.astype(np.float64)
        assert closer_check(0.35 * inp + 0.65 * gt, inp, gt) is True
        assert closer_check(0.65 * inp + 0.35 * gt, inp, gt) is False


def test_flat_frames_fail_global_style_and_vision_tasks(examples):
    for task in ("invert", "pixelate", "outline", "segment", "detect", "edges"):
        for ex in examples[task]:
            assert edit_accuracy(ex, np.zeros_like(ex.clip)) is False, (task, "black")
    for task in ("invert", "pixelate"):
        for ex in examples[task]:
            grey = np.full_like(ex.clip, 128)
            assert accuracy_checks(ex, grey)["fidelity"] is False and fidelity_check(ex.edited_clip, ex.edited_clip)
    for ex in examples["segment"] + examples["edges"]:  # all black is near a mostly black truth: the mask rule
        checks = accuracy_checks(ex, np.zeros_like(ex.clip))
        assert checks["mask"] is False


def test_locality_threshold_separates_blur_from_repainting(examples):
    ex = examples["remove"][0]
    fp = edit_footprint(ex)
    assert fp.any() and (~fp).any() and LOCALITY_PSNR == 15.0
    off = ex.edited_clip.astype(np.float64)
    off[~fp] += 30.0  # ~18.6 dB outside: a faint global change still counts as local
    assert accuracy_checks(ex, np.clip(off, 0, 255))["locality"] is True
    off[~fp] += 40.0  # ~13 dB: the rest of the frame changed too much
    assert accuracy_checks(ex, np.clip(off, 0, 255))["locality"] is False


def test_single_frames_and_shape_errors(examples):
    ex = examples["shape"][0]
    f = 3
    assert edit_accuracy(ex, ex.edited_clip[f:f + 1], frames=[f]) is True
    assert edit_accuracy(ex, ex.clip[f:f + 1], frames=[f]) is False
    with pytest.raises(ValueError, match="resize"):
        edit_accuracy(ex, ex.edited_clip[:, :32, :32])


def test_nothing_to_judge_is_none_not_a_pass(examples):
    ex = examples["color"][0]
    asked = ex.edit.edited_scene.objects[ex.edit.target].color
    nowhere = np.zeros(ex.clip.shape[:3], dtype=bool)  # e.g. the object hidden in every judged frame
    assert color_check(ex.edited_clip, ex.edited_clip, nowhere, asked) is None
    assert closer_check(ex.edited_clip, ex.clip, ex.clip) is None  # truth = input: no change to see


def test_shapeworld_scorer_and_report_carry_edit_accuracy():
    from test_eval_helpers import FakeText, tiny_shapeclip

    from evedit.eval import report
    from evedit.eval.runner import aggregate
    from evedit.eval.shapeworld import SHAPEWORLD_METRICS, ShapeWorldBenchmark, ShapeWorldScorer

    items = ShapeWorldBenchmark().items(4)
    assert item_example(items[0].meta["seed"], items[0].task, items[0].meta["config"]).clip.tobytes() == \
        items[0].frames.tobytes()
    scorer = ShapeWorldScorer(tiny_shapeclip(), FakeText())
    records = []
    for item in items:
        for name, out in (("gt", item.target), ("identity", item.frames)):
            res = scorer.score(item, item.frames, out)
            records.append({"editor": name, "task": item.task, "group": item.group, **res})
        assert records[-2]["edit_accuracy"] == 1.0 and records[-1]["edit_accuracy"] == 0.0
    doc = report.summary("shapeworld", aggregate(records, SHAPEWORLD_METRICS, ["gt", "identity"]),
                         SHAPEWORLD_METRICS, n_items=len(items))
    assert doc["editors"]["gt"]["metrics"]["edit_accuracy"] == 1.0
    assert doc["editors"]["identity"]["per_task"][items[0].task]["edit_accuracy"] == 0.0
    md = report.markdown(doc)
    assert "EditAcc↑" in md and "| 1.000 |" in md


def test_edit_teacher_accuracy_sees_the_triplet_frames():
    from evedit.training.quality import triplet_accuracies

    data = EditTripletDataset("test", 6, tasks=("color",))
    truth = torch.stack([data[i]["output_image"] for i in range(6)])  # (6, 3, H, W) in [-1, 1]
    inputs = torch.stack([data[i]["input_image"] for i in range(6)])
    ex, f = data.example_frame(2)
    assert torch.equal(image_tensor(ex.edited_clip[f]), truth[2])
    assert all(a in (1.0, None) for a in triplet_accuracies(data, 0, truth))
    assert 1.0 in triplet_accuracies(data, 0, truth)
    assert triplet_accuracies(data, 2, inputs[2:4]) == [a and 0.0 for a in triplet_accuracies(data, 2, truth[2:4])]
