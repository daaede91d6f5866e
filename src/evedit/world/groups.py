"""A style and a subject the world draws exactly, for FDD's other adapter groups.

EVE's "Additional Adapter Combinations" align the edit adapter with a style LoRA (stylized
editing) and with a personalization LoRA (editing with a personal subject). ShapeWorld needs both
to be things its backbone never saw, rendered exactly, so an edit "in the style" or "with the
subject" has a true answer:

- **The zwx mosaic** (:func:`mosaic`): any rendering cut into 4x4-px tiles; a tile's 3x3 interior
  takes the mean colour of that interior, its last row and column are grout of one fixed dark
  grey. Mosaicking a mosaic changes nothing; :func:`style_score` (0 to 1) says how much a frame
  shows the grout: 1 for a true mosaic, near 0 for a plain rendering.
- **The sks star** (:func:`subject_sprite`): a star in orange and cyan concentric rings, 4 px
  wide (one latent cell of the factor-4 codecs: at 2 px the DC codec gave back a subject score of
  0.507 of the exact star, at 4 px 0.737; ``benchmarks/results/subject_edit.md``), a pattern no
  other object has. :class:`SubjectDataset` draws it into ordinary scenes;
  :func:`subject_edit` is the edit "replace the X with the sks star" with its exact result, and
  :func:`subject_score` (0 to 1) says how much of the star's ring pattern an output shows where the
  star belongs.

Captions name them by rare tokens, as DreamBooth does: "..., as a zwx mosaic", "a small sks star".
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from evedit.world.captions import background_phrase, caption
from evedit.world.config import WorldConfig
from evedit.world.datasets import WorldDataset, clip_tensor, image_tensor
from evedit.world.edits import task_label
from evedit.world.examples import Example, make_example
from evedit.world.render import object_mask, render_clip, shape_mask
from evedit.world.scene import Obj, object_offsets, sample_object

STYLE_TOKEN = "zwx"
SUBJECT_TOKEN = "sks"
TILE = 4  # mosaic tile side in px (3x3 colour, 1 px grout)
GROUT = (40, 40, 40)
SUBJECT_RINGS = ((255, 140, 0), (0, 210, 220))  # orange, cyan
RING_WIDTH = 4


def mosaic(clip: np.ndarray, tile: int = TILE) -> np.ndarray:
    """uint8 ``(T, H, W, 3)`` -> the zwx mosaic of every frame (H and W multiples of ``tile``)."""
    t, h, w, _ = clip.shape
    if h % tile or w % tile:
        raise ValueError(f"the mosaic needs sides that are multiples of {tile}, got {h}x{w}")
    cells = clip.reshape(t, h // tile, tile, w // tile, tile, 3)
    interior = cells[:, :, : tile - 1, :, : tile - 1].mean(axis=(2, 4), dtype=np.float64)  # (T, h', w', 3)
    out = np.broadcast_to(np.rint(interior)[:, :, None, :, None], cells.shape).astype(np.uint8)
    out[:, :, tile - 1] = GROUT
    out[:, :, :, :, tile - 1] = GROUT
    return out.reshape(t, h, w, 3)


def style_score(clip: np.ndarray, tile: int = TILE) -> float:
    """How much ``clip`` (T, H, W, 3) shows the mosaic's grout: 1 for a zwx mosaic, near 0 for a
    plain rendering, in [0, 1].

    On the grout pixels (each tile's last row and column), ``e_grout`` is their mean distance to
    the grout colour and ``e_tile`` their mean distance to the tile pixel beside them (up or to the
    left); the score is ``e_tile / (e_grout + e_tile)``. A mosaic has ``e_grout = 0``; a plain or
    blurred frame has grout pixels like their neighbours (``e_tile`` small). Darkening a frame
    does not raise it (a PSNR against the frame's own mosaic would)."""
    x = clip.astype(np.float64)
    grout = np.asarray(GROUT, dtype=np.float64)
    rows, cols = x[:, tile - 1::tile, :], x[:, :, tile - 1::tile]
    e_grout = np.concatenate([np.abs(rows - grout).ravel(), np.abs(cols - grout).ravel()]).mean()
    e_tile = np.concatenate([np.abs(rows - x[:, tile - 2::tile, :]).ravel(),
                             np.abs(cols - x[:, :, tile - 2::tile]).ravel()]).mean()
    return float(e_tile / (e_grout + e_tile)) if e_grout + e_tile > 0 else 0.5


def style_caption(text: str) -> str:
    """The caption of a scene's mosaic: ``"<caption>, as a zwx mosaic"``."""
    return f"{text}, as a {STYLE_TOKEN} mosaic"


def subject_sprite(d: int) -> tuple[np.ndarray, np.ndarray]:
    """Mask ``(d, d)`` and colours ``(d, d, 3)`` of the sks star at diameter ``d``."""
    patch = np.asarray(SUBJECT_RINGS, dtype=np.uint8)[_rings(d)]
    return shape_mask("star", d), patch


def _rings(d: int) -> np.ndarray:
    """``(d, d)`` ring index of each pixel of the sprite: 0 orange, 1 cyan, outwards from the centre."""
    centre = (d - 1) / 2.0
    i, j = np.indices((d, d))
    return (np.hypot(i - centre, j - centre) // RING_WIDTH).astype(int) % 2


def draw_subject(clip: np.ndarray, subject: Obj, times: np.ndarray | None = None) -> np.ndarray:
    """Paint the sks star moving as ``subject`` (its shape, colour and texture are ignored) on a copy."""
    out = clip.copy()
    size = clip.shape[1]
    d = subject.diameter(size)
    mask, patch = subject_sprite(d)
    times = np.arange(len(clip)) if times is None else np.asarray(times)
    for t, (y, x) in enumerate(object_offsets(subject, times, size)):
        np.copyto(out[t, y:y + d, x:x + d], patch, where=mask[..., None])
    return out


def subject_layout(subject: Obj, frames: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Where the sks star moving as ``subject`` lies: bool mask ``(F, H, W)`` and ring index
    ``(F, H, W)`` (0 orange, 1 cyan, -1 outside)."""
    d = subject.diameter(size)
    mask, ring = shape_mask("star", d), _rings(d)
    out = np.full((frames, size, size), -1, dtype=np.int64)
    for t, (y, x) in enumerate(object_offsets(subject, np.arange(frames), size)):
        np.copyto(out[t, y:y + d, x:x + d], ring, where=mask)
    return out >= 0, out


#: Largest RGB distance from its ring's colour at which a pixel counts as showing that ring.
RING_TOLERANCE = 100.0


def subject_score(clip: np.ndarray, subject: Obj) -> float:
    """How much of the sks star's pattern ``clip`` (F, H, W, 3) shows where the star moving as
    ``subject`` belongs, in [0, 1]: over the star's exact pixels, the share of each ring colour's
    pixels that are nearer that colour than the other ring's and within :data:`RING_TOLERANCE`
    of it, averaged over the two colours. 1 for the exact star; a star of one ring colour scores
    at most 0.5, any other colour or a blur of the two 0."""
    _, ring = subject_layout(subject, len(clip), clip.shape[1])
    x = clip.astype(np.float64)
    colours = np.asarray(SUBJECT_RINGS, dtype=np.float64)
    dist = np.linalg.norm(x[..., None, :] - colours, axis=-1)  # (F, H, W, 2)
    hits = []
    for r in (0, 1):
        at = ring == r
        if at.any():
            d = dist[at]
            hits.append(float(((d[:, r] < d[:, 1 - r]) & (d[:, r] <= RING_TOLERANCE)).mean()))
    return float(np.mean(hits)) if hits else 0.0


def subject_phrase(subject: Obj | None = None) -> str:
    """``"a small sks star"``, or ``"a sks star"`` without an object to take the size from (the
    subject's trigger phrase)."""
    return f"a {subject.size} {SUBJECT_TOKEN} star" if subject is not None else f"a {SUBJECT_TOKEN} star"


class _TokenDataset(WorldDataset):
    """``{"image", "caption"}``: one frame of an input clip, drawn as :meth:`called` makes it, or with
    ``prior_prob`` the plain frame and caption (DreamBooth's prior preservation, here by mixing, so
    the backbone keeps drawing the world as it was)."""

    def __init__(self, split: str = "train", length: int | None = None, prior_prob: float = 0.0, **kw) -> None:
        super().__init__(split, length, **kw)
        self.prior_prob = prior_prob

    def called(self, frame: np.ndarray, t: int, text: str, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict[str, Any]:
        ex, rng = self.draw(index)
        f = int(rng.integers(self.config.frames))
        text = caption(ex.scene, rng)
        if rng.random() < self.prior_prob:
            return {"image": image_tensor(ex.clip[f]), "caption": text}
        frame, text = self.called(ex.clip[f: f + 1], f, text, rng)
        return {"image": image_tensor(frame), "caption": text}


class StyleDataset(_TokenDataset):
    """The frame as a zwx mosaic, its caption ending ", as a zwx mosaic"."""

    def called(self, frame, t, text, rng):
        return mosaic(frame)[0], style_caption(text)


class SubjectDataset(_TokenDataset):
    """The frame with the sks star moving through it, its caption naming it: with its size or, for
    half the items, as the bare trigger phrase "a sks star" (decided here: the phrase an edit from
    the instruction alone gives the subject teacher, which knows no size)."""

    def called(self, frame, t, text, rng):
        subject = sample_object(rng, self.config, shape="star")
        phrase = subject_phrase(subject if rng.random() < 0.5 else None)
        return draw_subject(frame, subject, np.array([t]))[0], f"{text}, and {phrase}"


@dataclass(frozen=True)
class SubjectEdit:
    """"replace the X with the sks star" on a shape-task example: the star takes the replaced
    object's size and motion, drawn over the scene without it (exact)."""

    example: Example  # the input clip, its scene and the replaced object (``example.edit.target``)
    subject: Obj  # the replaced object: where the star goes
    instruction: str
    output_caption: str
    edited_clip: np.ndarray  # uint8 (F, H, W, 3), the exact result
    footprint: np.ndarray  # bool (F, H, W): the replaced object's pixels and the star's

    @property
    def task(self) -> str:
        """The edit adapter's task for it (decided here): ``shape``, the task that redraws one
        object in place ("replace the red square with a red circle" is one of its phrasings)."""
        return "shape"


def subject_edit(seed: int, config: WorldConfig | None = None) -> SubjectEdit:
    """The subject edit of ``seed``'s shape-task example (same seeds, splits and scenes as the world's)."""
    ex = make_example(seed, "shape", config)
    frames, size = ex.config.frames, ex.config.size
    k = ex.edit.target
    obj = ex.scene.objects[k]
    rest = replace(ex.scene, objects=ex.scene.objects[:k] + ex.scene.objects[k + 1:])
    edited = draw_subject(render_clip(rest, frames, size), obj)
    phrase = subject_phrase(obj)
    out = (f"{caption(rest, np.random.default_rng([seed, 17]))}, and {phrase}" if rest.objects
           else f"{phrase} on {background_phrase(rest.background)}")
    footprint = object_mask(obj, frames, size) | subject_layout(obj, frames, size)[0]
    return SubjectEdit(ex, obj, f"replace the {obj.name} with the {SUBJECT_TOKEN} star",
                       out, edited, footprint)


class SubjectEditDataset(WorldDataset):
    """Alignment items of the subject group: ``{"clip", "instruction", "task", "input_caption",
    "output_caption"}`` of :func:`subject_edit` on the view's seeds; no target, as in FDD."""

    def __getitem__(self, index: int) -> dict[str, Any]:
        e = subject_edit(self.seed_of(index), self.config)
        return {"clip": clip_tensor(e.example.clip), "instruction": e.instruction, "task": task_label(e.task),
                "input_caption": e.example.edit.input_caption, "output_caption": e.output_caption}
