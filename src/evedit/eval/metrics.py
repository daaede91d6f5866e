"""Metric formulas: pure functions of frames or of embeddings, shared by every benchmark.

Pixel metrics take uint8 videos ``(F, H, W, 3)``; embedding metrics take ``(N, D)`` tensors (one
row per frame, or per video) and L2-normalise them first, so any encoder's raw features work.

- :func:`psnr`: 10 log10(255^2 / MSE), capped at :data:`PSNR_CAP` (identical inputs score the cap,
  not infinity, so means and JSON stay finite).
- :func:`flicker`: mean |(o_{f+1} - o_f) - (g_{f+1} - g_f)| in [0, 1] units: how far the output's
  frame-to-frame changes are from the ground truth's (0 when they move alike).
- :func:`structure_psnr`: PSNR against the *input*, only outside the edit's footprint.
- :func:`frame_consistency`: CLIPFrame as the TGVE script computes it: the mean cosine over all
  ordered off-diagonal frame pairs, sum / (N (N - 1)).
- :func:`mean_cosine`: CLIP_out / ViCLIP_out: mean cosine of each row with a text embedding.
- :func:`directional`: CLIP_dir (InstructPix2Pix's ``clip_similarity.py``, applied per frame) and
  ViCLIP_dir: cos(E(out) - E(in), T(c_out) - T(c_in)), averaged over rows; 0 when E(out) = E(in).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import EveditError

#: PSNR of identical images (dB); the MSE of one grey level in 10^10 pixels.
PSNR_CAP = 100.0


def _check_video(frames: np.ndarray, name: str) -> np.ndarray:
    if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{name} must be a (F, H, W, 3) array, got {getattr(frames, 'shape', type(frames))}")
    return frames


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR (dB) of two uint8 videos, over the pixels where ``mask`` (bool ``(F, H, W)``) is True."""
    a, b = _check_video(a, "a"), _check_video(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"PSNR needs equal shapes, got {a.shape} and {b.shape}")
    err = np.square(a.astype(np.float64) - b.astype(np.float64))  # (F, H, W, 3)
    if mask is not None:
        if mask.shape != a.shape[:3]:
            raise ValueError(f"mask must be shaped {a.shape[:3]}, got {mask.shape}")
        if not mask.any():
            raise ValueError("PSNR over an empty mask is undefined")
        err = err[mask]  # (P, 3)
    mse = float(err.mean())
    if mse == 0.0:
        return PSNR_CAP
    return min(PSNR_CAP, 10.0 * math.log10(255.0**2 / mse))


def flicker(out: np.ndarray, ref: np.ndarray) -> float:
    """Mean absolute difference between the frame-to-frame changes of ``out`` and ``ref`` (0..1)."""
    out, ref = _check_video(out, "out"), _check_video(ref, "ref")
    if out.shape != ref.shape:
        raise ValueError(f"flicker needs equal shapes, got {out.shape} and {ref.shape}")
    if out.shape[0] < 2:
        return 0.0
    d_out = np.diff(out.astype(np.float32) / 255.0, axis=0)  # (F-1, H, W, 3)
    d_ref = np.diff(ref.astype(np.float32) / 255.0, axis=0)
    return float(np.abs(d_out - d_ref).mean())


def structure_psnr(out: np.ndarray, inp: np.ndarray, footprint: np.ndarray) -> float | None:
    """PSNR of ``out`` against the input outside ``footprint``; None when the edit covers every pixel."""
    outside = ~np.asarray(footprint, dtype=bool)
    if not outside.any():
        return None
    return psnr(out, inp, outside)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.float(), dim=-1)


def frame_consistency(emb: torch.Tensor) -> float | None:
    """Mean off-diagonal cosine of ``(N, D)`` frame embeddings; None for a single frame."""
    n = emb.shape[0]
    if n < 2:
        return None
    e = _unit(emb)
    sim = e @ e.T  # (N, N)
    return float((sim.sum() - sim.diagonal().sum()) / (n * (n - 1)))


def mean_cosine(emb: torch.Tensor, text: torch.Tensor) -> float:
    """Mean over rows of cos(emb_i, text); ``text`` is ``(D,)`` or ``(1, D)``."""
    return float((_unit(emb) @ _unit(text.reshape(-1))).mean())


def directional(out: torch.Tensor, inp: torch.Tensor, text_out: torch.Tensor, text_in: torch.Tensor) -> float:
    """Mean over rows of cos(E(out)_i - E(in)_i, T(c_out) - T(c_in)), embeddings normalised first."""
    if out.shape != inp.shape:
        raise ValueError(f"directional similarity needs paired rows, got {tuple(out.shape)} and {tuple(inp.shape)}")
    d_img = _unit(out) - _unit(inp)  # (N, D)
    d_txt = (_unit(text_out.reshape(1, -1)) - _unit(text_in.reshape(1, -1))).expand_as(d_img)
    return float(F.cosine_similarity(d_img, d_txt, dim=-1, eps=1e-8).mean())


def scaled_cosine(emb: torch.Tensor, text: torch.Tensor, logit_scale: float) -> float:
    """``logit_scale * cos`` averaged over rows: TGVE's CLIP text score and PickScore."""
    return logit_scale * mean_cosine(emb, text)


def match_frames(out: np.ndarray, like: np.ndarray, what: str = "output") -> np.ndarray:
    """``out`` resized (bicubic) to ``like``'s frame size; frame counts must agree."""
    out = _check_video(np.asarray(out), what)
    if out.shape[0] != like.shape[0]:
        raise EveditError(f"The {what} has {out.shape[0]} frames but the input has {like.shape[0]}; "
                          "editors must keep the frame count.")
    if out.shape[1:3] == like.shape[1:3]:
        return out
    h, w = like.shape[1:3]
    return np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BICUBIC)) for f in out])
