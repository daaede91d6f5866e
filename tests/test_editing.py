"""Editing: the pipeline, the four editors, long-video windows, task detection, the `edit` command
and its one-sentence errors. Tiny random ShapeWorld models (zero-init branches perturbed)."""

import hashlib
import json
import os
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from evedit.editing import EDITORS, EditOptions, EditPipeline, plan_windows
from evedit.editing.conditioning import decode_latents, encode_source, encode_texts, resolve_task
from evedit.editing.editors import (
    NOISE_CLIP, NOISE_FIRST_FRAME, Window, edit_first_frame, eve, frame_noise, sdedit_timesteps,
)
from evedit.editing.frames import Fit, to_uint8
from evedit.errors import EveditError
from evedit.io import read_video, write_video
from evedit.models import Conditioning
from evedit.world import make_example
from model_utils import run_cli as run
from model_utils import spec_as

INSTRUCTION = "make the blue circle red"
FAST = dict(task="color", first_frame_steps=2, progress=False)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread


@pytest.fixture(scope="module")
def clip():
    return make_example(7, "color").clip  # (8, 64, 64, 3)


def digest(path: Path) -> str:
    if path.is_dir():
        return "".join(digest(p) for p in sorted(path.iterdir()))
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- windows -----------------------------------------------------------------------------------
@pytest.mark.parametrize("frames,window,overlap", [(8, 8, 1), (5, 8, 1), (20, 8, 1), (20, 8, 0),
                                                   (128, 8, 1), (9, 8, 3), (1, 8, 1)])
def test_windows_cover_the_video_with_full_windows(frames, window, overlap):
    spans = plan_windows(frames, window, overlap)
    assert spans[0].start == 0 and spans[0].known == 0 and spans[-1].stop == frames
    assert all(len(s) == min(window, frames) for s in spans)
    for prev, cur in zip(spans, spans[1:]):
        assert cur.known == max(0, prev.stop - cur.start) and cur.start > prev.start
        assert cur.known >= overlap
    if frames <= window:
        assert len(spans) == 1


# ---- editors and the pipeline -------------------------------------------------------------------
@pytest.mark.parametrize("editor", EDITORS)
def test_each_editor_edits_and_keeps_count_fps_size(pipe, clip, editor):
    result = pipe(clip, INSTRUCTION, editor=editor, steps=2, fps=12.0, **FAST)
    assert result.frames.shape == clip.shape and result.frames.dtype == np.uint8
    assert result.fps == 12.0 and result.task == "color" and result.editor == editor
    assert result.windows == 1 and set(result.timings) >= {"first_frame", "edit", "decode", "total"}
    assert not np.array_equal(result.frames, clip)


def test_one_window_is_exactly_one_editor_call(pipe, clip):
    result = pipe(clip, INSTRUCTION, seed=5, **FAST)
    model, shape = pipe.model, (4, 16, 16)
    with torch.inference_mode():
        caption, instruction, null = encode_texts(model, INSTRUCTION, None)
        label = resolve_task(model, "color", INSTRUCTION)[2]
        latents, source = encode_source(model, Fit(64, 64, 64, "crop").to_model(clip))
        cond = Conditioning(caption, instruction, source, label)
        first = edit_first_frame(model, cond, null, frame_noise(5, NOISE_FIRST_FRAME, range(1), shape), 2)
        window = Window(cond.replace(first_frame=first), null, frame_noise(5, NOISE_CLIP, range(8), shape), latents)
        expected = to_uint8(decode_latents(model, eve(model, window, 3, 1.0)))
    assert np.array_equal(result.frames, expected)
    assert np.array_equal(pipe(clip, INSTRUCTION, seed=5, window=16, **FAST).frames, expected)


def test_long_video_windows_continue_the_first_window(pipe, clip):
    long = np.concatenate([clip, clip[::-1], clip[:4]])  # 20 frames
    result = pipe(long, INSTRUCTION, seed=1, **FAST)
    assert result.frames.shape == long.shape and result.windows == 3
    # later windows never change earlier frames, and a frame's noise does not depend on windows
    first_window = pipe(long[:8], INSTRUCTION, seed=1, **FAST)
    assert np.array_equal(result.frames[:8], first_window.frames)
    for overlap in (0, 3):
        other = pipe(long, INSTRUCTION, seed=1, overlap=overlap, **FAST)
        assert other.frames.shape == long.shape
        assert np.array_equal(other.frames[:8], first_window.frames)


