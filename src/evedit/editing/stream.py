"""Streaming edit: frames are read, fitted, encoded, edited window by window, decoded and handed
on as they go, so memory does not depend on the clip's length.

The computation is exactly the whole-clip one (:func:`evedit.editing.windows.edit_windows` over
:func:`~evedit.editing.windows.plan_windows`), only scheduled lazily:

- frames are read and fitted to the model's square one codec chunk at a time; chunks start at
  multiples of :data:`~evedit.editing.conditioning.CODEC_CHUNK` from frame 0, as the whole-clip
  encoder cut them, so every frame's latent is the same;
- the windows are planned as frames arrive (:func:`iter_spans`): a regular window starting at ``s``
  is used when frame ``s + window`` exists; at the end of the stream the last window is moved back
  to end on the last frame, as :func:`~evedit.editing.windows.plan_windows` does;
- each frame's noise comes from its own seeded generator (and, with a noise share, one draw per
  stream for the whole clip), so it is drawn per window;
- an edited frame is final once the first window holding it is done (later windows pin it), so
  decoding runs in the same chunks as soon as a chunk is final, and each frame is restored to the
  input's size against its original and handed on; then everything about it is dropped.

Kept at any time: about two windows plus two codec chunks of frames.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from functools import partial

import numpy as np
import torch

from ..errors import EveditError
from ..models import Conditioning, EVEModel
from ..models.codec import encode_video
from ..models.lora import lora_scaled
from .auto_region import NOISE_REGION, SAMPLES, estimate_region
from .conditioning import CODEC_CHUNK, decode_latents
from .editors import NOISE_CLIP, NOISE_FIRST_FRAME, Window, edit_first_frame, frame_noise
from .frames import Fit, to_uint8
from .region import blend_pixels, fitted, latent_mask, pixel_mask
from .windows import Span


def iter_spans(exists: Callable[[int], bool], count: Callable[[], int], window: int,
               overlap: int) -> Iterator[Span]:
    """The spans of :func:`~evedit.editing.windows.plan_windows`, planned lazily.

    ``exists(i)``: whether frame ``i`` exists (may read ahead to tell); ``count()``: the number of
    frames, asked only once ``exists`` has answered False.
    """
    step, start, done = window - overlap, 0, 0
    while exists(start + window):
        yield Span(start, start + window, max(0, done - start))
        done, start = start + window, start + step
    total = count()
    if done == 0:
        yield Span(max(0, total - window), total, 0)
        return
    final = total - window
    if final + window > done:
        yield Span(final, total, max(0, done - final))


class FrameStore:
    """Frames read so far, in chunks: originals (until handed on), latents and source (while a
    window may still need them)."""

    def __init__(self, frames: Iterable[np.ndarray], model: EVEModel, fit_mode: str, masks=None):
        self.model, self.fit_mode, self.fit = model, fit_mode, None
        self._frames = iter(frames)
        self._masks = None if masks is None else iter(masks)
        self.regions: dict[int, torch.Tensor] = {}  # latent masks (1, 1, h, w), with a mask
        self.masks: dict[int, np.ndarray] = {}  # pixel masks (H, W) at the frame's size, until handed on
        self.read, self.ended = 0, False
        self.layouts: dict[int, torch.memory_format] = {}  # id(table) -> memory format (see stack)
        self.originals: dict[int, np.ndarray] = {}
        self.latents: dict[int, torch.Tensor] = {}
        self.source: dict[int, torch.Tensor] = {}

    def exists(self, index: int) -> bool:
        """Read (and encode) chunks until frame ``index`` is read or the stream ends."""
        while index >= self.read and not self.ended:
            self._read_chunk()
        return index < self.read

    def count(self) -> int:
        while not self.ended:
            self._read_chunk()
        return self.read

    def _read_chunk(self) -> None:
        chunk = []
        for frame in self._frames:
            chunk.append(frame)
            if len(chunk) == CODEC_CHUNK:
                break
        else:
            self.ended = True
        if not chunk:
            return
        if self.fit is None:
            self.fit = Fit(*chunk[0].shape[:2], self.model.spec.resolution, self.fit_mode)
        video = self.fit.to_model(np.stack(chunk)).to(self.model.unet.device)
        latents = encode_video(self.model.vae, video).float()
        source = (video + 1) / 2 if self.model.edit_adapter.cond_space == "pixel" else latents
        self.layouts = {id(self.latents): _layout(latents), id(self.source): _layout(source)}
        for j, frame in enumerate(chunk):
            index = self.read + j
            self.originals[index] = frame
            self.latents[index], self.source[index] = latents[:, :, j], source[:, :, j]
            if self._masks is not None:
                self._add_mask(index, frame.shape[:2], tuple(latents.shape[-2:]), latents.device)
        self.read += len(chunk)

    def _add_mask(self, index: int, shape: tuple[int, int], grid: tuple[int, int], device) -> None:
        mask = next(self._masks, None)
        if mask is None:
            raise EveditError(f"The mask has only {index} frames but the edit needs more; give one mask "
                              "image for every frame, or a mask video as long as the edited part.")
        mask = fitted(mask, *shape)
        self.regions[index] = latent_mask(mask, self.fit, grid, device)
        self.masks[index] = mask

    def stack(self, table: dict[int, torch.Tensor], span: range) -> torch.Tensor:
        """Frames ``span`` as (1, C, F, h, w) in the codec output's memory format: the whole-clip
        edit sliced the codec's output, and some kernels round differently on another layout."""
        video = torch.stack([table[i] for i in span], dim=2)
        layout = self.layouts.get(id(table), torch.contiguous_format)
        out = torch.empty(video.shape, dtype=video.dtype, device=video.device, memory_format=layout)
        return out.copy_(video)

    def forget_before(self, index: int) -> None:
        for table in (self.latents, self.source, self.regions):
            for key in [k for k in table if k < index]:
                del table[key]


