"""What FDD trains and on which items: the student (LoRA, or random-init's parts), the
discriminator heads, the alignment data and its order (:func:`batch_indices`, a pure function of
(seed, step), so ``--resume`` continues exactly)."""

from __future__ import annotations

import numpy as np
import torch

from ...errors import EveditError
from ...models import EVEModel, assemble, load_pretrained
from ...models.discriminators import BackboneFeatures, EditDiscriminator, TokenDiscriminator, VideoDiscriminator
from ...models.edit_adapter import SourceBranch, controlnet_from_unet
from ...models.presets import SHAPEWORLD_CONTROLNET
from ...models.video_adapter import motion_adapter_of, new_motion_adapter
from ..data import stream_seed
from .config import FDDConfig
from .loss import FDDState


def _fresh_branch(teacher: EVEModel) -> SourceBranch | None:
    branch = teacher.edit_adapter.source_branch
    return None if branch is None else SourceBranch(**{k: v for k, v in branch.config.items() if not k.startswith("_")})


def random_init_student(teacher: EVEModel) -> tuple[EVEModel, list[torch.nn.Parameter]]:
    """EVE's "Random Init" ablation: a ControlNet fresh from the T2I encoder and identity temporal
    layers (and a zero source branch where the teacher's adapter has one), all trained by FDD together
    with the LoRA; the teachers keep their pretrained adapters."""
    cond = {**SHAPEWORLD_CONTROLNET, "conditioning_channels": teacher.unet.config.in_channels}
    controlnet = controlnet_from_unet(teacher.unet, len(teacher.spec.tasks), **cond)
    adapter_cfg = dict(motion_adapter_of(teacher.motion_unet).config)
    adapter_cfg = {k: v for k, v in adapter_cfg.items() if not k.startswith("_")}
    student = assemble(vae=teacher.vae, text_encoder=teacher.text_encoder, unet=teacher.unet,
                       controlnet=controlnet, motion_adapter=new_motion_adapter(**adapter_cfg),
                       spec=teacher.spec, schedule=teacher.schedule, source_branch=_fresh_branch(teacher))
    student.extras = dict(teacher.extras)  # the metric model and task classifier travel to the export
    extra = [*student.edit_adapter.parameters(), *student.first_frame.parameters()]
    extra += [p for n, p in student.motion_unet.named_parameters() if "motion_modules" in n]
    return student, extra


def build_state(cfg: FDDConfig, teacher: EVEModel | None = None) -> FDDState:
    teacher = teacher or load_pretrained(cfg.model)
    if cfg.token_lora:
        _attach_token_lora(cfg, teacher)
    kind = cfg.token_teacher_kind
    if kind is not None and (teacher.token_lora is None or teacher.token_lora.kind != kind):
        raise EveditError(f"The {kind} teacher needs a {kind} LoRA: set token_lora to a {kind}-lora export "
                          f"(evedit train {kind}-lora) or align a model folder that holds one.")
    student, extra = (random_init_student(teacher) if cfg.ablation == "random-init" else (teacher, []))
    if teacher.token_lora is not None and student is not teacher:
        _attach_token_lora(cfg, student, teacher.token_lora.folder)
    if cfg.lora_init not in ("fresh", "continue"):
        raise EveditError(f"lora_init must be 'fresh' or 'continue', got {cfg.lora_init!r}.")
    if student.has_lora:
        _check_rank(cfg, student)
    if student.has_lora and cfg.lora_init == "fresh":
        from ...models.lora import reset_alignment_lora

        reset_alignment_lora(student.motion_unet)
    params = student.add_alignment_lora(cfg.lora_rank)
    for p in extra:
        p.requires_grad_(True)
    critics: dict[str, torch.nn.Module] = {}
    if cfg.steps_adv > 0:  # one discriminator per teacher, heads on the frozen backbone's features
        features = BackboneFeatures(teacher.unet, tuple(cfg.disc_levels))
        critics = {name: CRITICS[name](features, teacher, cfg.disc_dim) for name in cfg.teachers}
    heads = [p for critic in critics.values() for p in critic.head_parameters()]
    return FDDState(cfg, teacher, student, critics, params + extra, heads, torch.Generator())


