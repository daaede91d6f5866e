"""Still images and folders of numbered images, through Pillow.

Conversions applied to every image read (alone, or as a frame of a folder):

* EXIF orientation is applied (a phone photo comes back upright);
* grayscale, palette, CMYK and other modes become RGB; 16-bit grayscale is scaled
  to 8 bits (divided by 257);
* transparency (RGBA, LA, palette or ``tRNS`` transparency) is composited over a
  **white** background, so transparent pixels read as white rather than as whatever
  colour happens to be stored under them.

A folder video is every file with an image extension directly inside the folder
(hidden files ignored), in natural order of the file names (``frame2`` before
``frame10``). Its frame rate comes from an optional ``fps.txt`` holding one number,
else :data:`DEFAULT_FPS`. :func:`write_image_folder` writes ``fps.txt`` next to the
``frame_00000.png`` files so that a folder round trip keeps the frame rate.
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from evedit.errors import EveditError
from evedit.io._common import (
    DEFAULT_FPS,
    FPS_FILE,
    IMAGE_EXTENSIONS,
    IMAGE_OUTPUT_EXTENSIONS,
    check_input_file,
    coerce_frames,
    composite_over_white,
    extension,
    natural_key,
    quoted,
    write_file_atomically,
    write_folder_atomically,
)

#: Exceptions Pillow raises for unreadable or malformed images.
_PIL_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
    IndexError,
    KeyError,
    Image.DecompressionBombError,
)

_SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def pil_to_rgb(image: Image.Image) -> np.ndarray:
    """Return a Pillow image as an ``(H, W, 3)`` uint8 RGB array (see module notes)."""
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES:
        gray = np.asarray(image).astype(np.float64) / 257.0
        gray = np.clip(np.rint(gray), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "F":
        gray = np.clip(np.rint(np.asarray(image, dtype=np.float64)), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    has_alpha = mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in image.info
    if has_alpha:
        rgba = np.array(image.convert("RGBA"), dtype=np.uint8)
        return np.ascontiguousarray(composite_over_white(rgba))
    return np.array(image.convert("RGB"), dtype=np.uint8)


def load_rgb(path: Path, where: str) -> np.ndarray:
    """Decode one image file to ``(H, W, 3)`` uint8 RGB; errors start with ``where``."""
    check_input_file(path, where)
    try:
        with Image.open(path) as image:
            image.load()
            upright = ImageOps.exif_transpose(image)
            return pil_to_rgb(upright)
    except Image.DecompressionBombError as exc:
        raise EveditError(f"{where}: the image is too large to load safely.") from exc
    except PermissionError as exc:
        raise EveditError(f"{where}: permission denied.") from exc
    except _PIL_ERRORS as exc:
        raise EveditError(f"{where}: the file is corrupt or is not a supported image.") from exc


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a still image as an ``(H, W, 3)`` uint8 RGB array.

    Supported: ``.png``, ``.jpg``, ``.jpeg``, ``.bmp``, ``.webp`` (an animated file gives
    its first frame). Raises :class:`EveditError` naming the file for a missing, empty,
    corrupt or unsupported file.
    """
    target = Path(path)
    where = f"Cannot read image {quoted(path)}"
    if target.is_dir():
        raise EveditError(f"{where}: it is a folder, not an image file.")
    if extension(target) not in IMAGE_EXTENSIONS:
        raise EveditError(
            f"{where}: unsupported file type '{target.suffix or '(none)'}' "
            f"(supported: {', '.join(IMAGE_EXTENSIONS)})."
        )
    return load_rgb(target, where)


def write_image(path: str | os.PathLike[str], array: object) -> Path:
    """Write an ``(H, W, 3)`` RGB image to ``.png`` (lossless) or ``.jpg``/``.jpeg`` (quality 95).

    ``array`` is uint8, or floats in ``[0, 1]``; a ``(1, H, W, 3)`` array is accepted too.
    The write is atomic (temporary file in the same folder, then ``os.replace``) and
    the parent folder is created if missing. Returns the path written.
    """
    target = Path(path)
    where = f"Cannot write image {quoted(path)}"
    image_format = _SAVE_FORMATS.get(extension(target))
    if image_format is None:
        raise EveditError(
            f"{where}: unsupported file type '{target.suffix or '(none)'}' "
            f"(supported: {', '.join(IMAGE_OUTPUT_EXTENSIONS)})."
        )
    frames = coerce_frames(array, where)
    if frames.shape[0] != 1:
        raise EveditError(f"{where}: expected one image, got {frames.shape[0]} frames.")
    pixels = frames[0]

    def save(tmp: Path) -> None:
        options = {"quality": 95} if image_format == "JPEG" else {}
        Image.fromarray(pixels).save(tmp, format=image_format, **options)

    return write_file_atomically(target, save, where)


def list_folder_images(folder: Path, where: str) -> list[Path]:
    """Return the image files directly in ``folder``, in natural order of their names."""
    try:
        entries = list(folder.iterdir())
    except OSError as exc:
        raise EveditError(f"{where}: cannot list the folder ({exc.strerror or exc}).") from exc
    images = [
        entry
        for entry in entries
        if not entry.name.startswith(".")
        and extension(entry) in IMAGE_EXTENSIONS
        and entry.is_file()
    ]
    if not images:
        raise EveditError(
            f"{where}: the folder contains no images ({', '.join(IMAGE_EXTENSIONS)})."
        )
    return sorted(images, key=lambda entry: natural_key(entry.name))


def read_folder_fps(folder: Path) -> float:
    """Return the frame rate in ``folder/fps.txt``, or :data:`DEFAULT_FPS` without one."""
    fps_path = folder / FPS_FILE
    if not fps_path.is_file():
        return DEFAULT_FPS
    where = f"Cannot read frame rate file {quoted(fps_path)}"
    try:
        text = fps_path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise EveditError(f"{where}: the file cannot be read as text.") from exc
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise EveditError(f"{where}: it must hold one positive number, got {text[:40]!r}.")
    return value


def read_image_folder(
    folder: Path, where: str, max_frames: int | None = None
) -> tuple[np.ndarray, float]:
    """Read a folder of numbered images as ``(frames, fps)``; all images must share a size."""
    files = list_folder_images(folder, where)
    if max_frames is not None:
        files = files[:max_frames]
    fps = read_folder_fps(folder)
    frames: list[np.ndarray] = []
    for file in files:
        frame = load_rgb(file, f"Cannot read frame {quoted(file)}")
        if frames and frame.shape != frames[0].shape:
            first_h, first_w = frames[0].shape[:2]
            height, width = frame.shape[:2]
            raise EveditError(
                f"{where}: image {quoted(file.name)} is {width}x{height} but "
                f"{quoted(files[0].name)} is {first_w}x{first_h}; "
                "all images must have the same size."
            )
        frames.append(frame)
    return np.stack(frames), fps


def write_image_folder(folder: Path, frames: np.ndarray, fps: float, where: str) -> Path:
    """Atomically write ``frame_00000.png``... and ``fps.txt`` into ``folder``."""

    def fill(tmp: Path) -> None:
        for index, frame in enumerate(frames):
            Image.fromarray(frame).save(tmp / f"frame_{index:05d}.png", format="PNG")
        (tmp / FPS_FILE).write_text(f"{fps!r}\n", encoding="utf-8")

    return write_folder_atomically(folder, fill, where)
