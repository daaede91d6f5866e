"""Stage ``codec``: train the ShapeWorld codec (64x64 RGB <-> 16x16xC latents).

Two networks (``architecture``): ``kl``, diffusers' ``AutoencoderKL`` (0.1.0's 4-channel codec),
and ``dc``, ``AutoencoderDC`` (deterministic, with space-to-channel shortcuts; chosen by
``benchmarks/results/codec_design.md`` and trained as ``models/parts/codec-dc``, not yet in a
shipped model: 0.2.0 still carries 0.1.0's KL codec).

Loss: L1 + L2 reconstruction of a posterior sample (``dc``: of the latent), plus for ``kl`` a
small KL to the unit Gaussian. L1
keeps the flat-coloured shapes' edges sharp (L2 alone blurs them); L2 is what PSNR measures.
Evaluation: PSNR (dB) of mode reconstructions of fixed validation images. Export: the VAE with
``scaling_factor = 1 / std`` of latents of training images, so the diffusion stages see
unit-variance latents (as SD's 0.18215 was measured).

``decoder_only`` (with ``init_from``, a trained VAE folder) fine-tunes the decoder and
``post_quant_conv`` on the frozen encoder's posterior samples, as Stability did for SD's ft-MSE
VAE: the latent space, and so every diffusion part already trained on it, stays valid. The KL
term is then constant and skipped, and export keeps the folder's ``scaling_factor`` (the encoder,
hence the latent std, is unchanged). Measured on ShapeWorld (``benchmarks/results/codec_decoder.md``):
sharper reconstructions alone decode *generated* latents worse (a sampler's errors rendered
sharply), so ``latent_noise`` also trains the decoder on perturbed latents; with both, test
reconstructions and decoded teacher edits improved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from diffusers import AutoencoderDC, AutoencoderKL
from torch import nn
from torch.utils.data import default_collate

from ...errors import EveditError
from ...io import write_image
from ...models.codec import codec_class, fit_channel_norm, latent_affine, raw_latents
from ...models.presets import SHAPEWORLD_DC, SHAPEWORLD_VAE
from ..config import structured
from ..data import DataConfig, image_caption_dataset
from .common import grid, load_trainable, psnr, to_uint8


@dataclass
class CodecConfig:
    data: DataConfig = field(default_factory=DataConfig)  # images to reconstruct (captions unused)
    l1_weight: float = 1.0  # sharp edges on flat colours
    l2_weight: float = 1.0  # the error PSNR reports
    # KL per latent element. SD's VAE uses 1e-6 on per-image sums, ~1e-7 per element here; 1e-5
    # is still far below the reconstruction terms (no blur) but keeps the latent scale bounded.
    kl_weight: float = 1e-5
    eval_items: int = 64  # validation images in the PSNR
    eval_batch_size: int = 32  # images per forward pass in evaluate/export (memory, not results)
    sample_items: int = 8  # columns of the sample grid (originals over reconstructions)
    scale_items: int = 64  # training images whose latent std sets scaling_factor at export
    seed: int = 0  # posterior samples drawn at export
    init_from: str | None = None  # a trained VAE folder to continue from; None: from scratch
    # Train only the decoder side (decoder, post_quant_conv) on the frozen encoder: keeps the
    # latent space of the diffusion parts trained on it. Needs init_from.
    decoder_only: bool = False
    # With decoder_only: Gaussian noise of std U(0, latent_noise) per image, in the diffusion
    # parts' unit-variance latent units (x scaling_factor), added to the decoder's input, so it
    # learns to decode imperfect latents (what samplers produce) as well as the encoder's.
    latent_noise: float = 0.0
    # Channels of the 16x16 latent (from scratch only; init_from keeps the folder's). 4 keeps
    # 25-26 dB on ShapeWorld; 8 and 16 were measured against it (benchmarks/results/codec_channels.md).
    latent_channels: int = 4
    # Widths of the encoder's and decoder's three blocks (from scratch only); None: the preset's
    # ((32, 64, 64) for "kl", (32, 64, 128) for "dc"). A wider codec isolates capacity.
    block_out_channels: Optional[list[int]] = None
    # The network (from scratch only): "kl", diffusers' AutoencoderKL (SD's VAE design, 0.1.0's
    # codec), or "dc", AutoencoderDC (deterministic, space-to-channel shortcuts; no KL term).
    architecture: str = "kl"
    # Normalise the latents per channel at export (latents_mean, latents_std in the config,
    # scaling_factor 1) instead of by one scaling_factor. On the 16-channel DC codec (channel stds
    # 0.37 to 1.99) it cost the backbone 1.0 dB of round trip at equal steps
    # (benchmarks/results/latent_norm.md), hence off.
    channel_norm: bool = False


def new_codec(c: CodecConfig) -> nn.Module:
    """A codec from scratch: the ShapeWorld preset of ``c.architecture`` with ``c``'s overrides."""
    if c.architecture not in ("kl", "dc"):
        raise EveditError(f"codec architecture must be 'kl' or 'dc', got {c.architecture!r}.")
    if c.architecture == "kl":
        widths = {"block_out_channels": tuple(c.block_out_channels)} if c.block_out_channels else {}
        return AutoencoderKL(**{**SHAPEWORLD_VAE, "latent_channels": c.latent_channels, **widths})
    widths = {f"{side}_block_out_channels": tuple(c.block_out_channels)
              for side in ("encoder", "decoder")} if c.block_out_channels else {}
    return AutoencoderDC(**{**SHAPEWORLD_DC, "latent_channels": c.latent_channels, **widths})


