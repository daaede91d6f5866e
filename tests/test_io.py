"""Tests for evedit.io: reading/writing videos and images, errors, atomic writes."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from evedit.errors import EveditError
from evedit.io import (
    SUPPORTED_INPUT_EXTENSIONS,
    SUPPORTED_OUTPUT_EXTENSIONS,
    Video,
    probe_video,
    read_image,
    read_video,
    write_image,
    write_video,
)


def moving_gradient(frames: int = 6, height: int = 32, width: int = 48) -> np.ndarray:
    """Smooth colour ramps that drift a few levels per frame (easy for lossy codecs)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    video = []
    for t in range(frames):
        red = 40 + 3 * xx + 5 * t
        green = 30 + 4 * yy + 3 * t
        blue = 120 + 60 * np.sin((xx + yy + 2 * t) / 12)
        video.append(np.stack([red, green, blue], axis=-1))
    return np.clip(np.rint(video), 0, 255).astype(np.uint8)


def mean_abs_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int32) - b.astype(np.int32)).mean())


def leftovers(folder: Path) -> list[str]:
    """Hidden temporary files/folders left next to outputs."""
    return sorted(name for name in os.listdir(folder) if ".tmp" in name)


def write_with_pyav(path: Path, frames: np.ndarray, codec: str, pix_fmt: str, fps: int = 8) -> None:
    """Write a container directly with PyAV (for formats write_video does not produce)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = pix_fmt
        for rgb in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode(None))


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    ("name", "lossless"),
    [
        ("clip.mkv", False),
        ("frames/", False),
        ("frames", False),
        ("clip.mp4", True),
        ("clip.webm", True),
    ],
)
@pytest.mark.parametrize(("height", "width", "fps"), [(32, 48, 12.0), (33, 47, 29.97)])
def test_lossless_round_trip_is_exact(tmp_path, name, lossless, height, width, fps):
    frames = moving_gradient(6, height, width)
    written = write_video(tmp_path / name if not name.endswith("/") else f"{tmp_path}/{name}",
                          frames, fps, lossless=lossless)
    video = read_video(written)
    assert np.array_equal(video.frames, frames)
    assert video.fps == pytest.approx(fps, abs=1e-6)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("name", ["clip.mp4", "clip.webm", "clip.gif"])
@pytest.mark.parametrize(
    ("height", "width", "fps"), [(32, 48, 8.0), (33, 47, 12.0), (33, 47, 29.97)]
)
def test_lossy_round_trip_is_close(tmp_path, name, height, width, fps):
    frames = moving_gradient(6, height, width)
    video = read_video(write_video(tmp_path / name, frames, fps))
    assert video.frames.shape == frames.shape
    assert video.frames.dtype == np.uint8
    assert mean_abs_error(video.frames, frames) < 8
    if name.endswith(".gif"):
        # GIF delays are whole centiseconds: the clip's total length is kept to 1 cs.
        expected = len(frames) / (round(len(frames) * 100 / fps) / 100)
        assert video.fps == pytest.approx(expected, abs=1e-6)
        assert abs(video.fps - fps) < 0.1
    else:
        assert video.fps == pytest.approx(fps, abs=1e-6)


def test_ntsc_rate_survives_exactly(tmp_path):
    fps = 30000 / 1001
    video = read_video(write_video(tmp_path / "ntsc.mp4", moving_gradient(4), fps))
    assert video.fps == pytest.approx(fps, abs=1e-9)


def test_float_frames_and_single_frame_are_accepted(tmp_path):
    frames = moving_gradient(3)
    as_float = frames.astype(np.float32) / 255.0
    assert np.array_equal(read_video(write_video(tmp_path / "f.mkv", as_float)).frames, frames)
    single = read_video(write_video(tmp_path / "one.mkv", frames[0]))
    assert single.frames.shape == (1, 32, 48, 3)
    assert single.fps == 8.0


def test_write_video_accepts_video_object_and_keeps_its_fps(tmp_path):
    source = Video(moving_gradient(3), 12.5)
    again = read_video(write_video(tmp_path / "v.mkv", source))
    assert again.fps == 12.5
    assert np.array_equal(again.frames, source.frames)


def test_parent_folder_is_created(tmp_path):
    target = tmp_path / "new" / "deeper" / "out.mp4"
    assert write_video(target, moving_gradient(2)) == target
    assert target.is_file()


def test_probe_matches_read(tmp_path):
    frames = moving_gradient(5, 33, 47)
    for name in ("p.mp4", "p.webm", "p.mkv", "p.gif", "pframes"):
        path = write_video(tmp_path / name, frames, 10.0)
        info = probe_video(path)
        assert (info.num_frames, info.height, info.width) == (5, 33, 47), name
        assert info.fps == pytest.approx(10.0), name


def test_max_frames_stops_early(tmp_path):
    frames = moving_gradient(6)
    for name in ("m.mp4", "m.gif", "mframes"):
        video = read_video(write_video(tmp_path / name, frames), max_frames=2)
        assert video.frames.shape[0] == 2, name
    with pytest.raises(EveditError, match="max_frames"):
        read_video(tmp_path / "m.mp4", max_frames=0)


# ----------------------------------------------------------------------------- input formats


@pytest.mark.parametrize(
    ("name", "codec", "pix_fmt"), [("c.mov", "mpeg4", "yuv420p"), ("c.avi", "mjpeg", "yuvj420p")]
)
def test_reads_mov_and_avi(tmp_path, name, codec, pix_fmt):
    frames = moving_gradient(5)
    write_with_pyav(tmp_path / name, frames, codec, pix_fmt, fps=12)
    video = read_video(tmp_path / name)
    assert video.frames.shape == frames.shape
    assert mean_abs_error(video.frames, frames) < 8
    assert video.fps == pytest.approx(12.0)


@pytest.mark.parametrize(("name", "codec"), [("vfr.mp4", "libx264"), ("vfr.mkv", "ffv1")])
def test_variable_frame_rate_gives_average_rate(tmp_path, name, codec):
    ticks = [0, 1, 3, 4, 6, 7, 9, 10]  # in 1/24 s: gaps of 1 and 2 ticks, mean ~17 fps
    with av.open(str(tmp_path / name), "w") as container:
        stream = container.add_stream(codec, rate=24)
        stream.height, stream.width, stream.pix_fmt = 16, 16, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 24)
        for index, tick in enumerate(ticks):
            pixels = np.full((16, 16, 3), 20 * index, np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts, frame.time_base = tick, Fraction(1, 24)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    video = read_video(tmp_path / name)
    assert video.frames.shape[0] == len(ticks)
    assert 16.5 < video.fps < 17.6  # 7 intervals in 10/24 s, or 8 frames in 11/24 s


def test_reads_gif_written_by_pillow(tmp_path):
    frames = moving_gradient(4)
    images = [Image.fromarray(frame) for frame in frames]
    images[0].save(
        tmp_path / "p.gif", save_all=True, append_images=images[1:], duration=100, loop=0
    )
    video = read_video(tmp_path / "p.gif")
    assert video.frames.shape == frames.shape
    assert video.fps == pytest.approx(10.0)


@pytest.mark.parametrize(
    "name", ["still.png", "still.jpg", "still.jpeg", "still.bmp", "still.webp"]
)
def test_still_image_is_one_frame_video(tmp_path, name):
    frame = moving_gradient(1, 33, 47)[0]
    options = {"lossless": True} if name.endswith(".webp") else {}
    Image.fromarray(frame).save(tmp_path / name, **options)
    video = read_video(tmp_path / name)
    assert video.frames.shape == (1, 33, 47, 3)
    assert video.fps == 8.0
    exact = name.endswith((".png", ".bmp", ".webp"))
    if exact:
        assert np.array_equal(video.frames[0], frame)
    else:
        assert mean_abs_error(video.frames[0], frame) < 8


def test_folder_is_read_in_natural_order(tmp_path):
    folder = tmp_path / "numbered"
    folder.mkdir()
    colours = {"frame_1.png": 10, "frame_2.png": 20, "frame_10.png": 30}
    for name, value in colours.items():
        Image.fromarray(np.full((8, 6, 3), value, np.uint8)).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    video = read_video(folder)
    assert video.frames[:, 0, 0, 0].tolist() == [10, 20, 30]
    assert video.fps == 8.0
    (folder / "fps.txt").write_text("24\n")
    assert read_video(folder).fps == 24.0


def test_bad_fps_file_is_reported(tmp_path):
    folder = tmp_path / "numbered"
    write_video(folder, moving_gradient(2))
    (folder / "fps.txt").write_text("fast")
    with pytest.raises(EveditError, match="fps.txt"):
        read_video(folder)


def make_mode_images(folder: Path) -> dict[str, tuple[Image.Image, np.ndarray]]:
    """Grayscale, 16-bit grayscale, RGBA and palette PNGs with their expected RGB."""
    gray = np.tile(np.arange(0, 240, 10, dtype=np.uint8), (5, 1))
    rgba = np.zeros((5, 24, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, :12, 3] = 255  # opaque red half
    rgba[:, 12:, 3] = 0  # transparent half -> white
    expected_rgba = np.full((5, 24, 3), 255, np.uint8)
    expected_rgba[:, :12] = (200, 0, 0)
    colourful = Image.fromarray(np.dstack([gray, gray // 2, 255 - gray]))
    palette = colourful.convert("P", palette=Image.Palette.ADAPTIVE)
    sixteen = Image.fromarray(gray.astype(np.uint16) * 257)
    return {
        "gray.png": (Image.fromarray(gray), np.dstack([gray] * 3)),
        "gray16.png": (sixteen, np.dstack([gray] * 3)),
        "rgba.png": (Image.fromarray(rgba), expected_rgba),
        "palette.png": (palette, np.array(palette.convert("RGB"))),
    }


def test_image_modes_become_rgb(tmp_path):
    for name, (image, expected) in make_mode_images(tmp_path).items():
        image.save(tmp_path / name)
        pixels = read_image(tmp_path / name)
        assert pixels.shape == (5, 24, 3) and pixels.dtype == np.uint8, name
        assert np.array_equal(pixels, expected), name
        assert np.array_equal(read_video(tmp_path / name).frames[0], expected), name


def test_video_alpha_is_composited_over_white(tmp_path):
    rgba = np.zeros((2, 8, 10, 4), np.uint8)
    rgba[..., 1] = 100
    rgba[:, :, :5, 3] = 255
    with av.open(str(tmp_path / "alpha.mkv"), "w") as container:
        stream = container.add_stream("ffv1", rate=8)
        stream.height, stream.width, stream.pix_fmt = 8, 10, "bgra"
        for frame in rgba:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgba")))
        container.mux(stream.encode(None))
    frames = read_video(tmp_path / "alpha.mkv").frames
    assert frames[0, 0, 0].tolist() == [0, 100, 0]
    assert frames[0, 0, 9].tolist() == [255, 255, 255]


def test_image_round_trip(tmp_path):
    frame = moving_gradient(1, 33, 47)[0]
    assert np.array_equal(read_image(write_image(tmp_path / "a.png", frame)), frame)
    assert mean_abs_error(read_image(write_image(tmp_path / "sub" / "a.jpg", frame)), frame) < 8
    with pytest.raises(EveditError, match=r"a\.tiff"):
        write_image(tmp_path / "a.tiff", frame)
    with pytest.raises(EveditError, match=r"b\.png"):
        write_image(tmp_path / "b.png", np.zeros((4, 4), np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "sub"]


# ----------------------------------------------------------------------------- bad inputs


def truncated_mp4(tmp_path: Path) -> Path:
    full = write_video(tmp_path / "full.mp4", moving_gradient(3))
    cut = tmp_path / "truncated.mp4"
    cut.write_bytes(full.read_bytes()[:100])
    return cut


def audio_only_mp4(tmp_path: Path) -> Path:
    path = tmp_path / "audio_only.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        stream.layout = "mono"
        samples = np.zeros((1, 1024), np.float32)
        for index in range(3):
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 8000, index * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Each bad input with a fragment its error message must contain."""
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "random.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    (tmp_path / "random.png").write_bytes(np.random.default_rng(1).bytes(512))
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "no_images").mkdir()
    mixed = tmp_path / "mixed_sizes"
    mixed.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(mixed / "f1.png")
    Image.fromarray(np.zeros((8, 9, 3), np.uint8)).save(mixed / "f2.png")
    return {
        "missing": (tmp_path / "missing.mp4", "does not exist"),
        "missing folder": (tmp_path / "missing_frames", "does not exist"),
        "empty video": (tmp_path / "empty.mp4", "empty"),
        "empty image": (tmp_path / "empty.png", "empty"),
        "random bytes": (tmp_path / "random.mp4", "corrupt"),
        "random image": (tmp_path / "random.png", "corrupt"),
        "truncated": (truncated_mp4(tmp_path), "corrupt"),
        "unsupported": (tmp_path / "notes.txt", ".mp4"),
        "no images": (tmp_path / "no_images", "no images"),
        "mixed sizes": (mixed, "same size"),
        "audio only": (audio_only_mp4(tmp_path), "no video stream"),
    }


