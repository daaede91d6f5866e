"""``evedit edit``: check everything cheap first, then load, edit, write, report.

Order (so a bad run costs nothing and leaves nothing): options and instruction; output and
comparison paths (format, not the input under another spelling, not inside an input folder);
read the input (missing, corrupt, zero-frame inputs fail here); the output's frame rate for its
format; then load the model and edit; write the output, then the comparison (if writing the
comparison fails, a newly written output is removed again). Writes are atomic, inputs are only read.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

from ..errors import EveditError
from ..io import IMAGE_OUTPUT_EXTENSIONS, SUPPORTED_OUTPUT_EXTENSIONS, write_image, write_video
from ..io._av import check_encodable
from ..io._common import check_replaceable_folder, remove_quietly
from .frames import load_frames
from .options import EditOptions, check_device, check_instruction
from .pipeline import EditPipeline, EditResult


def run_edit(input: str | Path, instruction: str, output: str, *, model: str | None = None,
             compare: str | None = None, device: str | None = "auto", quiet: bool = False,
             echo=print, **option_values) -> EditResult:
    """The whole command; ``option_values`` are :class:`EditOptions` fields. Returns the result."""
    options = EditOptions(**option_values).checked()
    instruction = check_instruction(instruction)
    torch_device = check_device(device)
    check_target(output, input, "The output")
    if compare is not None:
        check_target(compare, input, "The comparison")
        if _same(compare, output):
            raise EveditError("The comparison path must differ from the output path.")
    frames, fps = load_frames(Path(input), options.max_frames)
    count, rate = math.ceil(len(frames) / options.stride), fps / options.stride
    for target, what in ((output, "The output"), (compare, "The comparison")):
        if target is not None:
            check_format(target, count, rate, what)
    with warnings_as_lines():
        pipe = EditPipeline.from_pretrained(model or "shapeworld", torch_device)
        result = pipe(frames, instruction, fps=fps, options=options, progress=not quiet)
    if result.task is not None:
        how = f" (chosen by the task classifier, p={result.task_probability:.2f})" \
            if result.task_probability is not None else ""
        echo(f"task: {result.task}{how}")
    write_outputs(result, output, compare)
    h, w = result.frames.shape[1:3]
    echo(f"edited: {output} ({len(result.frames)} frames, {w}x{h}, {result.fps:g} fps)")
    if compare is not None:
        echo(f"comparison: {compare}")
    if not quiet:
        t = result.timings
        echo(f"time: {t['total']:.2f} s (first frame {t['first_frame']:.2f} s, {result.editor} "
             f"{t['edit']:.2f} s in {result.windows} window{'s' if result.windows > 1 else ''})")
    return result


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
    if _is_folder_target(target):
        check_replaceable_folder(Path(os.fspath(target)), f"Cannot write to '{target}'")


def check_format(target, frames: int, fps: float, what: str) -> None:
    """Frame count and rate the target's format can store (single images hold one frame)."""
    suffix = Path(os.fspath(target)).suffix.lower()
    if suffix in IMAGE_OUTPUT_EXTENSIONS and not _is_folder_target(target) and frames != 1:
        raise EveditError(
            f"{what} '{target}' is an image but the edit has {frames} frames; write a video "
            f"({', '.join(SUPPORTED_OUTPUT_EXTENSIONS)}) or a folder."
        )
    if suffix in SUPPORTED_OUTPUT_EXTENSIONS:
        check_encodable(suffix, fps, False, f"Cannot write {what.lower()} '{target}'")


def _write(target, frames, fps):
    if Path(os.fspath(target)).suffix.lower() in IMAGE_OUTPUT_EXTENSIONS and not _is_folder_target(target):
        return write_image(target, frames[0])
    return write_video(target, frames, fps)


def write_outputs(result: EditResult, output, compare) -> None:
    """Write the edit, then the side-by-side comparison; undo a new output if the second fails."""
    from ..demo import side_by_side

    existed = os.path.lexists(os.fspath(output))
    _write(output, result.frames, result.fps)
    if compare is None:
        return
    try:
        _write(compare, side_by_side(result.source_frames, result.frames), result.fps)
    except BaseException:
        if not existed:
            remove_quietly(Path(os.fspath(output)))
        raise


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
