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
    if weights.dim() > 1:  # per position (B, 1, h, w), e.g. edit_region_weights
        return torch.mean(err * weights.to(err))
    return torch.mean(err.flatten(1).mean(1) * weights.to(err))


def edit_region_weights(source: torch.Tensor, target: torch.Tensor, strength: float,
                        renormalise: bool = True) -> torch.Tensor:
    """Per-position loss weights (B, 1, h, w) that stress where an edit changes the image.

    ``source`` and ``target`` are the clean latents (B, C, h, w) before and after the edit. The
    change ``|target - source|`` (mean over channels), scaled to [0, 1] per item, gives weight
    ``1 + strength * change``, renormalised to mean 1 per item so the loss keeps its scale. A
    local edit (a recoloured object, a few percent of the frame) otherwise weighs as little in the
    MSE as its area, and the adapter learns to copy the input first; a global edit changes every
    position and keeps near-uniform weights. (evedit's choice, not the paper's: EVE trains its
    adapter with the plain denoising loss on far larger data.) With ``renormalise=False`` the
    unchanged positions keep weight 1 and the edit's weight comes on top.
    """
    change = (target.float() - source.float()).abs().mean(1, keepdim=True)  # (B, 1, h, w)
    change = change / change.flatten(1).amax(1).clamp(min=1e-6).view(-1, 1, 1, 1)
    return region_weights(change, strength, renormalise)


def region_weights(region: torch.Tensor, strength: float, renormalise: bool = True) -> torch.Tensor:
    """Per-position loss weights ``1 + strength * region`` (B, 1, h, w) for a region map in [0, 1]
    (an edit's change, the objects' coverage of each latent cell), renormalised to mean 1 per item
    unless ``renormalise`` is False (then positions outside the region keep weight 1)."""
    weights = 1 + strength * region.float()
    return weights / weights.flatten(1).mean(1).view(-1, 1, 1, 1) if renormalise else weights


def min_snr_weights(snr: torch.Tensor, gamma: float, v_prediction: bool = True) -> torch.Tensor:
    """Min-SNR-gamma loss weights (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR
    Weighting Strategy"), per item, from each item's SNR (B,): ``min(SNR, gamma)`` for an x0
    objective, divided by ``SNR + 1`` for v-prediction, ``/ SNR`` for eps (as diffusers' training
    scripts apply it). At zero terminal SNR the last timestep gets weight 0 under v-prediction."""
    clipped = torch.minimum(snr, torch.full_like(snr, gamma))
    return clipped / (snr + 1) if v_prediction else clipped / snr.clamp(min=1e-8)
