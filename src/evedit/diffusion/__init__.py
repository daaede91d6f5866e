"""Noise schedules, guidance and samplers: pure functions and small stateless classes."""

from .guidance import cfg, dual_guidance
from .samplers import ddim_sample, ddim_timesteps, fixed_timesteps, kbin_timesteps, sdedit_timesteps
from .schedule import NoiseSchedule, ScheduleConfig

__all__ = [
    "NoiseSchedule", "ScheduleConfig", "cfg", "dual_guidance", "ddim_sample", "ddim_timesteps",
    "kbin_timesteps", "fixed_timesteps", "sdedit_timesteps",
]
