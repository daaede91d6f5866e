"""ShapeWorld edit tasks: each edit is a change of the scene graph, so its result renders exactly.

Tasks mirror the paper's (and Emu Edit's) categories. ``TASKS[label]`` is the task with that
integer label; labels are stable (append new tasks at the end, never reorder).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from evedit.errors import EveditError
from evedit.world.captions import background_noun, background_phrase, caption, object_phrase, with_article
from evedit.world.config import COLOR_NAMES, SHAPES, TEXTURES, WorldConfig
from evedit.world.scene import Scene, sample_background, sample_object

CATEGORIES: tuple[str, ...] = ("local", "texture", "add", "remove", "background", "global", "style", "vision")

_TASK_TABLE: tuple[tuple[str, str], ...] = (
    ("color", "local"),
    ("texture", "texture"),
    ("shape", "local"),
    ("add", "add"),
    ("remove", "remove"),
    ("background", "background"),
    ("grayscale", "global"),
    ("invert", "global"),
    ("brightness", "global"),
    ("outline", "style"),
    ("pixelate", "style"),
    ("segment", "vision"),
    ("detect", "vision"),
    ("edges", "vision"),
)
#: Task names; a task's integer label is its index here.
TASKS: tuple[str, ...] = tuple(name for name, _ in _TASK_TABLE)
TASK_CATEGORIES: dict[str, str] = dict(_TASK_TABLE)
#: Tasks whose result a video model can be aligned on (vision outputs are not natural videos).
NON_VISION_TASKS: tuple[str, ...] = tuple(t for t in TASKS if TASK_CATEGORIES[t] != "vision")
#: Tasks that concern one object (``Edit.target`` is set).
TARGETED_TASKS: frozenset[str] = frozenset({"color", "texture", "shape", "add", "remove", "segment", "detect"})


def task_label(task: str) -> int:
    """Integer label of a task name."""
    if task not in TASK_CATEGORIES:
        raise EveditError(f"Unknown ShapeWorld task {task!r}; known tasks: {', '.join(TASKS)}.")
    return TASKS.index(task)


def object_count_range(task: str, config: WorldConfig) -> tuple[int, int]:
    """Inclusive range of object counts a scene for ``task`` may have (remove needs 2, add a free slot)."""
    lo, hi = config.min_objects, config.max_objects
    if task == "remove":
        lo = max(lo, 2)
    elif task == "add":
        hi -= 1
    if lo > hi:
        raise EveditError(f"The {task!r} task cannot be drawn with {config.min_objects} to {config.max_objects} objects.")
    return lo, hi


@dataclass(frozen=True)
class Edit:
    """One edit of a scene: instruction(s), captions, the edited scene graph and the object concerned.

    ``target`` indexes the input scene's objects, except for "add", where it indexes the edited
    scene's (the new object, last). It is None for tasks that concern no single object.
    """

    task: str
    label: int
    category: str
    instruction: str
    instructions: tuple[str, ...]
    input_caption: str
    output_caption: str
    edited_scene: Scene
    target: int | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        return {
            "task": self.task, "label": self.label, "category": self.category,
            "instruction": self.instruction, "instructions": list(self.instructions),
            "input_caption": self.input_caption, "output_caption": self.output_caption,
            "edited_scene": self.edited_scene.to_dict(), "target": self.target,
        }


_Change = tuple[Scene, int | None, tuple[str, ...]]  # (edited scene, target, phrasings)


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    """One element of ``options``, uniformly."""
    return options[int(rng.integers(len(options)))]


def _target(scene: Scene, rng: np.random.Generator, target: int | None) -> int:
    """The given target index, or a random object's."""
    return int(rng.integers(len(scene.objects))) if target is None else target


def _taken(scene: Scene, exclude: int | None = None) -> set[tuple[str, str]]:
    """(colour, shape) pairs of the scene's objects, except object ``exclude``."""
    return {(o.color, o.shape) for k, o in enumerate(scene.objects) if k != exclude}


def _with_object(scene: Scene, k: int, **changes: str) -> Scene:
    """Scene with object ``k``'s attributes changed (motion kept, so the ground truth is exact)."""
    objects = list(scene.objects)
    objects[k] = replace(objects[k], **changes)
    return replace(scene, objects=tuple(objects))


