"""The video adapter: temporal layers over the frozen backbone, conditioned on a first frame.

- Temporal layers: diffusers' :class:`~diffusers.MotionAdapter` inside
  :class:`~diffusers.UNetMotionModel` (AnimateDiff). A fresh adapter has its temporal
  transformers' output projections zeroed here, so the video model starts equal to the backbone
  applied frame by frame (AnimateDiff's zero init; diffusers does not zero them itself).
- First-frame conditioning (Emu Video, EVE section 4): :class:`FirstFrameBranch` maps the clean
  first-frame latent plus a mask channel (1 on frame 0, 0 elsewhere) through one zero-initialised
  conv and adds the result to the backbone's ``conv_in`` output through a forward hook
  (:func:`~evedit.models.hooks.added_to_input`), so the diffusers forward is composed, not forked.
  Emu Video zero-pads the frame to the other positions (``every_frame=False``): those frames see
  it only through the temporal layers, and with the spatial layers frozen the trained branch is
  nearly ignored (a different first frame moves EVE's other frames by 0.01 to 0.1 grey levels,
  ``benchmarks/results/first_frame_path.md``). ``every_frame=True`` hands the latent to every
  frame, the mask still marking frame 0: Stable Video Diffusion's replication of the conditioning
  latent (Blattmann et al. 2023), not EVE's; an option, off by default (the proxy in that file).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from einops import rearrange
from torch import nn

from .hooks import added_to_input


class FirstFrameBranch(ModelMixin, ConfigMixin):
    """Zero-initialised conv from (first-frame latent, mask) to the backbone's first features."""

    @register_to_config
    def __init__(self, latent_channels: int = 4, out_channels: int = 32, every_frame: bool = False):
        super().__init__()
        # no bias: frames without a given frame (mask 0, latent 0) receive exactly nothing
        self.conv = nn.Conv2d(latent_channels + 1, out_channels, kernel_size=3, padding=1, bias=False)
        nn.init.zeros_(self.conv.weight)

    def forward(self, first_frame: torch.Tensor, num_frames: int,
                keep: torch.Tensor | None = None) -> torch.Tensor:
        """``first_frame`` (B, C, h, w) -> features (B*F, out, h, w), frames folded batch-major:
        at frame 0 only, or (``every_frame``) at every frame.

        ``keep`` (B,) in {0, 1} switches the conditioning off per item (frame and mask both 0,
        so those items receive exactly nothing): training mixes conditioned and free items.
        """
        b, c, h, w = first_frame.shape
        cond = first_frame.new_zeros(b, c + 1, num_frames, h, w)  # (B, C+1, F, h, w)
        if self.config.every_frame:
            cond[:, :c] = first_frame.unsqueeze(2)  # every frame sees it; the mask marks frame 0
        else:
            cond[:, :c, 0] = first_frame
        cond[:, c, 0] = 1.0
        if keep is not None:
            cond = cond * keep.to(cond).view(-1, 1, 1, 1, 1)
        return self.conv(rearrange(cond, "b c f h w -> (b f) c h w"))


class FirstFrameHook:
    """Adds the branch's features to ``unet.conv_in``'s output while a condition is set."""

    def __init__(self, unet: UNetMotionModel, branch: FirstFrameBranch):
        self.unet, self.branch = unet, branch

    @contextmanager
    def condition(self, first_frame: torch.Tensor | None, num_frames: int,
                  keep: torch.Tensor | None = None):
        """Within the block, backbone calls are conditioned on ``first_frame`` (None: not)."""
        features = None if first_frame is None else self.branch(first_frame, num_frames, keep)
        with added_to_input(self.unet, features):
            yield


def new_motion_adapter(**config) -> MotionAdapter:
    """A fresh MotionAdapter whose temporal blocks are the identity (zeroed output projections)."""
    adapter = MotionAdapter(**config)
    for module in adapter.modules():
        proj_out = getattr(module, "proj_out", None)
        if isinstance(proj_out, nn.Linear):
            nn.init.zeros_(proj_out.weight)
            nn.init.zeros_(proj_out.bias)
    return adapter


def motion_unet(unet: UNet2DConditionModel, adapter: MotionAdapter) -> UNetMotionModel:
    """The backbone's weights with the adapter's temporal layers (a copy; the 2D UNet is kept)."""
    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # from_unet2d warns about an fp32 cast it does itself
    try:
        model = UNetMotionModel.from_unet2d(unet, adapter)
    finally:
        diffusers_logging.set_verbosity(level)
    return model if model.device == unet.device else model.to(unet.device)


def motion_adapter_of(model: UNetMotionModel) -> MotionAdapter:
    """Extract the temporal layers as a standalone MotionAdapter (to save them on their own)."""
    c = model.config
    adapter = MotionAdapter(
        block_out_channels=c.block_out_channels, motion_layers_per_block=c.layers_per_block,
        motion_transformer_layers_per_block=c.temporal_transformer_layers_per_block,
        motion_transformer_layers_per_mid_block=c.temporal_transformer_layers_per_mid_block,
        motion_num_attention_heads=c.motion_num_attention_heads,
        motion_norm_num_groups=c.norm_num_groups, motion_max_seq_length=c.motion_max_seq_length,
        use_motion_mid_block=c.use_motion_mid_block,
    )
    state = {k: v for k, v in model.state_dict().items() if "motion_modules." in k}
    adapter.load_state_dict(state)
    return adapter.to(device=model.device)
