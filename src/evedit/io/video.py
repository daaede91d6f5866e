"""Reading and writing whole videos: containers, stills and folders of numbered images.

* :func:`read_video` accepts the containers in :data:`VIDEO_EXTENSIONS` (through
  PyAV), a still image (a one-frame video at :data:`DEFAULT_FPS`), or a folder of
  numbered images (natural order; fps from an optional ``fps.txt``, else
  :data:`DEFAULT_FPS`). See :mod:`evedit.io._av` and :mod:`evedit.io.images` for the
  format details (odd mp4 sizes, GIF timing, alpha over white).
* :func:`write_video` picks the format from the extension; a path with no suffix or
  ending in ``/`` is a folder of ``frame_00000.png``... plus ``fps.txt``. Writes are
  atomic: a hidden temporary sibling is written, then moved into place with
  ``os.replace``; on failure it is removed and any existing output is left as it was.
  An existing folder is replaced only if it holds nothing but frames and ``fps.txt``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evedit.errors import EveditError
from evedit.io._av import check_encodable, decode_file, encode_file, probe_file
from evedit.io._common import (
    DEFAULT_FPS,
    IMAGE_EXTENSIONS,
    SUPPORTED_INPUT_EXTENSIONS,
    SUPPORTED_OUTPUT_EXTENSIONS,
    VIDEO_EXTENSIONS,
    check_fps,
    check_input_file,
    coerce_frames,
    extension,
    quoted,
    write_file_atomically,
)
from evedit.io.images import (
    list_folder_images,
    load_rgb,
    read_folder_fps,
    read_image_folder,
    write_image_folder,
)


@dataclass
class Video:
    """Decoded video: ``frames`` is ``(F, H, W, 3)`` uint8 RGB, ``fps`` frames per second.

    Construction with a malformed array or frame rate raises ``ValueError`` (a bug in
    the caller, not a user error); use :func:`evedit.io.write_video` to get lenient
    coercion of float arrays.
    """

    frames: np.ndarray
    fps: float

    def __post_init__(self) -> None:
        frames = self.frames
        if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
            raise ValueError(
                f"Video.frames must be a uint8 numpy array, got {type(frames).__name__} "
                f"of dtype {getattr(frames, 'dtype', None)}."
            )
        if frames.ndim != 4 or frames.shape[-1] != 3 or min(frames.shape[:3]) == 0:
            raise ValueError(
                f"Video.frames must be shaped (F, H, W, 3) with F, H, W > 0, got {frames.shape}."
            )
        if isinstance(self.fps, bool) or not isinstance(self.fps, (int, float, np.number)):
            raise ValueError(f"Video.fps must be a number, got {self.fps!r}.")
        self.fps = float(self.fps)
        if not math.isfinite(self.fps) or self.fps <= 0:
            raise ValueError(f"Video.fps must be a positive finite number, got {self.fps!r}.")

    @property
    def num_frames(self) -> int:
        """Number of frames ``F``."""
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        """Frame height ``H`` in pixels."""
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        """Frame width ``W`` in pixels."""
        return int(self.frames.shape[2])

    @property
    def duration(self) -> float:
        """Length in seconds, ``F / fps``."""
        return self.num_frames / self.fps


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` learns without decoding pixels."""

    num_frames: int
    fps: float
    width: int
    height: int


def _check_max_frames(max_frames: object, where: str) -> int | None:
    """Return ``max_frames`` (``None`` or a positive int) or raise :class:`EveditError`."""
    if max_frames is None:
        return None
    is_int = isinstance(max_frames, (int, np.integer)) and not isinstance(max_frames, bool)
    if not is_int or max_frames < 1:
        raise EveditError(
            f"{where}: max_frames must be a positive whole number, got {max_frames!r}."
        )
    return int(max_frames)


def _unsupported(
    where: str, target: Path, choices: tuple[str, ...], folder_note: str
) -> EveditError:
    """Build the error for an extension outside ``choices``."""
    suffix = target.suffix or "(none)"
    return EveditError(
        f"{where}: unsupported file type '{suffix}' "
        f"(supported: {', '.join(choices)}, {folder_note})."
    )


