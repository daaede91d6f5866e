"""Stage ``t2i``: train the backbone ``UNet2DConditionModel`` on (image, caption) pairs.

The codec (from ``vae_path``, trained by stage ``codec``) and the MiniLM text encoder are frozen.
Objective: the project's one noise schedule (:class:`~evedit.diffusion.NoiseSchedule`,
v-prediction at zero terminal SNR): ``x0 = codec latent x scaling_factor``, uniform ``t``, MSE to
``schedule.target``. 10% of captions are dropped to "" so the model also learns the unconditional
prediction classifier-free guidance needs (Ho & Salimans 2022). With ``data: {kind: store, path:
...}`` the train items come encoded from an ``image`` store (``evedit data build image``): the
posterior is sampled from its stored mode and std, captions are its stored states. ``object_weight``
weighs the latent cells ShapeWorld's objects cover more (a store keeps their coverage). Evaluation: validation loss on
fixed items and draws; samples: DDIM generations with CFG for fixed validation captions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from torch import nn
from torch.utils.data import default_collate

from ...diffusion import NoiseSchedule, cfg, ddim_sample, ddim_timesteps, sdedit_timesteps
from ...errors import EveditError
from ...io import write_image
from ...losses import region_weights
from ...models.codec import decode_images, downsampling, encode_images
from ...models.presets import SHAPEWORLD_UNET
from ..config import structured
from ..data import DataConfig, image_caption_dataset
from ..store import drop_states, latent_coverage, open_store, store_world
from .common import drop_texts, grid, load_vae, text_encoder, to_uint8, weighted_denoising_loss


@dataclass
class T2IConfig:
    vae_path: str = "runs/codec/export/vae"  # the trained codec (an export folder holding vae/ works too)
    data: DataConfig = field(default_factory=DataConfig)  # (image, caption) pairs
    caption_dropout: float = 0.1  # share of captions replaced by "" (for classifier-free guidance)
    eval_items: int = 64  # validation items in the validation loss
    eval_batch_size: int = 32  # items per forward pass in evaluate (memory, not results)
    sample_items: int = 8  # generations per sample grid (fixed validation captions)
    sample_steps: int = 25  # DDIM steps of the sample grids
    guidance: float = 4.0  # CFG scale of the sample grids; moderate for a tiny model
    seed: int = 0  # draws of the validation loss and the sample noise
    snr_gamma: float = 0.0  # min-SNR-gamma loss weighting (Hang et al. 2023); 0: unweighted MSE
    # Extra loss weight on the latent cells the frame's objects cover: 1 + object_weight x coverage,
    # renormalised to mean 1 per item (losses.region_weights); needs object masks (ShapeWorld's
    # items and image stores). 0: every cell alike. evedit's choice, not the paper's: objects cover
    # 13% of a ShapeWorld frame; 4 drew 19 / 23 points more of them in colour at equal time
    # (benchmarks/results/proxy_t2i_object_path.md; configs/t2i-dc-obj20-objw4.yaml uses it).
    object_weight: float = 0.0
    # Overrides of the UNet's diffusers config (models.presets.SHAPEWORLD_UNET), e.g. wider blocks;
    # the channels follow the codec. A motion adapter on a wider backbone sets the same widths.
    unet: dict = field(default_factory=dict)


def resolve_vae_folder(path: str | Path) -> Path:
    """``path`` itself, or its ``vae/`` subfolder when given a codec export folder."""
    folder = Path(path)
    return folder / "vae" if (folder / "vae" / "config.json").is_file() else folder


class T2IStage:
    name = "t2i"

    def __init__(self, config: T2IConfig | None = None):
        self.config = config or T2IConfig()
        self.vae = load_vae(resolve_vae_folder(self.config.vae_path))
        self.text = text_encoder()
        c = self.vae.config.latent_channels  # the codec sets the latent width (4 shipped; 8, 16 measured)
        arch = {**SHAPEWORLD_UNET, **self.config.unet, "in_channels": c, "out_channels": c}
        self.unet = UNet2DConditionModel(**arch)
        self.schedule = NoiseSchedule()
        self._val: dict | None = None

    @classmethod
    def from_config(cls, data: dict) -> "T2IStage":
        return cls(structured(T2IConfig, data, "stage section for 't2i'"))

    def trainable_modules(self) -> list[nn.Module]:
        return [self.unet]

    def modules(self) -> dict[str, nn.Module]:
        return {"unet": self.unet, "vae": self.vae, "text": self.text}

    def dataset(self, split: str):
        self.world_settings = store_world(self.config.data)  # validation renders the store's world
        if self.config.data.kind == "store":
            if split == "train":
                self.store = open_store({"path": self.config.data.path}, self.name, self.vae, self.text)
                if self.config.object_weight and "objects" not in self.store.mask_fields:
                    raise EveditError(f"object_weight needs object masks, and the store '{self.config.data.path}' has "
                                      "none; rebuild it from ShapeWorld with `evedit data build image`.")
                return self.store
            return image_caption_dataset(DataConfig(val_items=self.config.data.val_items), split, self.world_settings)
        data = image_caption_dataset(self.config.data, split)
        if not getattr(getattr(data, "dataset", data), "has_captions", True):
            raise EveditError(f"Stage t2i needs captions, but '{self.config.data.path}' has no captions table.")
        if self.config.object_weight and self.config.data.kind != "shapeworld":
            raise EveditError("object_weight needs object masks, which only ShapeWorld's items (or its stores) give.")
        return data

    # ---- loss ----------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """(B, 3, H, W) pixels -> (B, 4, H/4, W/4) scaled latents (a posterior sample)."""
        return encode_images(self.vae, images, sample=True, generator=generator)

    def diffusion_loss(self, images, captions: list[str], generator, objects=None) -> torch.Tensor:
        x0 = self.encode(images.to(self.unet.device), generator)
        cells = None if objects is None else latent_coverage(objects, x0.shape[-2:])  # as a store keeps them
        return self.latent_loss(x0, self.text(captions).hidden_states, generator, cells)

    def latent_loss(self, x0: torch.Tensor, text: torch.Tensor, generator,
                    objects: torch.Tensor | None = None) -> torch.Tensor:
        """v-prediction MSE on scaled latents ``x0`` (B, C, h, w) under text states (B, L, D);
        ``objects`` (B, 1, h, w): the objects' coverage, weighted by ``object_weight`` in training."""
        device = self.unet.device
        n = x0.shape[0]
        noise = torch.randn(x0.shape, generator=generator).to(device)
        t = torch.randint(0, self.schedule.num_train_timesteps, (n,), generator=generator).to(device)
        out = self.unet(self.schedule.add_noise(x0, noise, t), t, text).sample
        training = self.unet.training  # evaluation: plain MSE, comparable across recipes
        gamma = self.config.snr_gamma if training else 0.0
        weigh = training and self.config.object_weight > 0 and objects is not None
        positions = region_weights(objects.to(device), self.config.object_weight) if weigh else None
        return weighted_denoising_loss(self.schedule, out, self.schedule.target(x0, noise, t), t, gamma, positions)

    def loss(self, batch: dict, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        if "latent" in batch:  # an encoded store's item: no codec or text encoder in the step
            n = batch["latent"].shape[0]
            dropped = torch.rand(n, generator=generator) < self.config.caption_dropout
            eps = torch.randn(batch["latent"].shape, generator=generator).to(batch["latent"])
            x0 = batch["latent"] + batch["latent_std"] * eps  # a posterior sample, as encode() draws
            text = drop_states(batch["caption_states"], dropped, self.store.null_states)
            return {"loss": self.latent_loss(x0, text, generator, batch.get("objects"))}
        captions = list(batch["caption"])
        dropped = torch.rand(len(captions), generator=generator) < self.config.caption_dropout
        return {"loss": self.diffusion_loss(batch["image"], drop_texts(captions, dropped), generator, batch.get("objects"))}

    # ---- evaluation ----------------------------------------------------------------------------
    def _val_batch(self) -> dict:
        if self._val is None:  # fixed items: figures are comparable across steps
            data = self.dataset("val")
            n = max(self.config.eval_items, self.config.sample_items)
            self._val = default_collate([data[i] for i in range(min(n, len(data)))])
        return self._val

    @torch.no_grad()
    def evaluate(self, batches: int | None = None) -> dict[str, float]:
        batch, c = self._val_batch(), self.config
        g = torch.Generator().manual_seed(c.seed)
        images, captions = batch["image"][: c.eval_items], list(batch["caption"][: c.eval_items])
        losses = [self.diffusion_loss(chunk, captions[i: i + len(chunk)], g) * len(chunk)
                  for i, chunk in zip(range(0, len(images), c.eval_batch_size), images.split(c.eval_batch_size))]
        return {"val_loss": float(torch.stack(losses).sum() / len(images))}

    @torch.no_grad()
    def generate(self, captions: list[str], steps: int, size: int, seed: int = 0, start: torch.Tensor | None = None,
                 strength: float = 1.0, guidance: float | None = None) -> torch.Tensor:
        """DDIM with classifier-free guidance (``guidance``, default the stage's): captions -> (N, 3,
        size, size) pixels in [-1, 1]; from noise, or with ``start`` (N, 3, size, size) pixels, SDEdit:
        ``start`` noised to the first of the last ``strength`` share of the schedule (diffusers'
        img2img rule) and denoised from there."""
        device, n = self.unet.device, len(captions)
        cond = self.text(captions).hidden_states
        null = self.text([""]).hidden_states.expand(n, -1, -1)
        both, scale = torch.cat([cond, null]), self.config.guidance if guidance is None else guidance

        def model_fn(x, t):
            c_out, u_out = self.unet(torch.cat([x, x]), torch.cat([t, t]), both).sample.chunk(2)
            return cfg(u_out, c_out, scale)

        factor = downsampling(self.vae)
        timesteps = sdedit_timesteps(steps, strength) if start is not None else ddim_timesteps(steps)
        shape = (n, self.unet.config.in_channels, size // factor, size // factor)
        x_T = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(device)
        if start is not None:
            t0 = torch.full((n,), timesteps[0], dtype=torch.long, device=device)
            x_T = self.schedule.add_noise(encode_images(self.vae, start.to(device)), x_T, t0)
        z = ddim_sample(model_fn, x_T, timesteps, self.schedule)
        return decode_images(self.vae, z)

    @torch.no_grad()
    def sample(self, out_dir: Path, step: int) -> list[Path]:
        batch, c = self._val_batch(), self.config
        captions = list(batch["caption"][: c.sample_items])
        images = self.generate(captions, c.sample_steps, batch["image"].shape[-1], c.seed)
        pixels = list(to_uint8(images))
        cols = (len(pixels) + 1) // 2 if len(pixels) > 4 else len(pixels)
        rows = [pixels[i: i + cols] for i in range(0, len(pixels), cols)]
        path = Path(out_dir) / f"t2i_{step:06d}.png"
        write_image(path, grid(rows))
        lines = [f"row {i // cols + 1}, column {i % cols + 1}: {text}" for i, text in enumerate(captions)]
        path.with_suffix(".txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return [path, path.with_suffix(".txt")]

    def export(self, folder: Path) -> None:
        self.unet.save_pretrained(Path(folder) / "unet", safe_serialization=True)
