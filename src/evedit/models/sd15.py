"""The SD 1.5 family: base Stable Diffusion 1.5, ControlNet v1.1 ip2p, an AnimateDiff motion adapter.

Each source is a local folder or a hub id (read from the local Hugging Face cache only; nothing is
downloaded at run time). The base folder has the diffusers layout (``unet/``, ``vae/``,
``text_encoder/``, ``tokenizer/``, ``scheduler/``). The ip2p ControlNet takes the RGB input frame
in [0, 1] (``cond_space="pixel"``) and no task label; the instruction goes to both the backbone
and the ControlNet (``prompt_routing="instruction"``), as ip2p-style ControlNets are trained.
AnimateDiff has no first-frame conditioning, so the first-frame branch starts at zero (unused)
until a user trains it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, ControlNetModel, MotionAdapter, UNet2DConditionModel

from ..diffusion.schedule import NoiseSchedule, ScheduleConfig
from ..errors import EveditError
from ..text import CLIPTextEncoder, quiet_transformers
from .build import assemble
from .compose import EVEModel
from .folder import refuse_pickles
from .presets import ModelSpec, SD15Sources


def sd15_spec() -> ModelSpec:
    return ModelSpec(
        preset="sd15", resolution=512, num_frames=16, cond_space="pixel",
        prompt_routing="instruction", tasks=(), lora_rank=64, text_encoder="clip",
    )


def _resolve(source: str, what: str) -> Path:
    """A local folder for ``source``: the path itself, or its snapshot in the local hub cache."""
    path = Path(source).expanduser()
    if path.is_dir():
        refuse_pickles(path)
        return path
    try:
        from huggingface_hub import snapshot_download

        local = Path(snapshot_download(source, local_files_only=True))
    except Exception as exc:  # hub raises several types for "not cached" / "bad id"
        raise EveditError(
            f"The SD 1.5 {what} '{source}' is neither a local folder nor in the local Hugging Face "
            f"cache; download it (e.g. `hf download {source} --local-dir DIR`) and pass DIR."
        ) from exc
    refuse_pickles(local)
    return local


def _schedule(base: Path) -> NoiseSchedule:
    path = base / "scheduler" / "scheduler_config.json"
    if not path.is_file():
        return NoiseSchedule(ScheduleConfig(prediction_type="epsilon", zero_terminal_snr=False))
    cfg = json.loads(path.read_text())
    return NoiseSchedule(ScheduleConfig(
        num_train_timesteps=cfg.get("num_train_timesteps", 1000),
        beta_schedule=cfg.get("beta_schedule", "scaled_linear"),
        beta_start=cfg.get("beta_start", 0.00085), beta_end=cfg.get("beta_end", 0.012),
        prediction_type=cfg.get("prediction_type", "epsilon"),
        zero_terminal_snr=bool(cfg.get("rescale_betas_zero_snr", False)),
    ))


def load_sd15(sources: SD15Sources | None = None) -> EVEModel:
    """Assemble the SD 1.5 family EVE model from its three sources."""
    sources = sources or SD15Sources()
    base = _resolve(sources.base, "base model")
    controlnet_dir = _resolve(sources.controlnet, "ControlNet")
    motion_dir = _resolve(sources.motion_adapter, "motion adapter")
    kw = dict(use_safetensors=True, local_files_only=True)
    try:
        with quiet_transformers():
            unet = UNet2DConditionModel.from_pretrained(base, subfolder="unet", **kw)
            vae = AutoencoderKL.from_pretrained(base, subfolder="vae", **kw)
            controlnet = ControlNetModel.from_pretrained(controlnet_dir, **kw)
            adapter = MotionAdapter.from_pretrained(motion_dir, **kw)
    except (OSError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EveditError(f"Could not load the SD 1.5 parts: {first}") from exc
    text = _clip_text_encoder(base)
    spec = sd15_spec()
    spec.tasks = tuple(f"task{i}" for i in range(controlnet.config.num_class_embeds or 0))
    return assemble(
        vae=vae, text_encoder=text, unet=unet, controlnet=controlnet, motion_adapter=adapter,
        spec=spec, schedule=_schedule(base),
    )


def _clip_text_encoder(base: Path) -> CLIPTextEncoder:
    from transformers import CLIPTextModel, CLIPTokenizer

    if not (base / "text_encoder" / "config.json").is_file():
        raise EveditError(f"The SD 1.5 base folder '{base}' has no text_encoder/config.json.")
    with quiet_transformers():
        tokenizer = CLIPTokenizer.from_pretrained(base, subfolder="tokenizer", local_files_only=True)
        model = CLIPTextModel.from_pretrained(
            base, subfolder="text_encoder", local_files_only=True, use_safetensors=True,
            dtype=torch.float32,
        )
    return CLIPTextEncoder(tokenizer, model, min(tokenizer.model_max_length, 77))
