"""The alignment LoRA (theta_align, EVE section 3.1) on the backbone's spatial attention only.

Target: the query, key, value and output projections of the self- and cross-attention layers in
the backbone's spatial transformer blocks (``...attentions.N.transformer_blocks.M.attn{1,2}``).
The regex excludes the temporal layers (``motion_modules``), whose attention projections have the
same names (dependency probe, gotcha 5), and the ControlNet, which is a separate model.
EVE gives no rank; the ShapeWorld default is 8 and ``lora_alpha`` equals the rank (scale 1).
peft initialises B to zero, so the student equals plug-and-play before alignment.

The same helpers serve the backbone's other LoRAs (a style or subject LoRA, peft adapters named
``style`` / ``subject`` on the same projections): each takes the adapter's name, ``align`` by default.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
from peft import LoraConfig
from peft.tuners.lora import LoraLayer
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
from safetensors.torch import load_file, save_file
from torch import nn

ADAPTER_NAME = "align"
LORA_FILE = "alignment_lora.safetensors"
SPATIAL_ATTENTION = r".*attentions\.\d+\.transformer_blocks\.\d+\.attn[12]\.(to_q|to_k|to_v|to_out\.0)"


def lora_config(rank: int = 8, alpha: float | None = None) -> LoraConfig:
    return LoraConfig(
        r=rank, lora_alpha=alpha if alpha is not None else rank,
        target_modules=SPATIAL_ATTENTION, init_lora_weights="gaussian",
    )


def add_lora(unet: nn.Module, rank: int = 8, alpha: float | None = None,
             adapter: str = ADAPTER_NAME) -> None:
    """Inject a LoRA named ``adapter`` (the alignment LoRA by default) into ``unet`` (a diffusers
    model with ``add_adapter``) on the spatial attention projections."""
    with warnings.catch_warnings():  # a second adapter (style beside align) is intended
        warnings.filterwarnings("ignore", message="Already found a `peft_config`")
        unet.add_adapter(lora_config(rank, alpha), adapter_name=adapter)


def reset_alignment_lora(unet: nn.Module) -> None:
    """Re-initialise the alignment LoRA in place (A Gaussian, B zero): the student equals plug-and-play again."""
    for layer in lora_layers(unet):
        if ADAPTER_NAME in layer.lora_A:
            layer.reset_lora_parameters(ADAPTER_NAME, "gaussian")


def lora_layers(model: nn.Module) -> list[LoraLayer]:
    return [m for m in model.modules() if isinstance(m, LoraLayer)]


def lora_modules(model: nn.Module, adapter: str = ADAPTER_NAME) -> list[nn.Module]:
    """The LoRA A and B layers of ``adapter``, found by module identity (not by parameter name)."""
    return [bank[adapter] for layer in lora_layers(model) for bank in (layer.lora_A, layer.lora_B)
            if adapter in bank]


def lora_parameters(model: nn.Module, adapter: str = ADAPTER_NAME) -> list[nn.Parameter]:
    """The LoRA A and B weights of ``adapter``."""
    return [p for m in lora_modules(model, adapter) for p in m.parameters()]


@contextmanager
def lora_disabled(unet: nn.Module):
    """Run ``unet`` without its LoRAs (the teachers and plug-and-play share the student's backbone)."""
    if not lora_layers(unet):
        yield
        return
    params = [p for layer in lora_layers(unet) for bank in (layer.lora_A, layer.lora_B) for p in bank.parameters()]
    flags = [p.requires_grad for p in params]
    unet.disable_adapters()
    try:
        yield
    finally:
        unet.enable_adapters()
        for p, flag in zip(params, flags):  # peft's enable marks them trainable; keep the caller's
            p.requires_grad_(flag)


@contextmanager
def lora_scaled(unet: nn.Module, scale: float, adapter: str = ADAPTER_NAME):
    """Run ``unet`` with ``adapter``'s LoRA at strength ``scale`` (its output times ``scale``;
    peft's ``LoraLayer.set_scale``, the same knob as diffusers' LoRA scale); 1 restores it after.
    0 gives the model without that LoRA, values between interpolate its low-rank update."""
    layers = [layer for layer in lora_layers(unet) if adapter in layer.scaling]
    if scale == 1.0 or not layers:
        yield
        return
    for layer in layers:
        layer.set_scale(adapter, scale)
    try:
        yield
    finally:
        for layer in layers:
            layer.set_scale(adapter, 1.0)


def lora_adapters(unet: nn.Module) -> list[str]:
    """Names of the LoRA adapters in ``unet``, in the order they were added."""
    names: list[str] = []
    for layer in lora_layers(unet):
        names += [n for n in layer.lora_A if n not in names]
    return names


def activate_adapters(unet: nn.Module, names: list[str]) -> None:
    """Make exactly ``names`` the active LoRAs of ``unet`` (their outputs add up), keeping every
    LoRA weight's ``requires_grad`` as it was (peft marks the adapters it activates trainable)."""
    params = [p for layer in lora_layers(unet) for bank in (layer.lora_A, layer.lora_B) for p in bank.parameters()]
    flags = [p.requires_grad for p in params]
    unet.set_adapters(list(names))
    for p, flag in zip(params, flags):
        p.requires_grad_(flag)


def save_lora(unet: nn.Module, folder: str | Path, dtype: torch.dtype | None = None,
              adapter: str = ADAPTER_NAME, file: str = LORA_FILE) -> Path:
    """Save only the LoRA weights (safetensors) to ``folder/alignment_lora.safetensors`` (or ``file``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = get_peft_model_state_dict(unet, adapter_name=adapter)
    path = folder / file
    save_file({k: v.detach().to(dtype or v.dtype).contiguous().cpu() for k, v in state.items()}, str(path))
    return path


def load_lora(unet: nn.Module, folder: str | Path, rank: int, alpha: float | None = None,
              adapter: str = ADAPTER_NAME, file: str = LORA_FILE) -> None:
    """Inject a LoRA of ``rank`` named ``adapter`` and load its weights; any mismatch raises."""
    if not lora_modules(unet, adapter):
        add_lora(unet, rank, alpha, adapter)
    state = load_file(str(Path(folder) / file))
    state = {k: v.to(dtype=next(unet.parameters()).dtype) for k, v in state.items()}
    result = set_peft_model_state_dict(unet, state, adapter_name=adapter)
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise ValueError(f"LoRA weights do not fit this backbone: unexpected keys {unexpected[:3]}")
    for p in lora_parameters(unet, adapter):  # loaded for inference; training re-enables them explicitly
        p.requires_grad_(False)


def lora_rank_of(state: dict[str, torch.Tensor]) -> int:
    """The rank of a saved LoRA (the leading dim of any lora_A weight)."""
    for key, value in state.items():
        if "lora_A" in key:
            return int(value.shape[0])
    raise ValueError("no lora_A weight in this LoRA file")
