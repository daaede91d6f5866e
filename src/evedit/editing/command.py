"""``evedit edit``: check everything cheap first, then load, edit and write as a stream, report.

Order (so a bad run costs nothing and leaves nothing): options and instruction (text a person
could have meant); output and comparison paths (format, not the input under another spelling, not
inside an input folder, the parent a folder, the folder writable, the container and encoder
available in this FFmpeg); the input's header (missing, corrupt, zero-frame inputs fail here); the
time range (``--start``/``--end``, :mod:`evedit.editing.footage`); the output's frame count and
rate for its format; the mask (missing, unreadable, too short); the sound (kept when the input has
some and the output is a video file whose container can take it, its encoder checked; a GIF, image
or folder output says in one line that it carries none); only then torch and the model are
imported and loaded (:func:`prepare_edit` does the checks, :func:`execute` the rest, so
``--jobs`` checks every job before its one load), and the task is chosen (``--task auto`` below :data:`AUTO_TASK_THRESHOLD` asks for
``--task``). Frames are then decoded, edited window by window and encoded as they go (memory does
not depend on the clip's length) into temporary siblings of the output and the comparison, moved
into place at the end (if the comparison cannot be placed, a newly written output is removed
again). Ctrl-C and SIGTERM remove the temporaries; inputs are only read.
"""

from __future__ import annotations

import itertools
import math
import os
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import EveditError
from ..io import IMAGE_OUTPUT_EXTENSIONS, SUPPORTED_OUTPUT_EXTENSIONS
from ..io._av import check_encodable
from ..io._common import check_output_location, check_replaceable_folder, remove_quietly
from ..io.audio import AUDIO_OUTPUT_EXTENSIONS, audio_info, check_audio_encoder
from ..io.stream import FrameWriter, open_video
from .footage import Span, audio_plan, frame_span
from .options import AUTO_TASK_THRESHOLD, EditOptions, check_device, check_instruction
from .region import open_masks


@dataclass
class EditPlan:
    """One checked edit, ready to run: nothing has been computed or written yet."""

    input: Path
    instruction: str
    output: str
    compare: str | None
    options: EditOptions
    frames: Iterator  # the input's frames (after --max-frames), decoded as they are read
    span: Span  # the frames edited
    fps: float  # the output's frame rate
    keep_rest: bool
    masks: Iterator | None  # masks aligned with the edited frames
    audio: tuple | None  # (source, start, end) for FrameWriter
    notes: list[str] = field(default_factory=list)  # lines to print before editing


def prepare_edit(input: str | Path, instruction: str, output: str, *, compare: str | None = None,
                 start=None, end=None, keep_rest: bool = False, mask=None, audio: bool = True,
                 **option_values) -> EditPlan:
    """Every check that needs no model (see the module notes); ``option_values`` are
    :class:`EditOptions` fields."""
    option_values.setdefault("min_task_probability", AUTO_TASK_THRESHOLD)
    options = EditOptions(**option_values).checked()
    instruction = check_instruction(instruction)
    if keep_rest and options.stride > 1:
        raise EveditError("--keep-rest copies the untouched frames at the input's frame rate, so it "
                          "cannot be combined with --stride; leave one of them out.")
    check_target(output, input, "The output")
    if compare is not None:
        check_target(compare, input, "The comparison")
        if _same(compare, output):
            raise EveditError("The comparison path must differ from the output path.")
    frames, fps, file_frames = open_video(Path(input))
    count = file_frames if options.max_frames is None else min(file_frames, options.max_frames)
    span = frame_span(start, end, count, fps)
    written = count if keep_rest else math.ceil((span.stop - span.start) / options.stride)
    rate = fps / options.stride
    for target, what in ((output, "The output"), (compare, "The comparison")):
        if target is not None:
            check_format(target, written, rate, what)
    masks = None if mask is None else itertools.islice(open_masks(mask, span.stop), span.start, None)
    plan = EditPlan(Path(input), instruction, output, compare, options, itertools.islice(frames, count),
                    span, rate, keep_rest, masks, None)
    if audio and audio_info(input) is not None:
        ext = Path(os.fspath(output)).suffix.lower()
        if ext in AUDIO_OUTPUT_EXTENSIONS and not _is_folder_target(output):
            check_audio_encoder(ext, f"Cannot write the output '{output}'")
            plan.audio = audio_plan(Path(input), span, keep_rest, options.stride, file_frames)
        else:
            kind = "a GIF" if ext == ".gif" else ("a folder of frames" if _is_folder_target(output) else "an image")
            plan.notes.append(f"note: the output is {kind}, which carries no sound; the input's audio is left out.")
    return plan


