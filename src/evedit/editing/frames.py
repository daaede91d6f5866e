"""Frames into and out of the model's square: input coercion, fitting, size restoration.

Input: a path (anything :func:`evedit.io.read_video` reads), a :class:`~evedit.io.Video`, a list of
frames or an array ``(F, H, W, 3)``. Arrays may also be grayscale ``(F, H, W)`` / ``(F, H, W, 1)``,
RGBA ``(F, H, W, 4)`` (composited over white, as the file readers do) or one image ``(H, W, 3)``
(a one-frame video); uint8, or floats in [0, 1].

Fitting (the paper does not describe its resizing; TGVE clips are square):

- ``crop`` (default, as the issue asks): the centre square of side ``min(H, W)`` is resized to the
  model's resolution (bicubic, as the training data loaders do). At the end the edited square is
  resized back to that side and pasted over the centre of the input frame, so the output keeps
  the input's size; on a non-square input the side strips outside the square are not edited.
- ``stretch``: the whole frame is resized to the square (aspect not kept) and back at the end, so
  every pixel is edited at the price of a distortion inside the model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import EveditError
from ..io import DEFAULT_FPS, Video, read_video


def load_frames(video, max_frames: int | None = None, fps: float | None = None) -> tuple[np.ndarray, float]:
    """Any accepted input -> ``(frames (F, H, W, 3) uint8, fps)``; at most ``max_frames`` frames."""
    if isinstance(video, (str, os.PathLike)):
        decoded = read_video(Path(video), max_frames=max_frames)
        return decoded.frames, fps or decoded.fps
    if isinstance(video, Video):
        return video.frames[:max_frames], fps or video.fps
    if isinstance(video, (list, tuple)):
        if not video:
            raise EveditError("The input holds no frames.")
        shapes = {np.shape(f) for f in video}
        if len(shapes) != 1:
            raise EveditError(f"The input frames differ in size: {sorted(shapes)[:2]}.")
        video = np.stack([np.asarray(f) for f in video])
        if video.ndim == 3:  # a list of grayscale (H, W) frames -> (F, H, W, 1)
            video = video[..., None]
    if isinstance(video, torch.Tensor):
        video = video.detach().cpu().numpy()
    if not isinstance(video, np.ndarray):
        raise EveditError(
            f"Cannot edit a {type(video).__name__}: give a file path, a list of frames or an array (F, H, W, 3)."
        )
    frames = to_rgb(video)
    return frames[:max_frames], float(fps or DEFAULT_FPS)


def to_rgb(array: np.ndarray) -> np.ndarray:
    """Grayscale / RGB / RGBA, uint8 or [0, 1] floats, video or one image -> (F, H, W, 3) uint8."""
    if array.ndim == 2:  # one grayscale image
        array = array[None, ..., None]
    elif array.ndim == 3:
        array = array[None] if array.shape[-1] in (3, 4) else array[..., None]
    if array.ndim != 4 or array.shape[-1] not in (1, 3, 4):
        raise EveditError(
            f"Input frames must be shaped (F, H, W, 3), (F, H, W) or one image (H, W, 3), got {array.shape}."
        )
    if min(array.shape[:3]) == 0:
        raise EveditError(f"The input holds no pixels (shape {array.shape}).")
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.floating):
            raise EveditError(f"Input frames must be uint8 or floats in [0, 1], got dtype {array.dtype}.")
        values = array.astype(np.float32)
        if not np.isfinite(values).all() or values.min() < 0 or values.max() > 1:
            raise EveditError("Floating-point input frames must have every value in [0, 1].")
        array = np.rint(values * 255).astype(np.uint8)
    if array.shape[-1] == 1:
        return np.ascontiguousarray(np.repeat(array, 3, axis=-1))
    if array.shape[-1] == 4:
        rgb, alpha = array[..., :3].astype(np.uint32), array[..., 3:].astype(np.uint32)
        return ((rgb * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)
    return np.ascontiguousarray(array)


@dataclass(frozen=True)
class Fit:
    """How frames map to the model's square and back."""

    height: int
    width: int
    size: int  # the model's resolution
    mode: str  # "crop" or "stretch"

    @property
    def box(self) -> tuple[int, int, int, int]:
        """The region of the input frame the model edits: (left, top, right, bottom)."""
        if self.mode == "stretch":
            return (0, 0, self.width, self.height)
        side = min(self.height, self.width)
        left, top = (self.width - side) // 2, (self.height - side) // 2
        return (left, top, left + side, top + side)

    def to_model(self, frames: np.ndarray) -> torch.Tensor:
        """(F, H, W, 3) uint8 -> (1, 3, F, size, size) float in [-1, 1]."""
        squares = np.stack([_resize(f, self.box, self.size, self.size) for f in frames])
        video = torch.from_numpy(squares).permute(3, 0, 1, 2).float()  # (3, F, S, S)
        return (video / 127.5 - 1.0).unsqueeze(0)

    def from_model(self, squares: np.ndarray, originals: np.ndarray) -> np.ndarray:
        """Edited (F, size, size, 3) uint8 -> (F, H, W, 3) at the input's size."""
        left, top, right, bottom = self.box
        full = (0, 0, self.size, self.size)
        out = originals.copy()
        for i, square in enumerate(squares):
            out[i, top:bottom, left:right] = _resize(square, full, right - left, bottom - top)
        return out


def _resize(frame: np.ndarray, box: tuple[int, int, int, int], width: int, height: int) -> np.ndarray:
    """Crop ``box`` of ``frame`` and resize it to (height, width) with bicubic filtering."""
    h, w = frame.shape[:2]
    if box == (0, 0, w, h) and (w, h) == (width, height):
        return frame
    image = Image.fromarray(frame).resize((width, height), Image.BICUBIC, box=box)
    return np.asarray(image)


def to_uint8(video: torch.Tensor) -> np.ndarray:
    """(1, 3, F, H, W) in [-1, 1] -> (F, H, W, 3) uint8."""
    pixels = ((video[0].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return pixels.permute(1, 2, 3, 0).cpu().numpy()