def _edit_color(scene: Scene, rng: np.random.Generator, config: WorldConfig, target: int | None) -> _Change:
    """Recolour one object (to a colour the background lacks and no same-shape object has)."""
    k = _target(scene, rng, target)
    obj, taken = scene.objects[k], _taken(scene, k)
    new = _pick(rng, [c for c in COLOR_NAMES if c != obj.color and c not in scene.background.colors
                      and (c, obj.shape) not in taken])
    ref = obj.name
    return _with_object(scene, k, color=new), k, (
        f"make the {ref} {new}", f"turn the {ref} {new}", f"change the color of the {ref} to {new}",
        f"recolor the {ref} in {new}", f"paint the {ref} {new}",
    )


def _edit_texture(scene: Scene, rng: np.random.Generator, config: WorldConfig, target: int | None) -> _Change:
    """Give one object another texture."""
    k = _target(scene, rng, target)
    obj = scene.objects[k]
    new, ref = _pick(rng, [t for t in TEXTURES if t != obj.texture]), obj.name
    if new == "solid":
        old = "stripes" if obj.texture == "striped" else "dots"
        phrasings = (f"make the {ref} solid", f"remove the {old} from the {ref}",
                     f"give the {ref} a plain solid fill", f"fill the {ref} with a single color")
    else:
        noun = "stripes" if new == "striped" else "dots"
        phrasings = (f"make the {ref} {new}", f"add {noun} to the {ref}",
                     f"give the {ref} a {new} texture", f"cover the {ref} with {noun}")
    return _with_object(scene, k, texture=new), k, phrasings


def _edit_shape(scene: Scene, rng: np.random.Generator, config: WorldConfig, target: int | None) -> _Change:
    """Replace one object's shape, keeping its colour, size, texture and motion."""
    k = _target(scene, rng, target)
    obj, taken = scene.objects[k], _taken(scene, k)
    new = _pick(rng, [s for s in SHAPES if s != obj.shape and (obj.color, s) not in taken])
    ref, a_new = obj.name, with_article(new)
    return _with_object(scene, k, shape=new), k, (
        f"turn the {ref} into {a_new}", f"replace the {ref} with {with_article(obj.color + ' ' + new)}",
        f"change the shape of the {ref} to {a_new}", f"make the {ref} {a_new}", f"transform the {ref} into {a_new}",
    )


def _edit_add(scene: Scene, rng: np.random.Generator, config: WorldConfig, target: int | None) -> _Change:
    """Add a new object on top (``target`` is ignored: the new object is always last)."""
    new = sample_object(rng, config, _taken(scene), scene.background.colors)
    p = object_phrase(new)
    return replace(scene, objects=scene.objects + (new,)), len(scene.objects), (
        f"add {p}", f"put {p} in the scene", f"insert {p}", f"include {p} as well", f"add {p} moving around",
    )


def _edit_remove(scene: Scene, rng: np.random.Generator, config: WorldConfig, target: int | None) -> _Change:
    """Remove one object (the scene must have at least two)."""
    if len(scene.objects) < 2:
        raise ValueError("the remove task needs a scene with at least two objects")
    k = _target(scene, rng, target)
    ref = scene.objects[k].name
    return replace(scene, objects=scene.objects[:k] + scene.objects[k + 1:]), k, (
        f"remove the {ref}", f"delete the {ref}", f"take the {ref} out",
        f"get rid of the {ref}", f"erase the {ref} from the scene",
    )


def _edit_background(scene: Scene, rng: np.random.Generator, config: WorldConfig, target: int | None) -> _Change:
    """Swap the background for another (same pan, colours no object has)."""
    old = scene.background
    colors = {o.color for o in scene.objects}
    for _ in range(100):
        new = sample_background(rng, config, colors, pan=old.pan)
        if (new.kind, new.color, new.color2) != (old.kind, old.color, old.color2):
            break
    noun, phrase = background_noun(new), background_phrase(new)
    things = "shape" if len(scene.objects) == 1 else "shapes"
    return replace(scene, background=new), None, (
        f"change the background to {noun}", f"replace the background with {noun}",
        f"put the {things} on {phrase}", f"swap the background for {phrase}", f"make the background {noun}",
    )


