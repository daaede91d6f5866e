"""The editors: one window of latents in, one window of edited latents out.

All four run inside the same pipeline (same decoding, fitting, first-frame edit, windows, noise),
so their comparisons are like for like:

- ``eve``: the aligned student (both adapters + LoRA), k DDIM steps from pure noise at trailing
  timesteps (the first is T-1, as in training); with ``guidance > 1`` ip2p dual guidance (image
  1.5, text ``guidance``), as plug-and-play is guided (the model's ``student_guidance`` by default:
  FDD was meant to distil the guided teachers into the unguided student, and on ShapeWorld it does
  not: ``benchmarks/results/guide_distill.md``).
- ``plug-and-play``: both adapters without the LoRA (EVE's "w/o alignment"), DDIM with ip2p dual
  guidance (image 1.5, text ``guidance``): it holds the edit adapter, so it is guided like the edit
  teacher. A model with a style or subject LoRA runs it too (every adapter attached, none aligned).
- ``per-frame``: the edit teacher frame by frame (frames are independent items of one batch), DDIM
  with ip2p dual guidance. It needs no first-frame edit.
- ``sdedit``: the video teacher from the input latents noised to strength 0.75 (the paper's SDEdit
  baseline), conditioned on the caption and the edited first frame, caption CFG.

Noise is drawn per frame from a generator seeded by (seed, stream, frame index), so a frame's noise
does not depend on how the video is cut into windows, and a seeded run repeats exactly. With a
noise share ``a`` > 0 (``EditOptions.noise_share``) each frame's noise is ``sqrt(a)`` times one
draw for the whole stream plus ``sqrt(1 - a)`` times its own (PYoCo's mixed noise prior, Ge et
al. 2023, used here at inference only; 1: every frame starts from the same noise). Every editor
and the region probe take the same share, so comparisons stay like for like.

Frames already edited by the previous window (the overlap) are *pinned*: before every denoiser
call their noisy latents are replaced by the kept edit noised to the current timestep (with the
same per-frame noise), and the kept edit is returned for them. This is the replacement form of
InsV2V's long-video sampling: the window's temporal layers see the previous edit as context.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..diffusion import ddim_sample, ddim_timesteps
from ..diffusion import sdedit_timesteps as diffusion_sdedit_timesteps
from ..models import Conditioning, EVEModel
from ..models.guided import edit_teacher_guided, text_guided
from ..models.token_lora import token_pass
from .options import FIRST_FRAME_TEXT_GUIDANCE, IMAGE_GUIDANCE, SDEDIT_STRENGTH

NOISE_CLIP, NOISE_FIRST_FRAME = 0, 1  # noise streams
SHARED_STREAM = 1000  # stream s's clip-wide draw (noise share > 0) is stream s + 1000's frame 0


@dataclass
class Window:
    """One window's inputs; tensors are batch 1, frames along dim 2."""

    cond: Conditioning  # caption, instruction, source (this window), task, first_frame
    null: torch.Tensor  # (1, L, D) embedding of the empty text
    noise: torch.Tensor  # (1, C, F, h, w) this window's per-frame noise
    latents: torch.Tensor  # (1, C, F, h, w) codec latents of the input frames (SDEdit starts here)
    known: torch.Tensor | None = None  # (1, C, K, h, w) edits of the first K frames, kept
    region: torch.Tensor | None = None  # (1, 1, F, h, w) 1 where the edit may change the latents


Progress = Callable[[int], None] | None


def frame_noise(seed: int, stream: int, frames: range, shape: tuple[int, int, int],
                share: float = 0.0) -> torch.Tensor:
    """(1, C, F, h, w) standard normal noise, one seeded generator per (seed, stream, frame); with
    ``share`` in (0, 1] mixed with one draw shared by every frame of the stream (module notes), so
    each frame's noise stays standard normal and two frames' correlate by ``share``."""
    items = [_draw(seed, stream, f, shape) for f in frames]
    noise = torch.stack(items, dim=1).unsqueeze(0)
    if share:
        common = _draw(seed, stream + SHARED_STREAM, 0, shape)[None, :, None]
        noise = share**0.5 * common + (1.0 - share) ** 0.5 * noise
    return noise


def _draw(seed: int, stream: int, frame: int, shape: tuple[int, int, int]) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(_mix(seed, stream, frame)))


def _mix(seed: int, stream: int, frame: int) -> int:
    return (int(seed) * 1_000_003 + stream * 7_919 + frame * 104_729 + 1) % (2**63 - 1)


def _sample(model: EVEModel, fn, w: Window, timesteps: list[int], progress: Progress,
            x_start: torch.Tensor | None = None, pin: bool = True) -> torch.Tensor:
    """DDIM over ``timesteps`` with the known frames pinned; returns clean latents (1, C, F, h, w).

    Pinning inside the model call is exact for the other frames: the DDIM update is elementwise,
    so a known frame's own (discarded) trajectory never reaches them except through the model.
    """
    k = 0 if w.known is None else w.known.shape[2]
    schedule = model.schedule

    def pinned(x, t):
        x = blend_region(x, w.region, w.latents, w.noise, t, schedule)
        if pin and k:
            x = torch.cat([schedule.add_noise(w.known, w.noise[:, :, :k], t), x[:, :, k:]], dim=2)
        return fn(x, t)

    x0 = ddim_sample(pinned, w.noise if x_start is None else x_start, timesteps, schedule,
                     progress=progress)
    x0 = blend_region(x0, w.region, w.latents)
    return torch.cat([w.known, x0[:, :, k:]], dim=2) if k else x0


