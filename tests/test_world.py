"""Tests of ShapeWorld: determinism, exact edit footprints, captions, motion, splits, dataset views."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

try:
    import evedit  # noqa: F401
except ImportError:  # a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch
from torch.utils.data import DataLoader

from evedit.errors import EveditError
from evedit.world import (
    CATEGORIES,
    HELDOUT_PAIRS,
    HELDOUT_TASK_SHAPES,
    NON_VISION_TASKS,
    SPLITS,
    TASK_CATEGORIES,
    TASKS,
    AlignmentDataset,
    Background,
    ClipCaptionDataset,
    EditTripletDataset,
    EvalDataset,
    ImageCaptionDataset,
    Obj,
    Scene,
    WorldConfig,
    background_phrase,
    box_mask,
    diameter,
    edit_footprint,
    heldout_hits,
    make_example,
    object_mask,
    object_masks,
    object_offsets,
    render_clip,
    render_frame,
    split_of,
    task_label,
    visible_masks,
)
from evedit.world.config import BOX_COLOR

SEEDS = range(10)


def changed(example) -> np.ndarray:
    """Pixels where the ground truth differs from the input: bool (F, H, W)."""
    return (example.clip != example.edited_clip).any(axis=-1)


def dilate(mask: np.ndarray) -> np.ndarray:
    """One-pixel 8-neighbour dilation of a bool (..., H, W) mask."""
    p = np.pad(mask, [(0, 0)] * (mask.ndim - 2) + [(1, 1), (1, 1)])
    h, w = mask.shape[-2:]
    out = np.zeros_like(mask)
    for dy in range(3):
        for dx in range(3):
            out |= p[..., dy:dy + h, dx:dx + w]
    return out


def test_task_table_is_stable():
    assert TASKS == ("color", "texture", "shape", "add", "remove", "background", "grayscale", "invert",
                     "brightness", "outline", "pixelate", "segment", "detect", "edges")
    assert [task_label(t) for t in TASKS] == list(range(len(TASKS)))
    assert set(TASK_CATEGORIES.values()) == set(CATEGORIES)
    assert all(TASK_CATEGORIES[t] != "vision" for t in NON_VISION_TASKS)
    with pytest.raises(EveditError):
        task_label("teleport")


def test_same_seed_same_example_and_different_seeds_differ():
    a, b, c = make_example(123), make_example(123), make_example(124)
    assert np.array_equal(a.clip, b.clip) and np.array_equal(a.edited_clip, b.edited_clip)
    assert a.to_dict() == b.to_dict()
    assert not np.array_equal(a.clip, c.clip)
    assert make_example(7, "color").to_dict() == make_example(7, "color").to_dict()
    assert make_example(7, "color").scene != make_example(8, "color").scene


def test_object_draws_are_pinned_so_every_seed_keeps_its_scene():
    """``sample_object`` draws shape, colour, size, start, velocity, then texture: a reordering (say,
    in ``sample_motion``) would silently change every split's scenes and every stored figure."""
    from evedit.world.scene import Obj, sample_motion, sample_object

    rng = np.random.default_rng(0)
    assert sample_object(rng, WorldConfig()) == Obj(shape="diamond", color="pink", texture="solid", size="large",
                                                    x0=0.2131, y0=0.1978, vx=0.0448, vy=-0.0274)
    forced = sample_object(np.random.default_rng(0), WorldConfig(), shape="star", color="red")
    assert (forced.texture, forced.x0, forced.y0, forced.vx, forced.vy) == ("striped", 0.3561, 0.2131, 0.008, -0.019)
    kept = sample_motion(np.random.default_rng(1), WorldConfig(), 0.3, start=(0.25, 0.75))
    assert (kept["x0"], kept["y0"]) == (0.25, 0.75) and abs(kept["vx"]) + abs(kept["vy"]) > 0
    for _ in range(50):  # a drawn start keeps the whole object inside the frame
        m = sample_motion(rng, WorldConfig(), 0.3)
        assert 0.15 <= m["x0"] <= 0.85 and 0.15 <= m["y0"] <= 0.85


def test_json_round_trip():
    ex = make_example(42, "detect")
    data = json.loads(json.dumps(ex.to_dict()))
    assert Scene.from_dict(data["input_scene"]) == ex.scene
    assert Scene.from_dict(data["edited_scene"]) == ex.edit.edited_scene
    assert np.array_equal(render_clip(Scene.from_dict(data["edited_scene"])), ex.edited_clip)
    assert WorldConfig.from_dict(data["config"]) == ex.config