class CodecStage:
    name = "codec"

    def __init__(self, config: CodecConfig | None = None):
        self.config = c = config or CodecConfig()
        if c.decoder_only and not c.init_from:
            raise EveditError("decoder_only needs init_from: a trained codec whose encoder stays frozen.")
        self.vae = load_trainable(codec_class(c.init_from), c.init_from, "codec (vae)") if c.init_from \
            else new_codec(c)
        self._val: torch.Tensor | None = None  # fixed validation images, cached on the CPU

    @classmethod
    def from_config(cls, data: dict) -> "CodecStage":
        return cls(structured(CodecConfig, data, "stage section for 'codec'"))

    def trainable_modules(self) -> list[nn.Module]:
        if self.config.decoder_only:
            return [self.vae.decoder, *([self.vae.post_quant_conv] if hasattr(self.vae, "post_quant_conv") else [])]
        return [self.vae]

    def modules(self) -> dict[str, nn.Module]:
        return {"vae": self.vae}

    def dataset(self, split: str):
        return image_caption_dataset(self.config.data, split)

    def loss(self, batch: dict, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        c, x = self.config, batch["image"]  # (B, 3, H, W) in [-1, 1]
        if c.decoder_only:
            return self._reconstruction(self.vae.decode(self._noisy_latents(x, generator)).sample, x)
        out = self.vae.encode(x)
        if not hasattr(out, "latent_dist"):  # deterministic codec: reconstruction only
            return self._reconstruction(self.vae.decode(out.latent).sample, x)
        posterior = out.latent_dist
        terms = self._reconstruction(self.vae.decode(posterior.sample(generator)).sample, x)
        kl = posterior.kl().mean() / posterior.mean[0].numel()  # per latent element
        return {**terms, "loss": terms["loss"] + c.kl_weight * kl, "kl": kl.detach()}

    def _reconstruction(self, recon: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Weighted L1 + L2 of a reconstruction (the frozen encoder's KL, if any, is the caller's)."""
        l1, l2 = (recon - x).abs().mean(), (recon - x).pow(2).mean()
        loss = self.config.l1_weight * l1 + self.config.l2_weight * l2
        return {"loss": loss, "l1": l1.detach(), "l2": l2.detach()}

    @torch.no_grad()
    def _noisy_latents(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Frozen-encoder posterior samples (B, C, h, w), plus ``latent_noise`` if set."""
        z = raw_latents(self.vae, x, sample=True, generator=generator)  # as the diffusion stages saw them
        if self.config.latent_noise > 0:
            sigma = torch.rand(len(z), 1, 1, 1, generator=generator).to(z) * self.config.latent_noise
            eps = torch.randn(z.shape, generator=generator).to(z)
            z = z + sigma * eps * latent_affine(self.vae, z)[1]  # unit-variance units -> raw latents
        return z

    # ---- evaluation ----------------------------------------------------------------------------
    def _images(self, split: str, n: int) -> torch.Tensor:
        data = self.dataset(split)
        items = [data[i] for i in range(min(n, len(data)))]
        return default_collate(items)["image"].to(self.vae.device)  # (n, 3, H, W)

    def _val_images(self) -> torch.Tensor:
        if self._val is None:  # fixed images: figures are comparable across steps
            self._val = self._images("val", self.config.eval_items).cpu()
        return self._val.to(self.vae.device)

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """Mode reconstructions, in chunks of ``eval_batch_size``; same shape as ``images``."""
        out = [self.vae.decode(raw_latents(self.vae, chunk)).sample.clamp(-1, 1)
               for chunk in images.split(self.config.eval_batch_size)]
        return torch.cat(out)

    @torch.no_grad()
    def evaluate(self, batches: int | None = None) -> dict[str, float]:
        images = self._val_images()
        recon = self.reconstruct(images).float()
        return {"psnr": float(psnr(recon, images).mean()), "l1": float((recon - images).abs().mean())}

    @torch.no_grad()
    def sample(self, out_dir: Path, step: int) -> list[Path]:
        images = self._val_images()[: self.config.sample_items]
        recon = self.reconstruct(images)
        rows = [list(to_uint8(images)), list(to_uint8(recon))]
        path = Path(out_dir) / f"codec_{step:06d}.png"  # top: originals, bottom: reconstructions
        return [write_image(path, grid(rows))]

    # ---- export --------------------------------------------------------------------------------
    @torch.no_grad()
    def scale_latents(self) -> torch.Tensor:
        """(Unscaled) posterior samples of the first ``scale_items`` training images."""
        images = self._images("train", self.config.scale_items)
        g = torch.Generator().manual_seed(self.config.seed)
        return torch.cat([raw_latents(self.vae, chunk, sample=True, generator=g)
                          for chunk in images.split(self.config.eval_batch_size)]).float()

    def latent_std(self) -> float:
        """Std of :meth:`scale_latents` over every channel."""
        return float(self.scale_latents().std())

    def export(self, folder: Path) -> None:
        if self.config.decoder_only:  # a frozen encoder keeps the loaded latent scaling
            pass
        elif self.config.channel_norm:
            self.vae.register_to_config(**fit_channel_norm(self.scale_latents()))
        else:
            self.vae.register_to_config(scaling_factor=1.0 / max(self.latent_std(), 1e-6))
        self.vae.save_pretrained(Path(folder) / "vae", safe_serialization=True)
