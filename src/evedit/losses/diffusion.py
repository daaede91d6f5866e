"""The denoising objective every pretraining stage of a diffusion part uses."""

from __future__ import annotations

import torch


def denoising_loss(model_output: torch.Tensor, target: torch.Tensor,
                   weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error between the model output and the schedule's target (eps or v).

    Unweighted over timesteps (``weights`` None): with v-prediction this is already the "SNR+1"
    weighting of Salimans & Ho (2022) in x0 terms, which trains well at zero terminal SNR.
    ``weights`` (B,) weight each item's mean error (for example :func:`min_snr_weights`).
    """
    err = (model_output.float() - target.float()) ** 2
    if weights is None:
        return torch.mean(err)
    return torch.mean(err.flatten(1).mean(1) * weights.to(err))


def min_snr_weights(snr: torch.Tensor, gamma: float, v_prediction: bool = True) -> torch.Tensor:
    """Min-SNR-gamma loss weights (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR
    Weighting Strategy"), per item, from each item's SNR (B,): ``min(SNR, gamma)`` for an x0
    objective, divided by ``SNR + 1`` for v-prediction, ``/ SNR`` for eps (as diffusers' training
    scripts apply it). At zero terminal SNR the last timestep gets weight 0 under v-prediction."""
    clipped = torch.minimum(snr, torch.full_like(snr, gamma))
    return clipped / (snr + 1) if v_prediction else clipped / snr.clamp(min=1e-8)
