"""``evedit align``: Factorized Diffusion Distillation over a pretrained EVE model.

The loop is a sequence of named steps per iteration: ``load_batch`` -> ``generator_step`` ->
``critic_step`` (adversarial phase only) -> ``after_step`` (log, samples, checkpoint). Every random
draw of iteration ``s`` comes from a generator seeded by (seed, s), and the teacher bank is a pure
function of (seed, item, slot), so ``--resume`` continues exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ...errors import EveditError
from ...models import EVEModel, assemble, load_pretrained
from ...models.discriminators import BackboneFeatures, EditDiscriminator, VideoDiscriminator
from ...models.edit_adapter import controlnet_from_unet
from ...models.presets import SHAPEWORLD_CONTROLNET
from ...models.video_adapter import motion_adapter_of, new_motion_adapter
from ..checkpoint import load_tree, prune_checkpoints, publish, save_tree, step_dir, temp_dir
from ..data import stream_seed
from .config import FDDConfig
from .steps import FDDState


def random_init_student(teacher: EVEModel) -> tuple[EVEModel, list[torch.nn.Parameter]]:
    """EVE's "Random Init" ablation: a ControlNet fresh from the T2I encoder and identity temporal
    layers, all trained by FDD together with the LoRA; the teachers keep their pretrained adapters."""
    cond = {**SHAPEWORLD_CONTROLNET, "conditioning_channels": teacher.unet.config.in_channels}
    controlnet = controlnet_from_unet(teacher.unet, len(teacher.spec.tasks), **cond)
    adapter_cfg = dict(motion_adapter_of(teacher.motion_unet).config)
    adapter_cfg = {k: v for k, v in adapter_cfg.items() if not k.startswith("_")}
    student = assemble(vae=teacher.vae, text_encoder=teacher.text_encoder, unet=teacher.unet,
                       controlnet=controlnet, motion_adapter=new_motion_adapter(**adapter_cfg),
                       spec=teacher.spec, schedule=teacher.schedule)
    extra = [*student.edit_adapter.parameters(), *student.first_frame.parameters()]
    extra += [p for n, p in student.motion_unet.named_parameters() if "motion_modules" in n]
    return student, extra


def build_state(cfg: FDDConfig, teacher: EVEModel | None = None) -> FDDState:
    teacher = teacher or load_pretrained(cfg.model)
    student, extra = (random_init_student(teacher) if cfg.ablation == "random-init" else (teacher, []))
    if cfg.lora_init not in ("fresh", "continue"):
        raise EveditError(f"lora_init must be 'fresh' or 'continue', got {cfg.lora_init!r}.")
    if student.has_lora and cfg.lora_init == "fresh":
        from ...models.lora import reset_alignment_lora

        reset_alignment_lora(student.motion_unet)
    params = student.add_alignment_lora(cfg.lora_rank)
    for p in extra:
        p.requires_grad_(True)
    g_opt = torch.optim.AdamW(params + extra, lr=cfg.lr, weight_decay=0.0)
    d_edit = d_video = d_opt = None
    if cfg.steps_adv > 0:
        features = BackboneFeatures(teacher.unet, tuple(cfg.disc_levels))
        dim = teacher.text_encoder.hidden_size
        d_edit = EditDiscriminator(features, dim, cfg.disc_dim)
        d_video = VideoDiscriminator(features, teacher.text_encoder.pooled_size, cfg.disc_dim)
        heads = [*d_edit.head_parameters(), *d_video.head_parameters()]
        d_opt = torch.optim.AdamW(heads, lr=cfg.disc_lr, betas=(0.0, 0.99), weight_decay=0.0)
    return FDDState(cfg, teacher, student, d_edit, d_video, g_opt, d_opt, torch.Generator())


def alignment_data(cfg: FDDConfig, teacher: EVEModel | None = None):
    """The alignment items: ShapeWorld's, a JSONL manifest's, or an encoded ``align`` store's
    (checked against the teacher's codec and text encoder)."""
    from ...world import AlignmentDataset

    kind = cfg.data.get("kind", "shapeworld")
    if kind == "store":
        from ..store import open_store

        return open_store(cfg.data, "align", getattr(teacher, "vae", None), getattr(teacher, "text_encoder", None))
    if kind == "shapeworld":
        from ...world import WorldConfig

        world = WorldConfig(frames=int(cfg.data.get("frames", 8)))
        return AlignmentDataset(split="train", length=int(cfg.data.get("length", 512)),
                                tasks=tuple(cfg.tasks), config=world)
    if kind == "jsonl":
        from .manifest import AlignmentManifest

        from ...world import TASKS

        return AlignmentManifest(cfg.data["path"], frames=int(cfg.data.get("frames", 8)), tasks=TASKS)
    raise EveditError(f"Unknown alignment data kind {kind!r}; use 'shapeworld', 'jsonl' or 'store'.")


def batch_indices(cfg: FDDConfig, step: int, n: int) -> list[int]:
    """The items of iteration ``step``: a seeded permutation per epoch (pure, so resumable)."""
    per_epoch = max(1, n // cfg.batch_size)
    epoch, pos = divmod(step, per_epoch)
    perm = np.random.default_rng(stream_seed(cfg.seed, 7, epoch)).permutation(n)
    return [int(i) for i in perm[pos * cfg.batch_size:(pos + 1) * cfg.batch_size]]


def trained_modules(state: FDDState) -> dict[str, torch.nn.Module]:
    """What a checkpoint holds: the LoRA (inside the student's motion UNet) and the heads."""
    mods = {"student_motion": state.student.motion_unet}
    if state.cfg.ablation == "random-init":
        mods.update(student_controlnet=state.student.edit_adapter, student_first=state.student.first_frame)
    if state.d_edit is not None:
        mods.update(d_edit=state.d_edit.heads, d_video=state.d_video.heads)
    return mods


def save_checkpoint(state: FDDState, out: Path, step: int) -> Path:
    root = out / "checkpoints"
    tmp = temp_dir(root, step)
    tmp.mkdir(parents=True, exist_ok=True)
    modules = trained_modules(state)
    trainable = {id(p) for g in state.g_opt.param_groups for p in g["params"]}
    if state.d_opt is not None:
        trainable |= {id(p) for g in state.d_opt.param_groups for p in g["params"]}
    weights = {f"{name}.{k}": p for name, m in modules.items() for k, p in m.named_parameters()
               if id(p) in trainable}
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in weights.items()}, str(tmp / "trained.safetensors"))
    save_tree(tmp, "g_opt", state.g_opt.state_dict())
    if state.d_opt is not None:
        save_tree(tmp, "d_opt", state.d_opt.state_dict())
    (tmp / "state.json").write_text(json.dumps({"step": step, "config": _cfg_dict(state.cfg)}, indent=2))
    final = step_dir(root, step)
    publish(tmp, final)
    prune_checkpoints(root, keep=2)
    return final


def load_checkpoint(state: FDDState, folder: Path) -> int:
    from safetensors.torch import load_file

    saved = load_file(str(folder / "trained.safetensors"))
    params = {f"{name}.{k}": p for name, m in trained_modules(state).items() for k, p in m.named_parameters()}
    missing = [k for k in saved if k not in params]
    if missing:
        raise EveditError(f"Checkpoint '{folder}' does not fit this alignment setup (e.g. {missing[0]}).")
    with torch.no_grad():
        for key, value in saved.items():
            params[key].copy_(value)
    state.g_opt.load_state_dict(load_tree(folder, "g_opt"))
    if state.d_opt is not None and (folder / "d_opt.json").is_file():
        state.d_opt.load_state_dict(load_tree(folder, "d_opt"))  # absent: saved in the SDS-only phase
    return int(json.loads((folder / "state.json").read_text())["step"])


def _cfg_dict(cfg: FDDConfig) -> dict:
    from dataclasses import asdict

    data = asdict(cfg)
    data["tasks"], data["disc_levels"] = list(cfg.tasks), list(cfg.disc_levels)
    return data
