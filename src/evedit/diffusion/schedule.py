"""One noise schedule for training and sampling.

The betas come from diffusers' :class:`~diffusers.DDPMScheduler` (so a diffusers pipeline built from
:meth:`NoiseSchedule.ddim_scheduler` sees exactly the same schedule), optionally rescaled to zero
terminal SNR as in Lin et al. 2023, "Common Diffusion Noise Schedules and Sample Steps are Flawed"
(arXiv 2305.08891), which EVE's adapters are trained with. At zero terminal SNR the last timestep is
pure noise and epsilon prediction is undefined there, so the ShapeWorld preset predicts ``v``
(Salimans & Ho 2022); SD 1.5 weights predict epsilon on the original schedule.

All tensor functions broadcast ``t`` of shape ``(B,)`` over any trailing dimensions, so they work on
images ``(B, C, H, W)`` and videos ``(B, C, F, H, W)`` alike. They are pure and differentiable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from diffusers import DDIMScheduler, DDPMScheduler

PREDICTION_TYPES = ("epsilon", "v_prediction")


@dataclass
class ScheduleConfig:
    num_train_timesteps: int = 1000  # T; EVE does not state it, 1000 is every SD-family model's
    beta_schedule: str = "scaled_linear"  # SD's schedule
    beta_start: float = 0.00085  # SD 1.5
    beta_end: float = 0.012  # SD 1.5
    prediction_type: str = "v_prediction"  # required for a zero-terminal-SNR schedule
    zero_terminal_snr: bool = True  # EVE trains its adapters with zero terminal SNR


class NoiseSchedule:
    """alpha-bar table plus the maths to noise, to read model outputs and to take DDIM steps."""

    def __init__(self, config: ScheduleConfig | None = None):
        self.config = config or ScheduleConfig()
        if self.config.prediction_type not in PREDICTION_TYPES:
            raise ValueError(
                f"prediction_type must be one of {PREDICTION_TYPES}, got {self.config.prediction_type!r}"
            )
        ddpm = self.ddpm_scheduler()
        self.alphas_cumprod = ddpm.alphas_cumprod.to(torch.float32)  # (T,)
        self.num_train_timesteps = self.config.num_train_timesteps

    @classmethod
    def from_dict(cls, data: dict) -> "NoiseSchedule":
        return cls(ScheduleConfig(**data))

    def to_dict(self) -> dict:
        return asdict(self.config)

    def _diffusers_kwargs(self) -> dict:
        c = self.config
        return dict(
            num_train_timesteps=c.num_train_timesteps, beta_schedule=c.beta_schedule,
            beta_start=c.beta_start, beta_end=c.beta_end, prediction_type=c.prediction_type,
            rescale_betas_zero_snr=c.zero_terminal_snr, clip_sample=False,
        )

    def ddpm_scheduler(self) -> DDPMScheduler:
        return DDPMScheduler(**self._diffusers_kwargs())

    def ddim_scheduler(self) -> DDIMScheduler:
        """The matching diffusers DDIM scheduler (trailing spacing, as zero terminal SNR requires)."""
        return DDIMScheduler(
            **self._diffusers_kwargs(), timestep_spacing="trailing", set_alpha_to_one=True,
        )

    def alpha_bar(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """alpha-bar at integer timesteps ``t`` (B,), shaped to broadcast against ``like``.

        ``t = -1`` means "clean" (alpha-bar 1), the target of a final DDIM step.
        """
        table = torch.cat([self.alphas_cumprod.new_ones(1), self.alphas_cumprod])
        a = table.to(like.device)[t.long().to(like.device) + 1]
        return a.to(like.dtype).view(-1, *([1] * (like.ndim - 1)))

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = self.alpha_bar(t, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the model is trained to output: epsilon, or v = sqrt(a) eps - sqrt(1-a) x0."""
        if self.config.prediction_type == "epsilon":
            return noise
        a = self.alpha_bar(t, x0)
        return a.sqrt() * noise - (1 - a).sqrt() * x0

    def split(self, output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor):
        """Model output at (x_t, t) -> (x0 estimate, epsilon estimate)."""
        a = self.alpha_bar(t, x_t)
        if self.config.prediction_type == "epsilon":
            eps = output
            x0 = (x_t - (1 - a).sqrt() * eps) / a.sqrt().clamp(min=1e-4)
        else:
            x0 = a.sqrt() * x_t - (1 - a).sqrt() * output
            eps = (1 - a).sqrt() * x_t + a.sqrt() * output
        return x0, eps

    def ddim_step(self, x0: torch.Tensor, eps: torch.Tensor, t_prev: torch.Tensor) -> torch.Tensor:
        """Deterministic DDIM (eta = 0) update to timestep ``t_prev`` (-1 returns ``x0``)."""
        a_prev = self.alpha_bar(t_prev, x0)
        return a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio alpha-bar / (1 - alpha-bar) at integer timesteps ``t`` (B,)."""
        a = self.alphas_cumprod.to(t.device)[t.long()]
        return a / (1 - a).clamp(min=1e-12)
