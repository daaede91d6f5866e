"""The task classifier behind ``--task auto``: instruction -> ShapeWorld task label.

EVE's edit adapter takes a task label (Emu Edit's task embedding); a user gives only an
instruction. The classifier reads the frozen MiniLM pooled sentence embedding of the
instruction (the same encoder the model conditions on) through a small MLP to one logit per
task. The task names are stored in the config, so a saved classifier says what its labels mean.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from evedit.world import TASKS

_ENCODERS: dict[str, object] = {}


def _default_encoder():
    """The bundled MiniLM, loaded once per process."""
    if "minilm" not in _ENCODERS:
        from evedit.text import MiniLMTextEncoder

        _ENCODERS["minilm"] = MiniLMTextEncoder.from_pretrained()
    return _ENCODERS["minilm"]


class TaskClassifier(ModelMixin, ConfigMixin):
    """Frozen-MiniLM pooled embedding ``(B, 384)`` -> task logits ``(B, len(tasks))``."""

    @register_to_config
    def __init__(self, tasks: tuple[str, ...] | list[str] = TASKS, text_dim: int = 384, hidden: int = 256,
                 dropout: float = 0.1):
        super().__init__()
        if not tasks:
            raise ValueError("a task classifier needs at least one task name")
        # register_to_config stored ``tasks`` (defaults included) in config.json
        self.net = nn.Sequential(
            nn.Linear(text_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, len(tasks)),
        )

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.config.tasks)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        if pooled.ndim != 2 or pooled.shape[1] != self.config.text_dim:
            raise ValueError(f"text embeddings must be shaped (B, {self.config.text_dim}), got {tuple(pooled.shape)}")
        return self.net(pooled.to(self.dtype))

    @torch.no_grad()
    def predict(self, instructions: list[str], text_encoder=None) -> list[tuple[str, float]]:
        """``(task name, probability)`` of the most likely task of each instruction.

        ``text_encoder``: a :class:`~evedit.text.MiniLMTextEncoder` (the bundled one, loaded once,
        when None). Runs in eval mode (no dropout) and restores the previous mode.
        """
        if isinstance(instructions, str):
            instructions = [instructions]
        if not instructions:
            return []
        text_encoder = text_encoder if text_encoder is not None else _default_encoder()
        was_training = self.training
        self.eval()
        try:
            pooled = text_encoder.encode_pooled(list(instructions)).to(self.device)
            probs = F.softmax(self(pooled).float(), dim=-1)
        finally:
            self.train(was_training)
        best = probs.max(dim=-1)
        return [(self.tasks[i], float(p)) for p, i in zip(best.values.tolist(), best.indices.tolist())]

    @torch.no_grad()
    def rank(self, instruction: str, text_encoder=None) -> list[tuple[str, float]]:
        """Every ``(task name, probability)`` of one instruction, most likely first."""
        text_encoder = text_encoder if text_encoder is not None else _default_encoder()
        was_training = self.training
        self.eval()
        try:
            pooled = text_encoder.encode_pooled([instruction]).to(self.device)
            probs = F.softmax(self(pooled).float(), dim=-1)[0]
        finally:
            self.train(was_training)
        order = torch.argsort(probs, descending=True).tolist()
        return [(self.tasks[i], float(probs[i])) for i in order]
