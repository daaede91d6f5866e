"""Style and subject LoRAs on the frozen backbone: the DreamBooth-LoRA recipe.

``evedit train style-lora`` and ``evedit train subject-lora`` train a peft LoRA on the backbone's
spatial attention projections (to_q, to_k, to_v, to_out.0 of every self- and cross-attention,
the targets of diffusers' ``train_dreambooth_lora.py`` and of the alignment LoRA) with the
backbone's own diffusion loss (Ruiz et al. 2023, Hu et al. 2022); codec, text encoder and backbone
stay frozen. Captions carry a rare token that calls the style or subject.

Data (``data:``):
- ``kind: shapeworld``: the world draws both exactly (:mod:`evedit.world.groups`): zwx mosaics of
  its scenes (style) or scenes with the sks star (subject). ``prior_prob`` of the training items
  are plain frames with plain captions: DreamBooth's prior preservation, done by mixing (decided
  here: the world renders the prior class exactly, so no generated class images are needed);
- ``kind: folder``: your images with a captions table (choose your token and put it in the
  captions); prior preservation then is yours to add as plain images in the same folder.

Export: the LoRA alone, ``<adapter>_lora.safetensors`` (peft keys), and ``lora.json`` (rank,
alpha, adapter name, token); :func:`evedit.models.lora.load_lora` reads it onto any backbone of the
same layout. EVE's "Additional Adapter Combinations" align such a LoRA with the edit adapter.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from ...diffusion.schedule import NoiseSchedule
from ...errors import EveditError
from ...models.lora import add_lora, lora_disabled, lora_modules, save_lora
from ...models.token_lora import PASS_STEPS, PASS_STRENGTH, TOKEN_SCALE
from ...world import SPLITS, WorldConfig
from ...world.datasets import image_tensor
from ...world.groups import (STYLE_TOKEN, SUBJECT_TOKEN, StyleDataset, SubjectDataset, style_score, subject_edit,
                             subject_phrase, subject_score)
from ..config import structured
from ..data import DataConfig, image_caption_dataset
from .common import load_unet, load_vae, text_encoder, to_uint8
from .t2i import T2IStage, resolve_vae_folder


@dataclass
class LoRAStageConfig:
    vae_path: str = "runs/codec/export/vae"  # the backbone's codec
    unet_path: str = "runs/t2i/export/unet"  # the frozen backbone the LoRA sits on
    data: DataConfig = field(default_factory=DataConfig)  # shapeworld (the world's style/subject) or folder
    rank: int = 8  # diffusers' DreamBooth-LoRA default is 4; 8 as the alignment LoRA
    alpha: Optional[float] = None  # LoRA scale alpha / rank; None: alpha = rank
    prior_prob: float = 0.25  # share of plain (prior-preserving) training items, kind shapeworld
    caption_dropout: float = 0.1  # as the backbone was trained: keeps classifier-free guidance working
    eval_items: int = 32  # validation items of the loss (and generations of the style score)
    eval_batch_size: int = 32
    sample_items: int = 8
    sample_steps: int = 25
    guidance: float = 4.0
    seed: int = 0
    snr_gamma: float = 0.0
    # ShapeWorld settings of the frames (the backbone's world, e.g. {small_px: 20, large_px: 24} for
    # 0.4.14's); {}: the preset. Training, validation and the subject score's edits are drawn in it.
    world: dict = field(default_factory=dict)


class _LoRAStage(T2IStage):
    """A LoRA named ``adapter`` on a loaded backbone; loss, validation and sample grids are the t2i
    stage's (validation captions carry the token)."""

    adapter = "style"
    token = STYLE_TOKEN
    world = StyleDataset

    def __init__(self, config: LoRAStageConfig | None = None):
        self.config = c = config or LoRAStageConfig()
        self.vae = load_vae(resolve_vae_folder(c.vae_path))
        self.text = text_encoder()
        self.unet = load_unet(c.unet_path)
        if self.unet.config.in_channels != self.vae.config.latent_channels:
            raise EveditError(f"The backbone '{c.unet_path}' takes {self.unet.config.in_channels}-channel "
                              f"latents but the codec '{c.vae_path}' makes {self.vae.config.latent_channels}.")
        add_lora(self.unet, c.rank, c.alpha, self.adapter)
        self.lora = nn.ModuleList(lora_modules(self.unet, self.adapter))
        self.lora.requires_grad_(True)
        self.schedule = NoiseSchedule()
        self._val: dict | None = None

    def world_config(self) -> WorldConfig:
        """The world the ShapeWorld frames are drawn in (``stage.world``; the preset when unset)."""
        return WorldConfig(**self.config.world)

    @classmethod
    def from_config(cls, data: dict) -> "_LoRAStage":
        return cls(structured(LoRAStageConfig, data, f"stage section for '{cls.name}'"))

    def trainable_modules(self) -> list[nn.Module]:
        return [self.lora]

    def dataset(self, split: str):
        d = self.config.data
        if d.kind == "store":
            raise EveditError(f"Stage {self.name} reads images with captions (data kind 'shapeworld' or "
                              "'folder'), not an encoded store.")
        if d.kind == "shapeworld":
            train = split == "train"
            return self.world(split, length=d.train_items if train else d.val_items,
                              prior_prob=self.config.prior_prob if train else 0.0, config=self.world_config())
        return image_caption_dataset(d, split)

    def export(self, folder: Path) -> None:
        folder = Path(folder)
        save_lora(self.unet, folder, adapter=self.adapter, file=f"{self.adapter}_lora.safetensors")
        info = {"adapter": self.adapter, "rank": self.config.rank,
                "alpha": self.config.alpha if self.config.alpha is not None else self.config.rank,
                "token": self.token, "unet_path": self.config.unet_path, "world": dict(self.config.world)}
        (folder / "lora.json").write_text(json.dumps(info, indent=2) + "\n")


