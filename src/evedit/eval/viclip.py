"""ViCLIP (InternVid, Wang et al. 2023): the video CLIP behind EVE's ViCLIP_dir and ViCLIP_out.

Re-implemented from OpenGVLab/InternVideo ``Data/InternVid/viclip/`` (``viclip.py``,
``viclip_vision.py``, ``viclip_text.py``) with the *same module names*, so the official state dict
(``torch.load(pth)["model"]``, which the reference code loads with a strict ``load_state_dict``)
maps key for key after :mod:`evedit.eval.convert`:

- ``vision_encoder``: a CLIP ViT-L/14 whose patch embedding is a ``Conv3d`` with a temporal kernel
  of 1 (``conv1.weight`` ``(1024, 3, 1, 14, 14)``, no bias), a class token, a spatial positional
  embedding ``(257, 1024)`` added per frame, a ``temporal_positional_embedding`` ``(1, 8, 1024)``
  added per patch, then one transformer over the class token and all frames' patches together
  (joint space-time attention; 24 blocks, 16 heads, QuickGELU, pre-LN ``ln_1``/``ln_2``,
  ``attn.in_proj_weight``..., ``mlp.c_fc``/``mlp.c_proj``), ``ln_pre``/``ln_post`` and
  ``proj`` ``(1024, 768)`` applied to the class token.
- ``text_encoder``: CLIP's causal text transformer (12 blocks, width 768, 12 heads) with a context
  of **32** tokens (``positional_embedding`` ``(32, 768)``), ``token_embedding`` ``(49408, 768)``,
  ``ln_final``, ``text_projection`` ``(768, 768)``, pooled at the end-of-text token.
- ``temp``: the contrastive temperature (unused by the metrics).

Inputs as ``frames2tensor``: 8 frames taken with stride ``F // 8``, resized to 224x224 (bilinear,
no antialiasing, like ``cv2.resize``), RGB / 255, ImageNet mean and std. Text: CLIP BPE
(``CLIPTokenizer``), start and end tokens, truncated and padded to 32.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..errors import EveditError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


@dataclass
class ViCLIPConfig:
    """Sizes of ViCLIP-L/14 (the released InternVid-10M-FLT model) by default."""

    vision_width: int = 1024
    vision_layers: int = 24
    vision_heads: int = 16
    patch_size: int = 14
    temporal_kernel: int = 1
    image_size: int = 224
    num_frames: int = 8
    embed_dim: int = 768
    text_width: int = 768
    text_layers: int = 12
    text_heads: int = 12
    context_length: int = 32
    vocab_size: int = 49408

    def to_dict(self) -> dict:
        return {"model_type": "viclip", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "ViCLIPConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    """CLIP's pre-LN block on sequence-first ``(L, N, D)`` inputs; names as the official code."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, width * 4)), ("gelu", QuickGELU()), ("c_proj", nn.Linear(width * 4, width)),
        ]))
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=attn_mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int):
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads) for _ in range(layers))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, attn_mask)
        return x


