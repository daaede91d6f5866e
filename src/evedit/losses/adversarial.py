"""Hinge adversarial losses (ADD, Sauer et al. 2023, eq. 2-3) and the R1 penalty.

Discriminator: ``E[max(0, 1 - D(real))] + E[max(0, 1 + D(fake))]``.
Generator, ``form="add"`` (default): ``-E[D(fake)]``, ADD's generator term. EVE's extracted text
reads ``-E[max(0, 1 + D(fake))]`` (``form="eve_text"``); that form stops pushing once
``D(fake) < -1`` and is kept only as an option because the PDF's equation was garbled.
"""

from __future__ import annotations

import torch


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return torch.relu(1 - real_logits).mean() + torch.relu(1 + fake_logits).mean()


def hinge_g_loss(fake_logits: torch.Tensor, form: str = "add") -> torch.Tensor:
    if form == "add":
        return -fake_logits.mean()
    if form == "eve_text":
        return -torch.relu(1 + fake_logits).mean()
    raise ValueError(f"unknown generator loss form {form!r}; choose 'add' or 'eve_text'")


def r1_penalty(real_logits: torch.Tensor, real_inputs: list[torch.Tensor]) -> torch.Tensor:
    """Squared gradient norm of the real logits w.r.t. the head inputs (ADD: on features)."""
    grads = torch.autograd.grad(real_logits.sum(), real_inputs, create_graph=True)
    return sum(g.pow(2).flatten(1).sum(1).mean() for g in grads)
