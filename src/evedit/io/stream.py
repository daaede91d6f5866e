"""Frames one at a time: read a video as it decodes, write one as frames arrive.

Memory does not depend on the clip's length: :func:`iter_video` holds one decoded frame at a time
and :class:`FrameWriter` encodes each frame as it is given. Both keep the formats and decisions of
:func:`evedit.io.read_video` / :func:`evedit.io.write_video` (same pixels, same files), except:

* the frame rate of a container comes from demuxing the whole stream first (as
  :func:`evedit.io.probe_video` does), since a writer needs it before the last frame is decoded;
* a packet the decoder rejects is skipped, and frames FFmpeg marks as damaged are kept; both are
  reported in one warning naming the frames, instead of failing the whole clip.

:class:`FrameWriter` writes a hidden temporary sibling (see :mod:`evedit.atomic`) and moves it into
place on :meth:`FrameWriter.close`; on any error, Ctrl-C or SIGTERM (used as a context manager)
the temporary is removed and an existing output is left as it was.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
from PIL import Image

from evedit.atomic import remove_stale_temps, temp_sibling
from evedit.errors import EveditError
from evedit.io._av import (
    _ENCODERS, AV_ERRORS, FrameEncoder, _crop_padding, _open_input, _tagged_size, check_encodable,
    frame_rotation, frame_to_rgb, probe_file, upright, video_stream,
)
from evedit.io._common import (
    DEFAULT_FPS, FPS_FILE, IMAGE_EXTENSIONS, IMAGE_OUTPUT_EXTENSIONS, SUPPORTED_INPUT_EXTENSIONS,
    SUPPORTED_OUTPUT_EXTENSIONS, VIDEO_EXTENSIONS, check_fps, check_input_file,
    check_replaceable_folder, coerce_frames, extension, make_parent, quoted, remove_quietly,
    swap_in_folder,
)
from evedit.io.audio import AUDIO_OUTPUT_EXTENSIONS, mux_audio
from evedit.io.images import list_folder_images, load_rgb, read_folder_fps, write_image


def open_video(path: str | os.PathLike[str],
               max_frames: int | None = None) -> tuple[Iterator[np.ndarray], float, int]:
    """``(frames, fps, count)`` of anything :func:`evedit.io.read_video` reads; ``frames`` yields
    ``(H, W, 3)`` uint8 frames as they are decoded (at most ``max_frames``); ``count`` is the
    number expected (from demuxing: a damaged file may decode fewer). Cheap problems (missing,
    empty, corrupt header, unsupported, no video stream) are raised here, before the first frame."""
    where = f"Cannot read video {quoted(path)}"
    target = Path(path)
    if target.is_dir():
        files = list_folder_images(target, where)[:max_frames]
        return _folder_frames(files, where), read_folder_fps(target), len(files)
    if not target.exists():
        raise EveditError(f"{where}: the file does not exist.")
    ext = extension(target)
    if ext in IMAGE_EXTENSIONS:
        return iter([load_rgb(target, where)]), DEFAULT_FPS, 1
    if ext not in VIDEO_EXTENSIONS:
        raise EveditError(
            f"{where}: unsupported file type '{target.suffix or '(none)'}' "
            f"(supported: {', '.join(SUPPORTED_INPUT_EXTENSIONS)}, or a folder of numbered images)."
        )
    check_input_file(target, where)
    count, fps, _, _ = probe_file(target, where)
    count = count if max_frames is None else min(count, max_frames)
    return _container_frames(target, where, max_frames), fps, count


def _folder_frames(files: list[Path], where: str) -> Iterator[np.ndarray]:
    first = None
    for file in files:
        frame = load_rgb(file, f"Cannot read frame {quoted(file)}")
        if first is None:
            first = (file, frame.shape)
        elif frame.shape != first[1]:
            raise EveditError(
                f"{where}: image {quoted(file.name)} is {frame.shape[1]}x{frame.shape[0]} but "
                f"{quoted(first[0].name)} is {first[1][1]}x{first[1][0]}; all images must have the same size."
            )
        yield frame


def _container_frames(path: Path, where: str, limit: int | None) -> Iterator[np.ndarray]:
    container = _open_input(path, where)
    damaged: list[int] = []  # frames FFmpeg decoded with errors (concealed)
    lost: list[int] = []  # a packet failed to decode before this frame index
    index, shape = 0, None
    try:
        with container:
            stream = video_stream(container, where)
            stream.thread_type = "AUTO"
            tagged = _tagged_size(container)
            for packet in container.demux(stream):
                try:
                    decoded = packet.decode()
                except AV_ERRORS:
                    lost.append(index)
                    continue
                for frame in decoded:
                    rgb = upright(_crop_padding(frame_to_rgb(frame)[None], tagged)[0], frame_rotation(frame))
                    if shape is not None and rgb.shape != shape:
                        raise EveditError(
                            f"{where}: the frame size changes from {shape[1]}x{shape[0]} to "
                            f"{rgb.shape[1]}x{rgb.shape[0]} within the video, which is not supported."
                        )
                    shape = rgb.shape
                    if frame.is_corrupt:
                        damaged.append(index)
                    yield rgb
                    index += 1
                    if limit is not None and index >= limit:
                        return _warn_damage(path, damaged, lost)
    except EveditError:
        raise
    except AV_ERRORS as exc:
        raise EveditError(f"{where}: the file is corrupt and could not be decoded.") from exc
    if index == 0:
        raise EveditError(f"{where}: no frames could be decoded.")
    _warn_damage(path, damaged, lost)


def _frame_list(indices: list[int]) -> str:
    shown = ", ".join(str(i) for i in indices[:8])
    return shown + (f" and {len(indices) - 8} more" if len(indices) > 8 else "")


def _warn_damage(path: Path, damaged: list[int], lost: list[int]) -> None:
    """One warning naming the damaged frames (0-based) and where undecodable data was skipped."""
    parts = []
    if damaged:
        parts.append(f"frame{'s' if len(damaged) > 1 else ''} {_frame_list(damaged)} decoded with "
                     "errors (concealed by the decoder)")
    if lost:
        parts.append(f"undecodable data skipped before frame{'s' if len(lost) > 1 else ''} {_frame_list(lost)}")
    if parts:
        warnings.warn(f"The video {quoted(path)} is damaged: {'; '.join(parts)}.", stacklevel=2)


def is_folder_target(path: str | os.PathLike[str]) -> bool:
    """A path ending in a separator or without a suffix names a folder of frames."""
    text = os.fspath(path)
    return text.endswith(("/", os.sep)) or Path(text).suffix == ""


class FrameWriter:
    """Write ``(H, W, 3)`` frames as they come to a video file, a PNG folder or one image.

    Use as a context manager: leaving it normally finishes the file and moves it into place,
    leaving it by an exception removes the temporary (see the module notes).
    """

    def __init__(self, path: str | os.PathLike[str], fps: float, *, lossless: bool = False,
                 audio: tuple[Path, float, float | None] | None = None):
        """``audio``: ``(source, start, end)``: add the sound of ``source`` over ``[start, end)``
        seconds (``end`` None: to its end) to a video file (see :mod:`evedit.io.audio`); ignored
        for images and folders. After :meth:`close`, ``audio_note`` says how it was written."""
        self.where = f"Cannot write video {quoted(path)}"
        self.audio, self.audio_note = audio, None
        self.target, self.fps, self.lossless = Path(path), check_fps(fps, self.where), lossless
        ext = extension(self.target)
        if is_folder_target(path):
            self.kind = "folder"
        elif ext in IMAGE_OUTPUT_EXTENSIONS:
            self.kind = "image"
        elif ext in SUPPORTED_OUTPUT_EXTENSIONS:
            self.kind = "video"
            check_encodable(ext, self.fps, lossless, self.where)
        else:
            choices = ", ".join(SUPPORTED_OUTPUT_EXTENSIONS + IMAGE_OUTPUT_EXTENSIONS)
            raise EveditError(f"{self.where}: unsupported file type '{ext or '(none)'}' (supported: {choices}, "
                              "or a folder path ending in '/').")
        self.tmp: Path | None = None
        self.count, self._container, self._encoder, self._image = 0, None, None, None

    def __enter__(self) -> "FrameWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, frame: np.ndarray) -> None:
        """Add one frame (uint8, or floats in [0, 1]); every frame must have the first's size."""
        rgb = coerce_frames(frame, self.where)[0]
        if self.count == 0:
            self._open(rgb)
        try:
            if self.kind == "folder":
                Image.fromarray(rgb).save(self.tmp / f"frame_{self.count:05d}.png", format="PNG")
            elif self.kind == "image":
                if self.count:
                    raise EveditError(f"{self.where}: an image holds one frame, got a second one.")
                self._image = rgb
            else:
                self._encoder.add(rgb)
        except OSError as exc:
            raise EveditError(f"{self.where}: {exc.strerror or exc}.") from exc
        except AV_ERRORS as exc:
            raise EveditError(f"{self.where}: the encoder failed ({exc}).") from exc
        self.count += 1

    def _open(self, first: np.ndarray) -> None:
        if self.kind == "image":
            return
        if self.kind == "folder":
            check_replaceable_folder(self.target, self.where)
        elif self.target.is_dir():
            raise EveditError(f"{self.where}: a folder with that name already exists.")
        make_parent(self.target, self.where)
        remove_stale_temps(self.target)
        try:
            if self.kind == "folder":
                self.tmp = temp_sibling(self.target)
                os.mkdir(self.tmp)
                return
            ext = extension(self.target)
            spec = _ENCODERS[(ext, self.lossless)]
            self.tmp = temp_sibling(self.target, self.target.suffix)
            self._container = av.open(str(self.tmp), "w", format=spec.muxer, options=dict(spec.container_options))
            self._encoder = FrameEncoder(self._container, ext, spec, self.fps, first.shape[1], first.shape[0])
        except OSError as exc:
            self.abort()
            raise EveditError(f"{self.where}: {exc.strerror or exc}.") from exc
        except AV_ERRORS as exc:
            self.abort()
            raise EveditError(f"{self.where}: the encoder could not start ({exc}).") from exc

    def close(self) -> Path:
        """Finish the output and move it into place; returns its path."""
        if self.count == 0:
            self.abort()
            raise EveditError(f"{self.where}: no frames were given.")
        try:
            if self.kind == "image":
                return write_image(self.target, self._image)
            if self.kind == "folder":
                (self.tmp / FPS_FILE).write_text(f"{self.fps!r}\n", encoding="utf-8")
                return swap_in_folder(self.tmp, self.target, self.where)
            self._encoder.finish()
            self._container.close()
            self._container = None
            if self.audio is not None and extension(self.target) in AUDIO_OUTPUT_EXTENSIONS:
                self._add_audio()
            os.replace(self.tmp, self.target)
            return self.target
        except BaseException as exc:
            self.abort()
            if isinstance(exc, OSError):
                raise EveditError(f"{self.where}: {exc.strerror or exc}.") from exc
            if isinstance(exc, AV_ERRORS):
                raise EveditError(f"{self.where}: the encoder failed ({exc}).") from exc
            raise

    def _add_audio(self) -> None:
        source, start, end = self.audio
        video, self.tmp = self.tmp, temp_sibling(self.target, self.target.suffix)
        try:
            self.audio_note = mux_audio(video, Path(source), self.tmp, extension(self.target), start, end)
        finally:
            remove_quietly(video)

    def abort(self) -> None:
        """Drop everything written so far (the target is left as it was)."""
        if self._container is not None:
            try:
                self._container.close()
            except AV_ERRORS:
                pass
            self._container = None
        if self.tmp is not None:
            remove_quietly(self.tmp)
