"""Long videos: sliding windows, each conditioned on the edit of the previous one (InsV2V-style).

EVE (section 4) edits 8-frame windows and follows InsV2V for longer videos without details. Here:

- Windows of ``window`` frames start every ``window - overlap`` frames; the last window is moved
  back to end on the last frame, so every window has the length the video adapter was trained on
  (a video shorter than one window is one window of its own length).
- The first window's video adapter is conditioned on the edit teacher's first-frame edit. Every
  later window is conditioned on the edited latent of its own first frame, which the previous
  window made (with ``overlap >= 1``; with the default overlap 1 that is exactly the previous
  window's last edited frame). With ``overlap = 0`` it is conditioned on the previous window's
  last edited frame, one frame before its own first frame.
- The overlapping frames keep their first edit and are pinned while the window is sampled (see
  :mod:`evedit.editing.editors`), so the window continues the previous edit rather than redoing it.

A video that fits in one window runs exactly as a single call of the editor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models import Conditioning, EVEModel
from .editors import Window


@dataclass(frozen=True)
class Span:
    start: int
    stop: int
    known: int  # leading frames already edited by earlier windows

    def __len__(self) -> int:
        return self.stop - self.start


def plan_windows(num_frames: int, window: int, overlap: int) -> list[Span]:
    """Cover ``num_frames`` frames with windows of ``window`` frames overlapping by ``overlap``."""
    if num_frames <= window:
        return [Span(0, num_frames, 0)]
    step = window - overlap
    starts = list(range(0, num_frames - window, step)) + [num_frames - window]
    spans, done = [], 0
    for start in starts:
        if spans and start + window <= done:
            continue
        spans.append(Span(start, start + window, max(0, done - start)))
        done = start + window
    return spans


def edit_windows(model: EVEModel, editor, spans: list[Span], cond: Conditioning, null: torch.Tensor,
                 noise: torch.Tensor, latents: torch.Tensor, first_frame: torch.Tensor | None,
                 steps: int, guidance: float, on_window=None, progress=None) -> torch.Tensor:
    """Run ``editor`` (see :data:`~evedit.editing.editors.EDITOR_FUNCTIONS`) over the windows.

    ``cond`` holds the whole video's ``source`` (1, C', F, H', W'); ``noise`` and ``latents`` are
    (1, C, F, h, w); ``first_frame`` (1, C, h, w) or None (editors that need none). Returns the
    edited latents (1, C, F, h, w). ``on_window(i, span)`` is called before each window.
    """
    out = torch.zeros_like(noise)
    for i, span in enumerate(spans):
        if on_window is not None:
            on_window(i, span)
        frames = slice(span.start, span.stop)
        if i > 0 and first_frame is not None:
            first_frame = out[:, :, span.start if span.known else span.start - 1]
        window = Window(
            cond=cond.replace(source=cond.source[:, :, frames], first_frame=first_frame),
            null=null, noise=noise[:, :, frames], latents=latents[:, :, frames],
            known=out[:, :, span.start:span.start + span.known].clone() if span.known else None,
        )
        out[:, :, frames] = editor.run(model, window, steps, guidance, progress)
    return out
