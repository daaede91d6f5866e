"""Guided teacher calls: the pure guidance rules applied to batched denoiser calls.

The branches of a guidance rule run as one batched call (conditionings concatenated along B).
The "null" text is the text encoder's embedding of the empty string; the null image for the edit
adapter is an all-zero condition, the same values its condition dropout trains with.
"""

from __future__ import annotations

import torch

from ..diffusion.guidance import cfg, dual_guidance
from .compose import Conditioning, Denoiser


def _null_like(null_text: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return null_text.to(like).expand(like.shape[0], -1, -1)


def _token_null(null_text: torch.Tensor, cond: Conditioning) -> dict:
    """The caption with a style or subject trigger is nulled with the caption."""
    return {} if cond.token_caption is None else {"token_caption": _null_like(null_text, cond.token_caption)}


def without_text(cond: Conditioning, null_text: torch.Tensor) -> Conditioning:
    """``cond`` with its texts (caption, instruction, a trigger caption) nulled: ip2p's image-only branch."""
    return cond.replace(
        caption=_null_like(null_text, cond.caption), instruction=_null_like(null_text, cond.instruction),
        **_token_null(null_text, cond),
    )


def edit_teacher_guided(
    teacher: Denoiser, x: torch.Tensor, t: torch.Tensor, cond: Conditioning,
    null_text: torch.Tensor, image_scale: float = 1.5, text_scale: float = 7.5,
) -> torch.Tensor:
    """InstructPix2Pix dual guidance: branches (image + text), (image only), (neither)."""
    if image_scale == 1.0 and text_scale == 1.0:
        return teacher(x, t, cond)
    no_text = without_text(cond, null_text)
    neither = no_text.replace(source=torch.zeros_like(cond.source))
    out = teacher(torch.cat([x] * 3), torch.cat([t] * 3), Conditioning.cat([cond, no_text, neither]))
    full, image_only, uncond = out.chunk(3)
    return dual_guidance(uncond, image_only, full, image_scale, text_scale)


def text_guided(
    denoiser: Denoiser, x: torch.Tensor, t: torch.Tensor, cond: Conditioning,
    null_text: torch.Tensor, scale: float = 7.5,
) -> torch.Tensor:
    """Classifier-free guidance on the prompts (caption and instruction both nulled)."""
    if scale == 1.0:
        return denoiser(x, t, cond)
    changes = {"caption": _null_like(null_text, cond.caption), **_token_null(null_text, cond)}
    if cond.instruction is not None:
        changes["instruction"] = _null_like(null_text, cond.instruction)
    uncond_cond = cond.replace(**changes)
    out = denoiser(torch.cat([x, x]), torch.cat([t, t]), Conditioning.cat([cond, uncond_cond]))
    c, u = out.chunk(2)
    return cfg(u, c, scale)