@pytest.mark.parametrize("task", ["color", "texture", "shape", "add", "remove", "background"])
def test_scene_edits_change_only_their_footprint(task):
    for seed in SEEDS:
        ex = make_example(seed, task)
        before, after, k = ex.scene, ex.edit.edited_scene, ex.edit.target
        if task in ("color", "texture", "shape"):
            allowed = object_mask(before.objects[k]) | object_mask(after.objects[k])
            assert len(after.objects) == len(before.objects)
            assert [o for i, o in enumerate(after.objects) if i != k] == \
                [o for i, o in enumerate(before.objects) if i != k]
        elif task == "add":
            assert k == len(before.objects) and after.objects[:k] == before.objects
            allowed = object_mask(after.objects[k])
        elif task == "remove":
            assert len(after.objects) == len(before.objects) - 1
            allowed = object_mask(before.objects[k])
        else:
            allowed = ~object_masks(before).any(axis=1)
        diff = changed(ex)
        assert diff.any(), (task, seed)
        assert not (diff & ~allowed).any(), (task, seed)
        assert np.array_equal(allowed, edit_footprint(ex))


def test_global_edits_are_exact_pixel_maps():
    for seed in range(4):
        x = make_example(seed, "invert")
        assert np.array_equal(x.edited_clip, 255 - x.clip) and changed(x).all()
        g = make_example(seed, "grayscale")
        luma = g.clip.astype(float) @ np.array([0.299, 0.587, 0.114])
        assert np.abs(g.edited_clip[..., 0] - luma).max() <= 1.0
        assert (g.edited_clip == g.edited_clip[..., :1]).all()
        b = make_example(seed, "brightness")
        mode = b.edit.edited_scene.render_mode
        expect = b.clip // 2 if mode == "darker" else 255 - (255 - b.clip) // 2
        assert np.array_equal(b.edited_clip, expect)
        words = ("dark", "dim", "lower") if mode == "darker" else ("bright", "light", "increase")
        assert any(w in b.edit.instruction for w in words)


def test_outline_draws_black_borders_on_white():
    for seed in SEEDS:
        ex = make_example(seed, "outline")
        out = ex.edited_clip
        assert (out == out[..., :1]).all() and set(np.unique(out)) <= {0, 255}
        black = out[..., 0] == 0
        assert black.any() and not (black & ~object_masks(ex.scene).any(axis=1)).any()
        assert changed(ex).mean() > 0.5


def test_pixelate_is_blockwise_mean():
    ex = make_example(3, "pixelate")
    block = ex.config.size // 16
    out = ex.edited_clip.astype(float)
    cells = out.reshape(8, 16, block, 16, block, 3)  # (F, hb, b, wb, b, 3)
    assert (cells == cells[:, :, :1, :, :1]).all()
    means = ex.clip.astype(float).reshape(8, 16, block, 16, block, 3).mean(axis=(2, 4))  # (F, hb, wb, 3)
    assert np.abs(cells[:, :, 0, :, 0] - means).max() <= 0.5


def test_segment_is_the_targets_visible_mask():
    for seed in SEEDS:
        ex = make_example(seed, "segment")
        out = ex.edited_clip
        assert set(np.unique(out)) <= {0, 255} and (out == out[..., :1]).all()
        assert np.array_equal(out[..., 0] == 255, visible_masks(ex.scene)[:, ex.edit.target])


def test_detect_draws_only_a_box_around_the_target():
    for seed in SEEDS:
        ex = make_example(seed, "detect")
        box = box_mask(ex.scene, ex.edit.target, range(8))
        diff = changed(ex)
        assert diff.any() and not (diff & ~box).any()
        assert (ex.edited_clip[box] == BOX_COLOR).all()
        obj = object_mask(ex.scene.objects[ex.edit.target])
        for f in range(8):  # the box encloses the object
            rows, cols = np.nonzero(box[f])
            orow, ocol = np.nonzero(obj[f])
            assert rows.min() <= orow.min() and orow.max() <= rows.max()
            assert cols.min() <= ocol.min() and ocol.max() <= cols.max()


def test_edges_are_white_at_boundaries_on_black():
    plain = 0
    for seed in range(40):
        ex = make_example(seed, "edges")
        out = ex.edited_clip
        assert set(np.unique(out)) <= {0, 255} and (out == out[..., :1]).all()
        white = out[..., 0] == 255
        assert 0 < white.mean() < 0.4
        if ex.scene.background.kind in ("plain", "gradient"):  # no pattern edges: only objects'
            plain += 1
            assert not (white & ~dilate(object_masks(ex.scene).any(axis=1))).any()
    assert plain >= 5


