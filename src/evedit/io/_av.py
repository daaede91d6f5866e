"""Decoding and encoding video containers with PyAV (FFmpeg).

Encoders used by :func:`encode_file` (``lossless=False`` / ``lossless=True``):

* ``.mp4``: H.264 (``libx264``, yuv420p, CRF 18, ``+faststart``) / ``libx264rgb`` at
  QP 0, which is bit-exact but plays only in FFmpeg-based players. yuv420p needs even
  sizes, so an odd height or width is padded by repeating the last row/column and the
  true size is stored in the container's ``comment`` tag (``evedit original_size=WxH``);
  :func:`decode_file` crops the padding away again. Other players show the extra
  row/column.
* ``.webm``: VP9 (``libvpx-vp9``, yuv420p, CRF 30) / VP9 lossless in ``gbrp``
  (bit-exact). VP9 accepts odd sizes as they are.
* ``.mkv``: FFV1 in ``bgr0``, always bit-exact.
* ``.gif``: PyAV's GIF encoder fed ``pal8`` frames, each quantised by Pillow to its own
  256-colour palette (fast octree, no dithering, so still areas do not flicker).
  GIF delays are whole hundredths of a second: frame *i* starts at
  ``round(i * 100 / fps)`` cs, so the clip's total length is right to 1 cs and the
  frame rate read back is ``F / total``; fps above 50 is refused. ``lossless=True``
  is refused for GIF.

Frame rates are stored as ``Fraction(fps).limit_denominator(1001)`` (29.97 stays
2997/100, 30000/1001 stays exact). When reading, the frame rate is the stream's average
rate (so variable-frame-rate input gets its mean rate), except for GIF where it is
frame count / total duration, and when the frames' timestamps contradict the reported
average by more than 5% (variable-rate Matroska), where the mean timestamp interval
wins. Frames whose format carries alpha are composited over white. A stream whose
frames change size midway is refused.

PyAV 18 discards FFmpeg's log output unless ``av.logging.set_level`` was called, so
nothing is printed to the user; errors arrive as exceptions and are wrapped here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from evedit.errors import EveditError
from evedit.io._common import DEFAULT_FPS, composite_over_white

#: Exceptions PyAV raises for unreadable files or failing codecs.
AV_ERRORS = (av.error.FFmpegError, OSError, ValueError, IndexError, EOFError, RuntimeError)

MAX_GIF_FPS = 50.0
_SIZE_TAG = "evedit original_size="
_SIZE_TAG_RE = re.compile(re.escape(_SIZE_TAG) + r"(\d+)x(\d+)")


@dataclass(frozen=True)
class _Encoder:
    """How one output extension is encoded."""

    muxer: str
    codec: str
    pix_fmt: str
    options: dict[str, str] = field(default_factory=dict)
    container_options: dict[str, str] = field(default_factory=dict)


_FASTSTART = {"movflags": "+faststart"}  # index at the front: plays while downloading

_ENCODERS: dict[tuple[str, bool], _Encoder] = {
    (".mp4", False): _Encoder("mp4", "libx264", "yuv420p", {"crf": "18"}, _FASTSTART),
    (".mp4", True): _Encoder("mp4", "libx264rgb", "rgb24", {"qp": "0"}, _FASTSTART),
    (".webm", False): _Encoder(
        "webm", "libvpx-vp9", "yuv420p", {"crf": "30", "b": "0", "cpu-used": "4", "row-mt": "1"}
    ),
    (".webm", True): _Encoder("webm", "libvpx-vp9", "gbrp", {"lossless": "1", "row-mt": "1"}),
    (".mkv", False): _Encoder("matroska", "ffv1", "bgr0"),
    (".mkv", True): _Encoder("matroska", "ffv1", "bgr0"),
    (".gif", False): _Encoder("gif", "gif", "pal8"),
}


# --------------------------------------------------------------------------- decoding


def frame_to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """Convert a decoded frame to ``(H, W, 3)`` uint8 RGB, compositing alpha over white."""
    video_format = frame.format
    if video_format.has_palette or any(c.is_alpha for c in video_format.components):
        return composite_over_white(frame.to_ndarray(format="rgba"))
    return frame.to_ndarray(format="rgb24")


def _tagged_size(container: av.container.InputContainer) -> tuple[int, int] | None:
    """Return the ``(width, height)`` stored by :func:`encode_file` for padded mp4s."""
    match = _SIZE_TAG_RE.search(container.metadata.get("comment", ""))
    return (int(match.group(1)), int(match.group(2))) if match else None


def _crop_padding(frames: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Crop the one-pixel padding added for yuv420p, when the size tag asks for it."""
    if size is None:
        return frames
    width, height = size
    padded_h, padded_w = frames.shape[1:3]
    if 0 <= padded_h - height <= 1 and 0 <= padded_w - width <= 1 and min(width, height) > 0:
        return np.ascontiguousarray(frames[:, :height, :width])
    return frames


