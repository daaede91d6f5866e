"""The pretraining quality report: every figure the pretraining recipe promises, on held-out data.

``evedit model report --model models/shapeworld`` measures a ShapeWorld model folder on the **test
split** (seeds ``[2e6, 2.1e6)``, never seen in training) and writes ``quality.json``; ``--card``
adds the table to the folder's model card (both written by :mod:`evedit.training.quality_card`).
The figures and their targets:

- ``codec``: reconstruction PSNR of test frames (target >= 30 dB);
- ``t2i``: images generated from a test caption (DDIM, classifier-free guidance), ranked by
  ShapeCLIP among the caption and its 9 one-attribute-off siblings; share ranked first
  (target >= 50%, chance 10%);
- ``edit_teacher``: per-frame edits (backbone + ControlNet, InstructPix2Pix dual guidance, DDIM 50)
  against the ground-truth edited frame, PSNR per task and averaged (target >= 24 dB), and edit
  accuracy per task and averaged (share of frames where the asked change happened, judged from the
  scene graph and masks by :func:`evedit.eval.accuracy.edit_accuracy`; target >= 80% on the color
  task); the teacher gets the instruction alone (no caption), as a user edits; beside it, per task,
  the PSNR of returning the input unchanged on the same frames (Identity, the floor to clear);
- ``video_teacher``: clips generated from a real test clip's first frame and caption; PSNR of the
  generated first frame against the given one, ShapeCLIP frame consistency (mean cosine of all frame
  pairs) of generated and of real clips, and the ratio of their mean frame-to-frame change
  (1 = moves as much as real clips; 0 = frozen);
- ``shapeclip``: zero-shot top-1 caption retrieval among 10 one-attribute-off captions, per frame
  and per clip (target >= 85%);
- ``task_classifier``: accuracy on the held-out (last) phrasing of test instructions (target >= 95%).

Choices: the t2i ranking uses the same guidance (4.0) and 25 DDIM steps as the t2i stage's
samples; the video teacher uses its FDD guidance (2.0) and 25 DDIM steps. Every draw is seeded,
so the same folder gives the same report.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import default_collate
from tqdm.auto import tqdm

from ..diffusion import ddim_sample, ddim_timesteps
from ..diffusion.guidance import cfg as cfg_rule
from ..models import Conditioning, EVEModel, load_model
from ..models.codec import decode_video, downsampling, encode_video
from ..models.guided import edit_teacher_guided, text_guided
from ..world import TASKS, ClipCaptionDataset, EditTripletDataset, ImageCaptionDataset
from .stages.common import psnr as _psnr, to_uint8

TARGETS = {"codec.psnr": 30.0, "t2i.top1": 0.50, "edit_teacher.psnr_mean": 24.0,
           "edit_teacher.accuracy_per_task.color": 0.80,
           "shapeclip.image_top1": 0.85, "task_classifier.heldout_phrasing_acc": 0.95}


def _batches(dataset, n: int, size: int):
    for start in range(0, n, size):
        yield default_collate([dataset[i] for i in range(start, min(n, start + size))])


def _latent_hw(model: EVEModel) -> tuple[int, int]:
    side = model.spec.resolution // downsampling(model.vae)
    return side, side


@torch.no_grad()
def codec_quality(model: EVEModel, items: int = 64) -> dict:
    values = []
    for batch in _batches(ImageCaptionDataset("test", items, model.spec.world_config()), items, 32):
        x = batch["image"][:, :, None]  # (B, 3, 1, H, W)
        values.append(_psnr(decode_video(model.vae, encode_video(model.vae, x)), x))
    return {"psnr": float(torch.cat(values).mean()), "items": items}


@torch.no_grad()
def t2i_generate(model: EVEModel, captions: list[str], steps: int = 25, guidance: float = 4.0,
                 seed: int = 0) -> torch.Tensor:
    """The backbone alone: DDIM with classifier-free guidance from captions to (N, 3, H, W) pixels."""
    text = model.text_encoder(captions).hidden_states
    null = model.text_encoder([""]).hidden_states.expand_as(text)

    def fn(x, t):
        c, u = model.unet(torch.cat([x, x]), torch.cat([t, t]), torch.cat([text, null])).sample.chunk(2)
        return cfg_rule(u, c, guidance)

    shape = (len(captions), model.unet.config.in_channels, *_latent_hw(model))
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    z = ddim_sample(fn, noise, ddim_timesteps(steps), model.schedule)
    return decode_video(model.vae, z[:, :, None])[:, :, 0]


@torch.no_grad()
def t2i_quality(model: EVEModel, scorer, items: int = 64, steps: int = 25, guidance: float = 4.0) -> dict:
    from .stages.clip import ShapeCLIPDataset, _rows

    data, wins, seen = ShapeCLIPDataset("test", items, 9, model.spec.world_config()), [], 0
    for batch in _batches(data, items, 16):
        rows, valid = _rows(batch["captions"], len(batch["valid"])), batch["valid"]
        images = t2i_generate(model, [r[0] for r in rows], steps, guidance, seed=1000 + seen)
        emb = scorer.clip.image_features(images)
        for i, row in enumerate(rows):
            cands = [c for c, ok in zip(row, valid[i]) if ok]
            scores = torch.cat([scorer.text(c) for c in cands]) @ emb[i]
            wins.append(float(scores.argmax() == 0))
        seen += len(rows)
    return {"top1": float(np.mean(wins)), "items": items, "candidates": 10, "steps": steps,
            "guidance": guidance}


@torch.no_grad()
def sdedit_round_trip(model: EVEModel, frames: torch.Tensor, captions: list[str], t_start: int, steps: int,
                      guidance: float, generator: torch.Generator) -> torch.Tensor:
    """Frames (N, 3, H, W) encoded, noised to ``t_start`` (one draw from ``generator``), denoised by
    the backbone alone with DDIM and CFG on ``captions``, decoded (SDEdit's round trip, Meng et al.
    2022); ``t_start`` 0 gives the codec's reconstruction."""
    z = encode_video(model.vae, frames[:, :, None])[:, :, 0]
    if t_start > 0:
        text = model.text_encoder(list(captions)).hidden_states
        null = model.text_encoder([""]).hidden_states.expand_as(text)

        def fn(x_t, t):
            c, u = model.unet(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([text, null])).sample.chunk(2)
            return cfg_rule(u, c, guidance)

        t = torch.full((len(z),), t_start, dtype=torch.long)
        z_t = model.schedule.add_noise(z, torch.randn(z.shape, generator=generator), t)
        z = ddim_sample(fn, z_t, [t_start, *[s for s in ddim_timesteps(steps) if s < t_start]], model.schedule)
    return decode_video(model.vae, z[:, :, None])[:, :, 0]


