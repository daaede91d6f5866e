"""Losses as pure functions returning tensors (weights are applied by the caller, once)."""

from .diffusion import denoising_loss

__all__ = ["denoising_loss"]
