"""``evedit eval``: ShapeWorld end to end, resuming, outputs folders, ablations, one-sentence errors."""

import json
import sys
import types

import numpy as np
import pytest

from evedit.eval.runner import read_records
from test_eval_helpers import tiny_shapeclip
from model_utils import run_cli as run


@pytest.fixture(scope="module")
def shapeclip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sc") / "shapeclip"
    tiny_shapeclip(folder)
    return str(folder)


def test_shapeworld_eval_end_to_end_and_resume(tmp_path, shapeclip, capsys):
    args = ["eval", "--benchmark", "shapeworld", "--editor", "identity,ground-truth", "--limit", "3", "--shapeclip",
            shapeclip, "--out", str(tmp_path / "run"), "--json", str(tmp_path / "summary.json"), "--samples", "1", "-q"]
    code, out, err = run(args, capsys)
    assert code == 0, err
    assert "| Set | Method |" in out and "Ground truth" in out
    doc = json.loads((tmp_path / "summary.json").read_text())
    assert doc["benchmark"] == "shapeworld" and doc["editors"]["ground-truth"]["metrics"]["psnr"] == 100.0
    assert set(doc["editors"]["identity"]["per_task"]) == {"color", "texture"}  # items: test/color, heldout/color, test/texture
    assert len(read_records(tmp_path / "run/items.jsonl")) == 6
    assert {p.suffix for p in (tmp_path / "run/samples").iterdir()} == {".png", ".gif"}
    code, _, err = run(args, capsys)
    assert code == 0, err
    assert len(read_records(tmp_path / "run/items.jsonl")) == 6  # all skipped


def test_outputs_folder_is_scored_under_its_name(tmp_path, shapeclip, capsys):
    base = ["eval", "--limit", "2", "--shapeclip", shapeclip, "--samples", "0", "-q"]
    code, _, err = run(base + ["--editor", "identity", "--out", str(tmp_path / "a")], capsys)
    assert code == 0, err
    code, out, err = run(base + ["--outputs", str(tmp_path / "a/videos/identity"), "--editor", "mine",
                                 "--out", str(tmp_path / "b")], capsys)
    assert code == 0, err
    doc = json.loads((tmp_path / "b/summary.json").read_text())
    assert list(doc["editors"]) == ["mine"] and doc["editors"]["mine"]["metrics"]["clip_dir"] == 0.0


@pytest.mark.parametrize("args, message", [
    (["--benchmark", "tgve", "--data", "{tmp}/nothing"], "TGVE data not found"),
    (["--benchmark", "nope"], "Unknown benchmark"),
    (["--editor", "nope"], "Unknown editor"),
    (["--limit", "0"], "--limit"),
    (["--benchmark", "tgve-plus", "--data", "{tmp}"], "TGVE+ rows not found"),
    (["--outputs", "{tmp}/missing"], "does not exist"),
])
def test_user_errors_are_one_sentence(tmp_path, shapeclip, capsys, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code, _, err = run(["eval", "--shapeclip", shapeclip, "--out", str(tmp_path / "o"), *args], capsys)
    assert code == 1 and message in err and "Traceback" not in err


def test_missing_shapeclip_says_how_to_get_one(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EVEDIT_SHAPEWORLD_MODEL", str(tmp_path / "no-model"))
    code, _, err = run(["eval", "--out", str(tmp_path / "o")], capsys)
    assert code == 1 and "ShapeCLIP" in err and "--shapeclip" in err


def test_ablations_table(tmp_path, shapeclip, capsys, monkeypatch):
    runs = tmp_path / "runs"
    for name in ("no-kbin", "none", "random-init"):
        (runs / name / "model").mkdir(parents=True)
        (runs / name / "model/evedit_model.json").write_text("{}")

    class FakePipeline:  # each "model" edits differently: darker by an amount set by its folder name
        def __init__(self, model):
            self.shift = len(str(model)) % 7 + 1

        @classmethod
        def from_pretrained(cls, model):
            return cls(model)

        def __call__(self, frames, instruction, *, editor, task, caption, seed, progress, **options):
            shift = self.shift * (3 if editor == "eve" else 1)
            return types.SimpleNamespace(frames=np.clip(frames.astype(int) - shift, 0, 255).astype(np.uint8))

    monkeypatch.setitem(sys.modules, "evedit.editing", types.SimpleNamespace(EditPipeline=FakePipeline))
    monkeypatch.setattr("evedit.eval.editors._PIPELINES", {})
    code, out, err = run(["eval", "--ablations", str(runs), "--limit", "2", "--shapeclip", shapeclip, "--out",
                          str(tmp_path / "abl"), "--samples", "0", "-q"], capsys)
    assert code == 0, err
    rows = [line.split("|")[1].strip() for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows == ["Variant", "Random Init", "w/o alignment (plug-and-play)", "w/o K-Bin sampling", "EVE (full)"]
    assert (tmp_path / "abl/ablations.md").is_file()
    doc = json.loads((tmp_path / "abl/summary.json").read_text())
    assert set(doc["editors"]) == {"pnp", "eve[random-init]", "eve[no-kbin]", "eve[none]"}
    code, _, err = run(["eval", "--ablations", str(tmp_path / "empty"), "--shapeclip", shapeclip], capsys)
    assert code == 1 and "does not exist" in err


def test_help_lists_eval_and_convert(capsys):
    code, out, _ = run(["--help"], capsys)
    assert code == 0 and "eval" in out and "convert" in out
