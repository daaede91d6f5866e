"""ShapeCLIP: a small contrastive image / video encoder against frozen MiniLM sentence embeddings.

ShapeWorld has no CLIP, so we train one (EVE's metrics need CLIP and ViCLIP scores):

- image tower: an optional full-resolution stem (``stem`` > 0: a 3x3 conv and a residual 3x3 conv
  at 64 x 64, so small objects' outlines reach the features before any downsampling; shape and
  size are the weak attributes without it; tried at 16 wide, 5000 steps, it raised them to 0.90
  pairwise but lowered colour and background, and top-1 overall, so the default is 0, the shipped
  architecture; see ``configs/clip.yaml``), four stride-2 conv blocks (GroupNorm, SiLU, a
  residual 3x3 conv each), 64 -> 4 pixels, then mean and max pooling and a linear head to
  ``embed_dim``, L2-normalised.
  :meth:`ShapeCLIP.feature_maps` returns the four blocks' maps (a discriminator's features).
- video tower (ViCLIP's role): the image tower per frame, one temporal transformer layer over the
  frames' pooled features (sinusoidal frame positions, so any clip length works), a mean over
  frames and the same head. The layer's output projections start at zero, so at initialisation a
  clip's embedding is the head of its frames' mean features (AnimateDiff's zero init).
- text: a trainable projection (linear, or an MLP when ``text_hidden`` > 0) of the *frozen*
  MiniLM pooled embedding, ``(B, 384) -> (B, embed_dim)``; the encoder itself is not part of the
  model, so callers pass ``TextEmbedding.pooled``.
- a learnable temperature, CLIP's: ``logit_scale = exp(t)``, ``t`` initialised to ``log(1/0.07)``
  and the scale clamped to ``max_logit_scale``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from einops import rearrange
from torch import nn

from evedit.models.codec import check_video


def _groups(channels: int, groups: int) -> int:
    """Largest divisor of ``channels`` not above ``groups`` (GroupNorm needs one)."""
    return max(g for g in range(1, min(groups, channels) + 1) if channels % g == 0)


class DownBlock(nn.Module):
    """Stride-2 conv (stride 1 for the stem), then a residual 3x3 conv; GroupNorm + SiLU after each."""

    def __init__(self, cin: int, cout: int, groups: int, stride: int = 2):
        super().__init__()
        self.down = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
        self.norm1 = nn.GroupNorm(_groups(cout, groups), cout)
        self.conv = nn.Conv2d(cout, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(_groups(cout, groups), cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.norm1(self.down(x)))  # (N, cout, H/2, W/2)
        return h + F.silu(self.norm2(self.conv(h)))


def sinusoidal_positions(n: int, dim: int, device=None, dtype=None) -> torch.Tensor:
    """Transformer positions ``(n, dim)`` for frame indices 0..n-1 (no learned table: any length)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=device, dtype=torch.float32) / half)
    angles = torch.arange(n, device=device, dtype=torch.float32)[:, None] * freqs[None, :]  # (n, half)
    pos = torch.cat([angles.sin(), angles.cos()], dim=1)
    if dim % 2:
        pos = F.pad(pos, (0, 1))
    return pos.to(dtype or torch.float32)


