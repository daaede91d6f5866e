"""Checkpoints without pickles: tensors in safetensors, structure and scalars in JSON.

A checkpoint is the folder ``out/checkpoints/step_XXXXXX/``::

    trainable.safetensors      weights of the trained modules, keyed "<module name>.<param>" (a
                               stage that trains a few parameters of a large module, FDD's LoRA,
                               stores just those parameters under the same keys)
    ema.safetensors            EMA shadow weights under the same keys (when EMA is on)
    optimizer.safetensors/json optimizer state: tensors flattened, structure + scalars in JSON
                               (``optimizer_<turn>.*`` per turn for a stage with several optimizers)
    scaler.json                fp16 GradScaler state (fp16 only)
    rng_<rank>.safetensors/json every RNG of process <rank> (python, numpy, torch, cuda)
    state.json                 step, samples seen (the data position), EMA scalars, seed, format
    config.yaml                the resolved config
    manifest.json              size and sha256 of every file above, written last (resume verifies it)

accelerate's ``save_state`` would pickle the optimizer (``optimizer.bin``) and the RNG states
(``random_states_0.pkl``), which the project's rule against pickles forbids, so the state is
flattened here instead: :func:`save_tree` turns any nest of dicts/lists/tuples/tensors/scalars
into one safetensors file (the tensors, by path) plus one JSON file (the structure, tensors
replaced by their key). Folders are written under a temporary name and renamed into place, so a
crash mid-write never leaves a half checkpoint where resume would find it; ``manifest.json`` (sizes
and sha256 of every file, see :mod:`evedit.training.resume`) is written last, before the rename.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..errors import EveditError
from ..models.folder import refuse_pickles
from .sharding import full, full_tree, like, shard_optimizer_state

STEP_DIR = re.compile(r"^step_(\d{6,})$")
FORMAT = 2  # ``state.json``'s "format": checkpoints of this format always carry a manifest


class CheckpointMismatch(EveditError):
    """An intact checkpoint that does not belong to this run (another stage): no fallback."""


def step_dir(root: Path, step: int) -> Path:
    return Path(root) / f"step_{step:06d}"


# ---- trees: nested python state <-> (safetensors, json) ---------------------------------------
def _flatten(obj: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().cpu().contiguous()
        return {"tensor": path}
    if isinstance(obj, dict):  # keys kept with their type (optimizer state is keyed by int)
        return {"dict": [[k, _flatten(v, f"{path}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        kind = "list" if isinstance(obj, list) else "tuple"
        return {kind: [_flatten(v, f"{path}.{i}", tensors) for i, v in enumerate(obj)]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return {"value": obj}
    raise TypeError(f"cannot store {type(obj).__name__} at '{path}' in a checkpoint")


def _unflatten(node: dict, tensors: dict[str, torch.Tensor]) -> Any:
    (kind, body), = node.items()
    if kind == "tensor":
        return tensors[body]
    if kind == "dict":
        return {k: _unflatten(v, tensors) for k, v in body}
    if kind == "list":
        return [_unflatten(v, tensors) for v in body]
    if kind == "tuple":
        return tuple(_unflatten(v, tensors) for v in body)
    return body


def save_tree(folder: Path, name: str, obj: Any) -> None:
    """Write ``obj`` as ``<name>.json`` (structure) and ``<name>.safetensors`` (its tensors, if any)."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(obj, name, tensors)
    (folder / f"{name}.json").write_text(json.dumps(skeleton), encoding="utf-8")
    if tensors:
        save_file(tensors, str(folder / f"{name}.safetensors"))


def load_tree(folder: Path, name: str, device: torch.device | str = "cpu") -> Any:
    skeleton = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
    weights = folder / f"{name}.safetensors"
    tensors = load_file(str(weights), device=str(device)) if weights.is_file() else {}
    return _unflatten(skeleton, tensors)


# ---- module weights ----------------------------------------------------------------------------
def load_weights(path: Path, modules: dict[str, torch.nn.Module]) -> None:
    flat = load_file(str(path))
    for name, module in modules.items():
        prefix = f"{name}."
        state = {k[len(prefix):]: v for k, v in flat.items() if k.startswith(prefix)}
        module.load_state_dict(state, strict=True)


