"""Conditioning for one alignment batch, and the frozen teachers' own generations.

Per item: the input clip's latents (the edit adapter's condition), the output caption (backbone),
the instruction and task (edit adapter), and the first frame edited by the edit teacher (video
adapter condition, EVE section 4; with a style or subject LoRA, that edit passed through its
teacher, :func:`~evedit.models.token_lora.token_pass`). The "real" samples of the discriminators are the teachers'
generations from noise for the same conditioning (EVE section 3.2): the edit teacher's per-frame
edits, and the video teacher's clip from the edited first frame. They are kept in a fixed bank of
``bank_per_item`` generations per item, each made from noise seeded by (seed, item, slot), so a
resumed run sees exactly the same samples.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ...diffusion import ddim_sample, ddim_timesteps
from ...editing.auto_region import SAMPLES, default_region_tasks, estimate_region
from ...editing.editors import blend_region
from ...errors import EveditError
from ...models import Conditioning, EVEModel
from ...models.codec import encode_video
from ...models.guided import edit_teacher_guided, text_guided
from ...models.token_lora import token_pass
from .config import FDDConfig


@dataclass
class AlignBatch:
    """One batch, ready for the student and the teachers."""

    source: torch.Tensor  # (B, C, F, h, w) input clip latents (the edit adapter's condition)
    caption: torch.Tensor  # (B, L, D) output caption
    caption_pooled: torch.Tensor  # (B, Dp)
    instruction: torch.Tensor  # (B, L, D)
    task: torch.Tensor  # (B,)
    null: torch.Tensor  # (1, L, D) the empty text
    first_frame: torch.Tensor | None = None  # (B, C, h, w) edit teacher's first-frame edit
    edit_real: torch.Tensor | None = None  # (B, C, F, h, w) edit teacher's per-frame edits
    video_real: torch.Tensor | None = None  # (B, C, F, h, w) video teacher's clip
    token_caption: torch.Tensor | None = None  # (B, L, D) with a style/subject LoRA: the caption with its trigger
    token_pooled: torch.Tensor | None = None  # (B, Dp)
    token_real: torch.Tensor | None = None  # (B, C, F, h, w) the style/subject teacher's frames
    token_teacher: torch.Tensor | None = None  # (B, L, D) that teacher's caption, when not token_caption
    video_caption: torch.Tensor | None = None  # (B, L, D) the video teacher's caption, when not caption
    source_feats: list | None = None  # D_e's features of the clean input frames (cached)
    region: torch.Tensor | None = None  # (B, 1, F, h, w) 1 where the edit may act (align_region)

    def edit_cond(self) -> Conditioning:
        return Conditioning(caption=self.caption, instruction=self.instruction, source=self.source,
                            task=self.task)

    def video_cond(self) -> Conditioning:
        caption = self.caption if self.video_caption is None else self.video_caption
        return Conditioning(caption=caption, first_frame=self.first_frame)

    def token_cond(self) -> Conditioning:
        return Conditioning(caption=self.token_caption if self.token_teacher is None else self.token_teacher)

    def student_cond(self) -> Conditioning:
        """With a style or subject LoRA the student runs on the caption with its trigger."""
        return Conditioning(caption=self.caption, instruction=self.instruction, source=self.source,
                            task=self.task, first_frame=self.first_frame, token_caption=self.token_caption)


def encode_batch(model: EVEModel, batch: dict, video_caption: str = "routing") -> AlignBatch:
    """Encode clips and texts of a collated alignment batch (no teacher calls yet).

    A batch from an ``align`` store is encoded already: its latents and text states are used as
    they are (the null text comes from the model's encoder, cached after its first use).
    ``video_caption="output"``: the video teacher reads each item's output caption
    (``FDDConfig.video_teacher_caption``)."""
    ab = _encode_batch(model, batch)
    if video_caption != "output":
        return ab
    if "source" in batch:
        if "caption_states" not in batch:
            raise EveditError("video_teacher_caption 'output' needs the output captions: this align store "
                              "holds none (prompt_routing 'instruction'); align from ShapeWorld or a manifest.")
        return replace(ab, video_caption=batch["caption_states"].to(ab.caption))
    with torch.no_grad():
        return replace(ab, video_caption=model.text_encoder(list(batch["output_caption"])).hidden_states.to(ab.caption))


def _encode_batch(model: EVEModel, batch: dict) -> AlignBatch:
    device = model.unet.device
    routing = model.spec.prompt_routing
    if "source" in batch:
        key = "instruction" if routing == "instruction" else "caption"
        ab = AlignBatch(source=batch["source"].to(device), caption=batch[f"{key}_states"].to(device),
                        caption_pooled=batch[f"{key}_pooled"].to(device),
                        instruction=batch["instruction_states"].to(device), task=batch["task"].to(device),
                        null=model.text_encoder([""]).hidden_states)
        ab = _empty_caption(model, ab) if routing == "empty" else ab
        return _with_token(model, ab, None if routing == "empty" else [])
    with torch.no_grad():
        source = encode_video(model.vae, batch["clip"].to(device))
        caption = model.text_encoder(list(batch["output_caption"]))
        instruction = model.text_encoder(list(batch["instruction"])).hidden_states
        null = model.text_encoder([""]).hidden_states
    if routing == "instruction":
        caption = model.text_encoder(list(batch["instruction"]))
    ab = AlignBatch(source=source, caption=caption.hidden_states, caption_pooled=caption.pooled,
                    instruction=instruction, task=batch["task"].to(device), null=null)
    ab = _empty_caption(model, ab) if routing == "empty" else ab
    texts = {"empty": None, "instruction": list(batch["instruction"])}.get(routing, list(batch["output_caption"]))
    return _with_token(model, ab, texts)


def _with_token(model: EVEModel, ab: AlignBatch, texts: list[str] | None) -> AlignBatch:
    """With a style or subject LoRA: its teacher's and the student's caption, the routing's caption
    (``texts``; None: the empty one) with the LoRA's trigger. An encoded store keeps no caption
    text, so there only the empty routing can take the trigger (``texts == []``: refused)."""
    if model.token_lora is None:
        return ab
    if texts is not None and not texts:
        raise EveditError("A style or subject LoRA needs the captions' text: align from ShapeWorld or a manifest, "
                          "or with prompt_routing 'empty', not from an encoded store.")
    b = ab.caption.shape[0]
    with torch.no_grad():
        triggered = model.text_encoder([model.token_lora.caption(t) for t in (texts or [""] * b)])
    return replace(ab, token_caption=triggered.hidden_states.to(ab.caption), token_pooled=triggered.pooled.to(ab.caption_pooled))


def with_teacher_caption(model: EVEModel, ab: AlignBatch, batch: dict) -> AlignBatch:
    """``token_teacher_caption: output``: the style or subject teacher reads each item's output
    caption with the trigger (the student keeps its own caption)."""
    if "output_caption" not in batch:
        raise EveditError("token_teacher_caption 'output' needs the captions' text: align from ShapeWorld "
                          "or a manifest, not from an encoded store.")
    with torch.no_grad():
        texts = [model.token_lora.caption(str(c)) for c in batch["output_caption"]]
        return replace(ab, token_teacher=model.text_encoder(texts).hidden_states.to(ab.caption))


def _empty_caption(model: EVEModel, ab: AlignBatch) -> AlignBatch:
    """``prompt_routing="empty"``: the student, both teachers and the critics' text see the empty
    caption, as the edit does from an instruction alone (the video teacher, trained with 10% of
    captions dropped, follows the first frame). ``FDDConfig.video_teacher_caption: output`` gives
    the video teacher the output caption instead, the student keeping the empty one: with the empty
    caption its SDS term alone drifts off the edit (benchmarks/results/obj20_benchmark.md)."""
    with torch.no_grad():
        empty = model.text_encoder([""] * ab.caption.shape[0])
    return replace(ab, caption=empty.hidden_states.to(ab.caption), caption_pooled=empty.pooled.to(ab.caption_pooled))


def _noise(shape, seeds: list[int], device, first_frame: int = 0) -> torch.Tensor:
    """Noise (B, C, F, h, w) seeded per item and per frame, so a generation depends neither on the
    batch's composition nor on how many frames are generated at once."""
    _, c, f, h, w = shape
    items = []
    for s in seeds:
        frames = [torch.randn(c, h, w, generator=torch.Generator().manual_seed(s * 1009 + first_frame + j))
                  for j in range(f)]
        items.append(torch.stack(frames, dim=1))  # (C, F, h, w)
    return torch.stack(items).to(device)


def kept_sample(fn, noise: torch.Tensor, timesteps: list[int], schedule, region: torch.Tensor | None,
                latents: torch.Tensor) -> torch.Tensor:
    """DDIM from ``noise``; with a ``region``, the cells outside it are the input's ``latents`` noised
    to each step (with ``noise``) before every call and clean in the result, as EVE samples a region
    (:func:`evedit.editing.editors.blend_region`)."""
    if region is None:
        return ddim_sample(fn, noise, timesteps, schedule)
    x0 = ddim_sample(lambda x, t: fn(blend_region(x, region, latents, noise, t, schedule), t),
                     noise, timesteps, schedule)
    return blend_region(x0, region, latents)


@torch.no_grad()
def edit_region(model: EVEModel, ab: AlignBatch, seeds: list[int]) -> torch.Tensor:
    """``align_region``: each item's edit region ``(B, 1, F, h, w)`` as ``--region auto`` finds it (the
    edit adapter's text direction, :func:`evedit.editing.auto_region.estimate_region`), on the model's
    region tasks (:func:`~evedit.editing.auto_region.default_region_tasks`); every cell of the other
    tasks' items (they edit whole frames)."""
    noises = [_noise(ab.source.shape, [s + 7919 * (j + 1) for s in seeds], ab.source.device) for j in range(SAMPLES)]
    region = estimate_region(model, ab.edit_cond(), ab.null, ab.source, noises)
    region_tasks = default_region_tasks(model)  # none for a styled model, as EVE samples it
    local = torch.tensor([model.spec.tasks[int(t)] in region_tasks for t in ab.task],
                         device=region.device).view(-1, 1, 1, 1, 1)
    return torch.where(local, region, torch.ones_like(region))


def edit_teacher(model: EVEModel, ab: AlignBatch, styled: bool = False):
    """The edit teacher and its conditioning: ``styled`` (``FDDConfig.edit_teacher_token``), the edit
    adapter on the style or subject LoRA's backbone reading the student's caption with the trigger."""
    if styled:
        return model.denoiser("edit-token"), ab.edit_cond().replace(caption=ab.token_caption)
    return model.denoiser("edit"), ab.edit_cond()


@torch.no_grad()
def edit_teacher_generate(model: EVEModel, ab: AlignBatch, cfg: FDDConfig, seeds: list[int],
                          frames: slice = slice(None), styled: bool = False) -> torch.Tensor:
    """Per-frame edits from noise by the edit teacher (ip2p dual guidance, DDIM; ``styled``: see
    :func:`edit_teacher`), kept to ``ab.region`` when it is set."""
    teacher, cond = edit_teacher(model, ab, styled)
    cond = cond.replace(source=cond.source[:, :, frames])
    shape = cond.source.shape[:1] + (model.unet.config.in_channels,) + cond.source.shape[2:]

    def fn(x, t):
        return edit_teacher_guided(teacher, x, t, cond, ab.null, cfg.edit_image_scale, cfg.edit_text_scale)

    first = frames.start or 0
    region = None if ab.region is None else ab.region[:, :, frames]
    return kept_sample(fn, _noise(shape, seeds, ab.source.device, first), ddim_timesteps(cfg.real_steps),
                       model.schedule, region, cond.source)


def _caption_guided_generate(model: EVEModel, name: str, cond: Conditioning, scale: float, ab: AlignBatch,
                             cfg: FDDConfig, seeds: list[int]) -> torch.Tensor:
    """A clip from noise by the teacher ``name`` with caption CFG ``scale`` (DDIM, ``real_steps``)."""
    teacher = model.denoiser(name)

    def fn(x, t):
        return text_guided(teacher, x, t, cond, ab.null, scale)

    return ddim_sample(fn, _noise(ab.source.shape, seeds, ab.source.device),
                       ddim_timesteps(cfg.real_steps), model.schedule)


@torch.no_grad()
def video_teacher_generate(model: EVEModel, ab: AlignBatch, cfg: FDDConfig, seeds: list[int]) -> torch.Tensor:
    """A clip from noise by the video teacher, from the edited first frame and the caption."""
    return _caption_guided_generate(model, "video", ab.video_cond(), cfg.video_scale, ab, cfg, seeds)


@torch.no_grad()
def token_teacher_generate(model: EVEModel, ab: AlignBatch, cfg: FDDConfig, seeds: list[int]) -> torch.Tensor:
    """Frames from noise by the style or subject teacher (backbone + LoRA) on the caption with the trigger."""
    return _caption_guided_generate(model, model.token_lora.kind, ab.token_cond(), cfg.token_scale, ab, cfg, seeds)


class TeacherBank:
    """Memoised teacher generations per (item, slot): first frame, edit real, video real."""

    def __init__(self, model: EVEModel, cfg: FDDConfig):
        self.model, self.cfg = model, cfg
        self.store: dict[tuple[int, int], dict[str, torch.Tensor]] = {}
        self.regions: dict[int, torch.Tensor] = {}  # align_region: per item (no slot), found once

    def _seeds(self, indices: list[int], slot: int, salt: int) -> list[int]:
        return [(((self.cfg.seed * 1_000_003 + int(i)) * 31 + slot) * 7 + salt) % (2**31 - 1)
                for i in indices]

    def fill(self, ab: AlignBatch, indices: list[int], step: int, with_reals: bool) -> AlignBatch:
        """Attach the first-frame edit (always) and the reals (adversarial phase) to ``ab``."""
        slot = step % max(1, self.cfg.bank_per_item)
        keys = [(int(i), slot) for i in indices]
        need = [k for k in keys if k not in self.store or (with_reals and "edit_real" not in self.store[k])]
        if need:
            self._generate(ab, keys, slot, with_reals)
        ab.first_frame = torch.stack([self.store[k]["first_frame"] for k in keys])
        if self.cfg.align_region:
            ab.region = self._regions(ab, [k[0] for k in keys])
        if with_reals:
            ab.edit_real = torch.stack([self.store[k]["edit_real"] for k in keys])
            if "video" in self.cfg.teachers:
                ab.video_real = torch.stack([self.store[k]["video_real"] for k in keys])
            if self.cfg.token_teacher_kind is not None:
                ab.token_real = torch.stack([self.store[k]["token_real"] for k in keys])
        return ab

    def _regions(self, ab: AlignBatch, indices: list[int]) -> torch.Tensor:
        """The items' edit regions, each found once: a region depends on its item alone."""
        if any(i not in self.regions for i in indices):
            for i, region in zip(indices, edit_region(self.model, ab, self._seeds(indices, 0, 4))):
                self.regions[i] = region
        return torch.stack([self.regions[i] for i in indices])

    def _generate(self, ab: AlignBatch, keys, slot: int, with_reals: bool) -> None:
        indices = [k[0] for k in keys]
        styled = self.cfg.edit_teacher_token  # then the reals come from the styled edit teacher
        frames = slice(None) if with_reals and not styled else slice(0, 1)
        if self.cfg.align_region:
            ab.region = self._regions(ab, indices)
        edits = edit_teacher_generate(self.model, ab, self.cfg, self._seeds(indices, slot, 0), frames)
        reals = (edit_teacher_generate(self.model, ab, self.cfg, self._seeds(indices, slot, 0), styled=True)
                 if with_reals and styled else edits)
        ab.first_frame = edits[:, :, 0]
        if self.model.token_lora is not None:  # a style/subject group's first frame: edited, then passed
            noise = _noise(edits[:, :, :1].shape, self._seeds(indices, slot, 3), edits.device)
            ab.first_frame = token_pass(self.model, edits[:, :, :1], ab.token_caption, ab.null, noise)[:, :, 0]
        video = (video_teacher_generate(self.model, ab, self.cfg, self._seeds(indices, slot, 1))
                 if with_reals and "video" in self.cfg.teachers else None)  # each teacher's reals only
        triggered = (token_teacher_generate(self.model, ab, self.cfg, self._seeds(indices, slot, 2))
                  if with_reals and self.cfg.token_teacher_kind is not None else None)
        for j, key in enumerate(keys):
            entry = {"first_frame": ab.first_frame[j].cpu()}
            if with_reals:
                entry["edit_real"] = reals[j].cpu()
            if video is not None:
                entry["video_real"] = video[j].cpu()
            if triggered is not None:
                entry["token_real"] = triggered[j].cpu()
            self.store[key] = {k: v.to(ab.source.device) for k, v in entry.items()}
