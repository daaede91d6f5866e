"""``evedit train``: a recipe file and a stage name in, a trained export folder out."""

from __future__ import annotations

from pathlib import Path

from accelerate.utils import set_seed

from .config import config_dict, load_config
from .loop import train


def run_training(stage_name: str, config_path: str | Path, max_steps: int | None = None,
                 out: str | Path | None = None, resume: bool = False,
                 max_minutes: float | None = None) -> Path:
    """Train stage ``stage_name`` with the recipe at ``config_path``; returns ``<out>/export``.

    ``max_steps``, ``max_minutes`` (a training-time budget) and ``out`` override the recipe's
    ``train:`` section; ``resume`` continues the newest intact checkpoint under ``<out>/checkpoints``
    exactly (damaged newer ones are named in one sentence each and skipped). Ctrl-C or SIGTERM saves
    a checkpoint and stops (KeyboardInterrupt, or :class:`~evedit.errors.Terminated` for SIGTERM).
    """
    from .distributed import relaunch_cpu_processes
    from .stages import build_stage, check_stage_name

    check_stage_name(stage_name)
    relaunch_cpu_processes()  # `accelerate launch --cpu --num_processes N` without MPI: start the N
    overrides = {"max_steps": max_steps, "max_minutes": max_minutes, "out": None if out is None else str(out)}
    train_cfg, stage_section = load_config(config_path, stage_name, overrides)
    set_seed(train_cfg.seed)  # same initial weights on every process and on resume
    stage = build_stage(stage_name, stage_section)
    resolved = config_dict(stage_name, train_cfg, getattr(stage, "config", stage_section))
    return train(stage, train_cfg, resolved, resume=resume)
