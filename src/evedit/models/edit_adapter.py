"""The image-editing adapter: a ControlNet over the frozen backbone (EVE section 3.1).

It receives the input frame as its condition, the instruction through its own cross-attention, and
a learned task-label embedding (Emu Edit's task conditioning), added to its timestep embedding
through diffusers' ``num_class_embeds``. Frames of a video are processed as a batch
(EVE footnote 1).

Where the input frame enters (``cond_space``):
- ``"latent"`` (ShapeWorld): the codec latent of the frame, at latent resolution, so the
  condition embedding is a single conv block;
- ``"pixel"`` (ControlNet v1.1 ip2p and other SD ControlNets): the RGB frame in [0, 1] at image
  resolution.
"""

from __future__ import annotations

import torch
from diffusers import ControlNetModel, UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

COND_SPACES = ("latent", "pixel")


def _rebuilt(controlnet: ControlNetModel, is_new, drop: str | None = None, **changes) -> ControlNetModel:
    """A ControlNet built from ``controlnet``'s config with ``changes``, carrying its weights over
    (those under the ``drop`` prefix left out); every weight it lacks must satisfy ``is_new(key)``."""
    built = ControlNetModel.from_config({**controlnet.config, **changes})
    state = {k: v for k, v in controlnet.state_dict().items() if drop is None or not k.startswith(drop)}
    missing, unexpected = built.load_state_dict(state, strict=False)
    assert not unexpected and all(is_new(k) for k in missing), (missing, unexpected)
    return built


def controlnet_from_unet(
    unet: UNet2DConditionModel, num_tasks: int, *, conditioning_channels: int = 4,
    conditioning_embedding_out_channels: tuple[int, ...] = (16,),
) -> ControlNetModel:
    """A ControlNet initialised from the backbone's down and mid blocks, plus a task embedding.

    ``ControlNetModel.from_unet`` copies the encoder; the task embedding (``num_class_embeds``) is
    new and zero-initialised, so before training the task label changes nothing, and the
    ControlNet's zero convolutions make its residuals exactly zero.
    """
    base = ControlNetModel.from_unet(
        unet, conditioning_embedding_out_channels=conditioning_embedding_out_channels,
        conditioning_channels=conditioning_channels,
    )
    if num_tasks <= 0:
        return base
    controlnet = _rebuilt(base, lambda k: k == "class_embedding.weight", num_class_embeds=num_tasks)
    nn.init.zeros_(controlnet.class_embedding.weight)
    return controlnet


def text_at_every_level(controlnet: ControlNetModel) -> ControlNetModel:
    """The ControlNet with cross-attention to the instruction in every down block.

    ``from_unet`` copies the backbone's block types; the ShapeWorld backbone has no attention at
    its full-resolution level, so there the ControlNet's residual is blind to the instruction and
    can only copy the input frame's colours into the finest skip connection. This adds that level's
    attention (a new ``Transformer2DModel`` per block, its output projection zero-initialised), so
    the returned network equals the given one until it trains. (evedit's choice for small objects,
    which span 1 to 2 positions at the coarser levels; the paper's SD adapter has attention there.)
    A ControlNet with attention everywhere already is returned as it is.
    """
    types = list(controlnet.config.down_block_types)
    if all(t.startswith("CrossAttn") for t in types):
        return controlnet
    upgraded = _rebuilt(controlnet, lambda k: ".attentions." in k,
                        down_block_types=["CrossAttn" + t if not t.startswith("CrossAttn") else t for t in types])
    for i, t in enumerate(types):
        if not t.startswith("CrossAttn"):
            for attention in upgraded.down_blocks[i].attentions:
                nn.init.zeros_(attention.proj_out.weight)
                nn.init.zeros_(attention.proj_out.bias)
    return upgraded.to(dtype=controlnet.dtype)


def instruction_in_time_embedding(controlnet: ControlNetModel, num_heads: int = 8) -> ControlNetModel:
    """The ControlNet with the pooled instruction added to its timestep embedding.

    diffusers' own ``addition_embed_type="text"`` (``TextTimeEmbedding``: attention pooling over
    the instruction's token states, a projection and a LayerNorm) is added to the embedding every
    resnet of the ControlNet receives, beside the task label: one global "what to do" signal per
    block, which the cross-attention reaches only through a few small query maps. The LayerNorm's
    gain and bias start at zero, so the returned network equals the given one until it trains.
    (evedit's choice, not the paper's: EVE's adapter is InstructPix2Pix-like and says nothing of
    pooled text; benchmarks/results/proxy_edit_adapter_instruction.md has the equal-time runs.)
    A ControlNet that already has it is returned as it is.
    """
    if controlnet.config.addition_embed_type == "text":
        return controlnet
    if controlnet.config.addition_embed_type is not None:
        raise ValueError(f"the ControlNet already has addition_embed_type={controlnet.config.addition_embed_type!r}")
    upgraded = _rebuilt(controlnet, lambda k: k.startswith("add_embedding."),
                        addition_embed_type="text", addition_embed_type_num_heads=num_heads)
    nn.init.zeros_(upgraded.add_embedding.norm2.weight)
    nn.init.zeros_(upgraded.add_embedding.norm2.bias)
    return upgraded.to(dtype=controlnet.dtype)


def wider_condition(controlnet: ControlNetModel, channels: int) -> ControlNetModel:
    """The ControlNet with ``channels`` features in its condition embedding (latent condition).

    With the condition at latent resolution, diffusers' ``ControlNetConditioningEmbedding`` is one
    3x3 conv into ``conditioning_embedding_out_channels[0]`` features, a SiLU and the zero conv
    into the first block's width. SD's 16 features take 3 RGB channels; a 16-channel DC latent
    through 16 features and a SiLU has no room to spare. Widening copies the old conv's filters into
    the first features and gives the new ones fresh filters whose outgoing zero-conv weights are
    zero, so the returned network equals the given one until it trains. (evedit's choice for wide
    latents; benchmarks/results/proxy_edit_adapter_dc_condition.md has the equal-time runs.)
    """
    old = tuple(controlnet.config.conditioning_embedding_out_channels)
    if len(old) != 1:
        raise ValueError("wider_condition takes a latent-space condition (one embedding level); "
                         f"this ControlNet's embedding has {old}")
    if channels == old[0]:
        return controlnet
    if channels < old[0]:
        raise ValueError(f"the condition embedding has {old[0]} features; it can widen, not narrow, to {channels}")
    prefix = "controlnet_cond_embedding."
    wider = _rebuilt(controlnet, lambda k: k.startswith(prefix), drop=prefix,
                     conditioning_embedding_out_channels=(channels,)).to(dtype=controlnet.dtype)
    src, dst = controlnet.controlnet_cond_embedding, wider.controlnet_cond_embedding
    with torch.no_grad():
        dst.conv_in.weight[: old[0]] = src.conv_in.weight
        dst.conv_in.bias[: old[0]] = src.conv_in.bias
        dst.conv_out.weight.zero_()
        dst.conv_out.weight[:, : old[0]] = src.conv_out.weight
        dst.conv_out.bias.copy_(src.conv_out.bias)
    return wider


def deeper_attention(controlnet: ControlNetModel, layers: int) -> ControlNetModel:
    """The ControlNet with ``layers`` transformer blocks in each of its attention layers.

    The ShapeWorld ControlNet has one transformer block (self-attention, cross-attention to the
    instruction, feed-forward) per level, 32 to 64 features wide: it fits its own training edits
    little better than held-out ones (benchmarks/results/edit_fidelity.md, "One GPU run"), so it
    underfits rather than lacks data. Deepening adds blocks after the existing ones (the residual
    count the backbone receives is unchanged); each new block's attention output projections and
    last feed-forward layer start at zero, so it is the identity and the returned network equals
    the given one until it trains. (evedit's choice for capacity on a frozen backbone; the paper's
    SD adapter has SD's depth.)
    """
    old = controlnet.config.transformer_layers_per_block
    if not isinstance(old, int):
        raise ValueError(f"deeper_attention takes one depth for every level; this ControlNet has {old}")
    if layers == old:
        return controlnet
    if layers < old:
        raise ValueError(f"the attention layers have {old} blocks; they can deepen, not shrink, to {layers}")

    def is_new(key: str) -> bool:
        _, found, rest = key.partition(".transformer_blocks.")
        return bool(found) and int(rest.split(".")[0]) >= old

    deeper = _rebuilt(controlnet, is_new, transformer_layers_per_block=layers).to(dtype=controlnet.dtype)
    with torch.no_grad():
        for module in deeper.modules():
            for block in list(getattr(module, "transformer_blocks", []))[old:]:
                for out in (block.attn1.to_out[0], block.attn2.to_out[0], block.ff.net[-1]):
                    out.weight.zero_()
                    out.bias.zero_()
    return deeper


