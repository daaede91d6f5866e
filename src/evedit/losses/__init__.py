"""Losses as pure functions returning tensors (weights are applied by the caller, once)."""

from .adversarial import hinge_d_loss, hinge_g_loss, r1_penalty
from .diffusion import denoising_loss, edit_region_weights, min_snr_weights, region_weights
from .sds import WEIGHTINGS, sds_loss, sds_weight

__all__ = ["denoising_loss", "edit_region_weights", "min_snr_weights", "region_weights", "sds_loss", "sds_weight", "WEIGHTINGS", "hinge_d_loss",
           "hinge_g_loss", "r1_penalty"]
