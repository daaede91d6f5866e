"""One edit request of the web app: check, load the clip, edit with the pipeline, write the outputs.

Everything cheap is checked first (instruction, options, the clip's size), then the model is
loaded and :class:`~evedit.editing.EditPipeline` edits the clip exactly as ``evedit edit`` does.
Outputs are written into the request's folder: ``edit.mp4`` (the input's frame rate divided by the
stride, and its size) and ``comparison.mp4`` (input | edit [| second editor] [| ground truth]).
"""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..editing import EditOptions
from ..errors import EveditError
from ..io import write_video
from .inputs import Clip, check_instruction_text, load_clip
from .runner import Models, cancellable, check_cancelled

MODEL_REGION = "the model's"  # the region choice that leaves it to the model (spec.region_tasks)

MAX_SEED = 2**31 - 1


@dataclass
class EditRequest:
    """What the page sends: the input, the instruction and the edit settings."""

    source: str = "bundled example"
    upload: str | None = None
    world_task: str | None = None
    world_seed: float | None = None
    instruction: str = ""
    editor: str = "eve"
    task: str = "auto"
    steps: float | None = None  # None or 0: the editor's default (so are guidance, max frames, window)
    guidance: float | None = None
    seed: float | None = 0
    random_seed: bool = False
    max_frames: float | None = None
    stride: float | None = 1
    start_time: float | None = 0.0
    window: float | None = None
    overlap: float | None = None
    compare_editor: str | None = None
    model: str = "shapeworld"
    lora_scale: float | None = None  # EVE's alignment-LoRA strength; None: the model's
    region: str | None = None  # "auto", "full" or None / MODEL_REGION: the model's default for the task
    noise_share: float | None = None  # share of the frames' noise drawn once per clip; None: the model's


@dataclass
class EditOutputs:
    """Paths and texts the page shows."""

    edit: str
    comparison: str
    task: str
    timings: str
    status: str
    extra: dict = field(default_factory=dict)


def whole(value, name: str, default=None):
    """A number from the page as an int (``None`` or empty: ``default``); fractions are an error."""
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not float(value).is_integer():
        raise EveditError(f"{name} must be a whole number, got {value!r}.")
    return int(value)


def edit_options(req: EditRequest, editor: str, seed: int, caption: str | None, task: str) -> EditOptions:
    """The pipeline's options for ``editor`` from the request (checked)."""
    guidance = None if req.guidance in (None, "", 0) else float(req.guidance)  # 0: the default
    return EditOptions(
        editor=editor, steps=whole(req.steps, "Steps") or None, guidance=guidance, seed=seed,
        task=task, caption=caption, max_frames=whole(req.max_frames, "Max frames") or None,
        stride=whole(req.stride, "Stride", 1), window=whole(req.window, "Window") or None,
        overlap=whole(req.overlap, "Overlap"), lora_scale=None if req.lora_scale in (None, "") else req.lora_scale,
        region=None if req.region in (None, "", MODEL_REGION) else req.region,
        noise_share=None if req.noise_share in (None, "") else req.noise_share,
    ).checked()


def run_request(req: EditRequest, models: Models, workdir: Path, cancel: threading.Event,
                progress=None) -> EditOutputs:
    """Edit the requested clip (one or two editors) and write the outputs into ``workdir``."""
    started = time.perf_counter()
    say = progress or (lambda *a, **k: None)
    instruction = check_instruction_text(req.instruction)
    seed = random.SystemRandom().randrange(MAX_SEED) if req.random_seed else whole(req.seed, "Seed", 0)
    task = (req.task or "auto").strip() or "auto"
    editors = [req.editor] + ([req.compare_editor] if req.compare_editor else [])
    options = [edit_options(req, e, seed, None, task) for e in editors]
    if len({o.editor for o in options}) < len(options):
        raise EveditError("The two editors to compare are the same; pick a different second editor.")
    say(0.0, desc="Reading the clip")
    clip = load_clip(req.source, req.upload, req.world_task, req.world_seed, workdir, req.start_time,
                     options[0].max_frames)
    say(0.0, desc="Loading the model")
    pipe = models.get(req.model)
    results = []
    with cancellable(cancel):
        for opts in options:
            check_cancelled(cancel)
            results.append(pipe(clip.frames, instruction, fps=clip.fps, options=opts, progress=True))
    check_cancelled(cancel)
    say(1.0, desc="Writing the outputs")
    return write_outputs(clip, results, workdir, seed, time.perf_counter() - started)


def ground_truth(clip: Clip, result) -> np.ndarray | None:
    """The clip's ground truth cut like the edited frames (max frames, then stride)."""
    if clip.truth is None:
        return None
    opts = result.options
    truth = clip.truth[:opts.max_frames][::opts.stride]
    return truth if truth.shape == result.frames.shape else None


def comparison_frames(clip: Clip, results: list) -> tuple[np.ndarray, list[str]]:
    """input | each edit | ground truth (when known), side by side at the input's size."""
    from ..demo import side_by_side

    first = results[0]
    panels, names = [first.source_frames], ["input"]
    for r in results:
        panels.append(r.frames)
        names.append(r.editor)
    truth = ground_truth(clip, first)
    if truth is not None:
        panels.append(truth)
        names.append("ground truth")
    return side_by_side(*panels), names  # at the input's size: the page enlarges it, pixelated


def write_outputs(clip: Clip, results: list, workdir: Path, seed: int, seconds: float) -> EditOutputs:
    """Write the edit and the comparison; describe the task used and the timings."""
    first = results[0]
    edit = write_video(workdir / "edit.mp4", first.frames, first.fps)
    panels, names = comparison_frames(clip, results)
    comparison = write_video(workdir / "comparison.mp4", panels, first.fps)
    if first.task is None:
        task = "none (this model has no task labels)"
    elif first.task_probability is not None:
        task = f"{first.task} (the task classifier's guess, p={first.task_probability:.2f})"
    else:
        task = f"{first.task} (chosen)"
    lines = [f"{r.editor}: {r.timings['total']:.2f} s (first frame {r.timings['first_frame']:.2f} s, "
             f"edit {r.timings['edit']:.2f} s in {r.windows} window{'s' if r.windows > 1 else ''}, "
             f"{r.options.steps} steps)" for r in results]
    lines.append(f"request: {seconds:.2f} s in all; seed {seed}")
    h, w = first.frames.shape[1:3]
    status = (f"Edited {clip.label}: {len(first.frames)} frames, {w}x{h}, {first.fps:g} fps. "
              f"Comparison: {' | '.join(names)}.")
    return EditOutputs(str(edit), str(comparison), task, "\n".join(lines), status,
                       {"seed": seed, "frames": len(first.frames), "editors": [r.editor for r in results]})
