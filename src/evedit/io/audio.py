"""The input's sound in the output: copied where the container allows, else re-encoded, in sync.

:func:`audio_info` tells whether a file has an audio stream. :func:`mux_audio` takes a finished
video-only file and the input, and writes a new file holding that video (its packets copied, not
re-encoded) and the input's first audio stream over ``[start, end)`` seconds of the input, with
time zero at the input's first video frame, so sound and picture keep their sync:

* the audio packets are **copied** when the output covers the input's whole span (``start`` 0,
  ``end`` None) and the output container takes the codec (mp4: AAC, MP3, ALAC, AC-3, Opus, FLAC;
  webm: Opus, Vorbis; mkv: any);
* otherwise the sound is decoded, cut to the exact sample and **re-encoded** (mp4 and mkv: AAC,
  webm: Opus; at most two channels), padded with silence where the audio starts after the video.

GIF, image and image-folder outputs carry no sound (:data:`AUDIO_OUTPUT_EXTENSIONS`).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from evedit.errors import EveditError
from evedit.io._common import VIDEO_EXTENSIONS, extension, quoted

AUDIO_OUTPUT_EXTENSIONS = (".mp4", ".webm", ".mkv")
_MUXERS = {".mp4": ("mp4", {"movflags": "+faststart"}), ".webm": ("webm", {}), ".mkv": ("matroska", {})}
_COPYABLE = {".mp4": {"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"}, ".webm": {"opus", "vorbis"}}
_ENCODER = {".mp4": "aac", ".mkv": "aac", ".webm": "libopus"}
_AV_ERRORS = (av.error.FFmpegError, OSError, ValueError, IndexError, EOFError, RuntimeError)


@dataclass(frozen=True)
class AudioInfo:
    codec: str
    sample_rate: int
    channels: int


def audio_info(path: str | Path) -> AudioInfo | None:
    """The first audio stream of a video container, or None (no audio, not a container)."""
    path = Path(path)
    if path.is_dir() or extension(path) not in VIDEO_EXTENSIONS or extension(path) == ".gif":
        return None
    try:
        with av.open(str(path), metadata_errors="replace") as container:
            if not container.streams.audio:
                return None
            stream = container.streams.audio[0]
            return AudioInfo(stream.codec_context.name, int(stream.codec_context.sample_rate or 0),
                             int(stream.codec_context.channels or 0))
    except _AV_ERRORS:
        return None


def check_audio_encoder(ext: str, where: str) -> None:
    """Refuse an output whose sound encoder this FFmpeg build lacks (before any work)."""
    name = _ENCODER.get(ext)
    if name is None:
        return
    try:
        av.codec.Codec(name, "w")
    except (ValueError, av.error.FFmpegError, av.codec.codec.UnknownCodecError) as exc:
        raise EveditError(f"{where}: this FFmpeg build has no {name} encoder for the sound; "
                          "pass --no-audio or choose another extension.") from exc


def mux_audio(video: Path, source: Path, out: Path, ext: str, start: float = 0.0,
              end: float | None = None) -> str:
    """Write ``out``: ``video``'s packets plus ``source``'s sound over ``[start, end)`` seconds.

    Returns how the sound was written ("copied" or "re-encoded to <codec>")."""
    where = f"Cannot add the sound of {quoted(source)}"
    muxer, options = _MUXERS[ext]
    try:
        with av.open(str(video)) as vin, av.open(str(source), metadata_errors="replace") as ain, \
                av.open(str(out), "w", format=muxer, options=dict(options)) as container:
            vstream, astream = vin.streams.video[0], ain.streams.audio[0]
            vout = container.add_stream_from_template(vstream)
            zero = _video_start(ain)
            copy = start == 0 and end is None and astream.codec_context.name in _COPYABLE.get(ext, {astream.codec_context.name})
            if copy:
                aout = container.add_stream_from_template(astream)
                audio = _copied(ain, astream, aout, zero)
                how = "copied"
            else:
                aout = _encoder_stream(container, ext, astream)
                audio = _reencoded(ain, astream, aout, zero + start, None if end is None else end - start)
                how = f"re-encoded to {aout.codec_context.name}"
            for packet in heapq.merge(_retargeted(vin.demux(vstream), vout), audio, key=_seconds):
                container.mux(packet)
            for packet in aout.encode(None) if not copy else ():
                container.mux(packet)
    except EveditError:
        raise
    except _AV_ERRORS as exc:
        raise EveditError(f"{where}: {exc}.") from exc
    return how


def _seconds(packet) -> float:
    stamp = packet.dts if packet.dts is not None else (packet.pts or 0)
    return float(stamp * packet.time_base)


def _video_start(container) -> float:
    """The input's time zero: its first video frame (the stream's start time)."""
    stream = container.streams.video[0] if container.streams.video else None
    if stream is None or stream.start_time is None:
        return 0.0
    return float(stream.start_time * stream.time_base)


def _retargeted(packets, stream):
    for packet in packets:
        if packet.size == 0:
            continue
        packet.stream = stream
        yield packet


def _copied(container, stream, out, zero: float):
    shift = round(zero / stream.time_base) if stream.time_base else 0
    for packet in container.demux(stream):
        if packet.size == 0:
            continue
        if shift:
            packet.pts = None if packet.pts is None else packet.pts - shift
            packet.dts = None if packet.dts is None else packet.dts - shift
        packet.stream = out
        yield packet


def _encoder_stream(container, ext: str, source):
    name = _ENCODER[ext]
    rates = av.codec.Codec(name, "w").audio_rates or ()
    rate = int(source.codec_context.sample_rate or 48000)
    rate = rate if not rates or rate in rates else 48000
    layout = "mono" if (source.codec_context.channels or 2) == 1 else "stereo"
    stream = container.add_stream(name, rate=rate, layout=layout)
    stream.codec_context.time_base = Fraction(1, rate)
    return stream


def _reencoded(container, stream, out, begin: float, length: float | None):
    """Decode, cut to ``[begin, begin + length)`` input seconds, re-encode; yields packets."""
    ctx = out.codec_context
    rate, layout, fmt = ctx.sample_rate, ctx.layout.name, ctx.format.name
    resampler = av.AudioResampler(format=fmt, layout=layout, rate=rate)
    fifo = av.AudioFifo()
    total = None if length is None else round(length * rate)
    size, position = ctx.frame_size or 1024, None
    for frame in container.decode(stream):
        if position is None:
            first = float(frame.pts * frame.time_base) if frame.pts is not None else 0.0
            position = round((first - begin) * rate)
            if position > 0:  # the sound starts after the video: silence until it does
                fifo.write(_silence(min(position, total or position), fmt, layout, rate))
        for chunk in resampler.resample(frame):
            samples = chunk.to_ndarray()
            n = samples.shape[-1]
            lo, hi = max(0, -position), n if total is None else min(n, total - position)
            position += n
            if hi > lo:
                fifo.write(_frame(samples[..., lo:hi], fmt, layout, rate))
        yield from _drain(fifo, out, size, final=False)
        if total is not None and position >= total:
            break
    yield from _drain(fifo, out, size, final=True)


def _frame(samples: np.ndarray, fmt: str, layout: str, rate: int):
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format=fmt, layout=layout)
    frame.sample_rate = rate
    frame.pts = None
    return frame


def _silence(count: int, fmt: str, layout: str, rate: int):
    channels = 1 if layout == "mono" else 2
    planar = fmt.endswith("p")
    shape = (channels, count) if planar else (1, count * channels)
    dtype = {"flt": np.float32, "s16": np.int16, "s32": np.int32, "dbl": np.float64}[fmt.rstrip("p")]
    return _frame(np.zeros(shape, dtype=dtype), fmt, layout, rate)


def _drain(fifo, out, size: int, final: bool):
    while fifo.samples >= size or (final and fifo.samples):
        frame = fifo.read(min(size, fifo.samples) if final else size)
        frame.pts = fifo.samples_read - frame.samples
        frame.time_base = Fraction(1, frame.sample_rate)
        yield from out.encode(frame)