@torch.no_grad()
def t2i_round_trip(model: EVEModel, items: int = 64, noise_levels: tuple[int, ...] = (300, 600),
                   steps: int = 25, guidance: float = 4.0) -> dict:
    """How much of a test frame the codec and backbone give back after noising it to ``t``.

    Each frame goes through :func:`sdedit_round_trip` with its caption; the figure is the PSNR
    against the frame. It bounds what an editor on this backbone keeps of what it should not
    change, and separates backbones on different codecs where ShapeCLIP top-1 sits at chance.
    """
    out = {}
    for t_start in noise_levels:
        values, g = [], torch.Generator().manual_seed(0)
        for batch in _batches(ImageCaptionDataset("test", items, model.spec.world_config()), items, 32):
            x = batch["image"]
            y = sdedit_round_trip(model, x, batch["caption"], t_start, steps, guidance, g)
            values.append(_psnr(y, x))
        out[f"psnr_t{t_start}"] = float(torch.cat(values).mean())
    return {**out, "items": items, "steps": steps, "guidance": guidance}


@torch.no_grad()
def edit_teacher_quality(model: EVEModel, per_task: int = 16, steps: int = 50, image_scale: float | None = None,
                         text_scale: float | None = None, progress: bool = True, split: str = "test",
                         with_caption: bool = False) -> dict:
    """Per-frame edits of ``split`` frames, ``per_task`` frames of every task, against the true edit.

    The teacher gets what a user gives, the instruction alone: the backbone's text is the empty
    one (the instruction for ``prompt_routing="instruction"`` models), as
    :func:`evedit.editing.conditioning.encode_texts` does; ``with_caption`` hands it the
    ground-truth output caption instead (figures labelled "caption given").
    Scales default to the teacher's own (:class:`~evedit.training.fdd.config.FDDConfig`), the
    ones FDD and the baselines sample it with. ``identity_psnr_per_task`` is the floor on the same
    frames: the PSNR of returning each input frame unchanged (issue 16's "above Identity" check).
    """
    image_scale, text_scale = teacher_scales(image_scale, text_scale)
    out: dict[str, float] = {}
    accuracy: dict[str, float | None] = {}
    identity: dict[str, float] = {}
    for task in tqdm(TASKS, desc="edit teacher", disable=not progress):
        values, kept, hits = [], [], []
        data = EditTripletDataset(split, per_task, tasks=(task,), config=model.spec.world_config())
        for start, batch in zip(range(0, per_task, 16), _batches(data, per_task, 16)):
            if model.spec.prompt_routing == "instruction":
                captions = list(batch["instruction"])
            else:
                captions = list(batch["output_caption"]) if with_caption else None
            images = guided_edits(model, batch, captions, steps, len(values) + 17 * TASKS.index(task),
                                  image_scale, text_scale)
            values.append(_psnr(images, batch["output_image"]))
            kept.append(_psnr(batch["input_image"], batch["output_image"]))
            hits += triplet_accuracies(data, start, images)
        out[task], identity[task] = float(torch.cat(values).mean()), float(torch.cat(kept).mean())
        judged = [h for h in hits if h is not None]
        accuracy[task] = float(np.mean(judged)) if judged else None
    judged_tasks = [a for a in accuracy.values() if a is not None]
    return {"psnr_mean": float(np.mean(list(out.values()))), "psnr_per_task": out,
            "identity_psnr_per_task": identity,
            "accuracy_mean": float(np.mean(judged_tasks)) if judged_tasks else None, "accuracy_per_task": accuracy,
            "frames_per_task": per_task, "steps": steps, "image_scale": image_scale, "text_scale": text_scale,
            "caption": "output caption given" if with_caption else "instruction alone"}


