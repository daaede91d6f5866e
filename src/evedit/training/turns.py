"""Turns: what one optimizer trains, on which loss, when; the loop takes each step's turns in order.

A stage with one objective (every ``evedit train`` stage) has one turn, ``train``, built by the loop
from the stage's ``trainable_modules()``, ``loss`` and the recipe's ``train:`` section (AdamW,
learning-rate schedule, clipping, EMA). A stage with several objectives (FDD: the generator, then
the critic, as DMD2's ``train_one_step``) gives the loop its turns with ``stage.turns()``; each step
runs every active turn on the same micro-batches and noise generators: zero its gradients, the
micro-batches' losses and backward passes, then (shared by all turns) the NaN check, the gradient
average across processes, clipping and its optimizer step.

Optional stage hooks the loop uses when present: ``turns()``, ``prepare_batch(batch, step)`` (once
per micro-batch, before the turns), ``noise_seed(seed, step, slot)``, ``batch_sampler(step, rank,
world, grad_accum, batch_size)``, ``export_name`` (the export folder under ``out``, default
``export``) and ``after_export(out, summary)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch


def always(_step: int) -> bool:
    return True


@dataclass
class Turn:
    """One optimizer, the named parameters it steps, and the loss whose ``total`` term it back-propagates."""

    name: str
    params: list[tuple[str, torch.nn.Parameter]]
    optimizer: Any  # the stage builds it; the loop hands it to accelerate
    loss: Callable[[Any, torch.Generator, int], dict]  # (batch, generator, step) -> terms
    lr: Callable[[int], float]  # the learning rate at a step
    clip: float = 0.0  # max gradient norm (0: no clipping; the norm is still logged)
    active: Callable[[int], bool] = always  # whether the turn runs at a step
    total: str = "loss"  # the term back-propagated
    norm_key: str = "grad_norm"  # the logged gradient norm's name
    lr_key: str | None = "lr"  # the logged learning rate's name (None: not logged)
    ema: Any = None  # a diffusers EMAModel over ``params``, or None