def test_bad_inputs_raise_evedit_error_naming_the_file(tmp_path, capfd):
    for label, (path, fragment) in bad_inputs(tmp_path).items():
        with pytest.raises(EveditError) as caught:
            read_video(path)
        message = str(caught.value)
        assert path.name in message, label
        assert fragment in message, (label, message)
        assert "\n" not in message, label
    assert capfd.readouterr().err == ""  # FFmpeg's log stays quiet


def test_read_image_rejects_bad_files(tmp_path):
    (tmp_path / "clip.gif").write_bytes(b"GIF89a")
    for path in (tmp_path / "nothing.png", tmp_path / "clip.gif", tmp_path):
        with pytest.raises(EveditError) as caught:
            read_image(path)
        assert path.name in str(caught.value)


def test_supported_extension_constants():
    expected = {".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif", ".png", ".jpg"}
    assert expected <= set(SUPPORTED_INPUT_EXTENSIONS)
    assert set(SUPPORTED_OUTPUT_EXTENSIONS) == {".mp4", ".webm", ".mkv", ".gif"}


def test_video_dataclass_validates():
    with pytest.raises(ValueError):
        Video(np.zeros((2, 4, 4), np.uint8), 8.0)
    with pytest.raises(ValueError):
        Video(np.zeros((2, 4, 4, 3), np.float32), 8.0)
    with pytest.raises(ValueError):
        Video(np.zeros((2, 4, 4, 3), np.uint8), 0.0)
    assert Video(np.zeros((2, 4, 6, 3), np.uint8), 8).duration == 0.25


