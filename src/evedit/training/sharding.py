"""FSDP for ``evedit train``: the trained modules' large blocks sharded over the processes.

Asked for by accelerate's FSDP config (``configs/accelerate/fsdp.yaml``: block classes from its
``fsdp_transformer_layer_cls_to_wrap``, ``fsdp_reshard_after_forward``, its mixed-precision policy)
or, on any multi-process run, by the recipe's ``train.shard: fsdp`` (CPU processes over gloo
included, where accelerate itself never shards). One process shards nothing.

How (decided here; the issue asked for FSDP, not for a design): the stages call their own modules,
so accelerate's ``prepare`` (which returns a wrapper) cannot be used; FSDP2's ``fully_shard``
instead turns modules into sharded ones *in place*. The loop applies it, bottom-up, to every block
of a trained module whose class is listed (by default the diffusers blocks that hold nearly all
of a UNet's, ControlNet's or motion adapter's weights: ``BasicTransformerBlock``,
``ResnetBlock2D``, ``TransformerTemporalModel``), each called through its ``forward`` by its parent.
The rest of a trained module (stems, embeddings, heads) stays whole on every process and is
averaged by the loop like a data-parallel run; frozen parts (backbone, text encoder, codec) are
never sharded. FDD (``evedit align``) trains a LoRA and the critic heads, a few MB: it runs
data-parallel under an FSDP config and says so.

Sharded parameters are DTensors: their gradients arrive averaged (reduce-scatter), and every whole
value (checkpoint weights, EMA, optimizer state, the export) is gathered by all processes together
(:func:`full`, the state-dict hooks below), so those steps run on every process while only the main
one writes. Checkpoints hold whole tensors, as an unsharded run's do: a sharded run resumes under
any process count, sharded or not.
"""

from __future__ import annotations

import math
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.distributed.tensor import DTensor, distribute_tensor
from torch.distributed.tensor.experimental import implicit_replication

BLOCKS = ("BasicTransformerBlock", "ResnetBlock2D", "TransformerTemporalModel")


@dataclass
class ShardSettings:
    blocks: tuple[str, ...] = BLOCKS  # class names of the blocks sharded
    reshard_after_forward: bool = True  # ZeRO-3-like; False keeps the gathered weights until backward
    mp_policy: Any = None  # FSDP2's MixedPrecisionPolicy, or None (the loop's autocast alone)


def _reshard_flag(value: Any) -> bool:
    """accelerate's ``reshard_after_forward``: a bool (FSDP2) or an FSDP1 sharding strategy (an
    ``fsdp_version: 1`` config is run with FSDP2 all the same: SHARD_GRAD_OP -> False)."""
    if isinstance(value, bool):
        return value
    return "SHARD_GRAD_OP" not in str(value) and "NO_SHARD" not in str(value)


def shard_settings(acc, shard: str) -> ShardSettings | None:
    """What to shard in this run: accelerate's FSDP plugin, else ``train.shard``; None: nothing."""
    if acc.num_processes == 1:
        return None
    if acc.distributed_type.value == "FSDP":
        from torch.distributed.fsdp import MixedPrecisionPolicy

        plugin = acc.state.fsdp_plugin
        names = tuple(getattr(plugin, "transformer_cls_names_to_wrap", None) or BLOCKS)
        policy = getattr(plugin, "mixed_precision_policy", None)
        reshard = getattr(plugin, "reshard_after_forward", None)  # FSDP1 configs: a sharding strategy
        reshard = getattr(plugin, "sharding_strategy", True) if reshard is None else reshard
        return ShardSettings(names, _reshard_flag(reshard), policy if isinstance(policy, MixedPrecisionPolicy) else None)
    return ShardSettings() if shard == "fsdp" else None


def shard_blocks(modules: list[nn.Module], settings: ShardSettings) -> list[nn.Module]:
    """``fully_shard`` every listed block of ``modules``, innermost first; returns the blocks."""
    from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

    kwargs = {"reshard_after_forward": settings.reshard_after_forward,
              "mp_policy": settings.mp_policy or MixedPrecisionPolicy()}
    done: list[nn.Module] = []
    for module in modules:
        for block in reversed(list(module.modules())):  # reversed pre-order: children first
            if type(block).__name__ in settings.blocks and not isinstance(block, FSDPModule):
                fully_shard(block, **kwargs)
                block.register_state_dict_post_hook(_whole_state)
                block.register_load_state_dict_pre_hook(_sharded_state)
                done.append(block)
    return done


