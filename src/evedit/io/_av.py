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

Rotated phone video: frames are turned upright by the rotation of the stream's display matrix
(the "rotate" tag of older files; read from the first frame, a multiple of 90 degrees), so they
are returned as a player shows them and the size reported is the upright one.

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


def frame_rotation(frame: av.VideoFrame) -> int:
    """Quarter turns (counter-clockwise, as :func:`numpy.rot90` counts) that make ``frame`` upright."""
    try:
        degrees = frame.rotation or 0
    except (AttributeError, ValueError, TypeError):
        return 0
    return round(degrees / 90) % 4


def upright(frames: np.ndarray, turns: int) -> np.ndarray:
    """Rotate ``(F, H, W, 3)`` (or one ``(H, W, 3)``) frames by ``turns`` quarter turns."""
    if not turns:
        return frames
    axes = (1, 2) if frames.ndim == 4 else (0, 1)
    return np.ascontiguousarray(np.rot90(frames, turns, axes=axes))


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
    ticks, turns = 0, None
    for frame in container.decode(stream):
        turns = frame_rotation(frame) if turns is None else turns
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
    return upright(_crop_padding(np.stack(frames), _tagged_size(container)), turns or 0), fps


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
            # read the stream's rates while the container is open: after closing, PyAV's stream
            # fields point at freed memory (about 1 probe in 20 returned a garbage fps)
            fps = _fps(stream, count, ticks, sorted(pts), is_gif) if count else DEFAULT_FPS
    except EveditError:
        raise
    except AV_ERRORS as exc:
        raise EveditError(f"{where}: the file is corrupt and could not be read.") from exc
    if count == 0:
        raise EveditError(f"{where}: the video stream holds no frames.")
    if tagged is not None and 0 <= height - tagged[1] <= 1 and 0 <= width - tagged[0] <= 1:
        width, height = tagged
    if first_rotation(path) % 2:
        width, height = height, width
    return count, fps, width, height


def first_rotation(path: Path) -> int:
    """Quarter turns that make the first video frame upright (0 when it cannot be told)."""
    try:
        with av.open(str(path), metadata_errors="replace") as container:
            for frame in container.decode(container.streams.video[0]):
                return frame_rotation(frame)
    except AV_ERRORS:
        pass
    return 0


# --------------------------------------------------------------------------- encoding


def check_encodable(ext: str, fps: float, lossless: bool, where: str) -> None:
    """Refuse, before anything is written, options the chosen format cannot honour, and a
    container or encoder this FFmpeg build lacks."""
    if ext == ".gif" and lossless:
        raise EveditError(
            f"{where}: GIF stores at most 256 colours per frame, so it cannot be lossless; "
            "use .mkv, .mp4 or a folder instead."
        )
    if Fraction(fps).limit_denominator(1001) <= 0:
        raise EveditError(f"{where}: a frame rate of {fps:g} fps is too low to store (the least is 1/1001).")
    if ext == ".gif" and fps > MAX_GIF_FPS:
        raise EveditError(
            f"{where}: GIF frame delays are whole hundredths of a second, so fps above "
            f"{MAX_GIF_FPS:g} (got {fps:g}) cannot be stored; use .mp4 or a lower fps."
        )
    check_codec(ext, lossless, where)


def check_codec(ext: str, lossless: bool, where: str) -> None:
    """Refuse an extension whose container or encoder this FFmpeg build lacks."""
    spec = _ENCODERS[(ext, lossless and ext != ".gif")]
    try:
        av.format.ContainerFormat(spec.muxer)
    except (ValueError, av.error.FFmpegError) as exc:
        raise EveditError(
            f"{where}: this FFmpeg build cannot write {spec.muxer} containers; choose another extension."
        ) from exc
    try:
        av.codec.Codec(spec.codec, "w")
    except (ValueError, av.error.FFmpegError, av.codec.codec.UnknownCodecError) as exc:
        raise EveditError(
            f"{where}: this FFmpeg build has no {spec.codec} encoder for {ext} files; choose another extension."
        ) from exc


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


class FrameEncoder:
    """Encode RGB frames one at a time into an open output container (H.264, VP9, FFV1, GIF).

    GIF delays follow the module notes (frame *i* starts at ``round(i * 100 / fps)`` cs, so they
    need no frame count); odd-sized H.264 frames are padded by their edge row/column and the true
    size is tagged. Memory does not depend on the number of frames.
    """

    def __init__(self, container, ext: str, spec: _Encoder, fps: float, width: int, height: int):
        self.container, self.fps, self.index, self.gif = container, fps, 0, ext == ".gif"
        self.pad = (0, 0)
        self.durations: dict[int, int] = {}
        rate = Fraction(fps).limit_denominator(1001)
        if self.gif:
            stream = container.add_stream("gif", rate=rate)
            stream.width, stream.height, stream.pix_fmt = width, height, "pal8"
            self.time_base = Fraction(1, 100)
        else:
            if spec.pix_fmt == "yuv420p" and spec.codec == "libx264" and (height % 2 or width % 2):
                container.metadata["comment"] = f"{_SIZE_TAG}{width}x{height}"
                self.pad = (height % 2, width % 2)
            stream = container.add_stream(spec.codec, rate=rate)
            stream.width, stream.height = width + self.pad[1], height + self.pad[0]
            stream.pix_fmt = spec.pix_fmt
            stream.options = dict(spec.options)
            self.time_base = 1 / rate
        stream.codec_context.time_base = self.time_base
        self.stream = stream

    def add(self, rgb: np.ndarray) -> None:
        """Encode one ``(H, W, 3)`` uint8 frame."""
        if self.gif:
            frame = _pal8_frame(rgb)
            start = round(self.index * 100 / self.fps)
            self.durations[start] = round((self.index + 1) * 100 / self.fps) - start
            frame.pts = start
        else:
            if any(self.pad):
                rgb = np.pad(rgb, ((0, self.pad[0]), (0, self.pad[1]), (0, 0)), mode="edge")
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = self.index
        frame.time_base = self.time_base
        self._mux(self.stream.encode(frame))
        self.index += 1

    def finish(self) -> None:
        """Flush the encoder (the container is closed by its owner)."""
        self._mux(self.stream.encode(None))

    def _mux(self, packets) -> None:
        for packet in packets:
            if self.gif:
                packet.duration = self.durations.get(packet.pts, packet.duration)
            self.container.mux(packet)


def encode_file(
    tmp: Path, ext: str, frames: np.ndarray, fps: float, lossless: bool, where: str
) -> None:
    """Encode ``frames`` into the container ``tmp`` in the format chosen by ``ext``."""
    spec = _ENCODERS[(ext, lossless)]  # (".gif", True) is refused by check_encodable
    try:
        options = dict(spec.container_options)
        with av.open(str(tmp), "w", format=spec.muxer, options=options) as container:
            encoder = FrameEncoder(container, ext, spec, fps, frames.shape[2], frames.shape[1])
            for rgb in frames:
                encoder.add(rgb)
            encoder.finish()
    except (av.error.FFmpegError, ValueError, IndexError, RuntimeError) as exc:
        raise EveditError(f"{where}: the {spec.codec} encoder failed ({exc}).") from exc
