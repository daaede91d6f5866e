"""One-attribute-off captions: the hard negatives of ShapeWorld caption retrieval.

A scene's caption names every object's colour, shape, texture and size, and the background. A
*one-attribute-off* caption describes the same scene with exactly one of those changed (one
object's colour, shape, texture or size, or the background) to another value, in the same
phrasing as the true caption. Retrieving the true caption among such captions is the zero-shot
test of :class:`~evedit.models.shapeclip.ShapeCLIP` (and its hard-negative training signal):
a model that only matches the gist ("some shapes on a background") scores chance.

Perturbed scenes are built with :func:`dataclasses.replace` and captioned by the world's own
:func:`~evedit.world.caption` with one fixed phrasing seed, so captions differ only in the words
of the changed attribute.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from itertools import islice

import numpy as np

from evedit.world import BACKGROUND_KINDS, COLOR_NAMES, SHAPES, SIZES, TEXTURES, Scene, caption

#: Attributes a perturbation may change: four per object, and the background.
ATTRIBUTES: tuple[str, ...] = ("color", "shape", "texture", "size", "background")


@dataclass(frozen=True)
class Perturbation:
    """A scene with one attribute changed: ``target`` indexes the object (None for the background).

    ``old`` / ``new`` are the attribute's values; a background is written ``"kind color color2"``.
    """

    scene: Scene
    attribute: str
    target: int | None
    old: str
    new: str


def _bg_words(scene: Scene) -> str:
    bg = scene.background
    return f"{bg.kind} {bg.color} {bg.color2}"


def _object_perturbations(scene: Scene, k: int) -> list[Perturbation]:
    """Every single-attribute change of object ``k`` that keeps the scene valid.

    (colour, shape) stays unique within the scene (objects are named by it); new colours avoid
    the background's, as the world's own sampler does, so the negative is a plausible scene.
    """
    obj = scene.objects[k]
    taken = {(o.color, o.shape) for j, o in enumerate(scene.objects) if j != k}
    options = {
        "color": [c for c in COLOR_NAMES if c != obj.color and c not in scene.background.colors
                  and (c, obj.shape) not in taken],
        "shape": [s for s in SHAPES if s != obj.shape and (obj.color, s) not in taken],
        "texture": [t for t in TEXTURES if t != obj.texture],
        "size": [s for s in SIZES if s != obj.size],
    }
    out = []
    for attribute, values in options.items():
        for value in values:
            objects = list(scene.objects)
            objects[k] = replace(obj, **{attribute: value})
            out.append(Perturbation(replace(scene, objects=tuple(objects)), attribute, k,
                                    getattr(obj, attribute), value))
    return out


def _background_perturbations(scene: Scene) -> list[Perturbation]:
    """Backgrounds differing in kind, first colour or second colour (colours avoid the objects')."""
    bg = scene.background
    free = [c for c in COLOR_NAMES if c not in {o.color for o in scene.objects}]
    candidates = []
    for color in free:
        if color != bg.color and (bg.kind == "plain" or color != bg.color2):
            candidates.append(replace(bg, color=color, color2=bg.color2 if bg.kind != "plain" else color))
        if bg.kind != "plain" and color not in (bg.color, bg.color2):
            candidates.append(replace(bg, color2=color))
    for kind in BACKGROUND_KINDS:
        if kind == bg.kind:
            continue
        if kind == "plain":
            candidates.append(replace(bg, kind=kind, color2=bg.color))
        elif bg.kind != "plain":
            candidates.append(replace(bg, kind=kind))
        else:  # plain -> patterned needs a second colour: one new value of the one attribute
            candidates += [replace(bg, kind=kind, color2=c) for c in free if c != bg.color]
    old = _bg_words(scene)
    out = []
    for new_bg in candidates:
        new_scene = replace(scene, background=new_bg)
        out.append(Perturbation(new_scene, "background", None, old, _bg_words(new_scene)))
    return out


def perturbations(scene: Scene, attributes: tuple[str, ...] = ATTRIBUTES) -> list[Perturbation]:
    """Every one-attribute-off variant of ``scene`` whose attribute is in ``attributes``."""
    out: list[Perturbation] = []
    for k in range(len(scene.objects)):
        out += [p for p in _object_perturbations(scene, k) if p.attribute in attributes]
    if "background" in attributes:
        out += _background_perturbations(scene)
    return out


def iter_one_attribute_off(
    scene: Scene,
    rng: np.random.Generator | None = None,
    phrasing_seed: int = 0,
    attributes: tuple[str, ...] = ATTRIBUTES,
) -> Iterator[tuple[str, Perturbation]]:
    """Distinct one-attribute-off ``(caption, perturbation)`` pairs, attributes taken in turn.

    Attributes are drawn in turn (a random order, then again), so small pools such as size still
    come early instead of being swamped by the many colour options. Perturbations whose caption
    equals the true one or an earlier one (an attribute the render mode's caption does not
    mention) are skipped. All captions share the phrasing of ``phrasing_seed``.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    seen = {caption(scene, np.random.default_rng(phrasing_seed))}
    pools: dict[str, list[Perturbation]] = {}
    for p in perturbations(scene, attributes):
        pools.setdefault(p.attribute, []).append(p)
    for pool in pools.values():
        rng.shuffle(pool)  # in-place shuffle of a list of objects
    order = [a for a in attributes if a in pools]
    order = [order[i] for i in rng.permutation(len(order))]
    while any(pools[a] for a in order):
        for attribute in order:
            while pools[attribute]:
                p = pools[attribute].pop()
                text = caption(p.scene, np.random.default_rng(phrasing_seed))
                if text not in seen:
                    seen.add(text)
                    yield text, p
                    break


def one_attribute_off(
    scene: Scene,
    n: int = 9,
    rng: np.random.Generator | None = None,
    phrasing_seed: int = 0,
    attributes: tuple[str, ...] = ATTRIBUTES,
) -> tuple[str, list[tuple[str, Perturbation]]]:
    """The true caption and up to ``n`` pairs of :func:`iter_one_attribute_off` (fewer if the scene allows fewer)."""
    true = caption(scene, np.random.default_rng(phrasing_seed))
    return true, list(islice(iter_one_attribute_off(scene, rng, phrasing_seed, attributes), n))


def one_attribute_off_captions(
    scene: Scene, n: int = 9, rng: np.random.Generator | None = None, phrasing_seed: int = 0,
) -> tuple[str, list[str]]:
    """The true caption and ``n`` (fewer if the scene allows fewer) one-attribute-off captions."""
    true, chosen = one_attribute_off(scene, n, rng, phrasing_seed)
    return true, [text for text, _ in chosen]