def test_seeded_runs_repeat_and_seeds_differ(pipe, clip):
    a = pipe(clip, INSTRUCTION, seed=3, **FAST)
    b = pipe(clip, INSTRUCTION, seed=3, **FAST)
    c = pipe(clip, INSTRUCTION, seed=4, **FAST)
    assert np.array_equal(a.frames, b.frames) and not np.array_equal(a.frames, c.frames)
    guided = pipe(clip, INSTRUCTION, seed=3, guidance=3.0, **FAST)
    assert not np.array_equal(a.frames, guided.frames)  # guidance > 1 applies CFG to EVE


def test_guided_eve_is_plug_and_play_without_its_lora_and_the_model_sets_its_guidance(pipe, clip):
    """EVE with ``guidance`` > 1 runs ip2p dual guidance as plug-and-play does: with the LoRA at 0
    both give the same frames; the model's ``student_guidance`` is EVE's default guidance."""
    short = clip[:3]
    eve = pipe(short, INSTRUCTION, lora_scale=0.0, guidance=2.0, steps=2, **FAST).frames
    pnp = pipe(short, INSTRUCTION, editor="pnp", guidance=2.0, steps=2, **FAST).frames
    assert np.array_equal(eve, pnp)
    assert pipe(short, INSTRUCTION, **FAST).options.guidance == pipe.model.spec.student_guidance == 1.0
    with spec_as(pipe, student_guidance=2.0):
        by_model = pipe(short, INSTRUCTION, lora_scale=0.0, steps=2, **FAST)
        assert pipe(short, INSTRUCTION, editor="pnp", steps=2, **FAST).options.guidance == 2.0  # the teachers' scale
    assert by_model.options.guidance == 2.0 and np.array_equal(by_model.frames, eve)


def test_stride_and_max_frames(pipe, clip):
    result = pipe(clip, INSTRUCTION, stride=3, fps=9.0, **FAST)
    assert result.frames.shape[0] == 3 and result.fps == pytest.approx(3.0)
    assert np.array_equal(result.source_frames, clip[::3])
    assert pipe(clip, INSTRUCTION, max_frames=5, **FAST).frames.shape[0] == 5


def test_odd_large_grayscale_alpha_and_single_image_inputs(pipe, clip):
    rng = np.random.default_rng(0)
    odd = rng.integers(0, 256, (3, 37, 53, 3), dtype=np.uint8)
    assert pipe(odd, INSTRUCTION, **FAST).frames.shape == odd.shape
    large = rng.integers(0, 256, (2, 480, 720, 3), dtype=np.uint8)
    assert pipe(large, INSTRUCTION, **FAST).frames.shape == large.shape
    gray = clip[..., 0]  # (F, H, W)
    assert pipe(gray, INSTRUCTION, **FAST).frames.shape == clip.shape
    rgba = np.concatenate([clip, np.full(clip.shape[:3] + (1,), 128, np.uint8)], axis=-1)
    assert pipe(rgba, INSTRUCTION, **FAST).frames.shape == clip.shape
    image = pipe(clip[0], INSTRUCTION, **FAST)  # one (H, W, 3) image: a one-frame video
    assert image.frames.shape == (1, 64, 64, 3)
    floats = pipe(list(clip.astype(np.float32) / 255), INSTRUCTION, **FAST)
    assert floats.frames.shape == clip.shape


def test_crop_keeps_the_side_strips_and_stretch_edits_everything(pipe):
    frames = np.random.default_rng(1).integers(0, 256, (2, 40, 64, 3), dtype=np.uint8)
    cropped = pipe(frames, INSTRUCTION, **FAST).frames
    assert np.array_equal(cropped[:, :, :12], frames[:, :, :12])
    assert np.array_equal(cropped[:, :, 52:], frames[:, :, 52:])
    assert not np.array_equal(cropped[:, :, 12:52], frames[:, :, 12:52])
    stretched = pipe(frames, INSTRUCTION, fit="stretch", **FAST).frames
    assert stretched.shape == frames.shape and not np.array_equal(stretched[:, :, :12], frames[:, :, :12])


def test_sdedit_starts_at_strength_three_quarters():
    steps = sdedit_timesteps(50)
    assert len(steps) == 37 and steps[0] < 750 < steps[0] + 20
    assert sdedit_timesteps(1) == [999]