def shard_trainable(acc, modules: list[nn.Module], settings: ShardSettings) -> tuple[list[nn.Module], str]:
    """Give every process rank 0's values, then shard the blocks; returns them and a log line."""
    from .distributed import broadcast_parameters  # (distributed -> checkpoint -> this module)

    broadcast_parameters(acc, [p for m in modules for p in m.parameters()])
    blocks = shard_blocks(modules, settings)
    kinds = sorted({type(b).__name__.removeprefix("FSDP") for b in blocks})  # FSDP renames the class
    if blocks:
        return blocks, f"FSDP: {len(blocks)} blocks sharded ({', '.join(kinds)})."
    return blocks, (f"FSDP: no block of the trained modules is one of {', '.join(settings.blocks)}; "
                    "they train data-parallel.")


@contextmanager
def main_or_scratch(acc, folder: Path):
    """``folder`` on the main process; on the others (under FSDP every process runs the stage's
    sampling and export) a scratch folder, deleted afterwards."""
    if acc.is_main_process:
        yield folder
    else:
        with tempfile.TemporaryDirectory(prefix="evedit-rank") as scratch:
            yield Path(scratch)


# ---- whole values of sharded tensors ---------------------------------------------------------
def is_sharded(tensor: Any) -> bool:
    return isinstance(tensor, DTensor)


def full(tensor: Any) -> Any:
    """A DTensor's whole value (a collective: every process calls it); anything else as it is."""
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def local(tensor: torch.Tensor) -> torch.Tensor:
    """This process's part of a DTensor (no communication); a plain tensor as it is."""
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def like(value: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """A whole tensor laid out as ``param`` (its shard of it, on every process; no communication)."""
    if isinstance(param, DTensor) and not isinstance(value, DTensor):
        return distribute_tensor(value.to(param.device), param.device_mesh, param.placements, src_data_rank=None)
    return value


def full_tree(obj: Any) -> Any:
    """``obj`` (dicts, lists, tensors: an optimizer's state dict) with every DTensor made whole."""
    if isinstance(obj, dict):
        return {k: full_tree(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(full_tree(v) for v in obj)
    return full(obj)


def shard_optimizer_state(optimizer) -> None:
    """After loading whole optimizer state: lay each tensor of a sharded parameter out as it."""
    inner = getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer
    for group in inner.param_groups:
        for param in group["params"]:
            state = inner.state.get(param, {})
            for key, value in state.items():
                if torch.is_tensor(value) and value.shape == param.shape:
                    state[key] = like(value, param)


def _whole_state(module, state_dict, prefix, _meta) -> None:
    for key in [k for k in state_dict if k.startswith(prefix)]:
        state_dict[key] = full(state_dict[key])


def _sharded_state(module, state_dict, prefix, *_args) -> None:
    for name, param in module.named_parameters(prefix=prefix.rstrip(".")):
        if name in state_dict:
            state_dict[name] = like(state_dict[name], param)


def trained_state_bytes(params: list[torch.Tensor], optimizers: list, ema: Any = None) -> int:
    """Bytes this process holds for training ``params``: its part of the weights, of their gradients
    (laid out as the weights), of the optimizers' state and of the EMA shadows."""
    def held(tensors):
        return sum(local(t).numel() * t.element_size() for t in tensors)

    states = [v for opt in optimizers for st in getattr(opt, "optimizer", opt).state.values()
              for v in st.values() if torch.is_tensor(v)]
    return 2 * held(params) + held(states) + held(ema.shadow_params if ema is not None else [])


# ---- gradient norm over sharded and whole parameters -------------------------------------------
def clip_gradients(params: list[nn.Parameter], max_norm: float) -> float:
    """Clip the gradients of ``params`` (sharded or not) to a global L2 norm (``max_norm`` 0: only
    measure it); returns the norm before clipping.

    ``torch.nn.utils.clip_grad_norm_`` takes one kind of tensor at a time, so with sharded
    parameters the norm of each kind is taken by torch (the sharded one over every process's
    shard), combined here, and each kind clipped by torch with the combined norm.
    """
    limit = max_norm if max_norm > 0 else float("inf")
    if not any(is_sharded(p) for p in params):
        return float(torch.nn.utils.clip_grad_norm_(params, limit))
    kinds = [[p for p in params if is_sharded(p) and p.grad is not None],
             [p for p in params if not is_sharded(p) and p.grad is not None]]
    norms = [float(full(torch.nn.utils.get_total_norm([p.grad for p in kind]))) for kind in kinds if kind]
    total = math.sqrt(sum(n * n for n in norms))
    with implicit_replication():
        for kind in kinds:
            if kind:
                torch.nn.utils.clip_grads_with_norm_(kind, limit, torch.tensor(total))
    return total
