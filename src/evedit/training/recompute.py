"""Activation checkpointing for the stages' models (the recipe's ``train: gradient_checkpointing``).

Every diffusers model (``ModelMixin`` with ``_supports_gradient_checkpointing``) and transformers
model (``PreTrainedModel.supports_gradient_checkpointing``) a stage uses, trained or frozen, keeps
only its blocks' inputs in the forward pass and recomputes the blocks in the backward pass. Frozen
models count too: in the edit adapter the gradient reaches the ControlNet through the frozen UNet,
whose activations are most of the memory. Both libraries use PyTorch's non-reentrant checkpoint,
which passes gradients through blocks whose own parameters are frozen, and restore the RNG state
for the recomputation, so the loss and the gradients are those of a run without it (to float
rounding: tests/test_training.py checks it). It costs about one more forward pass per step
(``benchmarks/results/train.md``). transformers recomputes only in train mode, so a frozen text
encoder (kept in eval mode) is left as it is.
"""

from __future__ import annotations

from torch import nn


def _supports(module: nn.Module) -> str | None:
    """``"diffusers"``, ``"transformers"`` or None: which library's switch ``module`` has."""
    from diffusers.models.modeling_utils import ModelMixin
    from transformers import PreTrainedModel

    if isinstance(module, ModelMixin) and getattr(module, "_supports_gradient_checkpointing", False):
        return "diffusers"
    if isinstance(module, PreTrainedModel) and getattr(module, "supports_gradient_checkpointing", False):
        return "transformers"
    return None


def enable_activation_checkpointing(modules: dict[str, nn.Module]) -> list[str]:
    """Switch recomputation on in every supporting model inside ``modules`` (outermost ones only);
    return their names (``"adapter.controlnet"``, ``"unet"``, ...) for the run's first lines."""
    done: set[int] = set()
    names = []
    for top, module in modules.items():
        for path, sub in module.named_modules():
            kind = None if id(sub) in done else _supports(sub)
            if kind is None:
                continue
            if kind == "diffusers":
                sub.enable_gradient_checkpointing()
            else:
                sub.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            done.update(id(m) for m in sub.modules())
            names.append(f"{top}.{path}" if path else top)
    return names


__all__ = ["enable_activation_checkpointing"]