# ----------------------------------------------------------------------------- failed writes


@pytest.mark.parametrize(
    ("name", "frames", "kwargs", "fragment"),
    [
        ("out.avi", moving_gradient(2), {}, "unsupported"),
        ("out.mp4", np.zeros((2, 8, 8), np.uint8), {}, "shaped"),
        ("out.mp4", np.zeros((2, 8, 8, 3), np.int64), {}, "dtype"),
        ("out.mkv", np.full((2, 8, 8, 3), 2.0), {}, "[0, 1]"),
        ("out.mp4", np.zeros((0, 8, 8, 3), np.uint8), {}, "empty"),
        ("out.gif", moving_gradient(2), {"lossless": True}, "lossless"),
        ("out.gif", moving_gradient(2), {"fps": 60}, "fps"),
        ("out.mp4", moving_gradient(2), {"fps": 0}, "fps"),
        ("outframes", np.zeros((2, 8, 8, 4), np.uint8), {}, "shaped"),
    ],
)
def test_failed_write_leaves_nothing(tmp_path, name, frames, kwargs, fragment):
    with pytest.raises(EveditError) as caught:
        write_video(tmp_path / name, frames, **kwargs)
    assert name in str(caught.value) and fragment in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_existing_file_is_replaced_only_on_success(tmp_path, monkeypatch):
    target = write_video(tmp_path / "out.mp4", moving_gradient(3))
    before = target.read_bytes()
    with pytest.raises(EveditError):
        write_video(target, np.zeros((3, 8, 8), np.uint8))
    assert target.read_bytes() == before

    import evedit.io._av as av_backend

    real_add = av_backend.FrameEncoder.add

    def half_write(self, rgb):
        if self.index >= 1:  # the first frame's bytes reach the temp file
            raise av.error.InvalidDataError(1094995529, "simulated encoder crash")
        real_add(self, rgb)

    monkeypatch.setattr(av_backend.FrameEncoder, "add", half_write)
    with pytest.raises(EveditError, match="out.mp4"):
        write_video(target, moving_gradient(4, 16, 16))
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]

    monkeypatch.undo()
    write_video(target, moving_gradient(4, 16, 16))
    assert target.read_bytes() != before
    assert read_video(target).frames.shape == (4, 16, 16, 3)


def test_frame_folder_replacement(tmp_path):
    folder = tmp_path / "frames"
    write_video(folder, moving_gradient(5), 12.0)
    write_video(folder, moving_gradient(2), 6.0)  # an old frame folder is replaced whole
    video = read_video(folder)
    assert video.frames.shape[0] == 2 and video.fps == 6.0
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.docx").write_text("do not delete")
    with pytest.raises(EveditError, match="precious"):
        write_video(precious, moving_gradient(2))
    assert [p.name for p in precious.iterdir()] == ["thesis.docx"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "precious"]


def test_writing_never_modifies_the_input(tmp_path):
    source = write_video(tmp_path / "source.mp4", moving_gradient(3))
    before = source.read_bytes()
    video = read_video(source)
    write_video(tmp_path / "copy.webm", video.frames, video.fps)
    write_video(tmp_path / "copy_frames", video)
    assert source.read_bytes() == before
    assert leftovers(tmp_path) == []
