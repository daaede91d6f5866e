"""Shared helpers for :mod:`evedit.io`: extension tables, validation, atomic writes.

Nothing here is public API; :mod:`evedit.io` re-exports what users need.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from collections.abc import Callable
from numbers import Real
from pathlib import Path

import numpy as np

from evedit.atomic import remove_stale_temps, temp_sibling
from evedit.errors import EveditError

#: Frame rate given to stills and to image folders that carry no ``fps.txt``.
DEFAULT_FPS = 8.0

#: Name of the optional text file (one number) holding an image folder's frame rate.
FPS_FILE = "fps.txt"

#: Container formats read through PyAV.
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif")

#: Still-image formats read through Pillow (alone, or as frames in a folder).
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".webp")

#: Everything :func:`evedit.io.read_video` accepts, besides a folder of numbered images.
SUPPORTED_INPUT_EXTENSIONS: tuple[str, ...] = VIDEO_EXTENSIONS + IMAGE_EXTENSIONS

#: Everything :func:`evedit.io.write_video` writes, besides a folder of PNG frames.
SUPPORTED_OUTPUT_EXTENSIONS: tuple[str, ...] = (".mp4", ".webm", ".mkv", ".gif")

#: What :func:`evedit.io.write_image` writes.
IMAGE_OUTPUT_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg")

_FRAME_FILE = re.compile(r"frame_\d+\.png")


def quoted(path: str | os.PathLike[str]) -> str:
    """Return ``path`` in single quotes, as it appears in error messages."""
    return f"'{os.fspath(path)}'"


def extension(path: Path) -> str:
    """Return the lower-case suffix of ``path`` (``''`` when it has none)."""
    return path.suffix.lower()


def natural_key(name: str) -> tuple:
    """Sort key ordering ``frame2`` before ``frame10`` (digit runs compare as numbers).

    ``re.split`` with a capturing group alternates text and digit runs, so positions
    always hold the same type and keys of different names stay comparable.
    """
    parts = re.split(r"(\d+)", name.lower())
    key = [int(part) if index % 2 else part for index, part in enumerate(parts)]
    return (key, name)


def check_fps(fps: object, where: str) -> float:
    """Return ``fps`` as a float, or raise when it is not a finite number above zero."""
    if isinstance(fps, bool) or not isinstance(fps, Real):
        raise EveditError(f"{where}: fps must be a number, got {fps!r}.")
    value = float(fps)
    if not math.isfinite(value) or value <= 0:
        raise EveditError(f"{where}: fps must be a positive number, got {fps!r}.")
    return value


def coerce_frames(frames: object, where: str) -> np.ndarray:
    """Return ``frames`` as a contiguous ``uint8`` array shaped ``(F, H, W, 3)``.

    Accepts ``(F, H, W, 3)`` or a single ``(H, W, 3)`` frame, either ``uint8`` or a
    floating-point array with every value in ``[0, 1]`` (scaled by 255 and rounded).
    Anything else raises :class:`EveditError` starting with ``where``.
    """
    try:
        array = np.asarray(frames)
    except (TypeError, ValueError) as exc:
        raise EveditError(f"{where}: frames are not an array of pixels ({exc}).") from exc
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[-1] != 3:
        raise EveditError(
            f"{where}: frames must be shaped (F, H, W, 3) or (H, W, 3) RGB, "
            f"got shape {tuple(array.shape)}."
        )
    if min(array.shape[:3]) == 0:
        raise EveditError(f"{where}: frames are empty (shape {tuple(array.shape)}).")
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if np.issubdtype(array.dtype, np.floating):
        values = array.astype(np.float32)
        if not np.isfinite(values).all() or values.min() < 0.0 or values.max() > 1.0:
            raise EveditError(f"{where}: floating-point frames must have every value in [0, 1].")
        return np.ascontiguousarray(np.rint(values * 255.0).astype(np.uint8))
    raise EveditError(
        f"{where}: frames must be uint8 (0-255) or floats in [0, 1], got dtype {array.dtype}."
    )


def composite_over_white(rgba: np.ndarray) -> np.ndarray:
    """Blend a ``(..., 4)`` uint8 RGBA array over a white background; returns RGB uint8."""
    rgb = rgba[..., :3].astype(np.uint32)
    alpha = rgba[..., 3:4].astype(np.uint32)
    blended = (rgb * alpha + 255 * (255 - alpha) + 127) // 255
    return blended.astype(np.uint8)


def remove_quietly(path: Path) -> None:
    """Delete a file or folder if it exists, ignoring errors (used during cleanup)."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists() or path.is_symlink():
            path.unlink()
    except OSError:
        pass