def run_edit(input: str | Path, instruction: str, output: str, *, model: str | None = None,
             compare: str | None = None, device: str | None = "auto", quiet: bool = False,
             echo=print, start=None, end=None, keep_rest: bool = False, mask=None, audio: bool = True,
             **option_values) -> dict:
    """The whole command; ``option_values`` are :class:`EditOptions` fields (``--task auto``
    refuses choices below :data:`AUTO_TASK_THRESHOLD` unless ``min_task_probability`` is given).
    Returns a summary: frames, size, fps, task, task_probability, windows, timings."""
    clock = time.perf_counter()
    plan = prepare_edit(input, instruction, output, compare=compare, start=start, end=end,
                        keep_rest=keep_rest, mask=mask, audio=audio, **option_values)
    torch_device = check_device(device)
    from .pipeline import EditPipeline

    with warnings_as_lines():
        pipe = EditPipeline.from_pretrained(model or "shapeworld", torch_device)
        summary = execute(pipe, plan, quiet=quiet, echo=echo)
    summary["timings"]["total"] = time.perf_counter() - clock
    report(summary, output, compare, summary["editor"], quiet, echo)
    return summary


def execute(pipe, plan: EditPlan, *, quiet: bool = False, echo=print) -> dict:
    """Edit and write one checked plan with a loaded pipeline; returns the summary."""
    clock = time.perf_counter()
    for line in plan.notes:
        echo(line)
    opts = pipe.options(plan.options)
    edited = plan.span.stop - plan.span.start
    stream = pipe.stream(itertools.islice(plan.frames, edited), plan.instruction, opts,
                         progress=not quiet, total=edited, mask=plan.masks)
    if stream.task is not None:
        how = f" (chosen by the task classifier, p={stream.task_probability:.2f})" \
            if stream.task_probability is not None else ""
        echo(f"task: {stream.task}{how}")
    if stream.opts.region == "auto":
        echo("region: where the edit adapter finds the instruction acts (--region full: whole frames)")
    size, count, sound = write_stream(stream, plan.output, plan.compare, plan.fps, plan)
    return dict(frames=count, size=size, fps=plan.fps, task=stream.task, editor=opts.editor,
                task_probability=stream.task_probability, windows=stream.windows, sound=sound,
                span=(plan.span.start, plan.span.stop), edited=stream.count,
                timings={**stream.timings, "total": time.perf_counter() - clock})


def write_stream(stream, output, compare, fps: float, plan: EditPlan | None = None):
    """Write the edited frames (and the side-by-side comparison) as they come, with the untouched
    frames around them (``--keep-rest``) and the sound; -> ((width, height), frames, sound note).

    Any failure, Ctrl-C or SIGTERM while editing removes both temporaries; the output is placed
    first, then the comparison, and if that fails a newly written output is removed again."""
    from ..demo import side_by_side

    existed = os.path.lexists(os.fspath(output))
    out = FrameWriter(output, fps, audio=plan.audio if plan is not None else None)
    cmp = FrameWriter(compare, fps) if compare is not None else None
    size = (0, 0)

    def put(original, edited):
        nonlocal size
        out.write(edited)
        if cmp is not None:
            cmp.write(side_by_side(original[None], edited[None])[0])
        size = (edited.shape[1], edited.shape[0])

    try:
        for frame in _head(plan):
            put(frame, frame)
        for original, edited in stream:
            put(original, edited)
        for frame in (plan.frames if plan is not None and plan.keep_rest else ()):
            put(frame, frame)
        out.close()
    except BaseException:
        out.abort()
        if cmp is not None:
            cmp.abort()
        raise
    if cmp is not None:
        try:
            cmp.close()
        except BaseException:
            if not existed:
                remove_quietly(Path(os.fspath(output)))
            raise
    return size, out.count, out.audio_note


