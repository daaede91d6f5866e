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
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import EveditError
from ..models import PRESETS, Conditioning, EVEModel, load_pretrained
from .conditioning import decode_latents, encode_source, encode_texts, load_classifier, resolve_task
from .editors import EDITOR_FUNCTIONS, NOISE_CLIP, NOISE_FIRST_FRAME, edit_first_frame, frame_noise
from .frames import Fit, load_frames, to_uint8
from .options import EditOptions, check_device, check_instruction
from .windows import edit_windows, plan_windows


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
                 options: EditOptions | None = None, **kwargs) -> EditResult:
        """Edit ``video`` by ``instruction``.

        ``video``: a path, a :class:`~evedit.io.Video`, a list of frames or an array. ``fps``: the
        frame rate of an array input (default 8). Options (see :class:`EditOptions`) come as
        keywords (``editor``, ``steps``, ``guidance``, ``seed``, ``task``, ``caption``,
        ``max_frames``, ``stride``, ``window``, ``overlap``, ``first_frame_steps``, ``fit``) or as
        one ``options`` record. ``progress`` shows a bar over windows and steps.
        """
        if options is not None and kwargs:
            raise EveditError("Pass edit options either as keywords or as `options`, not both.")
        try:
            options = options or EditOptions(**kwargs)
        except TypeError as exc:
            raise EveditError(f"Unknown edit option ({exc}).") from exc
        opts = options.checked().resolved(self.model.spec.num_frames, self.max_window)
        instruction = check_instruction(instruction)
        start, timings = time.perf_counter(), {}
        originals, fps = load_frames(video, opts.max_frames, fps)
        originals = originals[::opts.stride]
        fps = fps / opts.stride
        timings["read"] = time.perf_counter() - start
        with torch.inference_mode():
            task, probability, squares, spans = self._run(originals, instruction, opts, timings, progress)
        t = time.perf_counter()
        frames = Fit(*originals.shape[1:3], self.model.spec.resolution, opts.fit).from_model(squares, originals)
        timings["restore"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - start
        return EditResult(frames, fps, task, probability, opts.editor, opts, len(spans), timings, originals)

    def _run(self, originals: np.ndarray, instruction: str, opts: EditOptions, timings: dict,
             progress: bool):
        model, clock = self.model, time.perf_counter()
        caption, instr, null = encode_texts(model, instruction, opts.caption, self._null)
        self._null = null
        task, probability, label = self._task(opts.task, instruction)
        fit = Fit(*originals.shape[1:3], model.spec.resolution, opts.fit)
        latents, source = encode_source(model, fit.to_model(originals))
        timings["encode"] = time.perf_counter() - clock
        cond = Conditioning(caption=caption, instruction=instr, source=source, task=label)
        editor = EDITOR_FUNCTIONS[opts.editor]
        spans = plan_windows(latents.shape[2], opts.window, opts.overlap)
        shape = tuple(latents.shape[1:2] + latents.shape[3:])  # (C, h, w)
        noise = frame_noise(opts.seed, NOISE_CLIP, range(latents.shape[2]), shape).to(latents)
        per_window = editor.count(opts.steps, model.schedule.num_train_timesteps)
        total = per_window * len(spans) + (opts.first_frame_steps if editor.needs_first_frame else 0)
        with tqdm(total=total, disable=not progress, unit="step", leave=False,
                  desc="first frame" if editor.needs_first_frame else "window 1") as bar:
            step = lambda _: bar.update(1)  # noqa: E731
            clock = time.perf_counter()
            first = None
            if editor.needs_first_frame:
                noise0 = frame_noise(opts.seed, NOISE_FIRST_FRAME, range(1), shape).to(latents)
                first = edit_first_frame(model, cond, null, noise0, opts.first_frame_steps, step)
            timings["first_frame"] = time.perf_counter() - clock
            clock = time.perf_counter()
            names = lambda i, s: bar.set_description(f"window {i + 1}/{len(spans)}")  # noqa: E731
            edited = edit_windows(model, editor, spans, cond, null, noise, latents, first,
                                  opts.steps, opts.guidance, on_window=names, progress=step)
            timings["edit"] = time.perf_counter() - clock
        clock = time.perf_counter()
        squares = to_uint8(decode_latents(model, edited))
        timings["decode"] = time.perf_counter() - clock
        return task, probability, squares, spans

    def _task(self, task: str, instruction: str):
        if task == "auto" and self.model.spec.tasks and self._classifier is None:
            folder = self.model.extras.get("task_classifier")
            if folder is not None:
                self._classifier = load_classifier(Path(folder)).to(self.device)
        return resolve_task(self.model, task, instruction, self._classifier)
