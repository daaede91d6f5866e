"""``evedit align``: a recipe file (flat FDDConfig fields) plus command-line overrides."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from omegaconf import OmegaConf

from ...errors import EveditError
from ..config import structured
from .config import ABLATIONS, FDDConfig


def load_fdd_config(path: str | Path | None) -> FDDConfig:
    data = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise EveditError(f"Config file '{path}' does not exist.")
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=True) or {}
        if not isinstance(data, dict):
            raise EveditError(f"Config file '{path}' must hold a mapping of alignment settings.")
    return structured(FDDConfig, data, f"alignment config '{path}'")


def with_overrides(cfg: FDDConfig, *, model=None, ablation=None, max_steps=None, out=None) -> FDDConfig:
    """Apply command-line overrides; ``max_steps`` keeps the SDS/adversarial proportion."""
    if ablation is not None and ablation not in ABLATIONS:
        raise EveditError(f"Unknown ablation {ablation!r}; choose from {', '.join(ABLATIONS)}.")
    if max_steps is not None:
        if max_steps < 1:
            raise EveditError(f"--max-steps must be at least 1, got {max_steps}.")
        sds = round(max_steps * cfg.steps_sds / max(1, cfg.total_steps))
        cfg = replace(cfg, steps_sds=sds, steps_adv=max_steps - sds)
    changes = {k: v for k, v in dict(model=model, ablation=ablation, out=out).items() if v is not None}
    return replace(cfg, **{k: str(v) for k, v in changes.items()})


def run_alignment(config: str | Path | None, *, model=None, ablation=None, max_steps=None,
                  out=None, resume: bool = False, progress: bool = True) -> Path:
    from accelerate.utils import set_seed

    from ..distributed import relaunch_cpu_processes
    from .stage import align

    cfg = with_overrides(load_fdd_config(config), model=model, ablation=ablation,
                         max_steps=max_steps, out=out)
    relaunch_cpu_processes()  # `accelerate launch --cpu --num_processes N` without MPI: start the N
    set_seed(cfg.seed)  # the new heads and LoRA start the same on every process and every run
    return align(cfg, resume=resume, progress=progress)
