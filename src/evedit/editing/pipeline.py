"""``EditPipeline``: instruction-based video editing with EVE and its baselines, end to end.

    pipe = EditPipeline.from_pretrained("shapeworld")        # or a model folder
    result = pipe("clip.mp4", "make the circle red", task="color", seed=0)
    write_video("edited.mp4", result.frames, result.fps)

Steps: read the input (a path, a list of frames or an ``(F, H, W, 3)`` array; one image is a
one-frame video); keep the first ``max_frames`` and every ``stride``-th frame; fit the frames to the
model's square (:mod:`evedit.editing.frames`); encode; edit the first frame with the edit teacher
(EVE section 4); edit the clip with the chosen editor window by window
(:mod:`evedit.editing.windows`); decode; restore the input's size. Output: the same frame count
(``ceil(F / stride)``), frame rate (``fps / stride``, so the duration is kept) and size.
Everything runs under ``torch.inference_mode``; a seeded run repeats exactly.

All of it runs as a stream (:mod:`evedit.editing.stream`): :meth:`EditPipeline.stream` yields
``(original, edited)`` frames as they are ready, holding about two windows of frames whatever the
clip's length (``evedit edit`` encodes them as they come); calling the pipeline collects them into
an :class:`EditResult`. The frames are exactly those of the whole-clip computation (tested).
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import EveditError
from ..io.stream import open_video
from ..models import PRESETS, Conditioning, EVEModel, load_pretrained
from .auto_region import default_region_tasks, region_mode
from .conditioning import encode_texts, load_classifier, resolve_task, token_caption
from .editors import EDITOR_FUNCTIONS
from .frames import load_frames
from .options import EditOptions, check_device, check_instruction
from .region import mask_frames
from .stream import StreamEdit
from .windows import plan_windows


@dataclass
class EditResult:
    """An edited video: ``frames`` (F, H, W, 3) uint8 at ``fps``, and what was done."""

    frames: np.ndarray
    fps: float
    task: str | None  # the task label used (None for models without task labels)
    task_probability: float | None  # the classifier's probability with ``task="auto"``
    editor: str
    options: EditOptions  # the resolved options (defaults filled in)
    windows: int  # number of windows the video was edited in
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage, and "total"
    source_frames: np.ndarray | None = None  # the input frames that were edited (after stride)


class EditPipeline:
    """A frozen :class:`~evedit.models.EVEModel` on one device, ready to edit videos."""

    def __init__(self, model: EVEModel, device: str | torch.device | None = "auto"):
        self.device = check_device(device) if not isinstance(device, torch.device) else device
        self.model = model.to(self.device).eval()
        self._classifier = None
        self._null = None  # the empty text's embedding, computed once

    @classmethod
    def from_pretrained(cls, folder_or_preset: str | Path = "shapeworld",
                        device: str | torch.device | None = "auto") -> "EditPipeline":
        """Load a model folder or a preset (``shapeworld``: the shipped ShapeWorld model)."""
        device = check_device(device) if not isinstance(device, torch.device) else device
        name = str(folder_or_preset)
        if name not in PRESETS and not Path(name).expanduser().exists():
            raise EveditError(
                f"Model '{name}' is neither a model folder nor a preset ({', '.join(PRESETS)})."
            )
        model = load_pretrained(name if name in PRESETS else Path(name).expanduser())
        return cls(model, device)

    @property
    def max_window(self) -> int:
        return int(getattr(self.model.motion_unet.config, "motion_max_seq_length", 32))

    def __call__(self, video, instruction: str, *, fps: float | None = None, progress: bool = True,
                 options: EditOptions | None = None, mask=None, **kwargs) -> EditResult:
        """Edit ``video`` by ``instruction``.

        ``video``: a path, a :class:`~evedit.io.Video`, a list of frames or an array. ``fps``: the
        frame rate of an array input (default 8). Options (see :class:`EditOptions`) come as
        keywords (``editor``, ``steps``, ``guidance``, ``seed``, ``task``, ``caption``,
        ``max_frames``, ``stride``, ``window``, ``overlap``, ``first_frame_steps``, ``fit``) or as
        one ``options`` record. ``progress`` shows a bar over windows and steps. ``mask``: edit only
        where it is white (a path to an image, mask video or folder, or an array; outside it the
        output equals the input, see :mod:`evedit.editing.region`). The frames are edited as a
        stream (:meth:`stream`) and collected here.
        """
        start = time.perf_counter()
        opts = self.options(options, **kwargs)
        instruction = check_instruction(instruction)
        masks = None if mask is None else mask_frames(mask)
        frames, fps, count = source_frames(video, opts.max_frames, fps)
        run = self.stream(frames, instruction, opts, progress=progress, total=count, mask=masks)
        pairs = list(run)
        originals = np.stack([original for original, _ in pairs])
        edited = np.stack([frame for _, frame in pairs])
        del pairs
        run.timings["total"] = time.perf_counter() - start
        return EditResult(edited, fps / opts.stride, run.task, run.task_probability, opts.editor, run.opts,
                          run.windows, run.timings, originals)

    def options(self, options: EditOptions | None = None, **kwargs) -> EditOptions:
        """Checked options with this model's defaults filled in."""
        if options is not None and kwargs:
            raise EveditError("Pass edit options either as keywords or as `options`, not both.")
        try:
            options = options or EditOptions(**kwargs)
        except TypeError as exc:
            raise EveditError(f"Unknown edit option ({exc}).") from exc
        spec = self.model.spec
        return options.checked().resolved(spec.num_frames, self.max_window, spec.lora_scale,
                                          spec.student_guidance, spec.noise_share)

    def stream(self, frames: Iterable[np.ndarray], instruction: str, opts: EditOptions, *,
               progress: bool = True, total: int | None = None, mask=None) -> "EditStream":
        """Edit ``frames`` (an iterable of ``(H, W, 3)`` uint8, before ``stride``) as they come.

        ``opts``: from :meth:`options`. Texts and the task are resolved here (task errors come
        before any frame is read); iterate the result for ``(original, edited)`` pairs.
        ``total``: the expected frame count, for the progress bar only. ``mask``: per-frame (H, W)
        masks aligned with ``frames`` (:func:`evedit.editing.region.mask_frames`), or None.
        """
        return EditStream(self, frames, check_instruction(instruction), opts, progress, total, mask)

    def _task(self, task: str, instruction: str, min_probability: float = 0.0):
        if task == "auto" and self.model.spec.tasks and self._classifier is None:
            folder = self.model.extras.get("task_classifier")
            if folder is not None:
                self._classifier = load_classifier(Path(folder)).to(self.device)
        return resolve_task(self.model, task, instruction, self._classifier, min_probability)