def teacher_scales(image_scale: float | None, text_scale: float | None) -> tuple[float, float]:
    """The edit teacher's ip2p (image, text) scales; None takes the ones FDD samples it with."""
    from .fdd.config import FDDConfig

    return (FDDConfig.edit_image_scale if image_scale is None else image_scale,
            FDDConfig.edit_text_scale if text_scale is None else text_scale)


@torch.no_grad()
def guided_edits(model: EVEModel, batch: dict, captions: list[str] | None, steps: int, seed: int,
                 image_scale: float | None = None, text_scale: float | None = None,
                 start: tuple[torch.Tensor, int] | None = None) -> torch.Tensor:
    """The edit teacher's edits of a triplet batch's input frames: ip2p dual guidance, DDIM
    ``steps`` from noise drawn with ``seed``. ``captions``: the backbone's texts (None: the empty
    text, what a user with only an instruction gives). Scales default to the teacher's own
    (:class:`~evedit.training.fdd.config.FDDConfig`). ``start`` = (images (B, 3, H, W), t): finish
    the schedule from those images noised to its first timestep at or below t (SDEdit) instead of
    sampling it all from noise. Returns (B, 3, H, W) in [-1, 1]."""
    latents = guided_edit_latents(model, batch, captions, steps, seed, image_scale, text_scale, start)
    return decode_video(model.vae, latents[:, :, None])[:, :, 0]


