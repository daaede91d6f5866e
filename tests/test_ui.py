"""The web app (``evedit ui``): a real server on a free port, driven through ``gradio_client``.

Edits use the shipped ShapeWorld model with EVE (3 steps, 8 frames: about a second each) and
check what comes back with :mod:`evedit.io`; bad inputs must come back as one sentence, leave no
file behind, and the server must answer the next request.
"""

from __future__ import annotations

import inspect
import socket
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gradio")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from evedit.errors import EveditError  # noqa: E402
from evedit.io import read_video, write_image, write_video  # noqa: E402
from evedit.ui import launch  # noqa: E402
from evedit.ui.app import EDIT_FIELDS, make_handlers  # noqa: E402
from evedit.ui.inputs import check_instruction_text, load_clip, unzip_frames  # noqa: E402
from evedit.world import WorldConfig, make_example  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    srv = launch("shapeworld", "127.0.0.1", free_port())
    yield srv
    root = srv.sessions.root
    srv.close()
    assert not root.exists(), "closing the app must delete its temporary folder"


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    return Client(server.url, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


@pytest.fixture(scope="module")
def example():
    return make_example(3, "color", WorldConfig(size=64, frames=8))


def edit_args(**changes) -> list:
    """The /edit API's arguments: the page's defaults (bundled example, EVE, 3 steps) with changes."""
    values = dict(source="bundled example", upload=None, world_task="any", world_seed=None,
                  instruction="make the circle red", editor="eve", task="auto", steps=None, guidance=None,
                  seed=0, random_seed=False, max_frames=None, stride=1, start_time=0.0, window=None,
                  overlap=None, compare_editor="none", model="shapeworld", lora_scale=None,
                  region="the model's", noise_share=None)
    values.update(changes)
    return [values[name] for name in EDIT_FIELDS]


def files_under(root: Path) -> set[str]:
    return {p.name for p in root.rglob("*") if p.is_file()}


def test_api_order_matches_the_handler():
    edit = make_handlers(None, None)[0]
    assert list(inspect.signature(edit).parameters)[:len(EDIT_FIELDS)] == EDIT_FIELDS


def test_edit_an_uploaded_shapeworld_clip_keeps_frame_count_fps_and_size(client, example, tmp_path):
    clip = write_video(tmp_path / "shapes.mp4", example.clip, 8.0)
    out = client.predict(*edit_args(source="upload", upload=handle_file(str(clip)),
                                    instruction=example.edit.instruction), api_name="/edit")
    edited, comparison, task, timings, status, download = out
    video = read_video(edited)
    assert video.frames.shape == example.clip.shape and video.fps == pytest.approx(8.0)
    assert read_video(download).frames.shape == example.clip.shape
    assert read_video(comparison).num_frames == 8
    assert "task classifier" in task and "eve:" in timings and "8 frames, 64x64" in status


def test_new_shapeworld_clip_is_edited_beside_its_ground_truth(client):
    source, seed, preview, truth, instruction = client.predict("color", api_name="/render_world")
    assert source == "new ShapeWorld clip" and instruction and read_video(truth).num_frames == 8
    out = client.predict(*edit_args(source=source, world_task="color", world_seed=seed, instruction=instruction,
                                    task="color", compare_editor="per-frame", steps=2), api_name="/edit")
    assert "input | eve | per-frame | ground truth" in out[4] and out[2] == "color (chosen)"
    comparison = read_video(out[1])
    assert comparison.num_frames == 8 and comparison.width == 4 * 64 + 3 * 2 and comparison.height == 64


def test_start_time_stride_and_max_frames(client):
    out = client.predict(*edit_args(start_time=0.25, stride=2, max_frames=5, lora_scale=0.5, region="auto", noise_share=0.5),
                         api_name="/edit")
    video = read_video(out[0])  # bundled clip: 8 frames at 8 fps; from frame 2, first 5, every 2nd
    assert video.num_frames == 3 and video.fps == pytest.approx(4.0)


def test_zip_of_frames(client, example, tmp_path):
    archive = tmp_path / "frames.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i, frame in enumerate(example.clip[:5]):
            write_image(tmp_path / f"{i:03d}.png", frame)
            zf.write(tmp_path / f"{i:03d}.png", f"clip/{i:03d}.png")
        zf.writestr("__MACOSX/._000.png", b"junk")
    out = client.predict(*edit_args(source="upload", upload=handle_file(str(archive))), api_name="/edit")
    assert read_video(out[0]).num_frames == 5


@pytest.mark.parametrize("name, content, fragment", [
    ("notes.txt", b"hello", "is not a video"),
    ("broken.mp4", b"\x00not really a video" * 50, "Cannot read video"),
    ("empty.zip", b"PK\x05\x06" + b"\x00" * 18, "holds no frame images"),
])
def test_bad_upload_is_one_sentence_leaves_nothing_and_the_server_goes_on(client, server, tmp_path,
                                                                          name, content, fragment):
    bad = tmp_path / name
    bad.write_bytes(content)
    with pytest.raises(AppError, match=fragment) as info:
        client.predict(*edit_args(source="upload", upload=handle_file(str(bad))), api_name="/edit")
    assert "\n" not in str(info.value) and "Traceback" not in str(info.value)
    assert name not in files_under(server.sessions.root)
    assert read_video(client.predict(*edit_args(), api_name="/edit")[0]).num_frames == 8


@pytest.mark.parametrize("changes, fragment", [
    ({"instruction": "   "}, "instruction is empty"),
    ({"instruction": "red " * 200}, "keep it under"),
    ({"source": "upload"}, "No video was uploaded"),
    ({"model": "/no/such/model"}, "neither a model folder nor a preset"),
    ({"steps": -1}, "whole number from 1"),
    ({"start_time": 5.0}, "past the end of the clip"),
    ({"compare_editor": "eve"}, "are the same"),
    ({"lora_scale": -1}, "--lora-scale must be a number from 0"),
    ({"noise_share": 2}, "--noise-share must be a number from 0"),
])
def test_bad_settings_are_one_sentence(client, changes, fragment):
    with pytest.raises(AppError, match=fragment):
        client.predict(*edit_args(**changes), api_name="/edit")


def test_cancel_stops_the_edit_between_steps(client):
    job = client.submit(*edit_args(editor="per-frame", steps=1000), api_name="/edit")
    deadline = time.monotonic() + 120
    while not (job.status().progress_data or job.done()) and time.monotonic() < deadline:
        time.sleep(0.1)
    progress = job.status().progress_data
    assert progress and progress[0].length == 1000, "the page's bar follows the pipeline's steps"
    client.predict(api_name="/cancel")
    with pytest.raises(AppError, match="cancelled"):
        job.result(timeout=120)
    assert read_video(client.predict(*edit_args(), api_name="/edit")[0]).num_frames == 8


def test_serves_no_file_outside_its_folder(server):
    outside = Path(__file__).resolve().parents[1] / "README.md"
    for url in (f"{server.url}gradio_api/file={outside}", f"{server.url}file={outside}"):
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            assert exc.code in (403, 404)
        else:
            assert b"evedit" not in body


def test_binds_localhost_and_limits_uploads_by_default(server):
    assert server.url.startswith("http://127.0.0.1:")
    assert server.blocks.max_file_size == 200 * 1024 * 1024


def test_instruction_limits_and_start_time_in_frames(tmp_path):
    assert check_instruction_text("  make it red ") == "make it red"
    with pytest.raises(EveditError, match="empty"):
        check_instruction_text("")
    clip = load_clip("bundled example", None, None, None, tmp_path, start_time=0.5)
    assert len(clip.frames) == 4 and clip.truth.shape == clip.frames.shape


def test_zip_names_are_flattened_inside_the_folder(tmp_path):
    archive = tmp_path / "evil.zip"
    frame = np.zeros((8, 8, 3), np.uint8)
    write_image(tmp_path / "f.png", frame)
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(tmp_path / "f.png", "../../escape_000.png")
        zf.writestr("fps.txt", "4\n")
    folder = unzip_frames(archive, tmp_path / "out")
    assert sorted(p.name for p in folder.iterdir()) == ["escape_000.png", "fps.txt"]
    assert not (tmp_path.parent / "escape_000.png").exists()
    assert read_video(folder).fps == pytest.approx(4.0)


def test_cli_ui_with_a_bad_model_is_one_sentence(capsys):
    from evedit.cli import main

    assert main(["ui", "--model", "/no/such/model", "--port", str(free_port())]) == 1
    err = capsys.readouterr().err
    assert "Error:" in err and "neither a model folder nor a preset" in err and "Traceback" not in err