# ---- tasks and texts ------------------------------------------------------------------------------
def test_task_auto_uses_the_classifier_and_names_are_checked(pipe, clip, monkeypatch):
    result = pipe(clip[:2], INSTRUCTION, task="auto", first_frame_steps=2, progress=False)
    assert result.task in pipe.model.spec.tasks and 0 < result.task_probability <= 1
    with pytest.raises(EveditError, match="Unknown task 'recolor'"):
        pipe(clip[:2], INSTRUCTION, task="recolor", progress=False)
    monkeypatch.setattr(pipe.model, "extras", {})
    with pytest.raises(EveditError, match="no task classifier.*--task NAME"):
        EditPipeline(pipe.model, "cpu")(clip[:2], INSTRUCTION, progress=False)


def test_long_instruction_is_truncated_with_a_warning(pipe, clip):
    long = "make the blue circle red and " * 20
    with pytest.warns(UserWarning, match="truncated"):
        assert pipe(clip[:2], long, **FAST).frames.shape == clip[:2].shape


@pytest.mark.parametrize("kwargs,fragment", [
    (dict(steps=0), "--steps"), (dict(steps=1001), "--steps"), (dict(seed=-1), "--seed"),
    (dict(window=-1), "--window"), (dict(overlap=-1), "--overlap"),
    (dict(window=4, overlap=4), "smaller than --window"), (dict(stride=0), "--stride"),
    (dict(max_frames=0), "--max-frames"), (dict(editor="magic"), "Unknown editor"),
    (dict(guidance=0.5), "--guidance"), (dict(window=64), "temporal layers cover"),
    (dict(caption="  "), "caption is empty"), (dict(fit="zoom"), "--fit"),
    (dict(lora_scale=-0.5), "--lora-scale"), (dict(lora_scale=float("nan")), "--lora-scale"),
])
def test_api_rejects_absurd_options(pipe, clip, kwargs, fragment):
    with pytest.raises(EveditError, match=fragment):
        pipe(clip, INSTRUCTION, progress=False, **kwargs)


# ---- the command line -------------------------------------------------------------------------------
def test_cli_and_api_agree_exactly(pipe, clip, model_dir, tmp_path, capsys):
    source = write_video(tmp_path / "in.mkv", clip, 8.0)  # lossless
    args = ["edit", str(source), INSTRUCTION, "--model", str(model_dir), "--task", "color", "--seed", "3",
            "--first-frame-steps", "2", "--device", "cpu", "-q"]
    code, out, err = run([*args, "-o", str(tmp_path / "out.mkv"), "--compare", str(tmp_path / "cmp.gif")], capsys)
    assert code == 0, err
    assert "task: color" in out and "Traceback" not in err
    api = pipe(source, INSTRUCTION, task="color", seed=3, first_frame_steps=2, progress=False)
    assert np.array_equal(read_video(tmp_path / "out.mkv").frames, api.frames)
    written = read_video(tmp_path / "out.mkv")
    assert written.fps == 8.0 and written.frames.shape == clip.shape
    comparison = read_video(tmp_path / "cmp.gif").frames
    assert comparison.shape[0] == 8 and comparison.shape[2] > 2 * 64
    code, _, err = run([*args, "-o", str(tmp_path / "frames") + "/"], capsys)  # png folder
    assert code == 0, err
    assert np.array_equal(read_video(tmp_path / "frames").frames, api.frames)