def test_captions_name_every_object_and_the_background():
    for seed in range(40):
        ex = make_example(seed)
        cap = ex.edit.input_caption
        for obj in ex.scene.objects:
            assert f"{obj.color} {obj.shape}" in cap and obj.size in cap
            if obj.texture != "solid":
                assert ("stripe" if obj.texture == "striped" else "dot") in cap
        assert ex.scene.background.color in cap and ex.scene.background.color2 in cap
        assert ex.edit.instruction in ex.edit.instructions and len(ex.edit.instructions) >= 4
        assert ex.edit.output_caption != cap, f"output caption of a {ex.task} edit repeats the input's"


@pytest.mark.parametrize("task", TASKS)
def test_instructions_and_output_captions_reflect_the_edit(task):
    for seed in range(6):
        ex = make_example(seed, task)
        e, k = ex.edit, ex.edit.target
        if task in ("color", "texture", "shape", "remove", "segment", "detect"):
            assert all(ex.scene.objects[k].name in i for i in e.instructions)
        if task == "add":
            assert all(f"{e.edited_scene.objects[k].color} {e.edited_scene.objects[k].shape}" in i
                       for i in e.instructions)
        if task in ("color", "shape", "add"):
            assert e.edited_scene.objects[k].name in e.output_caption
        if task in ("color", "shape", "remove"):
            assert ex.scene.objects[k].name not in e.output_caption
        if task == "background":
            assert background_phrase(e.edited_scene.background) in e.output_caption
        if task == "segment":
            assert "mask" in e.output_caption and ex.scene.objects[k].name in e.output_caption
        assert e.output_caption != e.input_caption
    phrasings = {make_example(s, task).edit.instruction.split()[0] for s in range(30)}
    assert len(phrasings) >= 2, "instructions should vary in phrasing"


def test_objects_move_smoothly_and_stay_inside():
    cfg = WorldConfig()
    for seed in range(20):
        ex = make_example(seed, "color")
        assert (ex.clip[0] != ex.clip[-1]).any()
        for obj in ex.scene.objects:
            d = diameter(obj.size, 64)
            pos = object_offsets(obj, np.arange(60), 64)  # (60, 2): long enough to bounce
            assert pos.min() >= 0 and pos.max() <= 64 - d
            assert np.abs(np.diff(pos, axis=0)).max() <= np.ceil(cfg.speed_max * 64) + 1
    fast = Obj("star", "red", "solid", "large", 0.5, 0.5, 0.21, -0.17)
    masks = object_mask(fast, frames=40)
    assert len(set(masks.sum(axis=(1, 2)).tolist())) == 1  # never clipped by a border


def test_background_pans_when_enabled():
    still = Scene((), Background("checker", "red", "blue"))
    clip = render_clip(still)
    assert (clip == clip[0]).all()
    moving = Scene((), Background("stripes", "red", "blue", pan=(0.05, 0.0)))  # 3.2 px/frame rightwards
    clip = render_clip(moving)
    assert not np.array_equal(clip[0], clip[1])
    assert np.array_equal(clip[1][:, :-3], clip[0][:, 3:])  # frame 1 is frame 0 shifted by 3 px
    assert any(make_example(s).scene.background.pan != (0.0, 0.0) for s in range(30))


def test_render_frame_and_canvas_size():
    ex = make_example(11, "add")
    assert np.array_equal(render_frame(ex.scene, 5), ex.clip[5])
    big = render_clip(ex.scene, frames=3, size=96)
    assert big.shape == (3, 96, 96, 3) and big.dtype == np.uint8
    small = make_example(11, "add", WorldConfig(size=32, frames=4))
    assert small.clip.shape == small.edited_clip.shape == (4, 32, 32, 3)
    assert diameter("small", 64) == 14 and diameter("large", 64) == 24 and diameter("large", 96) == 36
    assert object_masks(ex.scene).shape == (8, len(ex.scene.objects), 64, 64)
    with pytest.raises(EveditError):
        WorldConfig(max_objects=0)


def test_a_world_with_other_object_sizes_draws_and_records_them():
    wide = WorldConfig(small_px=20, large_px=24)
    ex, preset = make_example(3, "color", wide), make_example(3, "color")
    assert [o.size for o in ex.scene.objects] == [o.size for o in preset.scene.objects]  # same draws
    for obj, masks in zip(ex.scene.objects, object_masks(ex.scene).transpose(1, 0, 2, 3)):
        rows = np.nonzero(masks[0].any(1))[0]
        assert obj.diameter(64) == {"small": 20, "large": 24}[obj.size] and rows.max() - rows.min() + 1 <= obj.diameter(64)
        assert obj.across == (None if obj.size == "large" else 20 / 64)  # recorded only where not the preset's
    small = [o for s in range(20) for o in make_example(s, "add", wide).scene.objects if o.size == "small"]
    assert small and all(o.diameter(96) == 30 for o in small)  # scales with the canvas
    assert Scene.from_dict(json.loads(json.dumps(ex.scene.to_dict()))) == ex.scene
    assert "across" not in json.dumps(preset.scene.to_dict())  # a preset world's scene graph is unchanged
    with pytest.raises(EveditError, match="object diameters"):
        WorldConfig(small_px=30, large_px=24)


