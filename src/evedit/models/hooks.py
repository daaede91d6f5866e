"""Features added to a backbone's first features (``conv_in``'s output) for the length of a call.

The video adapter's first-frame branch and the edit adapter's source branch both condition the
frozen backbone this way: a forward hook that lives only inside a ``with`` block, so one backbone
serves callers with and without a branch, and two branches in one call add up.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def added_to_input(unet: nn.Module, features: torch.Tensor | None):
    """Within the block, ``features`` are added to ``unet.conv_in``'s output (None: nothing)."""
    if features is None:
        yield
        return

    def hook(module, inputs, output):
        if features.shape != output.shape:
            raise ValueError(f"features {tuple(features.shape)} added to the backbone's input do not match "
                             f"its input features {tuple(output.shape)}")
        return output + features.to(output.dtype)

    handle = unet.conv_in.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
