"""`evedit edit` against a hostile user (issue 21): checks before computing, SIGTERM, text that is
no instruction, unsure task choices, and the streaming edit (same frames as the whole-clip edit,
memory bounded by the window, not the clip)."""

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from evedit.editing import EditPipeline, plan_windows
from evedit.editing.conditioning import decode_latents, encode_source, encode_texts
from evedit.editing.editors import EDITOR_FUNCTIONS, NOISE_CLIP, NOISE_FIRST_FRAME, edit_first_frame, frame_noise
from evedit.editing.frames import Fit, to_uint8
from evedit.editing.stream import FrameStore, iter_spans
from evedit.editing.windows import edit_windows
from evedit.io import read_video, write_video
from evedit.io.stream import open_video
from evedit.models import Conditioning
from evedit.models.task_classifier import TaskClassifier
from evedit.world import make_example
from model_utils import run_cli as run

INSTRUCTION = "make the blue circle red"
FAST = ["--task", "color", "--first-frame-steps", "1", "--device", "cpu", "-q"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread


@pytest.fixture(scope="module")
def clip():
    clips = [make_example(seed, "color").clip for seed in (7, 8, 9)]
    return np.concatenate(clips)[:21]  # 21 frames of 64x64: several windows and codec chunks


@pytest.fixture
def no_model_load(monkeypatch):
    """Record (and refuse) any model load: the checks must fail before it."""
    calls = []

    def load(*args, **kwargs):
        calls.append(args)
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(EditPipeline, "from_pretrained", classmethod(lambda cls, *a, **k: load(*a, **k)))
    return calls


def one_error_line(err: str, fragment: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and fragment in lines[0], err
    assert "Traceback" not in err


# ---- the same frames as the whole-clip edit ------------------------------------------------------
def whole_clip_edit(pipe, frames, instruction, **kwargs):
    """The edit as it was computed before streaming: the whole clip in memory at every stage."""
    opts = pipe.options(**kwargs)
    model, originals = pipe.model, frames[:opts.max_frames][::opts.stride]
    with torch.inference_mode():
        caption, instr, null = encode_texts(model, instruction, opts.caption)
        label = torch.tensor([model.spec.tasks.index(opts.task)])
        fit = Fit(*originals.shape[1:3], model.spec.resolution, opts.fit)
        latents, source = encode_source(model, fit.to_model(originals))
        cond = Conditioning(caption=caption, instruction=instr, source=source, task=label)
        editor = EDITOR_FUNCTIONS[opts.editor]
        spans = plan_windows(latents.shape[2], opts.window, opts.overlap)
        shape = tuple(latents.shape[1:2] + latents.shape[3:])
        noise = frame_noise(opts.seed, NOISE_CLIP, range(latents.shape[2]), shape).to(latents)
        first = None
        if editor.needs_first_frame:
            noise0 = frame_noise(opts.seed, NOISE_FIRST_FRAME, range(1), shape).to(latents)
            first = edit_first_frame(model, cond, null, noise0, opts.first_frame_steps)
        edited = edit_windows(model, editor, spans, cond, null, noise, latents, first, opts.steps, opts.guidance)
        squares = to_uint8(decode_latents(model, edited))
    return fit.from_model(squares, originals)


@pytest.mark.parametrize("kwargs", [
    dict(), dict(overlap=0), dict(window=5, overlap=2), dict(stride=2, max_frames=19),
    dict(editor="per-frame", steps=2), dict(editor="sdedit", steps=3), dict(fit="stretch"),
], ids=["eve", "overlap0", "window5", "stride", "per-frame", "sdedit", "stretch"])
def test_seeded_edit_gives_the_same_frames_as_the_whole_clip_edit(pipe, clip, kwargs):
    wide = np.concatenate([clip, clip[:, :, :24]], axis=2)  # 64x88: crop keeps side strips
    kwargs = dict(task="color", seed=3, first_frame_steps=2, **kwargs)
    expected = whole_clip_edit(pipe, wide, INSTRUCTION, **kwargs)
    result = pipe(wide, INSTRUCTION, progress=False, **kwargs)
    assert result.frames.shape == expected.shape
    assert np.array_equal(result.frames, expected)


@pytest.mark.parametrize("window", [1, 2, 5, 8])
def test_lazy_window_plan_is_the_whole_clip_plan(window):
    for frames in range(1, 40):
        for overlap in range(window):
            lazy = list(iter_spans(lambda i: i < frames, lambda: frames, window, overlap))
            assert lazy == plan_windows(frames, window, overlap), (frames, window, overlap)


def test_streaming_keeps_a_bounded_number_of_frames(pipe, clip, tmp_path, monkeypatch):
    long = np.concatenate([clip] * 6)  # 126 frames
    source = write_video(tmp_path / "long.mkv", long, 8.0)
    held, read = [], FrameStore._read_chunk

    def watch(store):
        read(store)
        held.append(max(len(store.originals), len(store.latents), len(store.source)))

    monkeypatch.setattr(FrameStore, "_read_chunk", watch)
    result = pipe(source, INSTRUCTION, task="color", first_frame_steps=1, progress=False)
    assert result.frames.shape == long.shape and result.windows == len(plan_windows(126, 8, 1))
    assert max(held) <= 2 * 8 + 2 * 8  # two windows and two codec chunks, whatever the length
    monkeypatch.undo()
    assert np.array_equal(result.frames, whole_clip_edit(pipe, long, INSTRUCTION, task="color", first_frame_steps=1))


def test_cli_streams_a_longer_clip_to_every_format(pipe, clip, model_dir, tmp_path, capsys):
    long = np.concatenate([clip] * 3)[:50]
    source = write_video(tmp_path / "in.mkv", long, 8.0)
    expected = pipe(source, INSTRUCTION, task="color", first_frame_steps=1, progress=False).frames
    for name in ("out.mkv", "frames/", "out.gif"):
        code, out, err = run(["edit", source, INSTRUCTION, "-o", tmp_path / name, "--model", model_dir, *FAST,
                              "--compare", tmp_path / f"cmp_{name.strip('/')}.mp4"], capsys)
        assert code == 0, err
        assert "edited:" in out and "50 frames, 64x64" in out
        written = read_video(tmp_path / name)
        assert written.frames.shape == long.shape and written.fps == 8.0
        if name != "out.gif":  # lossless formats: exactly the API's frames
            assert np.array_equal(written.frames, expected)
        assert read_video(tmp_path / f"cmp_{name.strip('/')}.mp4").frames.shape[:3] == (50, 64, 130)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temporaries left


# ---- checks before computing ----------------------------------------------------------------------
def test_read_only_output_folder_fails_before_the_model_loads(clip, model_dir, tmp_path, capsys,
                                                              monkeypatch, no_model_load):
    source = write_video(tmp_path / "in.mp4", clip[:2], 8.0)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        if os.access(locked, os.W_OK):  # root ignores permissions: make the folder read-only to it too
            real = os.access
            monkeypatch.setattr(os, "access", lambda p, mode, **k: False if Path(p) == locked else real(p, mode, **k))
        for output in (locked / "out.mp4", locked / "sub" / "out.mp4", locked / "frames/"):
            code, _, err = run(["edit", source, INSTRUCTION, "-o", output, "--model", model_dir, *FAST], capsys)
            assert code == 1
            one_error_line(err, "is not writable")
        assert os.listdir(locked) == [] and no_model_load == []
    finally:
        locked.chmod(0o755)


@pytest.mark.parametrize("output", ["notes.txt/out.mp4", "notes.txt/deeper/out.mp4", "notes.txt/frames/"])
def test_output_whose_parent_is_a_file_fails_before_the_model_loads(clip, model_dir, tmp_path, capsys,
                                                                    output, no_model_load):
    source = write_video(tmp_path / "in.mp4", clip[:2], 8.0)
    (tmp_path / "notes.txt").write_text("mine")
    code, _, err = run(["edit", source, INSTRUCTION, "-o", tmp_path / output, "--model", model_dir, *FAST], capsys)
    assert code == 1
    one_error_line(err, "is a file, not a folder")
    assert (tmp_path / "notes.txt").read_text() == "mine" and no_model_load == []


def test_missing_encoder_fails_before_the_model_loads(clip, model_dir, tmp_path, capsys, monkeypatch,
                                                      no_model_load):
    import av

    source = write_video(tmp_path / "in.mkv", clip[:2], 8.0)
    real = av.codec.Codec

    def codec(name, mode="r"):
        if name == "libvpx-vp9":
            raise av.codec.codec.UnknownCodecError(name)
        return real(name, mode)

    monkeypatch.setattr(av.codec, "Codec", codec)
    code, _, err = run(["edit", source, INSTRUCTION, "-o", tmp_path / "out.webm", "--model", model_dir, *FAST], capsys)
    assert code == 1
    one_error_line(err, "has no libvpx-vp9 encoder")
    assert sorted(os.listdir(tmp_path)) == ["in.mkv"] and no_model_load == []


# ---- text that is no instruction --------------------------------------------------------------------
def test_non_utf8_instruction_from_the_shell_exits_1_without_traceback(clip, model_dir, tmp_path):
    source = write_video(tmp_path / "in.mp4", clip[:2], 8.0)
    args = [sys.executable, "-m", "evedit.cli", "edit", str(source).encode(), b"make the \xff\xfe circle red",
            b"-o", str(tmp_path / "out.mp4").encode(), b"--model", str(model_dir).encode()]
    env = {**os.environ, "LC_ALL": "C.UTF-8", "PYTHONIOENCODING": "utf-8"}
    done = subprocess.run(args, capture_output=True, env=env, timeout=300)
    err = done.stderr.decode("utf-8", "replace")
    assert done.returncode == 1, err
    one_error_line(err, "not valid text")
    assert sorted(os.listdir(tmp_path)) == ["in.mp4"]


@pytest.mark.parametrize("instruction,fragment", [
    ("make the circle \x1b[31mred", "control character (U+001B)"),
    ("make\x00 red", "control character (U+0000)"),
    ("make the \udcff circle red", "not valid text"),
    ("!!! 123 ???", "holds no letters"),
    ("\u2603 \u2764", "holds no letters"),
])
def test_meaningless_instructions_are_refused(clip, model_dir, tmp_path, capsys, instruction, fragment,
                                              no_model_load):
    source = write_video(tmp_path / "in.mp4", clip[:2], 8.0)
    code, _, err = run(["edit", source, instruction, "-o", tmp_path / "out.mp4", "--model", model_dir, *FAST], capsys)
    assert code == 1
    one_error_line(err, fragment)
    code, _, err = run(["edit", source, INSTRUCTION, "--caption", instruction, "-o", tmp_path / "out.mp4",
                        "--model", model_dir, *FAST], capsys)
    assert code == 1
    one_error_line(err, fragment.replace("instruction", "caption"))
    assert sorted(os.listdir(tmp_path)) == ["in.mp4"] and no_model_load == []


def test_unicode_instructions_with_letters_pass(pipe, clip):
    assert pipe(clip[:2], "mache den Kreis rot \u00e9\u00e8 \u2764", task="color", first_frame_steps=1,
                progress=False).frames.shape == clip[:2].shape


@pytest.mark.parametrize("probability", [0.22, 0.9])
def test_unsure_task_choice_asks_for_task(clip, model_dir, tmp_path, capsys, monkeypatch, probability):
    source = write_video(tmp_path / "in.mp4", clip[:2], 8.0)
    ranked = [("remove", probability), ("color", (1 - probability) * 0.8), ("add", (1 - probability) * 0.2)]
    monkeypatch.setattr(TaskClassifier, "rank", lambda self, instruction, encoder=None: ranked)
    code, out, err = run(["edit", source, INSTRUCTION, "-o", tmp_path / "out.mp4", "--model", model_dir,
                          "--first-frame-steps", "1", "-q"], capsys)
    if probability < 0.5:
        assert code == 1
        one_error_line(err, "hesitated between remove (p=0.22) and color (p=0.62)")
        assert "--task NAME" in err and sorted(os.listdir(tmp_path)) == ["in.mp4"]
    else:
        assert code == 0, err
        assert "task: remove (chosen by the task classifier, p=0.90)" in out


# ---- SIGTERM and temporaries of killed runs -----------------------------------------------------------
def test_sigterm_during_an_edit_leaves_no_file(clip, model_dir, tmp_path):
    source = write_video(tmp_path / "in.mkv", np.concatenate([clip] * 20), 8.0)  # 420 frames
    args = [sys.executable, "-m", "evedit.cli", "edit", str(source), INSTRUCTION, "-o", str(tmp_path / "out.mp4"),
            "--compare", str(tmp_path / "cmp.mp4"), "--model", str(model_dir), *FAST]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        for _ in range(3000):  # until the output's temporary file appears (at most ~5 minutes)
            names = os.listdir(tmp_path)
            if any(n.startswith(".out.mp4.") and n.endswith(".tmp.mp4") for n in names) or process.poll() is not None:
                break
            time.sleep(0.1)
        assert process.poll() is None, process.communicate()[1].decode()
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143, err.decode()
    assert "Terminated." in err.decode() and "Traceback" not in err.decode()
    assert sorted(os.listdir(tmp_path)) == ["in.mkv"]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_next_run_removes_temporaries_of_killed_runs(clip, model_dir, tmp_path, capsys):
    source = write_video(tmp_path / "in.mp4", clip[:2], 8.0)
    stale = [f".out.mp4.{_dead_pid()}.0123456789ab.tmp.mp4", ".out.mp4.00112233aabb.tmp.mp4",
             f".frames.{_dead_pid()}.0123456789ab.tmp"]
    live = f".out.mp4.{os.getppid()}.0123456789ab.tmp.mp4"  # a run still going: kept
    other = f".other.mp4.{_dead_pid()}.0123456789ab.tmp.mp4"  # another output's: not ours to clean
    for name in (*stale, live, other):
        (tmp_path / name).write_bytes(b"partial")
    (tmp_path / stale[2]).unlink()
    (tmp_path / stale[2]).mkdir()
    for output in ("out.mp4", "frames/"):
        code, _, err = run(["edit", source, INSTRUCTION, "-o", tmp_path / output, "--model", model_dir, *FAST], capsys)
        assert code == 0, err
    assert sorted(os.listdir(tmp_path)) == sorted([live, other, "in.mp4", "out.mp4", "frames"])


def test_probing_reads_the_frame_rate_while_the_file_is_open(clip, tmp_path):
    """The streaming edit takes its frame rate from the probe; it used to read the stream's fields
    after closing the container, and about one probe in twenty returned a garbage rate."""
    from evedit.io._av import probe_file

    source = write_video(tmp_path / "in.mkv", np.concatenate([clip] * 4), 8.0)
    assert {probe_file(source, "x")[1] for _ in range(150)} == {8.0}


# ---- damaged and badly shaped inputs warn ----------------------------------------------------------------
def test_decoder_errors_are_reported_naming_the_frames(tmp_path):
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, 60 * 64 * 64 * 3).reshape(60, 64, 64, 3)
    frames = np.clip(ramp + rng.integers(0, 40, ramp.shape), 0, 255).astype(np.uint8)
    data = bytearray(write_video(tmp_path / "c.mp4", frames, 8.0).read_bytes())
    for offset in range(len(data) // 3, len(data) // 3 + 200):  # inside the frame data (+faststart)
        data[offset] = (data[offset] * 7 + 13) % 256
    (tmp_path / "bad.mp4").write_bytes(bytes(data))
    with pytest.warns(UserWarning, match=r"'.*bad\.mp4' is damaged: .*frames? \d+"):
        decoded, _, _ = open_video(tmp_path / "bad.mp4")
        assert 0 < len(list(decoded)) <= 60
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an intact clip warns nothing
        assert len(list(open_video(tmp_path / "c.mp4")[0])) == 60


def test_a_crop_that_drops_most_of_the_frame_warns(pipe):
    thin = np.zeros((3, 16, 160, 3), np.uint8)
    with pytest.warns(UserWarning, match="edits only their centre 16x16 square and leaves 90%"):
        assert pipe(thin, INSTRUCTION, task="color", first_frame_steps=1, progress=False).frames.shape == thin.shape


def test_edit_defaults_match_the_alignment_config():
    from evedit.editing import options
    from evedit.training.fdd.config import FDDConfig

    fdd = FDDConfig()
    assert (options.FDD_K, options.FDD_EDIT_TEXT_SCALE, options.FDD_VIDEO_SCALE, options.FDD_EDIT_IMAGE_SCALE,
            options.FDD_REAL_STEPS) == (fdd.k, fdd.edit_text_scale, fdd.video_scale, fdd.edit_image_scale,
                                        fdd.real_steps)


def test_edit_options_bound_the_lora_scale_as_model_folders_do():
    from evedit.editing import options
    from evedit.models.presets import MAX_GUIDANCE, MAX_LORA_SCALE

    assert options.MAX_LORA_SCALE == MAX_LORA_SCALE
    assert options.MAX_GUIDANCE == MAX_GUIDANCE