def _fps(stream, count: int, ticks: int, pts: list[int], is_gif: bool) -> float:
    """Pick the frame rate (see the module notes).

    GIF: frames / total duration. Otherwise the stream's average rate, unless the
    frames' own timestamps (mean interval, needs 3+ frames) disagree with it by more
    than 5%: Matroska reports its nominal rate as the average even for
    variable-frame-rate files, while its millisecond timestamps are too coarse to
    replace the exact rational rate of constant-rate files.
    """
    time_base = stream.time_base
    if is_gif and ticks > 0 and time_base:
        return float(count / (ticks * time_base))
    measured = None
    if len(pts) >= 2 and len(pts) == count and time_base and pts[-1] > pts[0]:
        measured = float((len(pts) - 1) / ((pts[-1] - pts[0]) * time_base))
    rate = stream.average_rate
    if rate and rate > 0:
        if measured is not None and count >= 3 and abs(measured / float(rate) - 1) > 0.05:
            return measured
        return float(rate)
    if measured is not None:
        return measured
    if stream.guessed_rate and stream.guessed_rate > 0:
        return float(stream.guessed_rate)
    return DEFAULT_FPS


def _open_input(path: Path, where: str) -> av.container.InputContainer:
    """Open ``path`` for reading, turning FFmpeg's refusal into :class:`EveditError`."""
    try:
        return av.open(str(path), metadata_errors="replace")
    except PermissionError as exc:
        raise EveditError(f"{where}: permission denied.") from exc
    except AV_ERRORS as exc:
        raise EveditError(
            f"{where}: the file is corrupt or is not a video that can be decoded."
        ) from exc


def video_stream(container: av.container.InputContainer, where: str) -> av.video.stream.VideoStream:
    """Return the first video stream, telling "truncated" apart from "audio only"."""
    if not container.streams:
        raise EveditError(f"{where}: the file is corrupt or truncated (no readable streams).")
    if not container.streams.video:
        raise EveditError(f"{where}: the file has no video stream.")
    return container.streams.video[0]


def _decode_frames(container: av.container.InputContainer, where: str, max_frames: int | None):
    """Decode the first video stream; return ``(frames, fps)``."""
    stream = video_stream(container, where)
    stream.thread_type = "AUTO"
    frames: list[np.ndarray] = []
    pts: list[int] = []
    ticks = 0
    for frame in container.decode(stream):
        rgb = frame_to_rgb(frame)
        if frames and rgb.shape != frames[0].shape:
            raise EveditError(
                f"{where}: the frame size changes from {frames[0].shape[1]}x{frames[0].shape[0]} "
                f"to {rgb.shape[1]}x{rgb.shape[0]} within the video, which is not supported."
            )
        frames.append(rgb)
        ticks += frame.duration or 0
        if frame.pts is not None:
            pts.append(frame.pts)
        if max_frames is not None and len(frames) >= max_frames:
            break
    if not frames:
        raise EveditError(f"{where}: no frames could be decoded.")
    is_gif = container.format.name == "gif"
    fps = _fps(stream, len(frames), ticks, pts, is_gif)
    return _crop_padding(np.stack(frames), _tagged_size(container)), fps


