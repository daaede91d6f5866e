"""Guidance rules as pure functions of model outputs.

- Classifier-free guidance (Ho & Salimans 2022): ``uncond + s (cond - uncond)``.
- InstructPix2Pix dual guidance (Brooks et al. 2023, eq. 3): with outputs for no conditioning,
  image only, and image + text, ``uncond + s_img (img - uncond) + s_txt (full - img)``.

Both work on any tensor shape, epsilon or v outputs alike (they are linear).
"""

from __future__ import annotations

import torch


def cfg(uncond: torch.Tensor, cond: torch.Tensor, scale: float) -> torch.Tensor:
    return uncond + scale * (cond - uncond)


def dual_guidance(
    uncond: torch.Tensor, image_cond: torch.Tensor, full: torch.Tensor,
    image_scale: float, text_scale: float,
) -> torch.Tensor:
    return uncond + image_scale * (image_cond - uncond) + text_scale * (full - image_cond)
