"""Assemble an :class:`EVEModel` from configs (random init) or from loaded parts."""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, ControlNetModel, MotionAdapter, UNet2DConditionModel

from ..diffusion.schedule import NoiseSchedule
from .compose import EVEModel
from .edit_adapter import EditAdapter, SourceBranch, controlnet_from_unet
from .presets import (
    SHAPEWORLD_CONTROLNET, SHAPEWORLD_MOTION, SHAPEWORLD_UNET, SHAPEWORLD_VAE, ModelSpec,
)
from .video_adapter import FirstFrameBranch, motion_unet, new_motion_adapter


def shapeworld_spec() -> ModelSpec:
    from ..world import TASKS

    return ModelSpec(preset="shapeworld", tasks=tuple(TASKS))


def assemble(
    *, vae: AutoencoderKL, text_encoder, unet: UNet2DConditionModel, controlnet: ControlNetModel,
    motion_adapter: MotionAdapter, spec: ModelSpec, schedule: NoiseSchedule,
    first_frame: FirstFrameBranch | None = None, source_branch: SourceBranch | None = None,
) -> EVEModel:
    """Wire loaded or fresh parts together; the motion model copies the backbone's weights.
    ``source_branch``: the edit adapter's optional path for the input frame into the backbone."""
    if first_frame is None:
        first_frame = FirstFrameBranch(
            latent_channels=unet.config.in_channels, out_channels=unet.config.block_out_channels[0]
        )
    motion = motion_unet(unet, motion_adapter)
    return EVEModel(
        vae, text_encoder, unet, EditAdapter(controlnet, spec.cond_space, source_branch), motion, first_frame,
        schedule, spec,
    )


def build_shapeworld(spec: ModelSpec | None = None, seed: int = 0, text_encoder=None) -> EVEModel:
    """The ShapeWorld model with freshly initialised parts (every new branch zero-initialised)."""
    from ..text import MiniLMTextEncoder

    spec = spec or shapeworld_spec()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**SHAPEWORLD_UNET)
    vae = AutoencoderKL(**SHAPEWORLD_VAE)
    controlnet = controlnet_from_unet(unet, len(spec.tasks), **SHAPEWORLD_CONTROLNET)
    adapter = new_motion_adapter(**SHAPEWORLD_MOTION)
    return assemble(
        vae=vae, text_encoder=text_encoder or MiniLMTextEncoder.from_pretrained(), unet=unet,
        controlnet=controlnet, motion_adapter=adapter, spec=spec, schedule=NoiseSchedule(),
    )
