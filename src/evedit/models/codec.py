"""The codec applied to images and videos in the project's one layout, (B, C, F, H, W).

Two diffusers classes serve as the codec: ``AutoencoderKL`` (SD 1.5's VAE, and ShapeWorld's
codecs up to 0.1.0) and ``AutoencoderDC`` (the deep-compression autoencoder of Sana, whose
space-to-channel shortcuts let a small codec train far faster; ShapeWorld's next codec,
``models/parts/codec-dc``, measured in ``benchmarks/results/codec_design.md``; the shipped 0.2.0
model still carries the KL codec). Every caller goes through the functions
here, so the class is read from the loaded model, never assumed. ``AutoencoderDC`` is
deterministic: ``sample=True`` returns its latent unchanged.

Pixels are in [-1, 1]; latents are scaled by the codec's ``scaling_factor`` (as SD pipelines do),
so the diffusion models see roughly unit-variance latents. A codec whose config also holds
``latents_mean`` and ``latents_std`` (one value per channel; the convention of diffusers' SDXL
pipelines) is normalised per channel: ``(raw - mean) * scaling_factor / std``. Measured on
ShapeWorld's DC codec (channel stds 0.37 to 1.99 under one scalar): normalised, a backbone learns the
small channels far better but gives test frames back 1.0 dB worse at equal steps, so the DC codec
keeps its scalar (``benchmarks/results/latent_norm.md``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from diffusers import AutoencoderDC, AutoencoderKL
from einops import rearrange

CODEC_CLASSES = {"AutoencoderKL": AutoencoderKL, "AutoencoderDC": AutoencoderDC}


class _ChannelNormKeys(logging.Filter):
    """AutoencoderDC's signature lacks ``latents_mean``/``latents_std``; diffusers keeps them in the
    config it loads but warns that they are unexpected. They are expected here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "'latents_mean'" not in record.getMessage()


logging.getLogger("diffusers.configuration_utils").addFilter(_ChannelNormKeys())


def codec_class(folder: str | Path):
    """The diffusers class a saved codec folder holds (from its config's ``_class_name``)."""
    path = Path(folder) / "config.json"
    name = json.loads(path.read_text()).get("_class_name", "AutoencoderKL") if path.is_file() \
        else "AutoencoderKL"
    if name not in CODEC_CLASSES:
        raise ValueError(f"The codec in '{folder}' is a {name}; evedit reads {', '.join(CODEC_CLASSES)}.")
    return CODEC_CLASSES[name]


def latent_affine(vae, like: torch.Tensor) -> tuple[torch.Tensor | float, torch.Tensor | float]:
    """(shift, scale) with ``model latents = (raw - shift) / scale``: per channel, shaped
    (1, c, 1, 1) like ``like``, when the config has ``latents_mean`` and ``latents_std``; else
    ``(0, 1 / scaling_factor)``."""
    config = vae.config
    mean, std = getattr(config, "latents_mean", None), getattr(config, "latents_std", None)
    if mean is None or std is None:
        return 0.0, 1.0 / config.scaling_factor
    as_channels = lambda v: torch.tensor(v, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)  # noqa: E731
    return as_channels(mean), as_channels(std) / config.scaling_factor


def to_model_latents(vae, raw: torch.Tensor) -> torch.Tensor:
    """Unscaled codec latents (N, c, h, w) -> the diffusion models' latents."""
    shift, scale = latent_affine(vae, raw)
    return (raw - shift) / scale


def from_model_latents(vae, latents: torch.Tensor) -> torch.Tensor:
    """The diffusion models' latents (N, c, h, w) -> unscaled codec latents."""
    shift, scale = latent_affine(vae, latents)
    return latents * scale + shift


def fit_channel_norm(raw: torch.Tensor) -> dict:
    """Config values that normalise latents per channel: mean and std of raw latents (N, c, h, w)
    per channel (``latents_mean``, ``latents_std``), with ``scaling_factor`` 1."""
    return {"latents_mean": raw.float().mean((0, 2, 3)).tolist(),
            "latents_std": raw.float().std((0, 2, 3)).clamp(min=1e-6).tolist(), "scaling_factor": 1.0}


def raw_latents(vae, images: torch.Tensor, sample: bool = False,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """(N, 3, H, W) pixels -> (N, c, h, w) unscaled latents (posterior mode unless ``sample``)."""
    out = vae.encode(images.to(vae.dtype))
    if hasattr(out, "latent_dist"):
        return out.latent_dist.sample(generator) if sample else out.latent_dist.mode()
    return out.latent


def posterior(vae, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3, H, W) pixels -> scaled posterior mode and std (zeros for a deterministic codec)."""
    out = vae.encode(images.to(vae.dtype))
    if hasattr(out, "latent_dist"):
        mode, std = out.latent_dist.mode(), out.latent_dist.std
    else:
        mode = out.latent
        std = torch.zeros_like(mode)
    return to_model_latents(vae, mode), std / latent_affine(vae, std)[1]


def downsampling(vae) -> int:
    """Pixels per latent cell along each side (4 for ShapeWorld's codecs, 8 for SD's VAE)."""
    widths = getattr(vae.config, "encoder_block_out_channels", None) or vae.config.block_out_channels
    return 2 ** (len(widths) - 1)


def encode_images(vae, images: torch.Tensor, sample: bool = False,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """(N, 3, H, W) pixels in [-1, 1] -> (N, c, h, w) latents scaled by ``scaling_factor``
    (and normalised per channel, if the codec's config says so)."""
    return to_model_latents(vae, raw_latents(vae, images, sample, generator))


def decode_images(vae, latents: torch.Tensor, clamp: bool = True) -> torch.Tensor:
    """(N, c, h, w) scaled latents -> (N, 3, H, W) pixels (clamped to [-1, 1] unless told not)."""
    x = vae.decode(from_model_latents(vae, latents.to(vae.dtype))).sample
    return x.clamp(-1, 1) if clamp else x


def check_video(x: torch.Tensor, name: str = "video", channels: int | None = None) -> tuple:
    """Check ``x`` is (B, C, F, H, W) (with ``channels`` if given) and return its shape."""
    if not isinstance(x, torch.Tensor) or x.ndim != 5:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a tensor shaped (B, C, F, H, W), got {shape}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name} must have {channels} channels, got shape {tuple(x.shape)}")
    return tuple(x.shape)


def encode_video(vae: AutoencoderKL | AutoencoderDC, video: torch.Tensor, sample: bool = False,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, 3, F, H, W) pixels in [-1, 1] -> (B, c, F, h, w) scaled latents (mode unless ``sample``)."""
    b, _, f, _, _ = check_video(video, "video", channels=vae.config.in_channels)
    z = encode_images(vae, rearrange(video, "b c f h w -> (b f) c h w"), sample, generator)
    return rearrange(z, "(b f) c h w -> b c f h w", b=b, f=f)


def decode_video(vae: AutoencoderKL | AutoencoderDC, latents: torch.Tensor) -> torch.Tensor:
    """(B, c, F, h, w) scaled latents -> (B, 3, F, H, W) pixels, clamped to [-1, 1]."""
    b, _, f, _, _ = check_video(latents, "latents", channels=vae.config.latent_channels)
    x = decode_images(vae, rearrange(latents, "b c f h w -> (b f) c h w"))
    return rearrange(x, "(b f) c h w -> b c f h w", b=b, f=f)