def _layout(video: torch.Tensor) -> torch.memory_format:
    if video.is_contiguous(memory_format=torch.channels_last_3d) and not video.is_contiguous():
        return torch.channels_last_3d
    return torch.contiguous_format


class StreamEdit:
    """One streaming edit; iterate :meth:`run` for ``(original, edited)`` frame pairs.

    ``cond`` holds caption, instruction and task (no source); ``editor`` an
    :class:`~evedit.editing.editors.EditorInfo`; ``opts`` resolved :class:`EditOptions`;
    ``step(n)`` is called after each denoiser step, ``on_window(i, span)`` before each window.
    """

    def __init__(self, model: EVEModel, editor, opts, cond: Conditioning, null: torch.Tensor,
                 step=None, on_window=None):
        self.model, self.editor, self.opts, self.cond, self.null = model, editor, opts, cond, null
        self.step, self.on_window = step, on_window
        self.windows, self.count, self.fit = 0, 0, None
        self.timings = {"first_frame": 0.0, "edit": 0.0, "decode": 0.0}
        # one noise sampler for every stream of the run: the seed and the share across frames
        self._noise = partial(frame_noise, opts.seed, share=opts.noise_share)

    @torch.inference_mode()
    def run(self, frames: Iterable[np.ndarray], masks=None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``masks``: per-frame (H, W) 0/1 masks aligned with ``frames`` (see
        :mod:`evedit.editing.region`), or None to edit whole frames."""
        store, out = FrameStore(frames, self.model, self.opts.fit, masks), {}
        if not store.exists(0):
            return
        decoded = 0  # frames before this index were decoded and handed on
        first = self._first_frame(store)
        for i, span in enumerate(iter_spans(store.exists, store.count, self.opts.window, self.opts.overlap)):
            if self.on_window is not None:
                self.on_window(i, span)
            if i > 0 and first is not None:
                first = out[span.start if span.known else span.start - 1]
            clock = time.perf_counter()
            edited = self._window(store, span, first, out)
            self.timings["edit"] += time.perf_counter() - clock
            for j, index in enumerate(range(span.start, span.stop)):
                out[index] = edited[:, :, j].contiguous()  # as the whole-clip edit's buffer held it
            self.windows = i + 1
            store.forget_before(span.start)
            last = store.ended and span.stop == store.read  # every frame before span.stop is final
            while decoded + CODEC_CHUNK <= span.stop or (last and decoded < span.stop):
                stop = min(decoded + CODEC_CHUNK, span.stop)
                yield from self._decode(store, out, decoded, stop)
                decoded = stop
            for key in [k for k in out if k < min(decoded, span.start)]:
                del out[key]

    def _first_frame(self, store: FrameStore) -> torch.Tensor | None:
        self.fit = store.fit
        warn_if_mostly_cropped(self.fit)
        if not self.editor.needs_first_frame:
            return None
        clock = time.perf_counter()
        shape = tuple(store.latents[0].shape[1:])
        noise = self._noise(NOISE_FIRST_FRAME, range(1), shape).to(store.latents[0])
        cond = self.cond.replace(source=store.stack(store.source, range(1)))
        self._auto_regions(store, range(1))
        region = store.stack(store.regions, range(1)) if store.regions else None
        first = edit_first_frame(self.model, cond, self.null, noise, self.opts.first_frame_steps, self.step,
                                 region, store.stack(store.latents, range(1)))
        self.timings["first_frame"] = time.perf_counter() - clock
        return first

    def _window(self, store: FrameStore, span: Span, first, out: dict) -> torch.Tensor:
        frames = range(span.start, span.stop)
        latents = store.stack(store.latents, frames)
        shape = tuple(latents.shape[1:2] + latents.shape[3:])
        noise = self._noise(NOISE_CLIP, frames, shape).to(latents)
        known = None
        if span.known:
            known = torch.stack([out[i] for i in range(span.start, span.start + span.known)], dim=2)
        self._auto_regions(store, frames)
        region = store.stack(store.regions, frames) if store.regions else None
        window = Window(cond=self.cond.replace(source=store.stack(store.source, frames), first_frame=first),
                        null=self.null, noise=noise, latents=latents, known=known, region=region)
        with lora_scaled(self.model.motion_unet, self.opts.lora_scale):  # only the student has it on
            return self.editor.run(self.model, window, self.opts.steps, self.opts.guidance, self.step)

    def _auto_regions(self, store: FrameStore, frames: range) -> None:
        """With ``--region auto``, the edit adapter's region (:mod:`evedit.editing.auto_region`) of
        each of ``frames`` that has none yet; a frame's probe noise is its own, as in every window."""
        if self.opts.region != "auto":
            return
        todo = range(frames.start, frames.stop)
        while todo and todo.start in store.regions:
            todo = todo[1:]
        if not todo:
            return
        latents = store.stack(store.latents, todo)
        shape = tuple(latents.shape[1:2] + latents.shape[3:])
        noises = [self._noise(NOISE_REGION + i, todo, shape).to(latents) for i in range(SAMPLES)]
        cond = self.cond.replace(source=store.stack(store.source, todo))
        region = estimate_region(self.model, cond, self.null, latents, noises)
        for j, index in enumerate(todo):
            store.regions[index] = region[:, :, j]
            store.masks[index] = pixel_mask(region[0, 0, j], store.fit)  # outside: the input's pixels

    def _decode(self, store: FrameStore, out: dict, start: int, stop: int):
        clock = time.perf_counter()
        latents = torch.stack([out[i] for i in range(start, stop)], dim=2)
        squares = to_uint8(decode_latents(self.model, latents))
        self.timings["decode"] += time.perf_counter() - clock
        originals = np.stack([store.originals.pop(i) for i in range(start, stop)])
        restored = store.fit.from_model(squares, originals)
        if store.masks:
            restored = np.stack([blend_pixels(originals[j], restored[j], store.masks.pop(i))
                                 for j, i in enumerate(range(start, stop))])
        for original, frame in zip(originals, restored):
            self.count += 1
            yield original, frame


def warn_if_mostly_cropped(fit: Fit) -> None:
    """Warn when ``--fit crop`` leaves more than half of each frame unedited."""
    if fit.mode != "crop":
        return
    side = min(fit.height, fit.width)
    kept = 1 - side * side / (fit.height * fit.width)
    if kept > 0.5:
        warnings.warn(
            f"The frames are {fit.width}x{fit.height}, so --fit crop edits only their centre "
            f"{side}x{side} square and leaves {kept:.0%} of each frame unedited; use --fit stretch "
            "to edit the whole frame.", stacklevel=2,
        )