class SourceBranch(ModelMixin, ConfigMixin):
    """Zero-initialised conv from the input frame's latent to the backbone's first features.

    A ControlNet only adds residuals to the skip connections and the middle of a backbone whose
    own path sees nothing but the noisy latent, so every pixel the edit should keep has to be
    redrawn from those residuals (benchmarks/results/edit_fidelity.md: 2.3 to 9.4 dB lost outside
    the edit's footprint). InstructPix2Pix instead feeds the input latent to the UNet's first conv.
    This branch does that without touching the frozen backbone: its features are added to the
    backbone's ``conv_in`` output (as the video adapter's :class:`FirstFrameBranch` does), so the
    backbone's whole path starts from the input frame. Zero-initialised and without bias, it changes
    nothing until it trains, and an all-zero source (ip2p's image dropout) adds exactly nothing.
    (evedit's choice for a frozen backbone, not the paper's: EVE's adapter is a ControlNet alone;
    benchmarks/results/proxy_edit_adapter_source_branch.md has the equal-time runs.)
    """

    @register_to_config
    def __init__(self, latent_channels: int = 4, out_channels: int = 32):
        super().__init__()
        self.conv = nn.Conv2d(latent_channels, out_channels, kernel_size=3, padding=1, bias=False)
        nn.init.zeros_(self.conv.weight)

    def forward(self, source: torch.Tensor) -> torch.Tensor:
        return self.conv(source)


class EditAdapter(nn.Module):
    """ControlNet residuals for frames stacked as a batch, and optionally a :class:`SourceBranch`.

    Call with ``x`` (N, C, h, w) noisy latents, ``t`` (N,), ``instruction`` (N, L, D) hidden
    states, ``source`` (N, C', H', W') the input frames in ``cond_space``, and ``task`` (N,) labels
    (ignored when the ControlNet has no task embedding). Returns ``(down_residuals, mid_residual)``;
    :meth:`input_features` gives what the source branch adds to the backbone's first features.
    """

    def __init__(self, controlnet: ControlNetModel, cond_space: str = "latent",
                 source_branch: SourceBranch | None = None):
        super().__init__()
        if cond_space not in COND_SPACES:
            raise ValueError(f"cond_space must be one of {COND_SPACES}, got {cond_space!r}")
        if source_branch is not None and cond_space != "latent":
            raise ValueError("a source branch takes the input frame's latent; it needs cond_space='latent'")
        self.controlnet = controlnet
        self.cond_space = cond_space
        self.source_branch = source_branch

    def input_features(self, source: torch.Tensor) -> torch.Tensor | None:
        """(N, C, h, w) features for the backbone's ``conv_in`` output, or None without a branch."""
        return None if self.source_branch is None else self.source_branch(source)

    @property
    def uses_task(self) -> bool:
        return self.controlnet.class_embedding is not None

    def forward(self, x, t, instruction, source, task=None, scale: float = 1.0):
        labels = None
        if self.uses_task:
            if task is None:
                raise ValueError("this edit adapter is conditioned on a task label; pass `task`")
            labels = task.long()
        down, mid = self.controlnet(
            x, t, encoder_hidden_states=instruction, controlnet_cond=source,
            conditioning_scale=scale, class_labels=labels, return_dict=False,
        )
        return down, mid


def controlnet_condition_size(controlnet: ControlNetModel, latent_size: int) -> int:
    """Spatial size the condition must have for latents of ``latent_size``."""
    n_down = len(controlnet.config.conditioning_embedding_out_channels) - 1
    return latent_size * (2**n_down)


__all__ = ["EditAdapter", "SourceBranch", "controlnet_from_unet", "controlnet_condition_size", "text_at_every_level",
           "instruction_in_time_embedding", "wider_condition", "deeper_attention", "COND_SPACES"]