@torch.no_grad()
def guided_edit_latents(model: EVEModel, batch: dict, captions: list[str] | None, steps: int, seed: int,
                        image_scale: float | None = None, text_scale: float | None = None,
                        start: tuple[torch.Tensor, int] | None = None) -> torch.Tensor:
    """:func:`guided_edits` before the decoder: the (B, C, h, w) latents."""
    image_scale, text_scale = teacher_scales(image_scale, text_scale)
    teacher, null = model.denoiser("edit"), model.text_encoder([""]).hidden_states
    src = encode_video(model.vae, batch["input_image"][:, :, None])  # (B, C, 1, h, w)
    instruction = model.text_encoder(list(batch["instruction"])).hidden_states
    caption = null.expand_as(instruction) if captions is None else model.text_encoder(captions).hidden_states
    cond = Conditioning(caption=caption, instruction=instruction, source=src, task=batch["task"])

    def fn(x, t):
        return edit_teacher_guided(teacher, x, t, cond, null, image_scale, text_scale)

    noise = torch.randn(src.shape, generator=torch.Generator().manual_seed(seed))
    timesteps = ddim_timesteps(steps)
    if start is not None:
        timesteps = [t for t in timesteps if t <= start[1]]
        if not timesteps:
            raise ValueError(f"no step of a {steps}-step schedule is at or below t = {start[1]}")
        frames = encode_video(model.vae, start[0][:, :, None])
        noise = model.schedule.add_noise(frames, noise, torch.full((frames.shape[0],), timesteps[0]))
    return ddim_sample(fn, noise, timesteps, model.schedule)[:, :, 0]


def mean_accuracy(data: EditTripletDataset, start: int, images: torch.Tensor) -> float:
    """The mean of :func:`triplet_accuracies` over the judged items (NaN when none is judged)."""
    judged = [h for h in triplet_accuracies(data, start, images) if h is not None]
    return float(np.mean(judged)) if judged else float("nan")


def triplet_accuracies(data: EditTripletDataset, start: int, images: torch.Tensor) -> list[float | None]:
    """Edit accuracy (1.0 / 0.0, None if not judged) of ``images`` (B, 3, H, W) in [-1, 1], the edited
    frames of ``data`` items ``start .. start + B - 1``."""
    from ..eval.accuracy import edit_accuracy

    frames = to_uint8(images.detach().float())  # (B, H, W, 3)
    out = []
    for i, frame in enumerate(frames):
        ex, f = data.example_frame(start + i)
        ok = edit_accuracy(ex, frame[None], frames=[f])
        out.append(None if ok is None else float(ok))
    return out


def _consistency(scorer, clips: torch.Tensor) -> float:
    """Mean ShapeCLIP cosine over all frame pairs of each clip (B, 3, F, H, W), averaged."""
    from ..eval.metrics import frame_consistency

    return float(np.mean([frame_consistency(scorer.clip.image_features(c.transpose(0, 1))) for c in clips]))


@torch.no_grad()
def video_teacher_quality(model: EVEModel, scorer, items: int = 16, steps: int = 25,
                          guidance: float = 2.0) -> dict:
    """Clips from a real first frame and caption; first-frame fidelity, consistency and motion."""
    teacher, null = model.denoiser("video"), model.text_encoder([""]).hidden_states
    first, cons_fake, cons_real, change_fake, change_real = [], [], [], [], []
    for batch in _batches(ClipCaptionDataset("test", items, model.spec.world_config()), items, 4):
        real = batch["clip"]
        x0 = encode_video(model.vae, real)
        cond = Conditioning(caption=model.text_encoder(list(batch["caption"])).hidden_states,
                            first_frame=x0[:, :, 0])
        g = torch.Generator().manual_seed(len(first))
        z = ddim_sample(lambda x, t: text_guided(teacher, x, t, cond, null, guidance),
                        torch.randn(x0.shape, generator=g), ddim_timesteps(steps), model.schedule)
        fake = decode_video(model.vae, z)
        first.append(_psnr(fake[:, :, 0], real[:, :, 0]))
        cons_fake.append(_consistency(scorer, fake))
        cons_real.append(_consistency(scorer, real))
        change_fake.append(float((fake[:, :, 1:] - fake[:, :, :-1]).abs().mean()))
        change_real.append(float((real[:, :, 1:] - real[:, :, :-1]).abs().mean()))
    return {"first_frame_psnr": float(torch.cat(first).mean()),
            "clip_frame_generated": float(np.mean(cons_fake)), "clip_frame_real": float(np.mean(cons_real)),
            "motion_ratio": float(np.mean(change_fake) / max(np.mean(change_real), 1e-6)),
            "items": items, "steps": steps, "guidance": guidance}


