"""ShapeWorld examples: a scene, an edit, both rendered; splits by seed range; held-out compositions.

An example is a pure function of ``(seed, task, config)``. The seed's range decides its split
(:data:`SPLITS`). Seeds outside the ``heldout`` range never show a held-out composition, in
input or output; seeds inside it always show one. A draw that breaks this is redrawn from the
next attempt's generator, so the choice stays deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from evedit.world.config import WorldConfig
from evedit.world.edits import TASKS, Edit, make_edit, object_count_range, task_label
from evedit.world.render import POST_MODES, apply_mode, box_mask, object_mask, object_masks, render_clip
from evedit.world.scene import Scene, sample_scene

#: Seed ranges ``[start, stop)`` of each split.
SPLITS: dict[str, tuple[int, int]] = {
    "train": (0, 1_000_000),
    "val": (1_000_000, 1_100_000),
    "test": (2_000_000, 2_100_000),
    "heldout": (3_000_000, 3_100_000),
}
#: (shape, colour) pairs that only the heldout split shows.
HELDOUT_PAIRS: tuple[tuple[str, str], ...] = (("star", "purple"), ("triangle", "cyan"))
#: (task, shape) pairs, an edit of that task on (or producing) that shape, only in the heldout split.
HELDOUT_TASK_SHAPES: tuple[tuple[str, str], ...] = (("texture", "diamond"), ("remove", "circle"))
MAX_ATTEMPTS = 64  # a redraw is needed for ~10% of seeds; 64 in a row never happens in practice
_SCENE_STREAM, _TASK_STREAM = 0, 1  # independent generator streams per seed


def split_of(seed: int) -> str | None:
    """The split whose seed range holds ``seed`` (None outside all ranges)."""
    for name, (start, stop) in SPLITS.items():
        if start <= seed < stop:
            return name
    return None


def heldout_hits(scene: Scene, edit: Edit) -> tuple[str, ...]:
    """The held-out compositions an edit of ``scene`` shows, e.g. ``("purple star",)``; empty if none."""
    hits: list[str] = []
    for s in (scene, edit.edited_scene):
        hits += [f"{o.color} {o.shape}" for o in s.objects if (o.shape, o.color) in HELDOUT_PAIRS]
    if edit.target is not None:
        shapes = set()
        if edit.task != "add":  # the target indexes the input scene
            shapes.add(scene.objects[edit.target].shape)
        if edit.task != "remove":  # ... and the edited scene
            shapes.add(edit.edited_scene.objects[edit.target].shape)
        hits += [f"{t} edit of a {s}" for t, s in HELDOUT_TASK_SHAPES if t == edit.task and s in shapes]
    return tuple(dict.fromkeys(hits))


@dataclass(frozen=True, eq=False)
class Example:
    """A scene, one edit of it, and both renderings (uint8 ``(F, H, W, 3)``)."""

    seed: int
    config: WorldConfig
    scene: Scene
    edit: Edit
    clip: np.ndarray
    edited_clip: np.ndarray

    @property
    def task(self) -> str:
        """Task name."""
        return self.edit.task

    @property
    def split(self) -> str | None:
        """Split of the seed."""
        return split_of(self.seed)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description of both scenes and the edit (no pixels: they re-render exactly)."""
        return {
            "seed": self.seed, "split": self.split, "config": self.config.to_dict(),
            "input_scene": self.scene.to_dict(), **self.edit.to_dict(),
            "heldout": list(heldout_hits(self.scene, self.edit)),
        }


def _draw(rng: np.random.Generator, task: str, config: WorldConfig) -> tuple[Scene, Edit]:
    """A random scene that suits ``task``, and an edit of it."""
    lo, hi = object_count_range(task, config)
    scene = sample_scene(rng, config, int(rng.integers(lo, hi + 1)))
    return scene, make_edit(scene, task, rng, config)


def _draw_heldout(rng: np.random.Generator, task: str | None, config: WorldConfig) -> tuple[Scene, Edit]:
    """A scene and edit built around one held-out composition (compatible with ``task`` if given)."""
    options = [("pair", p) for p in HELDOUT_PAIRS]
    options += [("task", p) for p in HELDOUT_TASK_SHAPES if task in (None, p[0])]
    kind, (first, second) = options[int(rng.integers(len(options)))]
    if kind == "task":
        task = first
    elif task is None:
        task = TASKS[int(rng.integers(len(TASKS)))]
    lo, hi = object_count_range(task, config)
    n = int(rng.integers(lo, hi + 1))
    k = int(rng.integers(n))
    forced = {k: (second, None)} if kind == "task" else {k: (first, second)}
    scene = sample_scene(rng, config, n, forced)
    return scene, make_edit(scene, task, rng, config, target=k if kind == "task" else None)


def render_edited(clip: np.ndarray, scene: Scene, edited: Scene, config: WorldConfig) -> np.ndarray:
    """Ground-truth rendering of ``edited``, reusing ``clip`` (the input's) when only the mode changed."""
    if edited.render_mode in POST_MODES and edited.objects == scene.objects and edited.background == scene.background:
        return apply_mode(clip, edited)
    return render_clip(edited, config.frames, config.size)


def make_example(seed: int, task: str | None = None, config: WorldConfig | None = None) -> Example:
    """The example of ``seed`` (and ``task``, drawn from the seed when None), rendered at ``config``."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seeds are non-negative integers, got {seed!r}")
    seed, config = int(seed), config or WorldConfig()
    heldout = split_of(seed) == "heldout"
    if task is None and not heldout:
        task = TASKS[int(np.random.default_rng([seed, _TASK_STREAM]).integers(len(TASKS)))]
    elif task is not None:
        task_label(task)  # unknown names fail here, in one sentence
    for attempt in range(MAX_ATTEMPTS):
        rng = np.random.default_rng([seed, _SCENE_STREAM, attempt])
        scene, edit = _draw_heldout(rng, task, config) if heldout else _draw(rng, task, config)
        if bool(heldout_hits(scene, edit)) == heldout:
            break
    else:
        raise RuntimeError(f"no valid ShapeWorld example for seed {seed} after {MAX_ATTEMPTS} attempts")
    clip = render_clip(scene, config.frames, config.size)
    edited_clip = render_edited(clip, scene, edit.edited_scene, config)
    return Example(seed, config, scene, edit, clip, edited_clip)


def edit_footprint(example: Example) -> np.ndarray:
    """Pixels the edit may change, per frame: bool ``(F, H, W)``.

    Local, texture and shape edits: the target's old and new footprints; add / remove: the
    new / removed object's footprint; background: everything outside the objects; detect: the
    box outline; global, style, segment and edges: every pixel.
    """
    frames, size = example.config.frames, example.config.size
    task, k = example.task, example.edit.target
    before, after = example.scene, example.edit.edited_scene
    if task in ("color", "texture", "shape"):
        return object_mask(before.objects[k], frames, size) | object_mask(after.objects[k], frames, size)
    if task == "add":
        return object_mask(after.objects[k], frames, size)
    if task == "remove":
        return object_mask(before.objects[k], frames, size)
    if task == "background":
        return ~object_masks(before, frames, size).any(axis=1)
    if task == "detect":
        return box_mask(after, k, np.arange(frames), size)
    return np.ones((frames, size, size), dtype=bool)