def _mode_edit(mode: str, phrasings: tuple[str, ...]) -> Callable[..., _Change]:
    """An edit that changes only the render mode (global and style tasks, and edges)."""
    def edit(scene: Scene, rng: np.random.Generator, config: WorldConfig, target: int | None) -> _Change:
        """The scene in the new render mode; no choice to draw."""
        return scene.with_mode(mode), None, phrasings
    return edit


def _edit_brightness(scene: Scene, rng: np.random.Generator, config: WorldConfig, target: int | None) -> _Change:
    """Make the whole scene darker or brighter."""
    if rng.random() < 0.5:
        return scene.with_mode("darker"), None, (
            "make it darker", "darken the scene", "lower the brightness", "make the scene dimmer")
    return scene.with_mode("brighter"), None, (
        "make it brighter", "brighten the scene", "increase the brightness", "make the scene lighter")


def _targeted_mode_edit(mode: str, templates: tuple[str, ...]) -> Callable[..., _Change]:
    """A vision edit about one object (segment, detect); templates take ``{ref}``."""
    def edit(scene: Scene, rng: np.random.Generator, config: WorldConfig, target: int | None) -> _Change:
        """The scene in the new render mode, about the target object."""
        k = _target(scene, rng, target)
        return scene.with_mode(mode, k), k, tuple(t.format(ref=scene.objects[k].name) for t in templates)
    return edit


_EDITS: dict[str, Callable[..., _Change]] = {
    "color": _edit_color,
    "texture": _edit_texture,
    "shape": _edit_shape,
    "add": _edit_add,
    "remove": _edit_remove,
    "background": _edit_background,
    "grayscale": _mode_edit("grayscale", (
        "make it grayscale", "make the scene black and white", "remove all the color",
        "convert the scene to black and white", "desaturate the scene")),
    "invert": _mode_edit("invert", (
        "invert the colors", "make it look like a photo negative", "invert the scene", "turn the scene into its negative")),
    "brightness": _edit_brightness,
    "outline": _mode_edit("outline", (
        "turn it into a line drawing", "show only the outlines of the shapes", "make it a black and white sketch",
        "draw the shapes as outlines on white", "render it as a line drawing")),
    "pixelate": _mode_edit("pixelate", (
        "pixelate the scene", "make it pixelated", "turn it into blocky pixel art", "make the pixels big and blocky")),
    "segment": _targeted_mode_edit("segment", (
        "segment the {ref}", "make a mask of the {ref}", "show a segmentation mask of the {ref}",
        "paint the {ref} white and everything else black")),
    "detect": _targeted_mode_edit("detect", (
        "detect the {ref}", "draw a box around the {ref}", "put a bounding box around the {ref}",
        "find the {ref} and mark it with a box")),
    "edges": _mode_edit("edges", (
        "show the edges", "make an edge map", "detect the edges", "turn the scene into an edge map", "extract the edges")),
}
assert tuple(_EDITS) == TASKS, "every task needs exactly one edit function, in label order"


def make_edit(
    scene: Scene,
    task: str,
    rng: np.random.Generator,
    config: WorldConfig | None = None,
    target: int | None = None,
) -> Edit:
    """Apply ``task`` to a normal-mode ``scene``, drawing choices and phrasing from ``rng``.

    ``target`` forces the object concerned (ignored by tasks about no object, and by "add").
    Input and output captions share one phrasing, so they differ only where the edit did.
    """
    if scene.render_mode != "normal":
        raise ValueError("edits apply to scenes in the normal render mode")
    label = task_label(task)
    caption_seed = int(rng.integers(2**63))
    edited, tgt, instructions = _EDITS[task](scene, rng, config or WorldConfig(), target)
    return Edit(
        task=task, label=label, category=TASK_CATEGORIES[task],
        instruction=instructions[int(rng.integers(len(instructions)))], instructions=tuple(instructions),
        input_caption=caption(scene, np.random.default_rng(caption_seed)),
        output_caption=caption(edited, np.random.default_rng(caption_seed)),
        edited_scene=edited, target=tgt,
    )
