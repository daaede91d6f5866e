"""Assemble the trained ShapeWorld parts into one model folder (fp16) with a model card.

``evedit model assemble --runs runs --out models/shapeworld`` reads each stage's export under
``runs/<stage>/export`` (what ``make train-shapeworld`` produces) and writes the folder that
``evedit edit`` and the tests load by default.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import torch
from diffusers import AutoencoderKL, ControlNetModel, MotionAdapter, UNet2DConditionModel

from ..diffusion import NoiseSchedule
from ..errors import EveditError
from ..models import assemble, save_model, shapeworld_spec
from ..models.video_adapter import FirstFrameBranch
from ..text import MiniLMTextEncoder

PARTS = {  # part -> (stage, sub-folder of the stage's export)
    "vae": ("codec", "vae"), "unet": ("t2i", "unet"), "controlnet": ("edit-adapter", "controlnet"),
    "motion_adapter": ("video-adapter", "motion_adapter"), "first_frame": ("video-adapter", "first_frame"),
}
EXTRAS = {"shapeclip": ("clip", "shapeclip"), "task_classifier": ("task-classifier", "task_classifier")}
CLASSES = {"vae": AutoencoderKL, "unet": UNet2DConditionModel, "controlnet": ControlNetModel,
           "motion_adapter": MotionAdapter, "first_frame": FirstFrameBranch}


def _part(runs: Path, stage: str, sub: str) -> Path:
    path = runs / stage / "export" / sub
    if not (path / "config.json").is_file():
        raise EveditError(f"Missing trained part '{path}': run `evedit train {stage}` first.")
    return path


def _summary(runs: Path, stage: str) -> dict:
    path = runs / stage / "export" / "train_summary.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def model_card(runs: Path, stages: list[str]) -> str:
    lines = ["# ShapeWorld EVE model (evedit)", "",
             f"Assembled {date.today()} from the runs in `{runs}`; weights stored as fp16 safetensors.",
             "Reproduce with `make train-shapeworld` (2 CPU cores).", "",
             "| stage | steps | wall time (min) | final metrics |", "|---|---|---|---|"]
    total = 0.0
    for stage in stages:
        s = _summary(runs, stage)
        seconds = float(s.get("wall_seconds", s.get("seconds", 0.0)) or 0.0)
        total += seconds
        metrics = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                            for k, v in (s.get("final_eval") or s.get("metrics") or {}).items())
        lines.append(f"| {stage} | {s.get('steps', '?')} | {seconds / 60:.1f} | {metrics or 'n/a'} |")
    lines += ["", f"Total training time: {total / 60:.1f} min.", ""]
    return "\n".join(lines)


def assemble_shapeworld(runs: str | Path, out: str | Path) -> Path:
    """Load the exported parts, wire them into an EVE model, save it (fp16) with extras and card."""
    runs = Path(runs)
    kw = dict(use_safetensors=True, local_files_only=True, torch_dtype=torch.float32)
    loaded = {name: CLASSES[name].from_pretrained(_part(runs, *where), **kw) for name, where in PARTS.items()}
    model = assemble(
        vae=loaded["vae"], text_encoder=MiniLMTextEncoder.from_pretrained(), unet=loaded["unet"],
        controlnet=loaded["controlnet"], motion_adapter=loaded["motion_adapter"],
        spec=shapeworld_spec(), schedule=NoiseSchedule(), first_frame=loaded["first_frame"],
    )
    extras = {}
    for name, (stage, sub) in EXTRAS.items():
        path = runs / stage / "export" / sub
        if (path / "config.json").is_file():
            extras[name] = path
    stages = sorted({s for s, _ in [*PARTS.values(), *EXTRAS.values()]})
    return save_model(model, out, half=True, extras=extras, card=model_card(runs, stages))