def test_cli_task_auto_prints_the_choice_and_warns_in_one_line(model_dir, clip, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("evedit.editing.command.AUTO_TASK_THRESHOLD", 0.0)  # the tiny classifier is unsure
    image = tmp_path / "gray.png"
    Image.fromarray(clip[0, ..., 0]).save(image)  # grayscale still image -> one-frame video
    code, out, err = run(["edit", str(image), "make the blue circle red " * 12, "-o", str(tmp_path / "o.png"),
                          "--model", str(model_dir), "--first-frame-steps", "2", "-q"], capsys)
    assert code == 0, err
    assert "chosen by the task classifier" in out
    assert "Warning: Text of" in err and "Traceback" not in err
    assert np.asarray(Image.open(tmp_path / "o.png")).shape == (64, 64, 3)


def _zero_frame_video(path: Path) -> Path:
    container = av.open(str(path), "w")
    stream = container.add_stream("ffv1", rate=8)
    stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
    container.start_encoding()
    container.close()
    return path


def _bad_model(model_dir: Path, tmp: Path, kind: str) -> Path:
    folder = tmp / f"model_{kind}"
    shutil.copytree(model_dir, folder)
    if kind == "partial":
        for weights in (folder / "vae").glob("*.safetensors"):
            weights.unlink()
    elif kind in ("scale", "guidance"):
        manifest = json.loads((folder / "evedit_model.json").read_text())
        manifest["spec"]["lora_scale" if kind == "scale" else "student_guidance"] = -1 if kind == "scale" else 0.5
        (folder / "evedit_model.json").write_text(json.dumps(manifest))
    else:
        (folder / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"pickle")
    return folder


BAD = {
    "missing input": (dict(input="missing.mp4"), "does not exist"),
    "corrupt input": (dict(input="random.mp4"), "corrupt"),
    "zero-frame video": (dict(input="zero.mkv"), "corrupt"),
    "empty folder": (dict(input="empty_dir"), "no images"),
    "unsupported output": (dict(output="out.txt"), "unsupported file type '.txt'"),
    "output is input": (dict(output="sub/../in.mp4"), "is the input itself"),
    "output is a link to input": (dict(output="link.mp4"), "is the input itself"),
    "output inside input folder": (dict(input="frames_in", output="frames_in/out.mp4"), "inside the input folder"),
    "output folder holds user files": (dict(output="userdir/"), "holds files other than frames"),
    "image output, many frames": (dict(output="out.png"), "is an image but the edit has 8 frames"),
    "empty instruction": (dict(instruction=""), "instruction is empty"),
    "blank instruction": (dict(instruction=" \t "), "instruction is empty"),
    "steps 0": (dict(extra=["--steps", "0"]), "--steps"),
    "steps 1001": (dict(extra=["--steps", "1001"]), "--steps"),
    "negative seed": (dict(extra=["--seed", "-1"]), "--seed"),
    "negative window": (dict(extra=["--window", "-2"]), "--window"),
    "negative overlap": (dict(extra=["--overlap", "-1"]), "--overlap"),
    "overlap >= window": (dict(extra=["--window", "4", "--overlap", "4"]), "smaller than --window"),
    "stride 0": (dict(extra=["--stride", "0"]), "--stride"),
    "lora scale 5": (dict(extra=["--lora-scale", "5"]), "--lora-scale"),
    "max-frames 0": (dict(extra=["--max-frames", "0"]), "--max-frames"),
    "unknown editor": (dict(extra=["--editor", "magic"]), "Unknown editor"),
    "unknown device": (dict(extra=["--device", "tpu"]), "Unknown device"),
    "compare format": (dict(compare="cmp.txt"), "unsupported file type '.txt'"),
    "compare is output": (dict(compare="out.mp4"), "must differ"),
    "unknown task": (dict(extra=["--task", "recolor"]), "Unknown task 'recolor'"),
    "missing model": (dict(model="no_such_model"), "neither a model folder nor a preset"),
    "partial model": (dict(model="partial"), "is incomplete"),
    "pickle weights": (dict(model="pickle"), "Refusing to load pickle"),
    "bad lora scale in manifest": (dict(model="scale"), "sets lora_scale to -1"),
    "bad student guidance in manifest": (dict(model="guidance"), "sets student_guidance to 0.5"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_cli_bad_input_is_one_sentence_and_leaves_nothing(case, clip, model_dir, tmp_path, capsys):
    spec, fragment = BAD[case]
    write_video(tmp_path / "in.mp4", clip, 8.0)
    (tmp_path / "random.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    _zero_frame_video(tmp_path / "zero.mkv")
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "sub").mkdir()
    (tmp_path / "userdir").mkdir()
    (tmp_path / "userdir" / "notes.txt").write_text("mine")
    write_video(tmp_path / "frames_in", clip[:2], 8.0)
    os.symlink(tmp_path / "in.mp4", tmp_path / "link.mp4")
    model = spec.get("model")
    model = _bad_model(model_dir, tmp_path, model) if model in ("partial", "pickle", "scale", "guidance") else (model or model_dir)
    source = tmp_path / spec.get("input", "in.mp4")
    before = {p.name: digest(p) for p in tmp_path.iterdir()}
    output = str(tmp_path / spec.get("output", "out.mp4"))
    args = ["edit", str(source), spec.get("instruction", INSTRUCTION), "-o", output, "--model", str(model),
            "--task", "color", "--first-frame-steps", "1", "-q", *spec.get("extra", [])]
    if "compare" in spec:
        args += ["--compare", str(tmp_path / spec["compare"])]
    code, out, err = run(args, capsys)
    assert code == 1, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and fragment in lines[0], err
    assert "Traceback" not in err
    assert {p.name: digest(p) for p in tmp_path.iterdir()} == before  # no output, inputs untouched


def test_options_record_is_shared(pipe, clip):
    options = EditOptions(seed=2, task="color", first_frame_steps=2)
    a = pipe(clip[:3], INSTRUCTION, options=options, progress=False)
    b = pipe(clip[:3], INSTRUCTION, seed=2, task="color", first_frame_steps=2, progress=False)
    assert np.array_equal(a.frames, b.frames) and a.options.steps == 3 and a.options.window == 8
    with pytest.raises(EveditError, match="not both"):
        pipe(clip, INSTRUCTION, options=options, seed=1)


def test_lora_scale_interpolates_the_alignment_lora_and_defaults_to_the_models(pipe, clip):
    """0 is the student without its LoRA (the frames of peft's adapters disabled), 1 the LoRA as
    trained; the scale is restored after an edit, the model's spec gives the default, and the
    editors without the LoRA ignore it."""
    from evedit.models.lora import lora_disabled, lora_layers

    short = clip[:3]
    full = pipe(short, INSTRUCTION, **FAST).frames
    off = pipe(short, INSTRUCTION, lora_scale=0.0, **FAST).frames
    half = pipe(short, INSTRUCTION, lora_scale=0.5, **FAST)
    assert half.options.lora_scale == 0.5
    assert not np.array_equal(full, off) and not np.array_equal(half.frames, off) and not np.array_equal(half.frames, full)
    with lora_disabled(pipe.model.motion_unet):
        assert np.array_equal(pipe(short, INSTRUCTION, **FAST).frames, off)
    assert all(layer.scaling["align"] == layer.lora_alpha["align"] / layer.r["align"]
               for layer in lora_layers(pipe.model.motion_unet))
    with spec_as(pipe, lora_scale=0.5):
        again = pipe(short, INSTRUCTION, **FAST)
    assert again.options.lora_scale == 0.5 and np.array_equal(again.frames, half.frames)
    pnp = [pipe(short, INSTRUCTION, editor="pnp", steps=2, lora_scale=s, **FAST).frames for s in (0.0, 1.0)]
    assert np.array_equal(*pnp)


def test_bundled_demo_clip_is_the_rendered_example_in_the_shipped_models_world():
    from evedit.demo import BUNDLED_CLIP, BUNDLED_INFO, bundled_world, same_world
    from evedit.models import SHIPPED_SHAPEWORLD, folder_spec
    from evedit.world import WorldConfig

    assert BUNDLED_CLIP.is_file() and BUNDLED_INFO.is_file()
    world = bundled_world()
    assert same_world(world, folder_spec(SHIPPED_SHAPEWORLD).world)
    assert np.array_equal(read_video(BUNDLED_CLIP).frames, make_example(7, "color", WorldConfig(**world)).clip)


def test_demo_renders_its_clip_in_the_models_world():
    """A model of another world than the bundled clip's gets the same seed rendered in its world."""
    from evedit.demo import BUNDLED_CLIP, _demo_input, bundled_world, same_world
    from evedit.world import WorldConfig

    own = bundled_world()
    other = {} if own else {"small_px": 20.0, "large_px": 24.0}
    assert same_world(own, dict(own)) and not same_world(own, other)
    source, info, truth = _demo_input(7, "color", own)
    assert source == str(BUNDLED_CLIP)
    source, info, truth = _demo_input(7, "color", other)
    example = make_example(7, "color", WorldConfig(**other))
    assert np.array_equal(source, example.clip) and np.array_equal(truth, example.edited_clip)
    assert info["instruction"] == example.edit.instruction


@pytest.mark.parametrize("routing", ["paper", "empty", "instruction"])
def test_backbone_text_follows_the_models_prompt_routing(pipe, routing):
    """No caption: the backbone gets the empty text (paper, empty) or the instruction (ip2p-style);
    a given caption reaches the backbone unless the routing is ``instruction``."""
    from dataclasses import replace

    model, spec = pipe.model, pipe.model.spec
    model.spec = replace(spec, prompt_routing=routing)
    try:
        with torch.inference_mode():
            cap, instr, null = encode_texts(model, INSTRUCTION, None)
            given, _, _ = encode_texts(model, INSTRUCTION, "a red circle on a plain green background")
    finally:
        model.spec = spec
    if routing == "instruction":
        assert torch.equal(cap, instr) and torch.equal(given, instr)
    else:
        assert torch.equal(cap, null) and not torch.equal(given, null) and not torch.equal(given, instr)
