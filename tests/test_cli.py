"""The command line: version, help, world render, demo, and one-sentence errors."""

import json

import pytest

from evedit import __version__
from evedit.io import read_video
from model_utils import run_cli as run


def test_version_and_help(capsys):
    code, out, _ = run(["--version"], capsys)
    assert code == 0 and __version__ in out
    code, out, _ = run(["--help"], capsys)
    assert code == 0 and "world" in out and "demo" in out


def test_world_render_writes_input_ground_truth_and_json(tmp_path, capsys):
    out_dir = tmp_path / "seed5"
    code, out, err = run(["world", "render", "--seed", "5", "--task", "remove", "--out", str(out_dir)],
                         capsys)
    assert code == 0, err
    names = {p.name for p in out_dir.iterdir()}
    assert names == {"input.mp4", "input.gif", "ground_truth.mp4", "ground_truth.gif",
                     "example.json", "instruction.txt"}
    info = json.loads((out_dir / "example.json").read_text())
    assert info["task"] == "remove" and info["seed"] == 5
    instruction = (out_dir / "instruction.txt").read_text().strip()
    assert instruction == info["instruction"] and instruction in out
    clip = read_video(out_dir / "input.mp4")
    assert clip.frames.shape == (8, 64, 64, 3) and clip.fps == pytest.approx(8.0)
    assert read_video(out_dir / "ground_truth.gif").frames.shape[0] == 8


@pytest.mark.parametrize("args, message", [
    (["--seed", "5", "--task", "nope"], "Unknown ShapeWorld task"),
    (["--seed", "-1"], "non-negative"),
])
def test_world_render_bad_input_is_one_sentence(tmp_path, capsys, args, message):
    out_dir = tmp_path / "never"
    code, out, err = run(["world", "render", *args, "--out", str(out_dir)], capsys)
    assert code == 1 and message in err and "Traceback" not in err
    assert not out_dir.exists(), "nothing partial is written"


def test_usage_error_exits_2_without_traceback(capsys):
    code, _, err = run(["world", "render", "--seed", "5"], capsys)
    assert code == 2 and "Traceback" not in err


def test_demo_writes_comparison(tmp_path, capsys):
    code, out, err = run(["demo", "--out", str(tmp_path / "demo")], capsys)
    assert code == 0, err
    gif = tmp_path / "demo" / "comparison.gif"
    assert str(gif) in out
    assert "region: where the edit adapter finds" in out  # the shipped model's colour edits (0.4.5)
    frames = read_video(gif).frames
    assert frames.shape[0] == 8 and frames.shape[2] > frames.shape[1]  # side by side


def test_demo_renders_the_clip_in_the_models_world(model_dir, tmp_path, capsys):
    """`evedit demo --model` with a model of the 20 px world shows that world's ground truth."""
    import shutil

    import numpy as np

    from evedit.world import WorldConfig, make_example

    folder = shutil.copytree(model_dir, tmp_path / "model20")
    manifest = json.loads((folder / "evedit_model.json").read_text())
    manifest["spec"]["world"] = {"small_px": 20.0, "large_px": 24.0}
    (folder / "evedit_model.json").write_text(json.dumps(manifest))
    code, out, err = run(["demo", "--model", str(folder), "--out", str(tmp_path / "demo")], capsys)
    assert code == 0, err
    frames = read_video(tmp_path / "demo" / "comparison.mp4").frames.astype(float)  # (8, 256, 784, 3)
    truth_panel = frames[:, 2::4, (64 + 2) * 2 * 4 + 2::4]  # the right panel, back to 64 px
    errors = {px: np.abs(truth_panel - make_example(7, "color", WorldConfig(**world)).edited_clip).mean()
              for px, world in ((20, {"small_px": 20.0, "large_px": 24.0}), (14, {}))}
    assert errors[20] < errors[14]
