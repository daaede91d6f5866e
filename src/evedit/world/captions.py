"""Plain-English captions of ShapeWorld scenes, with varied phrasing.

A caption names every object's size, texture (when not solid), colour and shape, and the
background; a scene in a non-normal render mode gets a caption of what its rendering shows
("a grayscale view of ...", "a segmentation mask of the red circle"). The colour and shape of
an object always appear as the bigram ``"<colour> <shape>"``, which tests rely on.
"""

from __future__ import annotations

import numpy as np

from evedit.world.scene import Background, Obj, Scene

_TEXTURE_ADJ = {"striped": "striped", "dotted": "dotted"}
_TEXTURE_WITH = {"striped": "with stripes", "dotted": "with dots"}

_NORMAL_TEMPLATES = (
    "{objs} on {bg}",
    "{bg} with {objs}",
    "{objs} moving over {bg}",
    "there is {objs} on {bg}",
)
_MODE_TEMPLATES = {
    "grayscale": ("a grayscale view of {desc}", "{desc}, in black and white"),
    "invert": ("a color-inverted view of {desc}", "{desc}, with inverted colors"),
    "darker": ("a dark view of {desc}", "{desc}, darkened"),
    "brighter": ("a bright, washed-out view of {desc}", "{desc}, brightened"),
    "outline": ("a line drawing of {shapes}", "black outlines of {shapes} on white"),
    "pixelate": ("a pixelated view of {desc}", "{desc}, in blocky pixel art"),
    "segment": ("a segmentation mask of the {ref}", "a white mask of the {ref} on a black background"),
    "detect": ("{desc}, with a box around the {ref}", "{desc}, with the {ref} marked by a box"),
    "edges": ("an edge map of {desc}", "the edges of {desc}, white on black"),
}


def article(phrase: str) -> str:
    """``"a"`` or ``"an"`` for the phrase that follows."""
    return "an" if phrase[:1].lower() in "aeiou" else "a"


def with_article(phrase: str) -> str:
    """``phrase`` preceded by its indefinite article."""
    return f"{article(phrase)} {phrase}"


def join_phrases(items: list[str]) -> str:
    """``"a"``, ``"a and b"``, ``"a, b and c"``."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def object_phrase(obj: Obj, variant: int = 0) -> str:
    """``"a large striped red circle"`` (variant 0) or ``"a large red circle with stripes"`` (1)."""
    if obj.texture == "solid":
        words = f"{obj.size} {obj.color} {obj.shape}"
    elif variant == 0:
        words = f"{obj.size} {_TEXTURE_ADJ[obj.texture]} {obj.color} {obj.shape}"
    else:
        words = f"{obj.size} {obj.color} {obj.shape} {_TEXTURE_WITH[obj.texture]}"
    return with_article(words)


def background_noun(bg: Background) -> str:
    """The background as said after "change the background to": ``"plain green"``, ``"a green to white gradient"``."""
    if bg.kind == "plain":
        return f"plain {bg.color}"
    if bg.kind == "gradient":
        return f"a {bg.color} to {bg.color2} gradient"
    if bg.kind == "stripes":
        return f"{bg.color} and {bg.color2} stripes"
    return f"a {bg.color} and {bg.color2} checkerboard"


def background_phrase(bg: Background) -> str:
    """``"a plain green background"``, ``"an orange and white striped background"``, ..."""
    if bg.kind == "plain":
        words = f"plain {bg.color} background"
    elif bg.kind == "gradient":
        words = f"{bg.color} to {bg.color2} gradient background"
    elif bg.kind == "stripes":
        words = f"{bg.color} and {bg.color2} striped background"
    else:
        words = f"{bg.color} and {bg.color2} checkered background"
    return with_article(words)


def describe(scene: Scene, rng: np.random.Generator, standalone: bool = True) -> str:
    """Caption of the scene's normal rendering, in one of several phrasings.

    ``standalone=False`` gives a noun phrase that fits inside another caption ("an edge map of
    ..."), so the "there is ..." phrasing is replaced by the first one.
    """
    index = int(rng.integers(len(_NORMAL_TEMPLATES)))
    template = _NORMAL_TEMPLATES[index if standalone or not _NORMAL_TEMPLATES[index].startswith("there") else 0]
    objs = join_phrases([object_phrase(o, int(rng.integers(2))) for o in scene.objects])
    return template.format(objs=objs or "nothing", bg=background_phrase(scene.background))


def caption(scene: Scene, rng: np.random.Generator) -> str:
    """Caption of what ``scene`` renders to, in its render mode, phrasing drawn from ``rng``.

    Draw order is fixed (mode template, then scene description), so two scenes captioned with
    generators in the same state get the same phrasing: input and output captions of an edit
    differ only in the words the edit changed.
    """
    mode = scene.render_mode
    choice = int(rng.integers(2))
    desc = describe(scene, rng, standalone=mode == "normal")
    if mode == "normal":
        return desc
    ref = scene.objects[scene.mode_target].name if scene.mode_target is not None else ""
    shapes = join_phrases([with_article(f"{o.size} {o.shape}") for o in scene.objects])
    return _MODE_TEMPLATES[mode][choice].format(desc=desc, ref=ref, shapes=shapes)