class VisionTransformer(nn.Module):
    """ViCLIP's video ViT: per-frame patches, spatial + temporal positions, joint attention."""

    def __init__(self, c: ViCLIPConfig):
        super().__init__()
        k, p, w = c.temporal_kernel, c.patch_size, c.vision_width
        self.conv1 = nn.Conv3d(3, w, (k, p, p), (k, p, p), bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(w))
        self.positional_embedding = nn.Parameter(torch.zeros((c.image_size // p) ** 2 + 1, w))
        self.temporal_positional_embedding = nn.Parameter(torch.zeros(1, c.num_frames, w))
        self.ln_pre = nn.LayerNorm(w)
        self.transformer = Transformer(w, c.vision_layers, c.vision_heads)
        self.ln_post = nn.LayerNorm(w)
        self.proj = nn.Parameter(torch.zeros(w, c.embed_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Clips ``(B, 3, T, H, W)`` (normalised) -> embeddings ``(B, embed_dim)`` (not normalised)."""
        x = self.conv1(x)  # (B, W, T, h, w)
        b, _, t, _, _ = x.shape
        x = rearrange(x, "b c t h w -> (b t) (h w) c")
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)  # (B*T, 1 + n, W)
        cls_tokens, x = x[:b, :1], x[:, 1:]  # every frame's class token is the same vector
        x = rearrange(x, "(b t) n m -> (b n) t m", b=b, t=t)
        temporal = self.temporal_positional_embedding
        x = x + (temporal.mean(1) if t == 1 else temporal[:, :t])
        x = rearrange(x, "(b n) t m -> b (n t) m", b=b, t=t)
        x = self.ln_pre(torch.cat([cls_tokens, x], dim=1))  # (B, 1 + n*T, W)
        x = self.transformer(x.permute(1, 0, 2))  # sequence-first (L, B, W)
        return self.ln_post(x[0]) @ self.proj  # the class token


class TextTransformer(nn.Module):
    """CLIP's causal text tower with a 32-token context; pooled at the end-of-text token."""

    def __init__(self, c: ViCLIPConfig):
        super().__init__()
        self.context_length = c.context_length
        self.transformer = Transformer(c.text_width, c.text_layers, c.text_heads)
        self.token_embedding = nn.Embedding(c.vocab_size, c.text_width)
        self.positional_embedding = nn.Parameter(torch.zeros(c.context_length, c.text_width))
        self.ln_final = nn.LayerNorm(c.text_width)
        self.text_projection = nn.Parameter(torch.zeros(c.text_width, c.embed_dim))

    def forward(self, ids: torch.Tensor, eot_index: torch.Tensor) -> torch.Tensor:
        """Token ids ``(B, L)`` padded to the context, end-token positions ``(B,)`` -> ``(B, embed_dim)``."""
        n = ids.shape[1]
        mask = torch.full((n, n), float("-inf"), device=ids.device).triu_(1)  # causal
        x = self.token_embedding(ids) + self.positional_embedding[:n]
        x = self.transformer(x.permute(1, 0, 2), mask).permute(1, 0, 2)  # (B, L, D)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0], device=x.device), eot_index] @ self.text_projection


class ViCLIP(nn.Module):
    """``vision_encoder``, ``text_encoder`` and ``temp``, as in the official checkpoint."""

    def __init__(self, config: ViCLIPConfig | None = None, tokenizer=None):
        super().__init__()
        self.config = config or ViCLIPConfig()
        self.vision_encoder = VisionTransformer(self.config)
        self.text_encoder = TextTransformer(self.config)
        self.temp = nn.Parameter(torch.tensor(1 / 100.0))
        self.tokenizer = tokenizer

    @property
    def device(self) -> torch.device:
        return self.temp.device

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 ``(F, H, W, 3)`` -> ``(1, 3, T, S, S)``: ``frames2tensor``'s sampling and normalisation."""
        t, size = self.config.num_frames, self.config.image_size
        n = len(frames)
        if n >= t:
            idx = np.arange(0, n, n // t)[:t]  # frames[::step][:t], step = n // t
        else:
            idx = np.linspace(0, n - 1, t).round().astype(int)  # short clips: repeat frames
        x = torch.from_numpy(np.ascontiguousarray(frames[idx])).float().div_(255.0)  # (T, H, W, 3)
        x = x.permute(0, 3, 1, 2)  # (T, 3, H, W)
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        return ((x - mean) / std).permute(1, 0, 2, 3)[None].to(self.device, self.temp.dtype)

    @torch.no_grad()
    def video_features(self, frames: np.ndarray) -> torch.Tensor:
        """One video -> unit embedding ``(1, embed_dim)`` (``get_vid_features``)."""
        return F.normalize(self.vision_encoder(self.preprocess(frames)).float(), dim=-1)

    @torch.no_grad()
    def text_features(self, texts: list[str]) -> torch.Tensor:
        """Texts -> unit embeddings ``(B, embed_dim)`` (``get_text_features``)."""
        if self.tokenizer is None:
            raise EveditError("This ViCLIP has no tokenizer; convert it with a CLIP tokenizer (see `evedit convert viclip`).")
        n = self.config.context_length
        tok = self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=n, return_tensors="pt")
        eot = tok["attention_mask"].sum(1) - 1  # the end-of-text token closes the real tokens
        out = self.text_encoder(tok["input_ids"].to(self.device), eot.to(self.device))
        return F.normalize(out.float(), dim=-1)


def load_viclip(path: str | Path, device: str | torch.device = "cpu") -> ViCLIP:
    """A converted ViCLIP folder (``config.json``, ``model.safetensors``, CLIP tokenizer files)."""
    from safetensors.torch import load_file

    from ..models import refuse_pickles

    path = Path(path)
    if path.suffix.lower() in (".pth", ".pt", ".bin", ".ckpt"):
        raise EveditError(
            f"'{path}' is a pickle checkpoint, which evedit never loads directly; convert it once with "
            f"`evedit convert viclip {path} OUT_DIR` and pass OUT_DIR."
        )
    if not (path / CONFIG_FILE).is_file() or not (path / WEIGHTS_FILE).is_file():
        raise EveditError(
            f"No converted ViCLIP at '{path}': get ViClip-InternVid-10M-FLT.pth (Hugging Face OpenGVLab/ViCLIP) "
            f"and convert it with `evedit convert viclip ViClip-InternVid-10M-FLT.pth {path}`."
        )
    refuse_pickles(path)
    config = ViCLIPConfig.from_dict(json.loads((path / CONFIG_FILE).read_text()))
    model = ViCLIP(config, tokenizer=_tokenizer(path))
    missing, unexpected = model.load_state_dict(load_file(str(path / WEIGHTS_FILE)), strict=False)
    if missing or unexpected:
        raise EveditError(f"The ViCLIP weights in '{path}' do not match its config "
                          f"(missing {len(missing)} keys, e.g. {missing[:1]}; unexpected {unexpected[:1]}).")
    return model.float().eval().requires_grad_(False).to(device)


def _tokenizer(path: Path):
    from transformers import CLIPTokenizer

    if not ((path / "vocab.json").is_file() or (path / "tokenizer.json").is_file()):
        return None
    return CLIPTokenizer.from_pretrained(path, local_files_only=True)
