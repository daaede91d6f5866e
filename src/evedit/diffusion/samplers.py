"""Samplers over the one-call denoiser contract ``model_fn(x_t, t) -> model output``.

``x_t`` is ``(B, C, F, H, W)`` (or any shape), ``t`` an integer tensor ``(B,)``. Samplers are plain
functions in the k-diffusion style; gradients flow through them unless the caller disables them
(the FDD student back-propagates through all of its k steps).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from .schedule import NoiseSchedule

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def ddim_timesteps(n: int, num_train_timesteps: int = 1000) -> list[int]:
    """``n`` descending timesteps with "trailing" spacing (Lin et al. 2023, Table 2).

    The first is always ``T - 1``, pure noise at zero terminal SNR; e.g. n=3, T=1000 gives
    [999, 666, 332], the same as diffusers' ``DDIMScheduler(timestep_spacing="trailing")``.
    """
    if not 1 <= n <= num_train_timesteps:
        raise ValueError(f"number of steps must be in [1, {num_train_timesteps}], got {n}")
    step = num_train_timesteps / n
    return [int(round(num_train_timesteps - i * step)) - 1 for i in range(n)]


def sdedit_timesteps(steps: int, strength: float, num_train_timesteps: int = 1000) -> list[int]:
    """The last ``strength`` share (at least one step) of a ``steps``-step DDIM schedule: where
    SDEdit starts from a noised image (diffusers' img2img rule)."""
    full = ddim_timesteps(steps, num_train_timesteps)
    return full[steps - max(1, int(steps * strength)):]


def fixed_timesteps(k: int, num_train_timesteps: int = 1000) -> list[int]:
    """The EVE "w/o K-Bin" ablation: the same k evenly spaced timesteps at every iteration."""
    return ddim_timesteps(k, num_train_timesteps)


def kbin_timesteps(
    k: int, num_train_timesteps: int = 1000, generator: torch.Generator | None = None,
) -> list[int]:
    """K-bin sampling (EVE section 3.3): one uniformly random timestep inside each of k equal bins.

    Bin i (counting from the noisy end) covers ``[T - (i+1) T/k, T - i T/k)``; the result is
    descending. Training on random timesteps from the bins, rather than on k fixed ones, lets the
    student be sampled with other step counts at inference without a train-test mismatch.
    """
    if not 1 <= k <= num_train_timesteps:
        raise ValueError(f"k must be in [1, {num_train_timesteps}], got {k}")
    edges = torch.linspace(num_train_timesteps, 0, k + 1)
    u = torch.rand(k, generator=generator)
    # bin i spans (edges[i+1], edges[i]]; shift down by 1 so values lie in [0, T-1]
    picks = edges[1:] + u * (edges[:-1] - edges[1:])
    return [min(num_train_timesteps - 1, int(p.floor().item())) for p in picks]


def ddim_sample(
    model_fn: ModelFn, x_T: torch.Tensor, timesteps: Sequence[int], schedule: NoiseSchedule,
    *, progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Deterministic DDIM from ``x_T`` through ``timesteps`` (descending); returns the clean x0."""
    x = x_T
    steps = list(timesteps)
    batch = x_T.shape[0]
    for i, t in enumerate(steps):
        t_now = torch.full((batch,), t, dtype=torch.long, device=x.device)
        t_prev = torch.full_like(t_now, steps[i + 1] if i + 1 < len(steps) else -1)
        x0, eps = schedule.split(model_fn(x, t_now), x, t_now)
        x = schedule.ddim_step(x0, eps, t_prev)
        if progress is not None:
            progress(i)
    return x
