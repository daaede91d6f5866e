"""Factorized Diffusion Distillation (EVE section 3): align the adapters by training a LoRA."""

from .config import ABLATIONS, FDDConfig
from .loop import Aligner, align

__all__ = ["ABLATIONS", "FDDConfig", "Aligner", "align"]