def blend_region(x: torch.Tensor, region: torch.Tensor | None, latents: torch.Tensor,
                 noise: torch.Tensor | None = None, t: torch.Tensor | None = None, schedule=None):
    """Outside ``region`` (0 there), replace ``x`` by the input's ``latents``, noised to ``t`` when
    given (before a denoiser call) or clean (the result); see :mod:`evedit.editing.region`."""
    if region is None:
        return x
    keep = latents if t is None else schedule.add_noise(latents, noise, t)
    return region * x + (1 - region) * keep


def eve(model: EVEModel, w: Window, steps: int, guidance: float, progress: Progress = None):
    student = model.denoiser("student")

    def fn(x, t):
        if guidance == 1.0:
            return student(x, t, w.cond)
        return edit_teacher_guided(student, x, t, w.cond, w.null, IMAGE_GUIDANCE, guidance)

    return _sample(model, fn, w, ddim_timesteps(steps, model.schedule.num_train_timesteps), progress)


def plug_and_play(model: EVEModel, w: Window, steps: int, guidance: float, progress: Progress = None):
    pnp = model.denoiser("pnp" if model.token_lora is None else "pnp-token")  # every adapter, none aligned

    def fn(x, t):
        return edit_teacher_guided(pnp, x, t, w.cond, w.null, IMAGE_GUIDANCE, guidance)

    return _sample(model, fn, w, ddim_timesteps(steps, model.schedule.num_train_timesteps), progress)


def per_frame(model: EVEModel, w: Window, steps: int, guidance: float, progress: Progress = None):
    teacher, cond = model.denoiser("edit"), w.cond.replace(first_frame=None)

    def fn(x, t):
        return edit_teacher_guided(teacher, x, t, cond, w.null, IMAGE_GUIDANCE, guidance)

    timesteps = ddim_timesteps(steps, model.schedule.num_train_timesteps)
    return _sample(model, fn, w, timesteps, progress, pin=False)  # frames are independent


def sdedit_timesteps(steps: int, num_train_timesteps: int = 1000,
                     strength: float = SDEDIT_STRENGTH) -> list[int]:
    """The sdedit editor's schedule: :func:`evedit.diffusion.sdedit_timesteps` at its strength."""
    return diffusion_sdedit_timesteps(steps, strength, num_train_timesteps)


def sdedit(model: EVEModel, w: Window, steps: int, guidance: float, progress: Progress = None):
    teacher = model.denoiser("video")
    cond = Conditioning(caption=w.cond.caption, first_frame=w.cond.first_frame)

    def fn(x, t):
        return text_guided(teacher, x, t, cond, w.null, guidance)

    timesteps = sdedit_timesteps(steps, model.schedule.num_train_timesteps)
    t0 = torch.full((1,), timesteps[0], dtype=torch.long, device=w.noise.device)
    x_start = model.schedule.add_noise(w.latents, w.noise, t0)
    return _sample(model, fn, w, timesteps, progress, x_start=x_start)


@dataclass(frozen=True)
class EditorInfo:
    run: Callable  # (model, window, steps, guidance, progress) -> latents (1, C, F, h, w)
    needs_first_frame: bool  # conditioned on the edit teacher's first-frame edit
    count: Callable[[int, int], int] = lambda steps, T: steps  # denoiser steps per window


EDITOR_FUNCTIONS = {
    "eve": EditorInfo(eve, True),
    "plug-and-play": EditorInfo(plug_and_play, True),
    "per-frame": EditorInfo(per_frame, False),
    "sdedit": EditorInfo(sdedit, True, lambda steps, T: len(sdedit_timesteps(steps, T))),
}


def edit_first_frame(model: EVEModel, cond: Conditioning, null: torch.Tensor, noise: torch.Tensor,
                     steps: int, progress: Progress = None, region: torch.Tensor | None = None,
                     latents: torch.Tensor | None = None) -> torch.Tensor:
    """The edit teacher's edit of frame 0 (EVE section 4): (1, C, h, w) clean latent.

    Made exactly as the alignment made the student's first-frame conditions
    (``edit_teacher_generate``): DDIM from noise, ip2p dual guidance at the FDD teacher scales; with
    a style or subject LoRA, then passed through its teacher
    (:func:`~evedit.models.token_lora.token_pass`, on the same noise).
    ``noise`` is (1, C, 1, h, w); ``region`` (1, 1, 1, h, w) with ``latents`` (1, C, 1, h, w), the
    input's, restricts the edit (:func:`blend_region`).
    """
    teacher = model.denoiser("edit")
    first = Conditioning(caption=cond.caption, instruction=cond.instruction,
                         source=cond.source[:, :, :1], task=cond.task)

    def fn(x, t):
        x = blend_region(x, region, latents, noise, t, model.schedule)
        return edit_teacher_guided(teacher, x, t, first, null, IMAGE_GUIDANCE, FIRST_FRAME_TEXT_GUIDANCE)

    timesteps = ddim_timesteps(steps, model.schedule.num_train_timesteps)
    x0 = blend_region(ddim_sample(fn, noise, timesteps, model.schedule, progress=progress), region, latents)
    if model.token_lora is not None and cond.token_caption is not None:
        x0 = token_pass(model, x0, cond.token_caption, null, noise)
    return x0[:, :, 0]
