"""Training configuration: one typed dataclass, YAML files over it, CLI overrides on top.

A recipe file has two sections::

    train:            # fields of TrainConfig (the loop's settings)
      max_steps: 1500
    stage:            # the stage's own config (its dataclass, see evedit.training.stages)
      data: {kind: shapeworld}

Resolution order (later wins): TrainConfig defaults < ``train:`` section < CLI overrides. The
resolved config (both sections) is saved as YAML with every checkpoint and in the export.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..errors import EveditError

MIXED_PRECISION = ("no", "fp16", "bf16")
SHARD = ("none", "fsdp")
TOP_LEVEL_KEYS = ("train", "stage", "stage_name")


@dataclass
class TrainConfig:
    out: str = "runs/train"  # run folder: checkpoints/, samples/, tensorboard logs, export/
    max_steps: int = 1000  # optimizer steps (each one is grad_accum micro-batches)
    max_minutes: float = 0.0  # also stop (evaluate, export) after this much training time; 0: no limit
    batch_size: int = 16  # per process and micro-batch; 16 keeps a tiny-model step near 1 s on 2 cores
    lr: float = 1e-4  # AdamW learning rate; recipes for from-scratch tiny parts raise it
    warmup_steps: int = 0  # linear lr warm-up from 0; stateless (lr is a function of the step)
    lr_milestones: list[int] = field(default_factory=list)  # steps where the lr is multiplied by lr_gamma
    lr_gamma: float = 0.5  # (torch's MultiStepLR, as a function of the step: resume needs no state)
    weight_decay: float = 0.0  # diffusers' training scripts use ~1e-2; 0 is safe for short runs
    grad_accum: int = 1  # micro-batches per optimizer step (effective batch = batch_size * grad_accum)
    mixed_precision: str = "no"  # "no" | "fp16" | "bf16"; forced to "no" on CPU (no speed-up there)
    shard: str = "none"  # "fsdp": shard the trained modules' blocks over the processes (evedit.training.sharding)
    gradient_checkpointing: bool = False  # recompute the models' blocks in backward (evedit.training.recompute)
    ema_decay: float = 0.999  # EMA of the trained weights (0 disables); diffusers' warm-up applies
    clip_grad: float = 1.0  # max global grad norm (0 disables clipping; the norm is still logged)
    log_every: int = 10  # steps between TensorBoard/metrics.jsonl loss records
    sample_every: int = 500  # steps between sample grids in out/samples (0: never)
    eval_every: int = 500  # steps between evaluations logged to metrics.jsonl (0: only at the end)
    ckpt_every: int = 500  # steps between checkpoints (the last step is always saved)
    seed: int = 0  # one seed: model init, data order and every random draw of the loss
    num_workers: int = 0  # DataLoader worker processes; 0 on 2 cores, where workers steal compute
    keep_checkpoints: int = 3  # newest checkpoints kept (0 keeps all); old ones are deleted


def _short(exc: Exception) -> str:
    """The first line of an OmegaConf error, without its trailing full-key report."""
    return str(exc).strip().splitlines()[0].rstrip(".")


def structured(cls: type, data: Any, where: str) -> Any:
    """``data`` (dict or DictConfig) merged over dataclass ``cls``'s defaults, type-checked.

    Unknown keys and wrong types become one-sentence :class:`EveditError`s naming ``where``.
    """
    try:
        base = OmegaConf.structured(cls)
        for f in dataclasses.fields(cls):  # a plain mapping given in full replaces its default: merged
            # key by key, `teachers: {edit: 1.0}` would have kept the default's video teacher
            if f.type in (dict, "dict") and data and f.name in data:
                base[f.name] = {}
        merged = OmegaConf.merge(base, data or {})
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None)
        raise EveditError(f"Bad {where}: {f'{key}: ' if key else ''}{_short(exc)}.") from None


def _load_yaml(path: Path) -> dict:
    if not path.is_file():
        raise EveditError(f"Config file '{path}' does not exist.")
    try:
        raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except (OmegaConfBaseException, OSError, ValueError) as exc:
        raise EveditError(f"Cannot read config file '{path}': {_short(exc)}.") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise EveditError(f"Config file '{path}' must hold a mapping with 'train:' and 'stage:' sections.")
    unknown = sorted(set(raw) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise EveditError(
            f"Config file '{path}' has unknown section(s) {', '.join(unknown)}; "
            f"the sections are {', '.join(TOP_LEVEL_KEYS)}."
        )
    return raw


def load_config(path: str | Path, stage_name: str, overrides: dict | None = None) -> tuple[TrainConfig, dict]:
    """Read a recipe: the resolved :class:`TrainConfig` and the raw ``stage:`` section (a dict).

    ``overrides`` (e.g. ``{"max_steps": 4, "out": "runs/x"}``; None values ignored) win over the file.
    """
    path = Path(path)
    raw = _load_yaml(path)
    named = raw.get("stage_name")
    if named is not None and named != stage_name:
        raise EveditError(f"Config file '{path}' is a recipe for stage '{named}', not '{stage_name}'.")
    extra = {k: v for k, v in (overrides or {}).items() if v is not None}
    train = structured(TrainConfig, OmegaConf.merge(raw.get("train") or {}, extra), f"train section of '{path}'")
    check_train_config(train)
    return train, dict(raw.get("stage") or {})


def check_train_config(cfg: TrainConfig) -> None:
    """Value checks OmegaConf's type checks cannot express."""
    if cfg.mixed_precision not in MIXED_PRECISION:
        raise EveditError(
            f"mixed_precision must be one of {', '.join(MIXED_PRECISION)}, got '{cfg.mixed_precision}'."
        )
    if cfg.shard not in SHARD:
        raise EveditError(f"shard must be one of {', '.join(SHARD)}, got '{cfg.shard}'.")
    for name in ("max_steps", "batch_size", "grad_accum"):
        if getattr(cfg, name) < 1:
            raise EveditError(f"{name} must be at least 1, got {getattr(cfg, name)}.")
    for name in ("log_every", "sample_every", "eval_every", "ckpt_every", "keep_checkpoints",
                 "num_workers", "warmup_steps"):
        if getattr(cfg, name) < 0:
            raise EveditError(f"{name} must not be negative, got {getattr(cfg, name)}.")
    if not 0.0 <= cfg.ema_decay < 1.0:
        raise EveditError(f"ema_decay must be in [0, 1), got {cfg.ema_decay}.")


def config_dict(stage_name: str, train: TrainConfig, stage_config: Any) -> dict:
    """The resolved config as plain data: ``{"stage_name", "train", "stage"}``."""
    stage = dataclasses.asdict(stage_config) if dataclasses.is_dataclass(stage_config) else stage_config
    return {"stage_name": stage_name, "train": dataclasses.asdict(train), "stage": dict(stage or {})}


def config_yaml(resolved: dict) -> str:
    return OmegaConf.to_yaml(OmegaConf.create(resolved))


def hparams(resolved: dict, prefix: str = "") -> dict[str, int | float | str | bool]:
    """Flatten the resolved config to the scalar ``{"train.lr": ...}`` TensorBoard accepts."""
    flat: dict[str, int | float | str | bool] = {}
    for key, value in resolved.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(hparams(value, f"{name}."))
        elif isinstance(value, (int, float, str, bool)):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat
