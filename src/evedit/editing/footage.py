"""Real footage around the edit: the time range, the untouched rest, the sound.

Times (``--start``, ``--end``) are seconds (``1.5`` or ``1.5s``) or frame numbers (``12f``, 0-based)
of the input, after ``--max-frames``. Frame ``i`` covers ``[i / fps, (i + 1) / fps)``, so a time
picks the frame it falls in (``--start 1.5`` at 8 fps is frame 12); ``--end`` is exclusive (the
first frame not edited; a time past the clip's end means its end). ``--keep-rest`` copies the frames
before and after the range around the edited ones, so the output has the input's full length.

The sound goes with the frames written (see :mod:`evedit.io.audio`): the input's whole track when
the output spans the whole input (no range, or ``--keep-rest``), else the range's
``[start / fps, end / fps)`` seconds.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import EveditError

TIME_HELP = "seconds (1.5 or 1.5s) or a 0-based frame number (12f)"
_TIME = re.compile(r"\s*(?P<value>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>s|f)?\s*", re.IGNORECASE)


def parse_time(value, what: str) -> tuple[float, str] | None:
    """``1.5``, ``"1.5s"`` -> (1.5, "s"); ``"12f"`` -> (12, "f"); None stays None."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise EveditError(f"{what} must be {TIME_HELP}, got {value!r}.")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise EveditError(f"{what} must be {TIME_HELP}, got {value!r}.")
        return float(value), "s"
    match = _TIME.fullmatch(str(value))
    if match is None:
        raise EveditError(f"{what} must be {TIME_HELP}, got {value!r}.")
    unit = (match.group("unit") or "s").lower()
    number = float(match.group("value"))
    if unit == "f" and not number.is_integer():
        raise EveditError(f"{what} must name a whole frame number with 'f', got {value!r}.")
    return number, unit


def _frame(time: tuple[float, str], fps: float) -> int:
    number, unit = time
    return int(number) if unit == "f" else int(math.floor(number * fps + 1e-6))


@dataclass(frozen=True)
class Span:
    """Frames ``[start, stop)`` of an input of ``count`` frames at ``fps`` are edited."""

    start: int
    stop: int
    count: int
    fps: float

    @property
    def whole(self) -> bool:
        return self.start == 0 and self.stop == self.count


def frame_span(start, end, count: int, fps: float) -> Span:
    """The frames ``--start`` / ``--end`` pick in an input of ``count`` frames (see module notes)."""
    first = 0 if start is None else _frame(parse_time(start, "--start"), fps)
    stop = count if end is None else min(count, _frame(parse_time(end, "--end"), fps))
    if first >= count:
        raise EveditError(f"--start {start} is at or past the end of the input ({count} frames, "
                          f"{count / fps:.3g} s).")
    if stop <= first:
        raise EveditError(f"--end {end} must come after --start {start if start is not None else 0} "
                          "(the range holds no frame).")
    return Span(first, stop, count, fps)


def audio_plan(source: Path, span: Span, keep_rest: bool, stride: int,
               file_frames: int) -> tuple[Path, float, float | None]:
    """(source, start, end) seconds of ``source``'s sound for the frames written (see notes)."""
    if keep_rest:
        first, stop = 0, span.count
    else:  # the output's last frame lasts ``stride`` input frames
        first, stop = span.start, span.start + math.ceil((span.stop - span.start) / stride) * stride
    if first == 0 and stop >= file_frames:
        return source, 0.0, None
    return source, first / span.fps, min(stop, file_frames) / span.fps
