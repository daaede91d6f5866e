"""Stage ``video-adapter``: train the temporal layers and the first-frame branch, backbone frozen.

Data: (clip, caption) from ShapeWorld's ``ClipCaptionDataset``, or a video folder with captions
(WebVid-style, see ``evedit.training.video_data``). As in Emu Video, the model is conditioned on
the clean first frame for most items (``first_frame_prob``) and on nothing otherwise, so it can
both continue a given frame (what EVE needs) and generate freely; captions drop to "" with
``drop_caption`` for classifier-free guidance. The loss covers every frame.

With ``data: {kind: store, path: ...}`` the train clips come encoded from a ``video`` store
(``evedit data build video``): clip latents and caption states are read, not computed, in the step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import MotionAdapter
from torch import nn

from ...errors import EveditError
from ...diffusion import NoiseSchedule, cfg, ddim_sample, ddim_timesteps
from ...io import write_video
from ...losses import denoising_loss
from ...models.codec import decode_video, encode_video
from ...models.presets import SHAPEWORLD_MOTION
from ...models.video_adapter import (
    FirstFrameBranch, FirstFrameHook, motion_adapter_of, motion_unet, new_motion_adapter,
)
from ..store import drop_states, open_store, store_world
from .common import (
    drop_texts, load_trainable, load_unet, load_vae, psnr, text_encoder, to_uint8, weighted_denoising_loss,
)


@dataclass
class VideoAdapterConfig:
    vae_path: str = "runs/codec/export/vae"
    unet_path: str = "runs/t2i/export/unet"
    data: dict = field(default_factory=lambda: {"kind": "shapeworld"})
    motion: dict = field(default_factory=lambda: dict(SHAPEWORLD_MOTION))  # MotionAdapter config; its
    # block_out_channels are always the backbone's (a temporal layer sits after each of its blocks)
    first_frame_prob: float = 0.9  # share of items conditioned on their clean first frame
    drop_caption: float = 0.1  # caption dropout for classifier-free guidance
    eval_items: int = 8
    eval_steps: int = 20
    guidance: float = 2.0  # caption CFG scale at evaluation
    train_length: int = 100_000
    seed: int = 0
    snr_gamma: float = 0.0  # min-SNR-gamma loss weighting (Hang et al. 2023); 0: unweighted MSE
    every_frame: bool = False  # the first frame handed to every frame (FirstFrameBranch.every_frame)
    init_from: str | None = None  # a video-adapter folder (motion_adapter/, first_frame/) to continue; its
    # motion_adapter config then replaces `motion`


def motion_modules(model) -> list[nn.Module]:
    """The temporal layers of a UNetMotionModel, by module identity."""
    blocks = [*model.down_blocks, *model.up_blocks, model.mid_block]
    return [m for block in blocks for m in getattr(block, "motion_modules", [])]


class VideoAdapterStage:
    name = "video-adapter"

    def __init__(self, config: VideoAdapterConfig):
        self.config = config
        self.vae, unet = load_vae(config.vae_path), load_unet(config.unet_path)
        init = Path(config.init_from) if config.init_from else None
        widths = tuple(unet.config.block_out_channels)
        adapter = (load_trainable(MotionAdapter, init / "motion_adapter", "motion adapter") if init
                   else new_motion_adapter(**{**config.motion, "block_out_channels": widths}))
        if tuple(adapter.config.block_out_channels) != widths:
            raise EveditError(f"init_from {init} holds temporal layers for block widths "
                              f"{tuple(adapter.config.block_out_channels)}, but the backbone "
                              f"{config.unet_path} has {widths}.")
        self.model = motion_unet(unet, adapter)
        self.model.requires_grad_(False)
        self.first_frame = FirstFrameBranch(
            latent_channels=unet.config.in_channels, out_channels=unet.config.block_out_channels[0],
            every_frame=config.every_frame,
        )
        if init:  # the branch's weights; its frame layout is this recipe's
            trained = load_trainable(FirstFrameBranch, init / "first_frame", "first-frame branch")
            self.first_frame.load_state_dict(trained.state_dict())
        self.hook = FirstFrameHook(self.model, self.first_frame)
        self.text, self.schedule = text_encoder(), NoiseSchedule()
        for module in self.trainable_modules():
            module.requires_grad_(True)

    @classmethod
    def from_config(cls, data: dict) -> "VideoAdapterStage":
        from ..config import structured

        return cls(structured(VideoAdapterConfig, data, "stage section for 'video-adapter'"))

    def trainable_modules(self) -> list[nn.Module]:
        return [*motion_modules(self.model), self.first_frame]

    def modules(self) -> dict[str, nn.Module]:
        return {"vae": self.vae, "motion_unet": self.model, "first_frame": self.first_frame,
                "text": self.text}

    def dataset(self, split: str):
        from ...world import ClipCaptionDataset, WorldConfig

        kind = self.config.data.get("kind", "shapeworld")
        self.world_settings = store_world(self.config.data)  # validation renders the store's world
        if kind == "store" and split == "train":
            self.store = open_store(self.config.data, self.name, self.vae, self.text)
            return self.store
        if kind == "folder":
            from ..video_data import VideoCaptionFolder

            return VideoCaptionFolder(self.config.data["path"], self.config.data.get("captions"),
                                      size=64, frames=8)
        length = self.config.train_length if split == "train" else max(self.config.eval_items, 32)
        return ClipCaptionDataset(split=split, length=length, config=WorldConfig(**self.world_settings))

    def forward(self, x_t, t, captions: list[str] | torch.Tensor, first: torch.Tensor | None,
                keep: torch.Tensor | None = None) -> torch.Tensor:
        """Motion model output on (B, C, F, h, w) latents; ``first`` (B, C, h, w) or None.

        ``captions``: strings, or their text states (B, L, D) as a store holds them."""
        frames = x_t.shape[2]
        states = captions if torch.is_tensor(captions) else self.text(captions).hidden_states
        text = states.repeat_interleave(frames, 0)  # (B*F, L, D)
        with self.hook.condition(first, frames, keep):
            return self.model(x_t, t, text).sample

    def loss(self, batch: dict, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        device = self.model.device
        stored = "caption_states" in batch  # an encoded store's item
        if stored:
            x0 = batch["clip"]  # (B, C, F, h, w) latents
        else:
            with torch.no_grad():
                x0 = encode_video(self.vae, batch["clip"].to(device))  # (B, C, F, h, w)
        b = x0.shape[0]
        no_caption = torch.rand(b, generator=generator) < self.config.drop_caption
        captions = (drop_states(batch["caption_states"], no_caption, self.store.null_states) if stored
                    else drop_texts(list(batch["caption"]), no_caption))
        keep = (torch.rand(b, generator=generator) < self.config.first_frame_prob).to(device)
        noise = torch.randn(x0.shape, generator=generator).to(device)
        t = torch.randint(0, self.schedule.num_train_timesteps, (b,), generator=generator).to(device)
        x_t = self.schedule.add_noise(x0, noise, t)
        out = self.forward(x_t, t, captions, x0[:, :, 0], keep)
        target = self.schedule.target(x0, noise, t)
        loss = weighted_denoising_loss(self.schedule, out, target, t, self.config.snr_gamma)
        return {"loss": loss, "mse": denoising_loss(out.detach(), target)}

    # ---- evaluation -------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, batch: dict, steps: int, seed: int = 0) -> torch.Tensor:
        """Clips generated from each real clip's first frame and caption (pixels, B,3,F,H,W)."""
        device = self.model.device
        x0 = encode_video(self.vae, batch["clip"].to(device))
        first, captions = x0[:, :, 0], list(batch["caption"])
        nulls = [""] * len(captions)

        def model_fn(x, t):
            c = self.forward(x, t, captions, first)
            u = self.forward(x, t, nulls, first)
            return cfg(u, c, self.config.guidance)

        g = torch.Generator().manual_seed(seed)
        z = ddim_sample(model_fn, torch.randn(x0.shape, generator=g).to(device),
                        ddim_timesteps(steps), self.schedule)
        return decode_video(self.vae, z)

    def _val_batch(self) -> dict:
        data = self.dataset("val")
        return torch.utils.data.default_collate([data[i] for i in range(self.config.eval_items)])

    @torch.no_grad()
    def evaluate(self, batches: int = 1, steps: int | None = None) -> dict[str, float]:
        batch = self._val_batch()
        real = batch["clip"]
        fake = self.generate(batch, steps or self.config.eval_steps).cpu()
        first = psnr(fake[:, :, 0], real[:, :, 0]).mean()
        change_fake = (fake[:, :, 1:] - fake[:, :, :-1]).abs().mean()
        change_real = (real[:, :, 1:] - real[:, :, :-1]).abs().mean()
        return {"first_frame_psnr": float(first), "clip_psnr": float(psnr(fake.flatten(1, 2), real.flatten(1, 2)).mean()),
                "frame_change_ratio": float(change_fake / change_real.clamp(min=1e-6))}

    @torch.no_grad()
    def sample(self, out_dir: Path, step: int) -> list[Path]:
        batch = self._val_batch()
        fake = self.generate(batch, self.config.eval_steps).cpu()
        real_u8, fake_u8 = to_uint8(batch["clip"].movedim(1, 2)), to_uint8(fake.movedim(1, 2))
        import numpy as np

        rows = [np.concatenate([real_u8[i], fake_u8[i]], axis=2) for i in range(min(4, fake.shape[0]))]
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"video_{step:06d}.gif"
        write_video(path, np.concatenate(rows, axis=1), fps=8.0)
        return [path]

    def export(self, folder: Path) -> None:
        folder = Path(folder)
        motion_adapter_of(self.model).save_pretrained(folder / "motion_adapter", safe_serialization=True)
        self.first_frame.save_pretrained(folder / "first_frame", safe_serialization=True)
