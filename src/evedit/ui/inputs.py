"""The web app's inputs: an upload, the bundled example or a new ShapeWorld clip, checked and trimmed.

Every problem is an :class:`~evedit.errors.EveditError` with one sentence, raised before any model
work. Uploads are probed before they are decoded, so a clip that is too large costs nothing.
A folder-of-frames ``.zip`` is unpacked (names flattened, images only, bounded size) into the
request's own folder. The edit pipeline has no start time, so :func:`load_clip` implements it here
by dropping the decoded frames before it; ``max_frames`` and ``stride`` are left to the pipeline.
"""

from __future__ import annotations

import json
import math
import random
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import EveditError
from ..io import FPS_FILE, IMAGE_EXTENSIONS, probe_video, read_video, write_video

VIDEO_TYPES = (".mp4", ".webm", ".mov", ".mkv", ".gif")
UPLOAD_TYPES = VIDEO_TYPES + (".zip",)
SOURCES = ("upload", "bundled example", "new ShapeWorld clip")
MAX_INSTRUCTION_CHARS = 400
MAX_FRAMES = 512  # frames decoded for one edit (after the start time)
MAX_PIXELS = 1920 * 1088  # per frame
MAX_ZIP_FILES = 2048
MAX_ZIP_BYTES = 2 * 1024**3  # unpacked
WORLD_SEEDS = 10**9


@dataclass
class Clip:
    """Frames to edit and what is known about them."""

    frames: np.ndarray  # (F, H, W, 3) uint8, already trimmed to the start time
    fps: float
    label: str  # where it came from, for the status line
    truth: np.ndarray | None = None  # ground-truth edit (ShapeWorld), same frames as the input
    instruction: str | None = None  # the example's own instruction, when there is one
    task: str | None = None  # the example's task, when there is one


def check_instruction_text(text: object) -> str:
    """The instruction stripped; empty or longer than :data:`MAX_INSTRUCTION_CHARS` is an error."""
    if not isinstance(text, str) or not text.strip():
        raise EveditError("The instruction is empty; say what to change, e.g. \"make the circle red\".")
    text = text.strip()
    if len(text) > MAX_INSTRUCTION_CHARS:
        raise EveditError(f"The instruction has {len(text)} characters; keep it under {MAX_INSTRUCTION_CHARS}.")
    return text


def start_frame(start_time: float | None, fps: float) -> int:
    """The first frame at ``start_time`` seconds (0 when not given)."""
    if start_time is None:
        return 0
    if not isinstance(start_time, (int, float)) or not math.isfinite(start_time) or start_time < 0:
        raise EveditError(f"The start time must be zero or more seconds, got {start_time!r}.")
    return int(round(start_time * fps))


def load_clip(source: str, upload: str | None, world_task: str | None, world_seed: float | None,
              workdir: Path, start_time: float | None = None, max_frames: int | None = None) -> Clip:
    """The clip the user chose, decoded and trimmed to start at ``start_time``."""
    if source == "upload":
        clip = _upload(upload, workdir, start_time, max_frames)
    elif source == "bundled example":
        clip = bundled_clip()
    elif source == "new ShapeWorld clip":
        clip = world_clip(world_task, world_seed)
    else:
        raise EveditError(f"Unknown input source {source!r}; choose one of: {', '.join(SOURCES)}.")
    first = start_frame(start_time, clip.fps)
    if first >= len(clip.frames):
        raise EveditError(f"The start time {start_time:g} s is past the end of the clip "
                          f"({len(clip.frames) / clip.fps:.2f} s).")
    clip.frames = clip.frames[first:]
    if clip.truth is not None:
        clip.truth = clip.truth[first:]
    return clip


def _upload(upload: str | None, workdir: Path, start_time: float | None, max_frames: int | None) -> Clip:
    if not upload:
        raise EveditError("No video was uploaded; upload a clip or choose the bundled example.")
    path = Path(upload)
    suffix = path.suffix.lower()
    if suffix not in UPLOAD_TYPES:
        raise EveditError(f"'{path.name}' is not a video; upload {', '.join(UPLOAD_TYPES)} "
                          "(a .zip of numbered frames).")
    if suffix == ".zip":
        path = unzip_frames(path, workdir / "frames")
    info = probe_video(path)
    first = start_frame(start_time, info.fps)
    need = first + (max_frames or MAX_FRAMES)
    check_size(min(info.num_frames, need) - first, info.width, info.height)
    video = read_video(path, max_frames=need)
    return Clip(video.frames, video.fps, f"upload '{Path(upload).name}'")


