"""Factorized Diffusion Distillation (EVE section 3): align the adapters by training a LoRA."""

from .config import ABLATIONS, FDDConfig
from .stage import FDDStage, align

__all__ = ["ABLATIONS", "FDDConfig", "FDDStage", "align"]
