"""Edit accuracy on ShapeWorld: did the asked change happen? One yes/no per edited clip (or frame).

PSNR says how close an output is to the exact ground truth, but a blurry correct edit and a sharp
unedited copy can score alike. Edit accuracy reads the ShapeWorld scene graphs and masks instead and
asks one question per task. Frames are ``(F, H, W, 3)``, uint8 or float on the same 0..255 scale
(as :mod:`.metrics`); ``frames`` picks which frames of the example they are (default: all).

Checks (an item passes when every check of its task passes; None when one cannot be judged):

- **colour** (color, add): the mean colour of the object's *main-colour* pixels (pixels of the
  edited object's visible mask that the ground truth paints in the asked colour itself, so a
  striped or dotted texture's second shade is left out) is, among the 12 palette colours, nearest
  to the asked one. Distance: Euclidean in CIELAB (D65), so "near" is roughly perceptual, and
  achromatic colours (white, gray, black) and brown compare sensibly with the chromatic ones. No
  threshold: the palette is the vocabulary, and every pair of its colours is far apart.
- **closer** (every task but color): over the pixels where the ground truth differs from the input,
  the output's MSE to the ground truth is below both its MSE to the input and the input's own MSE
  to the ground truth: the output went more than halfway from the input towards the exact result,
  and is a better answer than doing nothing. The unchanged input always fails it; the rule has no
  scale to tune. (Pixels where ground truth and input agree would add the same error to the first
  two sides, so leaving them out changes nothing but the wording.) The second clause stops a flat
  grey or black frame from passing pixelate, where the input is already near the ground truth,
  on most items (see "fidelity" for the rest). Strict for detect: the 1-px box must be drawn at
  more than half strength (a 3x3 blur of the true box fails).
- **locality** (tasks whose footprint leaves pixels out: color, texture, shape, add, remove,
  background, detect): outside :func:`~evedit.world.edit_footprint`, PSNR against the input is at
  least :data:`LOCALITY_PSNR` (15 dB, RMS error 45 grey levels). The shipped codec reconstructs
  test frames at about 26 dB; a 3x3 box blur of the ground truth (harsher than that codec) passes
  on 17-20 of 20 test items of each of these tasks (detect apart);
  repainting the whole frame in the asked colour scored at most 14.3 dB on 120 color / add items,
  so it fails. It stops "paint everything red" from counting as a colour edit of one object.
- **mask** (segment, edges): the white pixels of the output (luma >= :data:`WHITE_LUMA`) overlap the
  ground truth's with IoU >= :data:`MIN_IOU` (0.5). For edges the luma threshold is
  :data:`EDGE_LUMA` (1-px lines lose contrast in any codec) and both maps are dilated by one pixel
  first (an edge one pixel off is still that edge). Catches all-black outputs, which "closer"
  alone lets through because the ground truth is mostly black.

- **fidelity** (global and style tasks: grayscale, invert, brightness, outline, pixelate): PSNR
  against the ground truth over the whole frame is at least :data:`FIDELITY_PSNR` (15 dB, the
  locality threshold read the other way). A 3x3 blur of the truth scores 17 dB or more on these
  tasks; a flat grey or black frame mostly 5-12 dB.

Measured on 20 test items per task: the ground truth and the truth plus Gaussian noise of RMS 16
grey levels (about 24 dB) pass everywhere except pixelate, whose change is a few grey levels on
few pixels (17 of 20 noisy outputs pass); a 3x3 box blur of the truth passes 17-20 of 20 on
every task but detect (0: see "closer"). Known leniency: a flat grey frame still passes grayscale
on 8 of 20 items (it is grey, and near a mid-grey scene) and a few remove items (the removed
object's place is then near a grey background's colour, and the rest within 15 dB). ``psnr`` and ``structure_psnr`` stay
the figures for how *well* an edit was made; accuracy is whether it was made.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..world import COLORS, Example, edit_footprint, make_example, visible_masks
from ..world.config import WorldConfig

#: Least PSNR (dB) against the input outside the edit's footprint (see the module docstring).
LOCALITY_PSNR = 15.0
#: Least PSNR (dB) against the ground truth over the whole frame for global and style tasks.
FIDELITY_PSNR = 15.0
#: Least IoU of the output's white pixels with the ground truth's (segment, edges).
MIN_IOU = 0.5
#: Luma from which a pixel counts as white in a segmentation mask (halfway between black and white).
WHITE_LUMA = 128.0
#: Luma from which a pixel counts as an edge in an edge map (a quarter: thin lines blur dim).
EDGE_LUMA = 64.0

_LOCAL_TASKS = frozenset({"color", "texture", "shape", "add", "remove", "background", "detect"})
_WHOLE_FRAME_TASKS = frozenset({"grayscale", "invert", "brightness", "outline", "pixelate"})
_CHECKS: dict[str, tuple[str, ...]] = {
    "color": ("colour", "locality"),
    "add": ("colour", "closer", "locality"),
    "segment": ("closer", "mask"),
    "edges": ("closer", "mask"),
}


def task_checks(task: str) -> tuple[str, ...]:
    """Names of the checks an edit of ``task`` must pass."""
    if task in _CHECKS:
        return _CHECKS[task]
    if task in _WHOLE_FRAME_TASKS:
        return ("closer", "fidelity")
    return ("closer", "locality") if task in _LOCAL_TASKS else ("closer",)


# ----------------------------------------------------------------------------- colour


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB colours ``(..., 3)`` on 0..255 -> CIELAB ``(..., 3)`` (D65 white)."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])  # (..., 3), white -> (1, 1, 1)
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


_PALETTE_NAMES = tuple(COLORS)
_PALETTE_LAB = srgb_to_lab(np.array([COLORS[c] for c in _PALETTE_NAMES]))  # (12, 3)


def nearest_color(rgb: np.ndarray | Sequence[float]) -> str:
    """The palette colour nearest (CIELAB distance) to one RGB colour on 0..255."""
    d = np.linalg.norm(_PALETTE_LAB - srgb_to_lab(np.asarray(rgb, dtype=np.float64)), axis=-1)
    return _PALETTE_NAMES[int(np.argmin(d))]


def color_check(out: np.ndarray, gt: np.ndarray, region: np.ndarray, color: str) -> bool | None:
    """Is the mean colour of ``out`` over the asked colour's pixels of ``gt`` in ``region`` nearest to ``color``?

    ``region`` is bool ``(F, H, W)`` (the object's visible mask); None when the ground truth shows
    no pixel of ``color`` there (the object hidden in every frame judged).
    """
    main = region & np.all(gt == np.asarray(COLORS[color], dtype=gt.dtype), axis=-1)
    if not main.any():
        return None
    return bool(nearest_color(np.asarray(out, dtype=np.float64)[main].mean(axis=0)) == color)


# ----------------------------------------------------------------------------- pixel rules


def _mse(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Mean squared error of ``a`` and ``b`` over the pixels where ``mask`` (F, H, W) is True."""
    return float(np.square(np.asarray(a, dtype=np.float64)[mask] - np.asarray(b, dtype=np.float64)[mask]).mean())


def closer_check(out: np.ndarray, inp: np.ndarray, gt: np.ndarray) -> bool | None:
    """Is ``out`` nearer (MSE) to ``gt`` than to ``inp`` where those two differ? None if they never do."""
    changed = np.any(np.asarray(inp) != np.asarray(gt), axis=-1)  # (F, H, W)
    if not changed.any():
        return None
    err = _mse(out, gt, changed)
    return bool(err < _mse(out, inp, changed) and err < _mse(inp, gt, changed))


def _psnr_at_least(a: np.ndarray, b: np.ndarray, mask: np.ndarray, min_psnr: float) -> bool:
    """PSNR of ``a`` against ``b`` over ``mask`` (F, H, W) >= ``min_psnr`` (True when the mask is empty)."""
    if not mask.any():
        return True
    mse = _mse(a, b, mask)
    return bool(mse == 0.0 or 10.0 * np.log10(255.0**2 / mse) >= min_psnr)


def locality_check(out: np.ndarray, inp: np.ndarray, footprint: np.ndarray,
                   min_psnr: float = LOCALITY_PSNR) -> bool:
    """PSNR of ``out`` against ``inp`` outside ``footprint`` >= ``min_psnr`` (True when nothing is outside)."""
    return _psnr_at_least(out, inp, ~np.asarray(footprint, dtype=bool), min_psnr)


def fidelity_check(out: np.ndarray, gt: np.ndarray, min_psnr: float = FIDELITY_PSNR) -> bool:
    """PSNR of ``out`` against ``gt`` over every pixel >= ``min_psnr``."""
    return _psnr_at_least(out, gt, np.ones(np.shape(gt)[:3], dtype=bool), min_psnr)


def _luma(frames: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma of ``(..., 3)`` frames on 0..255."""
    return np.asarray(frames, dtype=np.float64) @ np.array([0.299, 0.587, 0.114])


def _dilate(m: np.ndarray) -> np.ndarray:
    """3x3 binary dilation of bool ``(F, H, W)`` masks."""
    p = np.pad(m, ((0, 0), (1, 1), (1, 1)))
    h, w = m.shape[1:]
    out = np.zeros_like(m)
    for dy in range(3):
        for dx in range(3):
            out |= p[:, dy:dy + h, dx:dx + w]
    return out


def mask_iou(out: np.ndarray, gt: np.ndarray, luma: float = WHITE_LUMA, dilate: bool = False) -> float:
    """IoU of the white pixels (luma >= ``luma``) of ``out`` and ``gt``; 1 when both have none."""
    a, b = _luma(out) >= luma, _luma(gt) >= luma
    if dilate:
        a, b = _dilate(a), _dilate(b)
    union = (a | b).sum()
    return 1.0 if union == 0 else float((a & b).sum() / union)


# ----------------------------------------------------------------------------- per example


def _target_region(example: Example, frames: np.ndarray) -> np.ndarray:
    """The edited object's visible mask in the edited scene at ``frames``: bool ``(len(frames), H, W)``."""
    cfg = example.config
    return visible_masks(example.edit.edited_scene, cfg.frames, cfg.size)[frames, example.edit.target]


def _edited_frames(example: Example, edited: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """``edited`` checked against the example's frame size, as a float array."""
    edited = np.asarray(edited)
    want = (len(frames), *example.clip.shape[1:])
    if edited.shape != want:
        raise ValueError(f"edited frames must be shaped {want} (resize them first), got {edited.shape}")
    return edited.astype(np.float64, copy=False)


def accuracy_checks(example: Example, edited: np.ndarray,
                    frames: Sequence[int] | None = None) -> dict[str, bool | None]:
    """Each check of the example's task (:func:`task_checks`) on ``edited``: True, False or None.

    ``edited`` is ``(F, H, W, 3)`` on 0..255, the example's frames ``frames`` (default all, in order).
    """
    idx = np.arange(example.config.frames) if frames is None else np.asarray(frames, dtype=np.int64)
    out = _edited_frames(example, edited, idx)
    inp, gt, task = example.clip[idx], example.edited_clip[idx], example.task
    res: dict[str, bool | None] = {}
    for check in task_checks(task):
        if check == "colour":
            color = example.edit.edited_scene.objects[example.edit.target].color
            res[check] = color_check(out, gt, _target_region(example, idx), color)
        elif check == "closer":
            res[check] = closer_check(out, inp, gt)
        elif check == "locality":
            res[check] = locality_check(out, inp, edit_footprint(example)[idx])
        elif check == "fidelity":
            res[check] = fidelity_check(out, gt)
        else:  # mask
            edges = task == "edges"
            iou = mask_iou(out, gt, EDGE_LUMA if edges else WHITE_LUMA, dilate=edges)
            res[check] = bool(iou >= MIN_IOU)
    return res


def edit_accuracy(example: Example, edited: np.ndarray, frames: Sequence[int] | None = None) -> bool | None:
    """Did ``edited`` make the example's asked change? None when a check cannot be judged.

    ``edited``: ``(F, H, W, 3)`` uint8 (or float on 0..255) at the example's size; ``frames``: which
    of the example's frames they are (default all). See the module docstring for the rules.
    """
    checks = accuracy_checks(example, edited, frames)
    if any(v is None for v in checks.values()):
        return None
    return all(checks.values())


def item_example(seed: int, task: str, config: WorldConfig | dict | None = None) -> Example:
    """The ShapeWorld example behind an eval item (its ``meta["seed"]``, task and world config)."""
    if isinstance(config, dict):
        config = WorldConfig.from_dict(config)
    return make_example(int(seed), task, config)
