"""Benchmark items and the on-disk layout of edited videos.

An :class:`Item` is one edit to score: an input video, its edit description and, on ShapeWorld,
the exact ground truth and the edit's footprint. Its ``key`` names it everywhere: in the per-item
JSONL, and as the relative path of the edited video in an outputs folder, which follows the TGVE
submission layout (``{subset}/{video}/{task}/00000.jpg ...``); ShapeWorld keys are
``{split}/{seed}_{task}``. An edited video is stored as a folder of frames, or as one file
``{key}.mp4`` / ``.gif`` / ... beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from ..atomic import replace_folder
from ..errors import EveditError
from ..io import VIDEO_EXTENSIONS, read_video


@dataclass
class Item:
    """One edit to score. ``frames`` is uint8 ``(F, H, W, 3)``, or None until :meth:`load` reads ``video``."""

    key: str
    task: str
    instruction: str
    input_caption: str
    output_caption: str
    frames: np.ndarray | None = None
    video: Path | None = None
    target: np.ndarray | None = None  # ground truth (ShapeWorld only)
    footprint: np.ndarray | None = None  # bool (F, H, W): pixels the edit may change
    group: str = ""  # ShapeWorld split, or TGVE subset
    index: int = 0  # position in the full benchmark (the editing seed is seed + index)
    meta: dict = field(default_factory=dict)

    def load(self) -> np.ndarray:
        """The input frames (read once per video: items of one video share the decode)."""
        if self.frames is not None:
            return self.frames
        if self.video is None:
            raise ValueError(f"item {self.key} has neither frames nor a video")
        return _read_cached(str(self.video))


@lru_cache(maxsize=2)
def _read_cached(path: str) -> np.ndarray:
    frames = read_video(path).frames
    frames.setflags(write=False)  # shared between items: nobody may edit it in place
    return frames


def find_output(root: Path, key: str) -> Path | None:
    """The edited video of ``key`` under ``root``: a frame folder or ``key.<video ext>``; None if absent."""
    folder = root / key
    if folder.is_dir():
        return folder
    for ext in VIDEO_EXTENSIONS:
        path = root / f"{key}{ext}"
        if path.is_file():
            return path
    return None


def read_output(root: Path, key: str) -> np.ndarray:
    """Frames of the edited video of ``key``; a one-sentence error naming the expected path if missing."""
    path = find_output(root, key)
    if path is None:
        raise EveditError(f"No edited video for '{key}' in '{root}': expected a frame folder '{root / key}' "
                          f"or a video file '{root / key}.mp4'.")
    return read_video(path).frames


def save_output(root: Path, key: str, frames: np.ndarray, ext: str = ".png") -> Path:
    """Write ``frames`` as ``root/key/00000<ext> ...`` (atomic: a temporary folder renamed into place)."""
    target = root / key
    def write(tmp: Path) -> None:
        for i, frame in enumerate(frames):
            kwargs = {"quality": 95} if ext == ".jpg" else {}
            Image.fromarray(frame).save(tmp / f"{i:05d}{ext}", **kwargs)

    return replace_folder(target, write)


def safe_name(key: str) -> str:
    """A key as one file name (``/`` -> ``__``)."""
    return key.replace("/", "__")