@torch.no_grad()
def shapeclip_quality(scorer, items: int = 256, world=None) -> dict:
    """Zero-shot retrieval among the caption and 9 one-attribute-off siblings (the stage's own
    :func:`~evedit.training.stages.clip.retrieval_figures`, on test scenes of ``world``, a
    :class:`~evedit.world.WorldConfig`; None: the preset world)."""
    from .stages.clip import ShapeCLIPDataset, retrieval_figures

    batches = _batches(ShapeCLIPDataset("test", items, 9, world), items, 32)
    figures = retrieval_figures(scorer.clip, lambda texts: scorer.text_encoder(texts).pooled, batches)
    return {**figures, "items": items, "candidates": 10}


@torch.no_grad()
def task_classifier_quality(folder: Path, items: int = 700) -> dict:
    from ..models.task_classifier import TaskClassifier
    from .stages.task_classifier import InstructionDataset

    clf = TaskClassifier.from_pretrained(folder, use_safetensors=True, torch_dtype=torch.float32)
    out = {}
    for key, phrasings in (("heldout_phrasing_acc", "heldout"), ("seen_phrasing_acc", "train")):
        data = InstructionDataset("test", items, phrasings)
        rows = [data[i] for i in range(items)]
        pred = clf.predict([r["instruction"] for r in rows])
        out[key] = float(np.mean([p == r["task"] for (p, _), r in zip(pred, rows)]))
    return {**out, "items": items}


SIZES = {"full": dict(codec=256, t2i=100, edit=16, video=16, clip=500, tasks=700, steps=1),
         "quick": dict(codec=16, t2i=4, edit=1, video=2, clip=16, tasks=28, steps=0.2)}  # steps: x the defaults


def quality_report(folder: str | Path, size: str = "full", progress: bool = True) -> dict:
    """Every pretraining figure of the model folder ``folder`` (see the module docstring)."""
    import time

    from ..eval.shapeworld import ShapeWorldScorer

    folder, n, start = Path(folder), SIZES[size], time.time()
    model = load_model(folder)
    scorer = ShapeWorldScorer.from_pretrained(folder)
    k = n["steps"]
    parts = [("codec", lambda: codec_quality(model, n["codec"])),
             ("t2i", lambda: t2i_quality(model, scorer, n["t2i"], steps=round(25 * k))),
             ("edit_teacher", lambda: edit_teacher_quality(model, n["edit"], steps=round(50 * k), progress=progress)),
             ("video_teacher", lambda: video_teacher_quality(model, scorer, n["video"], steps=round(25 * k))),
             ("shapeclip", lambda: shapeclip_quality(scorer, n["clip"], model.spec.world_config())),
             ("task_classifier", lambda: task_classifier_quality(model.extras["task_classifier"], n["tasks"]))]
    report: dict = {"model": str(folder), "split": "test", "size": size}
    for name, fn in tqdm(parts, desc="quality", disable=not progress):
        if name == "task_classifier" and "task_classifier" not in model.extras:
            continue
        report[name] = fn()
    report["targets"] = {k: {"target": v, "value": _get(report, k), "met": _met(report, k, v)}
                         for k, v in TARGETS.items()}
    report["seconds"] = round(time.time() - start, 1)
    return report


def _get(report: dict, dotted: str):
    value = report
    for key in dotted.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _met(report: dict, dotted: str, target: float):
    value = _get(report, dotted)
    return None if value is None else bool(value >= target)