def _shows_heldout(ex) -> bool:
    """Independent check for held-out compositions in an example."""
    scenes = (ex.scene, ex.edit.edited_scene)
    if any((o.shape, o.color) in HELDOUT_PAIRS for s in scenes for o in s.objects):
        return True
    k = ex.edit.target
    if k is None:
        return False
    shapes = set()
    if ex.task != "add":
        shapes.add(ex.scene.objects[k].shape)
    if ex.task != "remove":
        shapes.add(ex.edit.edited_scene.objects[k].shape)
    return any(t == ex.task and s in shapes for t, s in HELDOUT_TASK_SHAPES)


def test_heldout_compositions_only_in_heldout_split():
    for split in ("train", "val", "test"):
        view = AlignmentDataset(split, length=100, tasks=TASKS)
        for i in range(len(view)):
            ex = view.example(i)
            assert ex.split == split and not _shows_heldout(ex) and not heldout_hits(ex.scene, ex.edit)
    for seed in range(40):  # tasks that could hit a held-out pair directly
        for task in ("texture", "remove"):
            assert not _shows_heldout(make_example(seed, task))
    heldout = EvalDataset("heldout", length=60, tasks=TASKS)
    for i in range(len(heldout)):
        assert _shows_heldout(heldout.example(i))
    for task in ("color", "texture", "remove", "edges"):
        assert _shows_heldout(make_example(SPLITS["heldout"][0] + 5, task))
    assert split_of(1_050_000) == "val" and split_of(5_000_000) is None


def _check_tensor(x: torch.Tensor, shape: tuple[int, ...]) -> None:
    assert x.dtype == torch.float32 and tuple(x.shape) == shape
    assert x.min() >= -1.0 and x.max() <= 1.0


def test_dataset_views_keys_shapes_and_ranges():
    img = ImageCaptionDataset(length=5)
    item = img[0]
    assert set(item) == {"image", "caption", "objects"} and isinstance(item["caption"], str)
    _check_tensor(item["image"], (3, 64, 64))
    assert item["objects"].shape == (1, 64, 64) and set(item["objects"].unique().tolist()) == {0.0, 1.0}
    trip = EditTripletDataset("val", length=5)[1]
    assert set(trip) == {"input_image", "instruction", "task", "output_image", "input_caption", "output_caption"} and isinstance(trip["task"], int)
    _check_tensor(trip["input_image"], (3, 64, 64))
    _check_tensor(trip["output_image"], (3, 64, 64))
    clip = ClipCaptionDataset(length=5)[2]
    assert set(clip) == {"clip", "caption"}
    _check_tensor(clip["clip"], (3, 8, 64, 64))
    align = AlignmentDataset(length=30)
    assert set(align[0]) == {"clip", "instruction", "task", "input_caption", "output_caption"}
    assert {align[i]["task"] for i in range(30)} <= {task_label(t) for t in NON_VISION_TASKS}
    assert torch.equal(align[3]["clip"], align[3]["clip"])
    ev = EvalDataset("heldout", length=4)
    item = ev[0]
    assert set(item) == {"clip", "instruction", "task", "input_caption", "output_caption",
                         "target_clip", "seed", "footprint"}
    _check_tensor(item["target_clip"], (3, 8, 64, 64))
    assert item["seed"] == SPLITS["heldout"][0] and item["footprint"].shape == (8, 64, 64)
    batch = next(iter(DataLoader(ev, batch_size=2)))
    assert batch["clip"].shape == (2, 3, 8, 64, 64) and batch["task"].dtype == torch.int64
    only = EditTripletDataset(length=6, tasks=("color",))
    assert {only[i]["task"] for i in range(6)} == {0}
    assert len(only) == 6 and torch.equal(only[-1]["input_image"], only[5]["input_image"])
    with pytest.raises(EveditError):
        AlignmentDataset("nope")
    with pytest.raises(EveditError):
        AlignmentDataset("val", length=10**7)
    with pytest.raises(IndexError):
        only[6]