def check_size(frames: int, width: int, height: int) -> None:
    """Refuse clips over :data:`MAX_FRAMES` frames or :data:`MAX_PIXELS` pixels per frame."""
    if width * height > MAX_PIXELS:
        raise EveditError(f"The clip is {width}x{height}, too large to edit here; use at most "
                          f"{MAX_PIXELS:,} pixels per frame (e.g. 1920x1080).")
    if frames > MAX_FRAMES:
        raise EveditError(f"The clip has {frames} frames after the start time; set max frames to "
                          f"{MAX_FRAMES} or fewer (or a stride) to edit it here.")


def unzip_frames(archive: Path, folder: Path) -> Path:
    """Unpack the images of a frames ``.zip`` into ``folder`` (flat names; nothing else is written)."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if not m.is_dir() and _frame_member(Path(m.filename).name)]
            if not any(Path(m.filename).suffix.lower() in IMAGE_EXTENSIONS for m in members):
                raise EveditError(f"'{archive.name}' holds no frame images ({', '.join(IMAGE_EXTENSIONS)}).")
            if len(members) > MAX_ZIP_FILES or sum(m.file_size for m in members) > MAX_ZIP_BYTES:
                raise EveditError(f"'{archive.name}' is too large; use at most {MAX_ZIP_FILES} frames "
                                  f"and {MAX_ZIP_BYTES // 1024**3} GB.")
            names = [Path(m.filename).name for m in members]
            if len(set(names)) != len(names):
                raise EveditError(f"'{archive.name}' holds two frames with the same name in different folders.")
            folder.mkdir(parents=True, exist_ok=True)
            for member, name in zip(members, names):
                (folder / name).write_bytes(zf.read(member))
    except (zipfile.BadZipFile, OSError, RuntimeError) as exc:
        raise EveditError(f"'{archive.name}' is not a readable zip of frames ({exc}).") from exc
    return folder


def _frame_member(name: str) -> bool:
    """A frame image or the folder's ``fps.txt`` (hidden files, e.g. macOS metadata, are skipped)."""
    return not name.startswith(".") and (Path(name).suffix.lower() in IMAGE_EXTENSIONS or name == FPS_FILE)


def bundled_clip() -> Clip:
    """The bundled ShapeWorld clip, its instruction, task and ground truth."""
    from ..demo import BUNDLED_CLIP, BUNDLED_INFO, BUNDLED_SEED, BUNDLED_TASK, _make

    if not BUNDLED_CLIP.is_file():
        raise EveditError(f"The bundled example '{BUNDLED_CLIP}' is missing from this install.")
    info = json.loads(BUNDLED_INFO.read_text())
    video = read_video(BUNDLED_CLIP)
    truth = _make(BUNDLED_SEED, BUNDLED_TASK, len(video.frames), video.frames.shape[1],
                  info.get("world")).edited_clip
    return Clip(video.frames, video.fps, "bundled example", truth, info["instruction"], info.get("task"))


def world_clip(task: str | None, seed: float | None, fps: float = 8.0) -> Clip:
    """The ShapeWorld clip of ``seed`` for ``task`` (any task when None), with its ground truth,
    rendered in the bundled clip's world (the shipped model's)."""
    from ..demo import _make, bundled_world

    if seed is None or not float(seed).is_integer() or not 0 <= seed < WORLD_SEEDS:
        raise EveditError(f"The ShapeWorld seed must be a whole number from 0 to {WORLD_SEEDS - 1}, got {seed!r}.")
    try:
        example = _make(int(seed), task or None, 8, 64, bundled_world())
    except (ValueError, KeyError) as exc:
        raise EveditError(f"Cannot render ShapeWorld task {task!r} ({exc}).") from exc
    edit = example.edit
    return Clip(example.clip, fps, f"ShapeWorld seed {int(seed)} ({edit.task})", example.edited_clip,
                edit.instruction, edit.task)


def random_world_seed() -> int:
    """A fresh seed for "new ShapeWorld clip"."""
    return random.SystemRandom().randrange(WORLD_SEEDS)


def write_preview(clip: Clip, folder: Path, name: str = "input.mp4") -> str:
    """Write the clip (trimmed) as an mp4 for the page's input preview."""
    folder.mkdir(parents=True, exist_ok=True)
    return str(write_video(folder / name, clip.frames, clip.fps))