def decode_file(path: Path, where: str, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """Decode a video container to ``(frames (F,H,W,3) uint8, fps)``."""
    container = _open_input(path, where)
    try:
        with container:
            return _decode_frames(container, where, max_frames)
    except EveditError:
        raise
    except AV_ERRORS as exc:
        raise EveditError(f"{where}: the file is corrupt and could not be decoded.") from exc


def probe_file(path: Path, where: str) -> tuple[int, float, int, int]:
    """Return ``(frame count, fps, width, height)`` by demuxing only (no decoding)."""
    container = _open_input(path, where)
    try:
        with container:
            stream = video_stream(container, where)
            is_gif = container.format.name == "gif"
            count, ticks, pts = 0, 0, []
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                count += 1
                ticks += packet.duration or 0
                if packet.pts is not None:
                    pts.append(packet.pts)
            width, height = stream.codec_context.width, stream.codec_context.height
            tagged = _tagged_size(container)
    except EveditError:
        raise
    except AV_ERRORS as exc:
        raise EveditError(f"{where}: the file is corrupt and could not be read.") from exc
    if count == 0:
        raise EveditError(f"{where}: the video stream holds no frames.")
    if tagged is not None and 0 <= height - tagged[1] <= 1 and 0 <= width - tagged[0] <= 1:
        width, height = tagged
    return count, _fps(stream, count, ticks, sorted(pts), is_gif), width, height


# --------------------------------------------------------------------------- encoding


def check_encodable(ext: str, fps: float, lossless: bool, where: str) -> None:
    """Refuse, before anything is written, options the chosen format cannot honour."""
    if ext == ".gif" and lossless:
        raise EveditError(
            f"{where}: GIF stores at most 256 colours per frame, so it cannot be lossless; "
            "use .mkv, .mp4 or a folder instead."
        )
    if ext == ".gif" and fps > MAX_GIF_FPS:
        raise EveditError(
            f"{where}: GIF frame delays are whole hundredths of a second, so fps above "
            f"{MAX_GIF_FPS:g} (got {fps:g}) cannot be stored; use .mp4 or a lower fps."
        )


def _pal8_frame(rgb: np.ndarray) -> av.VideoFrame:
    """Quantise one RGB frame to its own 256-colour palette as a ``pal8`` frame."""
    quantised = Image.fromarray(rgb).quantize(
        colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE
    )
    indices = np.ascontiguousarray(np.asarray(quantised, dtype=np.uint8))
    colours = np.asarray(quantised.getpalette() or [], dtype=np.uint8).reshape(-1, 3)[:256]
    palette = np.zeros((256, 4), dtype=np.uint8)  # PyAV wants ARGB rows
    palette[:, 0] = 255
    palette[: len(colours), 1:] = colours
    return av.VideoFrame.from_ndarray((indices, palette), format="pal8")


def _encode_gif(container, frames: np.ndarray, fps: float) -> None:
    """Write GIF frames with delays rounded so the total duration stays exact."""
    count, height, width = frames.shape[:3]
    stream = container.add_stream("gif", rate=Fraction(fps).limit_denominator(1001))
    stream.width, stream.height, stream.pix_fmt = width, height, "pal8"
    centis = Fraction(1, 100)
    stream.codec_context.time_base = centis
    starts = [round(index * 100 / fps) for index in range(count + 1)]
    durations = {starts[i]: starts[i + 1] - starts[i] for i in range(count)}
    for index, rgb in enumerate(frames):
        frame = _pal8_frame(rgb)
        frame.pts, frame.time_base = starts[index], centis
        for packet in stream.encode(frame):
            packet.duration = durations.get(packet.pts, packet.duration)
            container.mux(packet)
    for packet in stream.encode(None):
        packet.duration = durations.get(packet.pts, packet.duration)
        container.mux(packet)


def _encode_video(container, frames: np.ndarray, fps: float, spec: _Encoder) -> None:
    """Write frames with a regular encoder (H.264, VP9, FFV1)."""
    count, height, width = frames.shape[:3]
    if spec.pix_fmt == "yuv420p" and spec.codec == "libx264" and (height % 2 or width % 2):
        container.metadata["comment"] = f"{_SIZE_TAG}{width}x{height}"
        frames = np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")
        height, width = frames.shape[1:3]
    rate = Fraction(fps).limit_denominator(1001)
    stream = container.add_stream(spec.codec, rate=rate)
    stream.width, stream.height, stream.pix_fmt = width, height, spec.pix_fmt
    stream.options = dict(spec.options)
    stream.codec_context.time_base = 1 / rate
    for index, rgb in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts, frame.time_base = index, 1 / rate
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def encode_file(
    tmp: Path, ext: str, frames: np.ndarray, fps: float, lossless: bool, where: str
) -> None:
    """Encode ``frames`` into the container ``tmp`` in the format chosen by ``ext``."""
    spec = _ENCODERS[(ext, lossless)]  # (".gif", True) is refused by check_encodable
    try:
        options = dict(spec.container_options)
        with av.open(str(tmp), "w", format=spec.muxer, options=options) as container:
            if ext == ".gif":
                _encode_gif(container, frames, fps)
            else:
                _encode_video(container, frames, fps, spec)
    except (av.error.FFmpegError, ValueError, IndexError, RuntimeError) as exc:
        raise EveditError(f"{where}: the {spec.codec} encoder failed ({exc}).") from exc