def source_frames(video, max_frames: int | None, fps: float | None) -> tuple[Iterator[np.ndarray], float, int]:
    """Any accepted input -> (frames one at a time, fps, expected count); a path is decoded as it
    is read."""
    if isinstance(video, (str, os.PathLike)):
        frames, file_fps, count = open_video(Path(video), max_frames)
        return frames, fps or file_fps, count
    array, fps = load_frames(video, max_frames, fps)
    return iter(array), fps, len(array)


class EditStream:
    """One edit as a stream of ``(original, edited)`` frame pairs; ``task``, ``task_probability``,
    ``windows``, ``count`` and ``timings`` (seconds per stage) describe it."""

    def __init__(self, pipe: EditPipeline, frames, instruction: str, opts: EditOptions,
                 progress: bool, total: int | None, masks=None):
        self.pipe, self.opts, self.progress, self.total = pipe, opts, progress, total
        self.timings: dict[str, float] = {}
        clock, model = time.perf_counter(), pipe.model
        with torch.inference_mode():
            caption, instr, null = encode_texts(model, instruction, opts.caption, pipe._null)
            pipe._null = null
            self.task, self.task_probability, label = pipe._task(opts.task, instruction,
                                                                 opts.min_task_probability)
            triggered = token_caption(model, opts.caption)
        if masks is not None and opts.region == "auto":
            raise EveditError("--region auto and --mask both say where to edit; give one of them.")
        # the region resolved for this edit's task: "full" under a mask (the mask is the region)
        self.opts = opts = replace(opts, region="full" if masks is not None else region_mode(
            opts.region, self.task, default_region_tasks(model)))
        self.cond = Conditioning(caption=caption, instruction=instr, task=label, token_caption=triggered)
        self.null, self.editor = null, EDITOR_FUNCTIONS[opts.editor]
        self.frames = itertools.islice(frames, 0, None, opts.stride)
        self.masks = None if masks is None else itertools.islice(masks, 0, None, opts.stride)
        self.timings["texts"] = time.perf_counter() - clock
        self.windows = self.count = 0

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        opts, editor, model = self.opts, self.editor, self.pipe.model
        per_window = editor.count(opts.steps, model.schedule.num_train_timesteps)
        expected = None if self.total is None else math.ceil(self.total / opts.stride)
        windows = len(plan_windows(expected, opts.window, opts.overlap)) if expected else None
        total = per_window * windows + (opts.first_frame_steps if editor.needs_first_frame else 0) \
            if windows else None
        with tqdm(total=total, disable=not self.progress, unit="step", leave=False,
                  desc="first frame" if editor.needs_first_frame else "window 1") as bar:
            names = lambda i, s: bar.set_description(f"window {i + 1}")  # noqa: E731
            edit = StreamEdit(model, editor, opts, self.cond, self.null, lambda _: bar.update(1), names)
            for pair in edit.run(self.frames, self.masks):  # runs under torch.inference_mode
                self.windows, self.count = edit.windows, edit.count
                yield pair
            self.windows = edit.windows
            self.timings.update(edit.timings)
