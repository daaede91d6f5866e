"""Assemble the trained ShapeWorld parts into one model folder (fp16) with a model card.

``evedit model assemble --runs runs --out models/shapeworld`` reads each stage's export under
``runs/<stage>/export`` (what ``make train-shapeworld`` produces) and writes the folder that
``evedit edit`` and the tests load by default.
"""

from __future__ import annotations

from dataclasses import replace

import json
from datetime import date
from pathlib import Path

import torch
from diffusers import ControlNetModel, MotionAdapter, UNet2DConditionModel

from .. import __version__
from ..diffusion import NoiseSchedule
from ..errors import EveditError
from ..models import assemble, save_model, shapeworld_spec
from ..models.codec import codec_class
from ..models.edit_adapter import SourceBranch
from ..models.video_adapter import FirstFrameBranch
from ..text import MiniLMTextEncoder

PARTS = {  # part -> (stage, sub-folder of the stage's export)
    "vae": ("codec", "vae"), "unet": ("t2i", "unet"), "controlnet": ("edit-adapter", "controlnet"),
    "motion_adapter": ("video-adapter", "motion_adapter"), "first_frame": ("video-adapter", "first_frame"),
}
# Runs that, once exported, supersede a stage's part, most refined first: the codec's decoder
# fine-tunes (configs/codec-decoder*.yaml) keep its encoder, so they replace its VAE as it stands.
REFINED = {"codec": ("codec-decoder-noise", "codec-decoder")}
OPTIONAL = {"source_branch": ("edit-adapter", "source_branch")}  # parts a stage exports only when trained with them
EXTRAS = {"shapeclip": ("clip", "shapeclip"), "task_classifier": ("task-classifier", "task_classifier")}
CLASSES = {"unet": UNet2DConditionModel, "controlnet": ControlNetModel,
           "motion_adapter": MotionAdapter, "first_frame": FirstFrameBranch, "source_branch": SourceBranch}


def _refinements(runs: Path, stage: str, sub: str) -> list[str]:
    """The runs refining ``stage`` that exported ``sub``, most refined first."""
    return [r for r in REFINED.get(stage, ()) if (runs / r / "export" / sub / "config.json").is_file()]


def _source(runs: Path, stage: str, sub: str) -> str:
    """The run a part comes from: the most refined run that exported it, else the stage's own."""
    return (_refinements(runs, stage, sub) or [stage])[0]


def card_stages(runs: Path) -> list[str]:
    """Every run the assembled model's parts and extras come from, refinements included."""
    return sorted({s for s, _ in [*PARTS.values(), *EXTRAS.values()]}
                  | {r for where in PARTS.values() for r in _refinements(runs, *where)})


def _part(runs: Path, stage: str, sub: str) -> Path:
    path = runs / _source(runs, stage, sub) / "export" / sub
    if not (path / "config.json").is_file():
        raise EveditError(f"Missing trained part '{path}': run `evedit train {stage}` first.")
    return path


def _summary(runs: Path, stage: str) -> dict:
    path = runs / stage / "export" / "train_summary.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _stage_setting(runs: Path, stage: str, key: str):
    """``stage.KEY`` of the stage's resolved config (its export's ``config.yaml``), or None."""
    import yaml

    path = runs / stage / "export" / "config.yaml"
    if not path.is_file():
        return None
    data = yaml.safe_load(path.read_text()) or {}
    return (data.get("stage") or {}).get(key)


def _init_from(runs: Path, stage: str) -> str | None:
    """The ``stage.init_from`` of the stage's resolved config (a run continued from trained weights)."""
    return _stage_setting(runs, stage, "init_from")


def model_card(runs: Path, stages: list[str]) -> str:
    lines = ["# ShapeWorld EVE model (evedit)", "",
             f"Assembled {date.today()} by evedit {__version__} from the runs in `{runs}`; weights stored",
             "as fp16 safetensors.",
             "Each stage's run record is below; `models/parts/README.md` gives the command that made",
             "each part, and `make train-shapeworld` is the from-scratch recipe (2 CPU cores).", "",
             "Wall time counts the last (resumed) run of a stage only; `steps this run` says how many",
             "steps that was.", "",
             "| stage | steps | steps this run | wall time (min) | final metrics (validation split) |",
             "|---|---|---|---|---|"]
    total = 0.0
    for stage in stages:
        s = _summary(runs, stage)
        seconds = float(s.get("wall_time_s", s.get("seconds", 0.0)) or 0.0)
        total += seconds
        metrics = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                            for k, v in (s.get("final_eval") or s.get("metrics") or {}).items())
        lines.append(f"| {stage} | {s.get('steps', '?')} | {s.get('steps_this_run', s.get('steps', '?'))} | "
                     f"{seconds / 60:.1f} | {metrics or 'n/a'} |")
    lines += ["", f"Total training time: {total / 60:.1f} min.", ""]
    continued = [(stage, _init_from(runs, stage)) for stage in stages]
    lines += [f"`{stage}` continued from the trained weights in `{src}` (`init_from`); its steps and "
              "time count this continuation only." for stage, src in continued if src]
    return "\n".join(lines) + ("\n" if lines[-1] else "")