# ---- random number generators ------------------------------------------------------------------
def rng_state() -> dict:
    """Every global RNG of this process (numpy's key array stored as int64: safetensors-friendly)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


# ---- folders -----------------------------------------------------------------------------------
def temp_dir(root: Path, step: int) -> Path:
    """The temporary folder a checkpoint is written into (same name on every process)."""
    return Path(root) / f".tmp-step_{step:06d}"


def publish(tmp: Path, final: Path) -> None:
    """Rename a fully written ``tmp`` to ``final`` (replacing an older folder of that step)."""
    if final.exists():
        old = final.with_name(f".old-{final.name}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def checkpoint_step(folder: Path) -> int:
    """The step of a ``step_XXXXXX`` folder."""
    return int(STEP_DIR.match(Path(folder).name).group(1))


def list_checkpoints(root: Path) -> list[Path]:
    """Checkpoint folders under ``root``, oldest first (temporary folders are ignored; whether
    one is intact is :func:`evedit.training.resume.verify`'s to say)."""
    if not Path(root).is_dir():
        return []
    found = [(int(m.group(1)), p) for p in Path(root).iterdir() if p.is_dir() and (m := STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(root: Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1] if found else None


def prune_checkpoints(root: Path, keep: int, protect: Path | None = None) -> None:
    """Delete all but the newest ``keep`` checkpoints (``keep=0`` keeps all) and ``protect``
    (the newest checkpoint known good, which a NaN stop falls back to)."""
    if keep <= 0:
        return
    for old in list_checkpoints(root)[:-keep]:
        if protect is None or old.name != Path(protect).name:
            shutil.rmtree(old, ignore_errors=True)


def drop_poisoned(root: Path, step: int) -> tuple[Path | None, Path | None]:
    """After a non-finite loss computed from the weights of ``step``: delete that step's checkpoint
    (resuming it would hit the same NaN); returns (the deleted folder or None, the newest older one)."""
    poisoned = step_dir(root, step)
    removed = poisoned if poisoned.is_dir() else None
    if removed is not None:
        shutil.rmtree(removed, ignore_errors=True)
    older = [p for p in list_checkpoints(root) if checkpoint_step(p) < step]
    return removed, (older[-1] if older else None)


def read_state(folder: Path) -> dict:
    try:
        return json.loads((folder / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EveditError(f"Checkpoint '{folder}' is unreadable ({exc}); delete it to resume from an older one.") from None


# ---- what a checkpoint restores ----------------------------------------------------------------
@dataclass
class TrainState:
    """The trained modules (by name), their named parameters, the optimizer(s), EMA and fp16 scaler."""

    modules: dict[str, torch.nn.Module]
    params: list[tuple[str, torch.nn.Parameter]]
    optimizer: Any  # one optimizer, or {turn name: optimizer} for a stage with several turns
    ema: Any = None  # diffusers EMAModel over ``params``, or None
    scaler: Any = None  # torch GradScaler (fp16 only), or None
    params_only: bool = False  # store ``params`` alone, not the whole modules' state dicts

    def _optimizers(self) -> dict[str, Any]:
        if isinstance(self.optimizer, dict):
            return {f"optimizer_{name}": opt for name, opt in self.optimizer.items()}
        return {"optimizer": self.optimizer}

    def collect(self) -> dict:
        """What :meth:`save` writes, as whole tensors. Under FSDP a collective: every process calls
        it (the main one then writes); otherwise it only gathers references."""
        if self.params_only:
            weights = {name: full(p).detach() for name, p in self.params}
        else:
            weights = {f"{name}.{key}": value for name, module in self.modules.items()
                       for key, value in module.state_dict().items()}  # whole: sharding's hooks
        ema = None
        if self.ema is not None:
            ema = ({k: v for k, v in self.ema.state_dict().items() if k != "shadow_params"},
                   {name: full(s) for (name, _), s in zip(self.params, self.ema.shadow_params)})
        return {"weights": weights, "ema": ema,
                "optimizers": {name: full_tree(opt.state_dict()) for name, opt in self._optimizers().items()}}

    def _load_weights(self, path: Path, folder: Path) -> None:
        if not self.params_only:
            load_weights(path, self.modules)
            return
        saved, params = load_file(str(path)), dict(self.params)
        unknown = sorted(set(saved) - set(params))  # parameters it lacks start fresh (FDD's heads
        if unknown:  # join a run whose SDS-only part was saved without them)
            raise CheckpointMismatch(f"Checkpoint '{folder}' does not fit this run's trained parameters "
                                     f"(e.g. {unknown[0]}).")
        with torch.no_grad():
            for name, value in saved.items():
                params[name].copy_(like(value, params[name]))

    def save(self, folder: Path, meta: dict, config_text: str, whole: dict | None = None) -> None:
        """Write everything but the RNG states into ``folder``; ``state.json`` (``meta``) last.
        ``whole``: this state's :meth:`collect` (taken here when not given)."""
        whole = whole or self.collect()
        save_file({k: v.detach().cpu().contiguous() for k, v in whole["weights"].items()},
                  str(folder / "trainable.safetensors"))
        ema_meta = None
        if whole["ema"] is not None:
            ema_meta, shadows = whole["ema"]
            save_file({k: v.detach().cpu().contiguous() for k, v in shadows.items()}, str(folder / "ema.safetensors"))
        for name, state in whole["optimizers"].items():
            save_tree(folder, name, state)
        if self.scaler is not None:
            save_tree(folder, "scaler", self.scaler.state_dict())
        (folder / "config.yaml").write_text(config_text, encoding="utf-8")
        state = {**meta, "ema": ema_meta, "format": FORMAT}
        (folder / "state.json").write_text(json.dumps(state, indent=1), encoding="utf-8")

    def load(self, folder: Path, stage_name: str) -> dict:
        """Restore from ``folder`` (pickles refused); returns its ``state.json``."""
        refuse_pickles(folder)
        meta = read_state(folder)
        if meta.get("stage") != stage_name:
            raise CheckpointMismatch(f"Checkpoint '{folder}' is from stage '{meta.get('stage')}', not '{stage_name}'.")
        self._load_weights(folder / "trainable.safetensors", folder)
        if self.ema is not None and meta.get("ema") and (folder / "ema.safetensors").is_file():
            shadows = load_file(str(folder / "ema.safetensors"))  # on the CPU ("cpu:0" is no safetensors device)
            self.ema.load_state_dict({**meta["ema"], "shadow_params": [like(shadows[n].to(p.device), p)
                                                                       for n, p in self.params]})
        for name, optimizer in self._optimizers().items():
            if isinstance(self.optimizer, dict) and not (folder / f"{name}.json").is_file():
                continue  # a turn the saved run did not have (FDD's critic in an SDS-only run)
            optimizer.load_state_dict(load_tree(folder, name))  # torch moves it to the params
            shard_optimizer_state(optimizer)  # FSDP: each process keeps its shard
        if self.scaler is not None and (folder / "scaler.json").is_file():
            self.scaler.load_state_dict(load_tree(folder, "scaler"))
        return meta
