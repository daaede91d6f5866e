"""The denoising objective every pretraining stage of a diffusion part uses."""

from __future__ import annotations

import torch


def denoising_loss(model_output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the model output and the schedule's target (eps or v).

    Unweighted over timesteps: with v-prediction this is already the "SNR+1" weighting of
    Salimans & Ho (2022) in x0 terms, which trains well at zero terminal SNR.
    """
    return torch.mean((model_output.float() - target.float()) ** 2)
