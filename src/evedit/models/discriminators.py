"""FDD discriminators: a frozen feature network with small trainable heads (ADD-style).

EVE (section 3.3) uses frozen DINOv2 features with trainable heads; the edit discriminator D_e adds
an image projection (the input frame) next to the text and "noisy image" projections and fuses the
conditions with one attention layer; the video discriminator D_v adds one temporal attention layer
over the projected features, applied per pixel.

Feature network here: the frozen backbone's encoder (LADD, Sauer et al. 2024): the outputs of its
down blocks and mid block on a latent noised to a small timestep, with the caption as context.
It works on latents, so the student's output needs no decoding. This extractor calls the
diffusers UNet's own submodules in order (conv_in, down blocks, mid block) rather than its
``forward``, to stop before the decoder.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn


class BackboneFeatures(nn.Module):
    """Frozen UNet encoder features: one map per down block plus the mid block."""

    def __init__(self, unet, levels: tuple[int, ...] = (1, 2, 3)):
        super().__init__()
        self.unet = unet  # shared with the model, frozen; not trained here
        self.levels = levels

    @property
    def channels(self) -> list[int]:
        chans = [*self.unet.config.block_out_channels, self.unet.config.block_out_channels[-1]]
        return [chans[i] for i in self.levels]

    def forward(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> list[torch.Tensor]:
        """x (N, C, h, w), t (N,), text (N, L, D) -> feature maps at ``levels``."""
        unet = self.unet
        emb = unet.time_embedding(unet.time_proj(t).to(x.dtype))
        h = unet.conv_in(x)
        feats = []
        for block in unet.down_blocks:
            if getattr(block, "has_cross_attention", False):
                h, _ = block(h, temb=emb, encoder_hidden_states=text)
            else:
                h, _ = block(h, temb=emb)
            feats.append(h)
        feats.append(unet.mid_block(h, emb, encoder_hidden_states=text))
        return [feats[i] for i in self.levels]


class EditHead(nn.Module):
    """D_e head on one feature level: noisy-image, input-image and text projections fused by one
    attention layer (queries: the image tokens; keys/values: input-image and instruction tokens)."""

    def __init__(self, channels: int, text_dim: int, dim: int = 64, heads: int = 4):
        super().__init__()
        self.proj_x = nn.Conv2d(channels, dim, 1)
        self.proj_src = nn.Conv2d(channels, dim, 1)
        self.proj_text = nn.Linear(text_dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(dim, 1))

    def forward(self, feat, src_feat, text) -> torch.Tensor:
        q = rearrange(self.proj_x(feat), "n d h w -> n (h w) d")
        kv = torch.cat([rearrange(self.proj_src(src_feat), "n d h w -> n (h w) d"),
                        self.proj_text(text)], dim=1)  # (N, hw + L, d)
        h = q + self.attn(self.norm(q), kv, kv, need_weights=False)[0]
        return self.out(h).mean(dim=(1, 2))  # (N,)


class VideoHead(nn.Module):
    """D_v head on one level: per-pixel temporal attention, then a caption projection logit."""

    def __init__(self, channels: int, text_dim: int, dim: int = 64, heads: int = 4, max_frames: int = 32):
        super().__init__()
        self.proj_x = nn.Conv2d(channels, dim, 1)
        self.pos = nn.Parameter(torch.zeros(max_frames, dim))
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.proj_text = nn.Linear(text_dim, dim)
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(dim, 1))

    def forward(self, feat, frames: int, text_pooled) -> torch.Tensor:
        height, width = feat.shape[-2:]
        h = rearrange(self.proj_x(feat), "(b f) d y x -> (b y x) f d", f=frames)
        h = h + self.pos[:frames]
        n = self.norm(h)
        h = h + self.attn(n, n, n, need_weights=False)[0]
        h = rearrange(h, "(b y x) f d -> b (f y x) d", y=height, x=width)
        logit = self.out(h).mean(dim=(1, 2))
        projection = (h.mean(1) * self.proj_text(text_pooled)).sum(-1) / math.sqrt(h.shape[-1])
        return logit + projection  # (B,)


class EditDiscriminator(nn.Module):
    """D_e: is this frame (given its input frame and instruction) the edit teacher's or the student's?"""

    def __init__(self, features: BackboneFeatures, text_dim: int, dim: int = 64):
        super().__init__()
        self.features = features
        self.heads = nn.ModuleList(EditHead(c, text_dim, dim) for c in features.channels)

    def head_parameters(self):
        return self.heads.parameters()

    @torch.no_grad()
    def source_features(self, source, caption) -> list[torch.Tensor]:
        """Features of the clean input frames (N, C, h, w); computed once per batch."""
        t = torch.zeros(source.shape[0], dtype=torch.long, device=source.device)
        return self.features(source, t, caption)

    def forward(self, x, source_feats, t, caption, instruction) -> torch.Tensor:
        """x (N, C, h, w) latents (frames folded), ``source_feats`` from :meth:`source_features`,
        caption/instruction (N, L, D) -> logits (N,)."""
        feats = self.features(x, t, caption)
        return sum(head(f, s, instruction) for head, f, s in zip(self.heads, feats, source_feats))


class VideoDiscriminator(nn.Module):
    """D_v: is this clip (given its caption) the video teacher's or the student's?"""

    def __init__(self, features: BackboneFeatures, text_dim: int, dim: int = 64, max_frames: int = 32):
        super().__init__()
        self.features = features
        self.heads = nn.ModuleList(VideoHead(c, text_dim, dim, max_frames=max_frames) for c in features.channels)

    def head_parameters(self):
        return self.heads.parameters()

    def forward(self, x, t, caption, caption_pooled) -> torch.Tensor:
        """x (B, C, F, h, w); t (B,); caption (B, L, D); caption_pooled (B, Dp) -> (B,)."""
        frames = x.shape[2]
        flat = rearrange(x, "b c f h w -> (b f) c h w")
        feats = self.features(flat, t.repeat_interleave(frames), caption.repeat_interleave(frames, 0))
        return sum(head(f, frames, caption_pooled) for head, f in zip(self.heads, feats))


class TokenDiscriminator(VideoDiscriminator):
    """D_s / D_p: is this frame (given the caption with the style's or subject's trigger) that
    teacher's or the student's? Each frame alone (the teacher draws frames independently): D_v's
    head over clips of one frame."""

    def __init__(self, features: BackboneFeatures, text_dim: int, dim: int = 64):
        super().__init__(features, text_dim, dim, max_frames=1)

    def forward(self, x, t, caption, caption_pooled) -> torch.Tensor:
        """x (B, C, F, h, w); t (B,); caption (B, L, D); caption_pooled (B, Dp) -> (B*F,)."""
        frames = x.shape[2]
        rep = lambda v: v.repeat_interleave(frames, 0)  # noqa: E731
        single = rearrange(x, "b c f h w -> (b f) c 1 h w")
        return super().forward(single, rep(t), rep(caption), rep(caption_pooled))