def read_video(path: str | os.PathLike[str], max_frames: int | None = None) -> Video:
    """Read a video file, a still image or a folder of numbered images.

    Args:
        path: a container (``.mp4 .webm .mov .mkv .avi .gif``), a still image
            (``.png .jpg .jpeg .bmp .webp``: one frame at 8 fps), or a folder of images
            read in natural order (``frame2`` before ``frame10``) at the rate in its
            ``fps.txt`` (8 fps without one). All folder images must share one size.
        max_frames: keep only the first ``max_frames`` frames (decoding stops there).

    Returns:
        A :class:`Video` with RGB uint8 frames; grayscale/palette inputs become RGB and
        transparency is composited over white.

    Raises:
        EveditError: naming ``path``, for a missing, empty, corrupt or unsupported
            input, a file with no video stream or no decodable frame, an image-less
            folder or one whose images differ in size.
    """
    where = f"Cannot read video {quoted(path)}"
    limit = _check_max_frames(max_frames, where)
    target = Path(path)
    if target.is_dir():
        frames, fps = read_image_folder(target, where, limit)
        return Video(frames, fps)
    if not target.exists():
        raise EveditError(f"{where}: the file does not exist.")
    ext = extension(target)
    if ext in VIDEO_EXTENSIONS:
        check_input_file(target, where)
        frames, fps = decode_file(target, where, limit)
        return Video(frames, fps)
    if ext in IMAGE_EXTENSIONS:
        return Video(load_rgb(target, where)[None], DEFAULT_FPS)
    raise _unsupported(where, target, SUPPORTED_INPUT_EXTENSIONS, "or a folder of numbered images")


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Return frame count, fps and size of anything :func:`read_video` accepts, cheaply.

    Containers are demuxed but not decoded, folders are listed and only the first
    image is opened; so a file that probes fine may still fail to decode.
    """
    where = f"Cannot read video {quoted(path)}"
    target = Path(path)
    if target.is_dir():
        files = list_folder_images(target, where)
        first = load_rgb(files[0], f"Cannot read frame {quoted(files[0])}")
        return VideoInfo(len(files), read_folder_fps(target), first.shape[1], first.shape[0])
    if not target.exists():
        raise EveditError(f"{where}: the file does not exist.")
    ext = extension(target)
    if ext in VIDEO_EXTENSIONS:
        check_input_file(target, where)
        return VideoInfo(*probe_file(target, where))
    if ext in IMAGE_EXTENSIONS:
        image = load_rgb(target, where)
        return VideoInfo(1, DEFAULT_FPS, image.shape[1], image.shape[0])
    raise _unsupported(where, target, SUPPORTED_INPUT_EXTENSIONS, "or a folder of numbered images")


def _is_folder_target(path: str | os.PathLike[str], target: Path) -> bool:
    """A path ending in a separator or without a suffix names a folder of frames."""
    text = os.fspath(path)
    return text.endswith(("/", os.sep)) or target.suffix == ""


def write_video(
    path: str | os.PathLike[str],
    frames: np.ndarray | Video,
    fps: float | None = None,
    *,
    lossless: bool = False,
) -> Path:
    """Write frames to a video file or a folder of PNG frames, atomically.

    Args:
        path: ``.mp4`` (H.264), ``.webm`` (VP9), ``.mkv`` (FFV1, always exact), ``.gif``,
            or a folder (no suffix, or ending in ``/``): ``frame_00000.png``... plus
            ``fps.txt``. The parent folder is created if missing.
        frames: ``(F, H, W, 3)`` or ``(H, W, 3)``, uint8 or floats in ``[0, 1]``; or a
            :class:`Video`, whose fps is used when ``fps`` is not given.
        fps: frames per second, may be fractional (29.97); default 8.0.
        lossless: bit-exact mp4 (``libx264rgb``) / webm (VP9 lossless); refused for GIF.

    Returns:
        The path written.

    Raises:
        EveditError: naming ``path``, for an unsupported extension, bad frames or fps,
            or an encoder/disk failure. Nothing is left behind on failure.
    """
    where = f"Cannot write video {quoted(path)}"
    if isinstance(frames, Video):
        fps = frames.fps if fps is None else fps
        frames = frames.frames
    rate = check_fps(DEFAULT_FPS if fps is None else fps, where)
    target = Path(path)
    if _is_folder_target(path, target):
        return write_image_folder(target, coerce_frames(frames, where), rate, where)
    ext = extension(target)
    if ext not in SUPPORTED_OUTPUT_EXTENSIONS:
        note = "or a folder path ending in '/'"
        raise _unsupported(where, target, SUPPORTED_OUTPUT_EXTENSIONS, note)
    array = coerce_frames(frames, where)
    check_encodable(ext, rate, lossless, where)
    return write_file_atomically(
        target, lambda tmp: encode_file(tmp, ext, array, rate, lossless, where), where
    )