def _check_rank(cfg: FDDConfig, student: EVEModel) -> None:
    """A folder's alignment LoRA is re-initialised or continued in place, at its own rank."""
    from ...models.lora import ADAPTER_NAME, lora_layers

    rank = next(layer.r[ADAPTER_NAME] for layer in lora_layers(student.motion_unet) if ADAPTER_NAME in layer.r)
    if rank != cfg.lora_rank:
        raise EveditError(f"lora_rank is {cfg.lora_rank} but the model folder's alignment LoRA has rank {rank}, "
                          f"which lora_init '{cfg.lora_init}' keeps: set lora_rank {rank}, or align a folder "
                          "without an alignment LoRA.")


def _attach_token_lora(cfg: FDDConfig, model: EVEModel, folder=None) -> None:
    from ...models.token_lora import attach_token_lora, read_token_lora

    attach_token_lora(model, read_token_lora(folder or cfg.token_lora, cfg.token_template, cfg.token_scale))


#: Each teacher kind's discriminator: (shared frozen features, teacher model, head width) -> critic.
CRITICS = {
    "edit": lambda features, teacher, dim: EditDiscriminator(features, teacher.text_encoder.hidden_size, dim),
    "video": lambda features, teacher, dim: VideoDiscriminator(features, teacher.text_encoder.pooled_size, dim),
    "style": lambda features, teacher, dim: TokenDiscriminator(features, teacher.text_encoder.pooled_size, dim),
    "subject": lambda features, teacher, dim: TokenDiscriminator(features, teacher.text_encoder.pooled_size, dim),
}


def alignment_data(cfg: FDDConfig, teacher: EVEModel | None = None):
    """The alignment items: ShapeWorld's, its subject edits' (:class:`~evedit.world.groups.SubjectEditDataset`),
    a JSONL manifest's, or an encoded ``align`` store's (checked against the teacher's codec and text encoder).
    ShapeWorld items are rendered in the world the teacher was trained on (its ``spec.world``)."""
    from ...world import AlignmentDataset, WorldConfig

    kind = cfg.data.get("kind", "shapeworld")
    world = getattr(getattr(teacher, "spec", None), "world", None) or {}
    settings = {**world, "frames": int(cfg.data.get("frames", 8))}
    if kind == "store":
        from ..store import open_store

        return open_store(cfg.data, "align", getattr(teacher, "vae", None), getattr(teacher, "text_encoder", None))
    if kind == "shapeworld":
        return AlignmentDataset(split="train", length=int(cfg.data.get("length", 512)),
                                tasks=tuple(cfg.tasks), config=WorldConfig(**settings))
    if kind == "subject-edits":  # the subject group's items: "replace the X with the sks star"
        from ...world.groups import SubjectEditDataset

        return SubjectEditDataset(split="train", length=int(cfg.data.get("length", 512)),
                                  config=WorldConfig(**settings))
    if kind == "jsonl":
        from .manifest import AlignmentManifest

        from ...world import TASKS

        return AlignmentManifest(cfg.data["path"], frames=int(cfg.data.get("frames", 8)), tasks=TASKS)
    raise EveditError(f"Unknown alignment data kind {kind!r}; use 'shapeworld', 'subject-edits', 'jsonl' or 'store'.")


def batch_indices(cfg: FDDConfig, step: int, n: int, batch: int | None = None) -> list[int]:
    """The ``batch`` (default ``cfg.batch_size``) items of iteration ``step``: a seeded permutation
    per epoch (pure, so resumable)."""
    batch = batch or cfg.batch_size
    per_epoch = max(1, n // batch)
    epoch, pos = divmod(step, per_epoch)
    perm = np.random.default_rng(stream_seed(cfg.seed, 7, epoch)).permutation(n)
    return [int(i) for i in perm[pos * batch:(pos + 1) * batch]]


def trained_modules(state: FDDState) -> dict[str, torch.nn.Module]:
    """What a checkpoint holds: the LoRA (inside the student's motion UNet) and the heads."""
    mods = {"student_motion": state.student.motion_unet}
    if state.cfg.ablation == "random-init":
        mods.update(student_controlnet=state.student.edit_adapter, student_first=state.student.first_frame)
    mods.update({f"d_{name}": critic.heads for name, critic in state.critics.items()})
    return mods


def _cfg_dict(cfg: FDDConfig) -> dict:
    from dataclasses import asdict

    data = asdict(cfg)
    data["tasks"], data["disc_levels"] = list(cfg.tasks), list(cfg.disc_levels)
    return data
