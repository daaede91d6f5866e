"""Model folders: every part in its own library's format (safetensors only) plus a manifest.

Layout::

    evedit_model.json      manifest: format, version, spec, schedule, parts
    unet/ vae/ controlnet/ motion_adapter/ first_frame/     diffusers save_pretrained
    source_branch/                                          the edit adapter's input-frame branch (optional)
    lora/alignment_lora.safetensors                         peft state dict (optional)
    style_lora/style_lora.safetensors, lora.json            a style LoRA and its caption template, or
    subject_lora/subject_lora.safetensors, lora.json        a subject LoRA (optional; evedit.models.token_lora)
    text_encoder/ (+ tokenizer files)                        only for CLIP ("sd15") models
    scheduler/                                              the matching diffusers DDIM config

Loading never unpickles: a folder holding ``.bin``, ``.ckpt``, ``.pt``, ``.pth``, ``.pkl`` or
``.pickle`` files is refused with a message saying how to convert. Saving is atomic: the folder is
written beside its destination and renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from diffusers import ControlNetModel, MotionAdapter, UNet2DConditionModel

from ..diffusion.schedule import NoiseSchedule
from ..atomic import replace_folder, temp_sibling
from ..errors import EveditError
from ..text import CLIPTextEncoder, MiniLMTextEncoder, quiet_transformers
from .build import assemble
from .codec import codec_class
from .compose import EVEModel
from .edit_adapter import SourceBranch
from .lora import LORA_FILE, load_lora, lora_rank_of, save_lora
from .presets import MAX_GUIDANCE, MAX_LORA_SCALE, ModelSpec
from .video_adapter import FirstFrameBranch, motion_adapter_of

MANIFEST = "evedit_model.json"
FORMAT = "evedit-model"
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl", ".pickle")
REQUIRED_PARTS = ("unet", "vae", "controlnet", "motion_adapter", "first_frame")


def folder_spec(folder: str | Path) -> ModelSpec:
    """The :class:`ModelSpec` a model folder's manifest records (e.g. its ``world``); the default
    spec for a folder without a manifest (a bare codec folder, say)."""
    manifest = Path(folder) / MANIFEST
    if not manifest.is_file():
        return ModelSpec()
    return ModelSpec.from_dict(json.loads(manifest.read_text()).get("spec") or {})


def refuse_pickles(folder: Path) -> None:
    """Raise if ``folder`` (recursively) holds pickle-based weight files."""
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in PICKLE_SUFFIXES:
            raise EveditError(
                f"Refusing to load pickle file '{path}': evedit loads safetensors only (pickles can "
                "run code); convert it with `save_pretrained(dir, safe_serialization=True)` or "
                "`safetensors.torch.save_file`."
            )


def save_model(model: EVEModel, folder: str | Path, *, half: bool = False,
               extras: dict[str, Path] | None = None, card: str | None = None) -> Path:
    """Write every part and the manifest; atomic (a temporary folder renamed into place).

    ``half`` stores the weights as fp16 (the shipped ShapeWorld folder; loading casts back to
    fp32). ``extras`` are further part folders copied in and named in the manifest (ShapeCLIP, the
    task classifier); a model loaded from a folder carries its extras into the folders it saves.
    ``card`` is written as README.md.
    """
    extras = {**getattr(model, "extras", {}), **(extras or {})}

    def write(tmp: Path) -> None:
        _write_parts(model, tmp, half)
        _write_extras(tmp, extras)
        if card:
            (tmp / "README.md").write_text(card)

    return replace_folder(folder, write)


def _write_extras(tmp: Path, extras: dict[str, Path]) -> None:
    manifest = json.loads((tmp / MANIFEST).read_text())
    for name, source in extras.items():
        source = Path(source)
        if not (source / "config.json").is_file():
            raise EveditError(f"The extra part '{name}' at '{source}' has no config.json.")
        refuse_pickles(source)
        shutil.copytree(source, tmp / name)
    manifest["extras"] = {name: name for name in extras}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def _save(part, path: Path, half: bool) -> None:
    if half:
        import copy

        import torch

        part = copy.deepcopy(part).to(torch.float16)
    part.save_pretrained(path, safe_serialization=True)


def _write_parts(model: EVEModel, tmp: Path, half: bool = False) -> None:
    _save(model.unet, tmp / "unet", half)
    _save(model.vae, tmp / "vae", half)
    _save(model.edit_adapter.controlnet, tmp / "controlnet", half)
    _save(motion_adapter_of(model.motion_unet), tmp / "motion_adapter", half)
    _save(model.first_frame, tmp / "first_frame", half)
    model.schedule.ddim_scheduler().save_pretrained(tmp / "scheduler")
    parts = {p: p for p in REQUIRED_PARTS}
    if model.edit_adapter.source_branch is not None:
        _save(model.edit_adapter.source_branch, tmp / "source_branch", half)
        parts["source_branch"] = "source_branch"
    if model.has_lora:
        save_lora(model.motion_unet, tmp / "lora", torch.float16 if half else None)
        parts["lora"] = "lora"
    if model.token_lora is not None:
        part = model.token_lora.part
        model.token_lora.save(tmp / part)
        parts[part] = part
    if model.spec.text_encoder == "clip":
        _save(model.text_encoder.model, tmp / "text_encoder", half)
        model.text_encoder.tokenizer.save_pretrained(tmp / "text_encoder")
        parts["text_encoder"] = "text_encoder"
    manifest = {
        "format": FORMAT, "version": 1, "spec": model.spec.to_dict(),
        "schedule": model.schedule.to_dict(), "parts": parts,
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not folder.is_dir():
        raise EveditError(f"Model folder '{folder}' does not exist.")
    if not path.is_file():
        raise EveditError(f"'{folder}' is not an evedit model folder: it has no {MANIFEST}.")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EveditError(f"The manifest '{path}' is not valid JSON ({exc.msg}).") from exc
    if manifest.get("format") != FORMAT:
        raise EveditError(f"The manifest '{path}' is not an {FORMAT} manifest.")
    scale = manifest.get("spec", {}).get("lora_scale", 1.0)  # ModelSpec.lora_scale
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 <= scale <= MAX_LORA_SCALE:
        raise EveditError(f"The manifest '{path}' sets lora_scale to {scale!r}; it must be a number from 0 to "
                          f"{MAX_LORA_SCALE:g}.")
    guidance = manifest.get("spec", {}).get("student_guidance", 1.0)  # ModelSpec.student_guidance
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not 1 <= guidance <= MAX_GUIDANCE:
        raise EveditError(f"The manifest '{path}' sets student_guidance to {guidance!r}; it must be a number from "
                          f"1 (no guidance) to {MAX_GUIDANCE:g}.")
    share = manifest.get("spec", {}).get("noise_share", 0.0)  # ModelSpec.noise_share
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
        raise EveditError(f"The manifest '{path}' sets noise_share to {share!r}; it must be a number from 0 to 1.")
    for part in REQUIRED_PARTS:
        sub = folder / manifest.get("parts", {}).get(part, part)
        if not (sub / "config.json").is_file() or not any(sub.glob("*.safetensors")):
            raise EveditError(
                f"Model folder '{folder}' is incomplete: part '{part}' needs {sub.name}/config.json "
                "and a .safetensors weight file."
            )
    return manifest


def set_spec(folder: str | Path, **fields) -> Path:
    """Record ``fields`` in the spec of a model folder's manifest, rewritten atomically (what the
    benchmarks that choose a default on the val split do with ``--write``); returns the manifest."""
    path = Path(folder) / MANIFEST
    manifest = read_manifest(Path(folder))
    manifest["spec"].update(fields)
    tmp = temp_sibling(path)
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def load_model(folder: str | Path, text_encoder=None, edit_adapter: str | Path | None = None) -> EVEModel:
    """Load a model folder written by :func:`save_model` (frozen, on CPU, float32).

    ``edit_adapter``: an edit-adapter stage export (a folder with ``controlnet/`` and, if that run
    trained one, ``source_branch/``) used instead of the folder's own edit adapter, to score a
    trained adapter inside a shipped model.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    refuse_pickles(folder)
    spec = ModelSpec.from_dict(manifest["spec"])
    parts = manifest["parts"]
    edit_dir = Path(edit_adapter) if edit_adapter is not None else None
    control_dir = edit_dir / "controlnet" if edit_dir else folder / parts["controlnet"]
    if edit_dir:  # the run's source branch if it trained one
        branch_dir = edit_dir / "source_branch" if (edit_dir / "source_branch").is_dir() else None
    else:
        branch_dir = folder / parts["source_branch"] if "source_branch" in parts else None
    kw = dict(use_safetensors=True, local_files_only=True, torch_dtype=torch.float32)
    try:
        with quiet_transformers():
            unet = UNet2DConditionModel.from_pretrained(folder / parts["unet"], **kw)
            vae = codec_class(folder / parts["vae"]).from_pretrained(folder / parts["vae"], **kw)
            controlnet = ControlNetModel.from_pretrained(control_dir, **kw)
            adapter = MotionAdapter.from_pretrained(folder / parts["motion_adapter"], **kw)
            first = FirstFrameBranch.from_pretrained(folder / parts["first_frame"], **kw)
            branch = SourceBranch.from_pretrained(branch_dir, **kw) if branch_dir is not None else None
    except (OSError, ValueError, RuntimeError) as exc:
        what = f"model folder '{folder}'" + (f" with the edit adapter '{edit_dir}'" if edit_dir else "")
        raise EveditError(f"Could not load {what}: {_first_line(exc)}") from exc
    text = text_encoder or _load_text_encoder(folder, spec, parts)
    model = assemble(
        vae=vae, text_encoder=text, unet=unet, controlnet=controlnet, motion_adapter=adapter,
        spec=spec, schedule=NoiseSchedule.from_dict(manifest["schedule"]), first_frame=first,
        source_branch=branch,
    )
    if "lora" in parts:
        load_folder_lora(model, folder / parts["lora"])
    token = [parts[p] for p in ("style_lora", "subject_lora") if p in parts]
    if token:
        from .token_lora import attach_token_lora, read_token_lora

        attach_token_lora(model, read_token_lora(folder / token[0]))
    model.extras = {name: folder / sub for name, sub in manifest.get("extras", {}).items()}
    return model


def load_folder_lora(model: EVEModel, lora_dir: Path) -> None:
    from safetensors.torch import load_file

    path = lora_dir / LORA_FILE
    if not path.is_file():
        raise EveditError(f"The LoRA file '{path}' named by the manifest is missing.")
    rank = lora_rank_of(load_file(str(path)))
    try:
        load_lora(model.motion_unet, lora_dir, rank)
    except ValueError as exc:
        raise EveditError(f"The LoRA in '{lora_dir}' does not fit this model: {exc}") from exc


def _load_text_encoder(folder: Path, spec: ModelSpec, parts: dict):
    if spec.text_encoder == "minilm":
        return MiniLMTextEncoder.from_pretrained()
    if spec.text_encoder == "clip":
        return CLIPTextEncoder.from_pretrained(folder / parts.get("text_encoder", "text_encoder"))
    raise EveditError(f"Unknown text encoder {spec.text_encoder!r} in '{folder / MANIFEST}'.")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