def _head(plan: EditPlan | None):
    """The frames before the edited range: yielded with ``--keep-rest``, else read and dropped."""
    if plan is None:
        return
    for index in range(plan.span.start):
        frame = next(plan.frames, None)
        if frame is None:
            raise EveditError(f"The input '{plan.input}' ended after {index} frames, before --start.")
        if plan.keep_rest:
            yield frame


def report(summary: dict, output, compare, editor: str, quiet: bool, echo) -> None:
    w, h = summary["size"]
    echo(f"edited: {output} ({summary['frames']} frames, {w}x{h}, {summary['fps']:g} fps)")
    start, stop = summary.get("span", (0, 0))
    if summary.get("edited") is not None and summary["edited"] != summary["frames"]:
        echo(f"range: input frames {start}-{stop - 1} edited, the others copied")
    if summary.get("sound"):
        echo(f"sound: {summary['sound']}")
    if compare is not None:
        echo(f"comparison: {compare}")
    if not quiet:
        t, n = summary["timings"], summary["windows"]
        echo(f"time: {t['total']:.2f} s (first frame {t['first_frame']:.2f} s, {editor} "
             f"{t['edit']:.2f} s in {n} window{'s' if n > 1 else ''})")


def _real(path) -> str:
    return os.path.normcase(os.path.realpath(os.path.expanduser(os.fspath(path))))


def _same(a, b) -> bool:
    if _real(a) == _real(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links, bind mounts
    except OSError:
        return False


def _is_folder_target(path) -> bool:
    text = os.fspath(path)
    return text.endswith(("/", os.sep)) or Path(text).suffix == ""


def check_target(target, input, what: str) -> None:
    """A writable kind of path that is not the input, nor inside an input folder, nor holds it."""
    suffix = Path(os.fspath(target)).suffix.lower()
    known = SUPPORTED_OUTPUT_EXTENSIONS + IMAGE_OUTPUT_EXTENSIONS
    if not _is_folder_target(target) and suffix not in known:
        raise EveditError(
            f"{what} '{target}' has an unsupported file type '{suffix}' (use {', '.join(known)}, "
            "or a folder path ending in '/' for PNG frames)."
        )
    if _same(target, input):
        raise EveditError(f"{what} '{target}' is the input itself; choose another path so the input is kept.")
    real_in, real_out = _real(input), _real(target)
    if real_out.startswith(real_in + os.sep) and os.path.isdir(real_in):
        raise EveditError(f"{what} '{target}' lies inside the input folder; write it elsewhere.")
    if real_in.startswith(real_out + os.sep):
        raise EveditError(f"{what} '{target}' would replace a folder holding the input; write it elsewhere.")
    where = f"Cannot write to '{target}'"
    path = Path(os.fspath(target))
    if _is_folder_target(target):
        check_replaceable_folder(path, where)
    elif path.is_dir():
        raise EveditError(f"{where}: a folder with that name already exists.")
    check_output_location(path, where)


def check_format(target, frames: int, fps: float, what: str) -> None:
    """Frame count and rate the target's format can store (single images hold one frame)."""
    suffix = Path(os.fspath(target)).suffix.lower()
    if suffix in IMAGE_OUTPUT_EXTENSIONS and not _is_folder_target(target) and frames != 1:
        raise EveditError(
            f"{what} '{target}' is an image but the edit has {frames} frames; write a video "
            f"({', '.join(SUPPORTED_OUTPUT_EXTENSIONS)}) or a folder."
        )
    if suffix in SUPPORTED_OUTPUT_EXTENSIONS and not _is_folder_target(target):
        check_encodable(suffix, fps, False, f"Cannot write {what.lower()} '{target}'")


@contextmanager
def warnings_as_lines(stream=None):
    """Show warnings as one line each ("Warning: ...") instead of Python's file:line form."""
    stream = stream or sys.stderr

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"Warning: {message}", file=stream)

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = show
        yield
