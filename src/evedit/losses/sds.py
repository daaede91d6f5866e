"""Score Distillation Sampling (DreamFusion, Poole et al. 2022), as EVE's per-teacher SDS term.

EVE (section 3.2, reconstructed from the extracted text) writes
``L_SDS = E[c(t) * sg(eps_hat(x'_t, t) - eps) * x'_0]``: the gradient with respect to the student's
output ``x'_0`` is ``c(t) (eps_hat - eps)``, with the teacher's Jacobian dropped. EVE gives no c(t);
the choices here (``sds_weight``):

- ``"sigma"`` (default): c(t) = sigma_t = sqrt(1 - alpha_bar_t). This is exactly ADD's
  distillation loss with its default "exponential" weighting c'(t) = alpha_t, since
  ``x0 - x0_hat_teacher = sigma_t / alpha_t (eps_hat - eps)`` (ADD, App. A); it stays finite at
  zero terminal SNR, where alpha_T = 0.
- ``"sigma2"``: c(t) = sigma_t^2, DreamFusion's w(t).
- ``"uniform"``: c(t) = 1.

The loss is written with the detach trick (DMD2 style): ``0.5 * mean((x0 - sg(x0 - g))^2)`` has
gradient ``g / numel`` with respect to ``x0`` (mean reduction, like ADD's squared-L2 distance).
"""

from __future__ import annotations

import torch

WEIGHTINGS = ("sigma", "sigma2", "uniform")


def sds_weight(kind: str, alpha_bar: torch.Tensor) -> torch.Tensor:
    """c(t) from alpha-bar (any shape)."""
    if kind == "sigma":
        return (1 - alpha_bar).clamp(min=0).sqrt()
    if kind == "sigma2":
        return 1 - alpha_bar
    if kind == "uniform":
        return torch.ones_like(alpha_bar)
    raise ValueError(f"unknown SDS weighting {kind!r}; choose from {WEIGHTINGS}")


def sds_loss(x0: torch.Tensor, eps_teacher: torch.Tensor, noise: torch.Tensor,
             weight: torch.Tensor) -> torch.Tensor:
    """SDS surrogate whose gradient w.r.t. ``x0`` is ``weight * (eps_teacher - noise) / x0.numel()``.

    ``eps_teacher`` and ``noise`` are treated as constants; ``weight`` broadcasts against ``x0``.
    """
    grad = (weight * (eps_teacher - noise)).detach()
    target = (x0 - grad).detach()
    return 0.5 * torch.mean((x0.float() - target.float()) ** 2)