class StyleLoRAStage(_LoRAStage):
    """``style-lora``: the zwx mosaic (ShapeWorld) or your style's images."""

    name = "style-lora"
    _score_off: float | None = None

    @torch.no_grad()
    def evaluate(self, batches: int | None = None) -> dict[str, float]:
        """Validation loss, and the style score (:func:`~evedit.world.groups.style_score`, dB) of
        generations for validation captions with the LoRA on and off (ShapeWorld data only)."""
        out = super().evaluate(batches)
        if self.config.data.kind != "shapeworld":
            return out
        batch, c = self._val_batch(), self.config
        captions = list(batch["caption"][: c.eval_items])
        size = batch["image"].shape[-1]
        out["style_score"] = style_score(to_uint8(self.generate(captions, c.sample_steps, size, c.seed)))
        if self._score_off is None:  # the frozen backbone's figure: the same at every evaluation
            with lora_disabled(self.unet):
                self._score_off = style_score(to_uint8(self.generate(captions, c.sample_steps, size, c.seed)))
        out["style_score_off"] = self._score_off
        return out


class SubjectLoRAStage(_LoRAStage):
    """``subject-lora``: the sks star (ShapeWorld) or your subject's images."""

    name = "subject-lora"
    adapter = "subject"
    token = SUBJECT_TOKEN
    world = SubjectDataset
    _score_off: float | None = None

    @torch.no_grad()
    def evaluate(self, batches: int | None = None) -> dict[str, float]:
        """Validation loss, and the subject score (:func:`~evedit.world.groups.subject_score`) the
        backbone keeps of the exact result of "replace the X with the sks star" (first frames of
        ``eval_items`` validation subject edits) when it passes over it as the subject teacher of a
        group does: SDEdit at the group's strength, steps and CFG
        (:mod:`evedit.models.token_lora`) on the trigger phrase alone, with the LoRA on and off
        (ShapeWorld data only). It is the ``truth-pass`` row of ``benchmarks/group_edit.py``, on
        validation frames."""
        out = super().evaluate(batches)
        if self.config.data.kind != "shapeworld":
            return out
        start, stop = SPLITS["val"]
        world = self.world_config()
        edits = [subject_edit(seed, world) for seed in range(start, min(stop, start + self.config.eval_items))]
        frames = torch.stack([image_tensor(e.edited_clip[0]) for e in edits])

        def score() -> float:
            images = self.generate([subject_phrase()] * len(edits), PASS_STEPS, frames.shape[-1], self.config.seed,
                                   start=frames, strength=PASS_STRENGTH, guidance=TOKEN_SCALE)
            return float(np.mean([subject_score(img[None], e.subject) for img, e in zip(to_uint8(images), edits)]))

        out["subject_score"] = score()
        if self._score_off is None:  # the frozen backbone's figure: the same at every evaluation
            with lora_disabled(self.unet):
                self._score_off = score()
        out["subject_score_off"] = self._score_off
        return out
