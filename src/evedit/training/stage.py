"""The contract between the one training loop and each training stage.

A stage owns its model parts, data and loss; the loop (``evedit.training.loop``) owns everything
else: accelerate, optimisation, EMA, clipping, logging, checkpoints, resume, sample intervals.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from torch import nn
from torch.utils.data import Dataset


@runtime_checkable
class Stage(Protocol):
    name: str  # e.g. "codec", "t2i", "edit-adapter", "video-adapter", "clip", "task-classifier"

    def trainable_modules(self) -> list[nn.Module]:
        """Modules whose parameters this stage trains (frozen parts are simply not listed).

        Freezing is by module identity: the loop optimises exactly these modules' parameters
        and asserts nothing else changed in tests.
        """

    def modules(self) -> dict[str, nn.Module]:
        """Every module the stage uses (trained or frozen), by name; the loop moves them to the device."""

    def dataset(self, split: str) -> Dataset:
        """A map-style dataset of dicts for ``split`` ("train" or "val")."""

    def loss(self, batch: dict, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Loss terms for one batch; key "loss" is the total to back-propagate (already weighted)."""

    @torch.no_grad()
    def evaluate(self, batches: int = 4) -> dict[str, float]:
        """Quality figures on the validation split (e.g. PSNR, retrieval top-1)."""

    @torch.no_grad()
    def sample(self, out_dir: Path, step: int) -> list[Path]:
        """Write sample grids (PNG/GIF) for a human to look at; return their paths."""

    def export(self, folder: Path) -> None:
        """Save the trained part(s) in their library's format (safetensors) under ``folder``."""