class TemporalLayer(nn.Module):
    """Pre-norm self-attention + MLP over frames; output projections zeroed (identity at init)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        nn.init.zeros_(self.attn.out_proj.weight)
        nn.init.zeros_(self.attn.out_proj.bias)
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, F, C) -> (B, F, C)."""
        h = self.norm1(x + sinusoidal_positions(x.shape[1], x.shape[2], x.device, x.dtype)[None])
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class ShapeCLIP(ModelMixin, ConfigMixin):
    """Image, video and text embeddings in one normalised space; see the module docstring."""

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        channels: tuple[int, ...] = (32, 64, 128, 256),
        embed_dim: int = 384,
        text_dim: int = 384,
        text_hidden: int = 0,
        norm_groups: int = 8,
        temporal_heads: int = 4,
        init_logit_scale: float = 1 / 0.07,
        max_logit_scale: float = 100.0,
        stem: int = 0,
    ):
        super().__init__()
        channels = tuple(channels)
        self.stem_block = DownBlock(in_channels, stem, norm_groups, stride=1) if stem > 0 else None
        widths = (stem if stem > 0 else in_channels, *channels)
        self.blocks = nn.ModuleList(DownBlock(a, b, norm_groups) for a, b in zip(widths[:-1], widths[1:]))
        top = channels[-1]
        self.temporal = TemporalLayer(top, temporal_heads)
        self.image_head = nn.Linear(2 * top, embed_dim)  # mean and max pooled features
        if text_hidden > 0:
            self.text_proj = nn.Sequential(nn.Linear(text_dim, text_hidden), nn.GELU(),
                                           nn.Linear(text_hidden, embed_dim))
        else:
            self.text_proj = nn.Linear(text_dim, embed_dim)
        self.log_logit_scale = nn.Parameter(torch.tensor(math.log(init_logit_scale)))
        # Fixed text whitening (buffers, saved with the weights): every ShapeWorld caption embeds
        # in a narrow cone of MiniLM's space (cosine ~0.9 between unrelated captions, ~0.99 for
        # one-attribute-off ones), so the projection first removes the shared mean and equalises
        # the variance of the directions; identity until :meth:`set_text_whitening` is called.
        self.register_buffer("text_mean", torch.zeros(text_dim))
        self.register_buffer("text_whiten", torch.eye(text_dim))

    # ----------------------------------------------------------------------------- towers

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Images ``(N, 3, H, W)`` in [-1, 1] -> every block's map, ``(N, C_i, H/2^i, W/2^i)``."""
        if x.ndim != 4:
            raise ValueError(f"images must be shaped (N, C, H, W), got {tuple(x.shape)}")
        maps = []
        if self.stem_block is not None:
            x = self.stem_block(x)  # full resolution; not returned (a discriminator wants the coarser maps)
        for block in self.blocks:
            x = block(x)
            maps.append(x)
        return maps

    def _pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(N, 3, H, W)`` -> pooled top features ``(N, 2C)`` (mean, max)."""
        top = self.feature_maps(x)[-1]  # (N, C, h, w)
        return torch.cat([top.mean(dim=(2, 3)), top.amax(dim=(2, 3))], dim=1)

    def image_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(N, 3, H, W)`` in [-1, 1] -> unit embeddings ``(N, D)``."""
        return F.normalize(self.image_head(self._pooled(x)), dim=-1)

    def video_features(self, x: torch.Tensor) -> torch.Tensor:
        """Clips ``(B, 3, F, H, W)`` in [-1, 1] -> unit embeddings ``(B, D)``."""
        b, _, f, _, _ = check_video(x, "clips", channels=self.config.in_channels)
        pooled = self._pooled(rearrange(x, "b c f h w -> (b f) c h w"))  # (B*F, 2C)
        c = pooled.shape[1] // 2
        mean, peak = rearrange(pooled, "(b f) (two c) -> two b f c", b=b, f=f, two=2, c=c)
        mean = self.temporal(mean)  # (B, F, C): frames attend to each other
        pooled = torch.cat([mean.mean(1), peak.amax(1)], dim=1)  # (B, 2C)
        return F.normalize(self.image_head(pooled), dim=-1)

    def text_features(self, pooled: torch.Tensor) -> torch.Tensor:
        """Frozen MiniLM pooled embeddings ``(B, 384)`` -> unit embeddings ``(B, D)``."""
        if pooled.ndim != 2 or pooled.shape[1] != self.config.text_dim:
            raise ValueError(f"text embeddings must be shaped (B, {self.config.text_dim}), got {tuple(pooled.shape)}")
        x = (pooled.to(self.dtype) - self.text_mean) @ self.text_whiten  # (B, text_dim)
        return F.normalize(self.text_proj(x), dim=-1)

    @torch.no_grad()
    def set_text_whitening(self, pooled: torch.Tensor, eps: float = 0.1) -> None:
        """Fit the text whitening (ZCA) to sample embeddings ``(N, text_dim)`` of training captions.

        ``eps`` (relative to the mean eigenvalue) keeps directions the sample barely spans from
        being blown up.
        """
        x = pooled.to(torch.float64)
        mean = x.mean(0)
        cov = torch.cov((x - mean).T)  # (D, D)
        evals, evecs = torch.linalg.eigh(cov)
        evals = evals.clamp(min=0) + eps * evals.clamp(min=0).mean()
        whiten = evecs @ torch.diag(evals.rsqrt()) @ evecs.T
        self.text_mean.copy_(mean.to(self.text_mean.dtype))
        self.text_whiten.copy_(whiten.to(self.text_whiten.dtype))

    # ----------------------------------------------------------------------------- scores

    @property
    def logit_scale(self) -> torch.Tensor:
        """CLIP's temperature, ``exp(t)`` clamped to ``[1, max_logit_scale]``."""
        return self.log_logit_scale.exp().clamp(1.0, self.config.max_logit_scale)

    def forward(self, images: torch.Tensor | None = None, videos: torch.Tensor | None = None,
                text_pooled: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Embeddings of whatever is given: keys ``image``, ``video``, ``text``, and ``logit_scale``."""
        out = {"logit_scale": self.logit_scale}
        if images is not None:
            out["image"] = self.image_features(images)
        if videos is not None:
            out["video"] = self.video_features(videos)
        if text_pooled is not None:
            out["text"] = self.text_features(text_pooled)
        return out


def clip_loss(
    image: torch.Tensor,
    text: torch.Tensor,
    logit_scale: torch.Tensor,
    hard: torch.Tensor | None = None,
    hard_mask: torch.Tensor | None = None,
    same: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Symmetric InfoNCE (CLIP) with optional per-item hard negative texts.

    ``image``, ``text`` (B, D) unit vectors, pair ``i`` matched; ``hard`` (B, n, D) extra negative
    texts of each image (only in the image->text softmax), ``hard_mask`` (B, n) which are real;
    ``same`` (B, B) True where two items share a caption: those off-diagonal pairs are no
    negatives (they would be false ones). Returns ``loss`` and the two directions' top-1 accuracy.
    """
    b = image.shape[0]
    logits = logit_scale * image @ text.T  # (B, B): rows images, columns texts
    if same is not None:
        off = same & ~torch.eye(b, dtype=torch.bool, device=same.device)
        logits = logits.masked_fill(off, float("-inf"))
    i2t = logits
    if hard is not None and hard.shape[1] > 0:
        hard_logits = logit_scale * torch.einsum("bd,bnd->bn", image, hard)  # (B, n)
        if hard_mask is not None:
            hard_logits = hard_logits.masked_fill(~hard_mask, float("-inf"))
        i2t = torch.cat([logits, hard_logits], dim=1)  # (B, B + n)
    target = torch.arange(b, device=image.device)
    loss = (F.cross_entropy(i2t, target) + F.cross_entropy(logits.T, target)) / 2
    return {
        "loss": loss,
        "acc_i2t": (i2t.argmax(1) == target).float().mean().detach(),
        "acc_t2i": (logits.argmax(0) == target).float().mean().detach(),
    }
