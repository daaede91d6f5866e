"""The codec (``AutoencoderKL``) applied to videos in the project's one layout, (B, C, F, H, W).

Pixels are in [-1, 1]; latents are scaled by the VAE's ``scaling_factor`` (as SD pipelines do),
so the diffusion models see roughly unit-variance latents.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL
from einops import rearrange


def check_video(x: torch.Tensor, name: str = "video", channels: int | None = None) -> tuple:
    """Check ``x`` is (B, C, F, H, W) (with ``channels`` if given) and return its shape."""
    if not isinstance(x, torch.Tensor) or x.ndim != 5:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a tensor shaped (B, C, F, H, W), got {shape}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name} must have {channels} channels, got shape {tuple(x.shape)}")
    return tuple(x.shape)


def encode_video(vae: AutoencoderKL, video: torch.Tensor, sample: bool = False,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, 3, F, H, W) pixels in [-1, 1] -> (B, c, F, h, w) scaled latents (mode unless ``sample``)."""
    b, _, f, _, _ = check_video(video, "video", channels=vae.config.in_channels)
    flat = rearrange(video, "b c f h w -> (b f) c h w").to(vae.dtype)
    dist = vae.encode(flat).latent_dist
    z = dist.sample(generator) if sample else dist.mode()
    z = z * vae.config.scaling_factor
    return rearrange(z, "(b f) c h w -> b c f h w", b=b, f=f)


def decode_video(vae: AutoencoderKL, latents: torch.Tensor) -> torch.Tensor:
    """(B, c, F, h, w) scaled latents -> (B, 3, F, H, W) pixels, clamped to [-1, 1]."""
    b, _, f, _, _ = check_video(latents, "latents", channels=vae.config.latent_channels)
    flat = rearrange(latents, "b c f h w -> (b f) c h w").to(vae.dtype)
    x = vae.decode(flat / vae.config.scaling_factor).sample.clamp(-1, 1)
    return rearrange(x, "(b f) c h w -> b c f h w", b=b, f=f)