def make_parent(target: Path, where: str) -> None:
    """Create ``target``'s parent folder if missing."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EveditError(
            f"{where}: cannot create the folder {quoted(target.parent)} ({exc.strerror or exc})."
        ) from exc


def write_file_atomically(target: Path, write: Callable[[Path], None], where: str) -> Path:
    """Run ``write(tmp)`` on a temporary sibling of ``target``, then move it into place.

    On any failure the temporary file is removed and ``target`` is left untouched.
    ``OSError`` raised while writing is reported as :class:`EveditError`; format-specific
    errors must be translated by ``write`` itself.
    """
    if target.is_dir():
        raise EveditError(f"{where}: a folder with that name already exists.")
    make_parent(target, where)
    remove_stale_temps(target)
    tmp = temp_sibling(target, target.suffix)
    try:
        write(tmp)
        os.replace(tmp, target)
    except OSError as exc:
        remove_quietly(tmp)
        raise EveditError(f"{where}: {exc.strerror or exc}.") from exc
    except BaseException:
        remove_quietly(tmp)
        raise
    return target


def check_replaceable_folder(target: Path, where: str) -> None:
    """Refuse to overwrite anything but a missing/empty folder or one of our frame folders.

    A frame folder holds only ``frame_NNNNN.png`` files and ``fps.txt``; anything else
    is the user's data and must never be deleted by a write.
    """
    if not target.exists():
        return
    if not target.is_dir():
        raise EveditError(f"{where}: a file with that name exists, so it cannot be a folder.")
    try:
        names = [entry.name for entry in target.iterdir()]
    except OSError as exc:
        reason = exc.strerror or exc
        raise EveditError(f"{where}: cannot list the existing folder ({reason}).") from exc
    foreign = [name for name in names if name != FPS_FILE and not _FRAME_FILE.fullmatch(name)]
    if foreign:
        raise EveditError(
            f"{where}: the folder already exists and holds files other than frames "
            f"(e.g. '{sorted(foreign)[0]}'), so it will not be overwritten."
        )


def write_folder_atomically(target: Path, write: Callable[[Path], None], where: str) -> Path:
    """Fill a temporary sibling folder with ``write(tmp)``, then swap it in for ``target``.

    An existing frame folder at ``target`` is moved aside first and deleted only after
    the new folder is in place; on failure it is restored and the temporary is removed.
    """
    check_replaceable_folder(target, where)
    make_parent(target, where)
    remove_stale_temps(target)
    tmp = temp_sibling(target)
    try:
        os.mkdir(tmp)
        write(tmp)
    except BaseException as exc:
        remove_quietly(tmp)
        if isinstance(exc, OSError):
            raise EveditError(f"{where}: {exc.strerror or exc}.") from exc
        raise
    return swap_in_folder(tmp, target, where)


def swap_in_folder(tmp: Path, target: Path, where: str) -> Path:
    """Move the finished folder ``tmp`` to ``target``, replacing an existing frame folder there.

    The old folder is moved aside first and deleted only after the new one is in place; on
    failure it is restored and ``tmp`` is removed.
    """
    backup = temp_sibling(target, ".old")
    moved_aside = False
    try:
        if target.exists():
            os.replace(target, backup)
            moved_aside = True
        os.replace(tmp, target)
    except BaseException as exc:
        remove_quietly(tmp)
        if moved_aside and not target.exists():
            try:
                os.replace(backup, target)
            except OSError:
                pass  # the old frames stay in the hidden backup folder rather than vanish
        if isinstance(exc, OSError):
            raise EveditError(f"{where}: {exc.strerror or exc}.") from exc
        raise
    if moved_aside:
        remove_quietly(backup)
    return target


def check_output_location(target: Path, where: str) -> None:
    """Refuse, before any work, an output whose folder cannot be made or written.

    The nearest existing ancestor of ``target`` must be a folder (not a file) the process can
    write in: checked with ``os.access`` and then by creating and deleting a temporary sibling
    (which also catches read-only file systems, where ``os.access`` may not tell).
    """
    parent = target.parent if str(target.parent) else Path(".")
    folder = parent
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise EveditError(f"{where}: {quoted(folder)} is a file, not a folder.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise EveditError(f"{where}: the folder {quoted(folder)} is not writable.")
    probe = temp_sibling(folder / target.name, ".probe")
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError as exc:
        reason = exc.strerror or exc
        raise EveditError(f"{where}: the folder {quoted(folder)} is not writable ({reason}).") from exc
    remove_quietly(probe)


def check_input_file(path: Path, where: str) -> None:
    """Raise unless ``path`` is an existing, non-empty regular file."""
    if not path.exists():
        raise EveditError(f"{where}: the file does not exist.")
    if not path.is_file():
        raise EveditError(f"{where}: it is not a regular file.")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise EveditError(f"{where}: cannot access the file ({exc.strerror or exc}).") from exc
    if size == 0:
        raise EveditError(f"{where}: the file is empty.")