def assemble_shapeworld(runs: str | Path, out: str | Path, aligned: str | Path | None = None) -> Path:
    """Load the exported parts, wire them into an EVE model, save it (fp16) with extras and card.

    ``aligned``: an ``evedit align`` model folder whose alignment LoRA the assembled model takes
    (the shipped model edits with it by default); its run's ``align_summary.json`` joins the card.
    The model records the ShapeWorld its edit adapter was trained in (the run summary's ``world``,
    from its store), which evaluation, the report and alignment then render.
    """
    runs = Path(runs)
    kw = dict(use_safetensors=True, local_files_only=True, torch_dtype=torch.float32)
    loaded = {}
    for name, where in PARTS.items():
        path = _part(runs, *where)
        cls = codec_class(path) if name == "vae" else CLASSES[name]
        loaded[name] = cls.from_pretrained(path, **kw)
    for name, (stage, sub) in OPTIONAL.items():
        path = runs / stage / "export" / sub
        loaded[name] = CLASSES[name].from_pretrained(path, **kw) if (path / "config.json").is_file() else None
    model = assemble(
        vae=loaded["vae"], text_encoder=MiniLMTextEncoder.from_pretrained(), unet=loaded["unet"],
        controlnet=loaded["controlnet"], motion_adapter=loaded["motion_adapter"],
        spec=replace(shapeworld_spec(), prompt_routing=_stage_setting(runs, "edit-adapter", "prompt_routing")
                     or "paper", world=_summary(runs, "edit-adapter").get("world") or {}),
        schedule=NoiseSchedule(), first_frame=loaded["first_frame"], source_branch=loaded["source_branch"],
    )
    extras = {}
    for name, (stage, sub) in EXTRAS.items():
        path = runs / stage / "export" / sub
        if (path / "config.json").is_file():
            extras[name] = path
    card = model_card(runs, card_stages(runs))
    if aligned is not None:
        card += _take_lora(model, Path(aligned))
    return save_model(model, out, half=True, extras=extras, card=card)


def _adversarial_note(cfg: dict) -> str:
    """The card's words on the adversarial phase of an alignment config: its SDS weight, the critic's start."""
    if cfg.get("steps_adv", 1) == 0:
        return ""  # no adversarial phase (an SDS-only run): no critic was trained
    lam = f", SDS weight {float(cfg['lam']):g}" if "lam" in cfg else ""
    warm = min(int(cfg.get("disc_warmup", 0) or 0), int(cfg.get("steps_sds", 0) or 0))
    return lam + (f"; the critic trained from iteration {int(cfg['steps_sds']) - warm + 1}" if warm > 0 else "")


def _take_lora(model, aligned: Path) -> str:
    """Load the aligned folder's LoRA into ``model``; the card's alignment paragraph. ``aligned`` is an
    ``evedit align`` run's ``model/`` folder (its summary beside it) or a part folder as
    ``models/parts/align-*`` keeps one: ``lora/`` with the LoRA file and the run's ``align_summary.json``."""
    from ..models.folder import MANIFEST, load_folder_lora, read_manifest
    from ..models.lora import LORA_FILE

    if (aligned / "lora" / LORA_FILE).is_file() and not (aligned / MANIFEST).is_file():
        lora_dir, summary = aligned / "lora", aligned / "align_summary.json"
        token_dirs = [aligned / p for p in ("style_lora", "subject_lora") if (aligned / p).is_dir()]
    else:
        parts = read_manifest(aligned).get("parts", {})
        if "lora" not in parts:
            raise EveditError(f"'{aligned}' holds no alignment LoRA; pass the model/ folder of an `evedit align` "
                              "run or a models/parts/align-* folder.")
        lora_dir, summary = aligned / parts["lora"], aligned.parent / "align_summary.json"
        token_dirs = [aligned / parts[p] for p in ("style_lora", "subject_lora") if p in parts]
    load_folder_lora(model, lora_dir)
    style = ""
    if token_dirs:  # a style or subject group's alignment: its LoRA comes with the alignment LoRA
        from ..models.token_lora import attach_token_lora, read_token_lora

        attach_token_lora(model, read_token_lora(token_dirs[0]))
        t = model.token_lora
        style = f" With the {t.kind} LoRA it was aligned with (`{t.part}/`, caption \"{t.caption('')}\")."
    info = json.loads(summary.read_text()) if summary.is_file() else {}
    cfg = info.get("config", {})
    return (f"\nAlignment LoRA (FDD) from `{aligned}`: {info.get('steps', '?')} iterations "
            f"({cfg.get('steps_sds', '?')} SDS-only + {cfg.get('steps_adv', '?')} with the adversarial terms"
            f"{_adversarial_note(cfg)}), "
            f"batch {cfg.get('batch_size', '?')}, rank {cfg.get('lora_rank', '?')}, "
            f"{float(info.get('seconds', 0)) / 60:.1f} min.{style}\n")
