"""The ShapeWorld benchmark: items, ShapeCLIP metrics with known answers, resumable runs, reports."""

import json
import sys
import types
import warnings

import numpy as np
import pytest

from evedit.errors import EveditError
from evedit.eval.editors import GroundTruthEditor, IdentityEditor, PipelineEditor, resolve_editors
from evedit.eval.entry import EvalOptions, evaluate
from evedit.eval.runner import read_records
from evedit.eval.shapeworld import SHAPEWORLD_METRICS, ShapeWorldBenchmark, ShapeWorldScorer, shapeclip_folder
from evedit.world import TASKS
from test_eval_helpers import FakeText, tiny_shapeclip


@pytest.fixture(scope="module")
def scorer():
    return ShapeWorldScorer(tiny_shapeclip(), FakeText())


@pytest.fixture(scope="module")
def items():
    return ShapeWorldBenchmark().items(28)


def test_default_benchmark_covers_every_task_in_both_splits():
    bench = ShapeWorldBenchmark()
    assert bench.per_split * len(bench.splits) >= 100
    few = bench.items(28)
    assert {(it.group, it.task) for it in few} == {(s, t) for s in ("test", "heldout") for t in TASKS}
    assert len({it.key for it in few}) == 28
    again = bench.items(28)
    assert all(np.array_equal(a.frames, b.frames) and a.key == b.key for a, b in zip(few, again))
    assert [it.index for it in few] == list(range(28))


def test_ground_truth_scores_perfectly_and_identity_changes_nothing(scorer, items):
    for item in items:
        gt = scorer.score(item, item.frames, item.target)
        assert gt["psnr"] == 100.0 and gt["flicker"] == 0.0
        local = not item.footprint.all()
        assert (gt["structure_psnr"] == 100.0) if local else gt["structure_psnr"] is None
        same = scorer.score(item, item.frames, item.frames)
        assert same["clip_dir"] == 0.0 and same["video_clip_dir"] == 0.0
        assert set(gt) == set(SHAPEWORLD_METRICS)


def test_static_clip_has_clip_frame_one_and_swapping_flips_clip_dir(scorer, items):
    item = items[0]
    static = np.repeat(item.frames[:1], len(item.frames), axis=0)
    assert scorer.score(item, item.frames, static)["clip_frame"] == pytest.approx(1.0, abs=1e-5)
    fwd = scorer.score(item, item.frames, item.target)
    scorer._inp = None  # a fresh input cache for the swapped pair
    swapped = type(item)(**{**item.__dict__, "key": item.key + "-swapped", "frames": item.target})
    back = scorer.score(swapped, item.target, item.frames)
    assert back["clip_dir"] == pytest.approx(-fwd["clip_dir"], abs=1e-5)
    assert back["video_clip_dir"] == pytest.approx(-fwd["video_clip_dir"], abs=1e-5)


def test_shuffled_frames_flicker_more(scorer, items):
    item = items[2]
    shuffled = item.target[np.random.default_rng(1).permutation(len(item.target))]
    assert scorer.score(item, item.frames, shuffled)["flicker"] > scorer.score(item, item.frames, item.target)["flicker"]


class Counting:
    """An Editor that counts its calls (to check that resumed runs skip scored items)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, frames, instruction, task, output_caption, seed):
        self.calls += 1
        return frames[::-1].copy()


def test_run_writes_reports_and_resumes(tmp_path, scorer, items):
    opts = EvalOptions(out=tmp_path / "run", samples=2, progress=False, json_path=tmp_path / "s.json")
    counting = Counting()
    doc = evaluate(opts, items[:3], {"identity": IdentityEditor(), "reverse": counting}, scorer)
    assert counting.calls == 3
    assert doc["benchmark"] == "shapeworld" and set(doc["editors"]) == {"identity", "reverse"}
    entry = doc["editors"]["reverse"]
    assert set(entry["metrics"]) == set(SHAPEWORLD_METRICS) and entry["n"] == 3
    assert set(entry["per_task"]) == {it.task for it in items[:3]}
    assert json.loads((tmp_path / "s.json").read_text()) == json.loads((tmp_path / "run/summary.json").read_text())
    md = (tmp_path / "run/summary.md").read_text()
    assert "| Set | Method |" in md and "ShapeWorld-heldout" in md
    assert (tmp_path / "run/plots/psnr.png").is_file()
    assert (tmp_path / "run/samples/test__2000000_color.gif").is_file()
    # resume: nothing is edited again; a new editor only adds its own records
    doc2 = evaluate(opts, items[:3], {"identity": IdentityEditor(), "reverse": counting,
                                      "ground-truth": GroundTruthEditor()}, scorer)
    assert counting.calls == 3
    assert len(read_records(tmp_path / "run/items.jsonl")) == 9
    assert doc2["editors"]["reverse"]["metrics"] == entry["metrics"]
    assert doc2["editors"]["ground-truth"]["metrics"]["psnr"] == 100.0


def test_torn_jsonl_line_is_ignored_and_other_settings_are_refused(tmp_path, scorer, items):
    opts = EvalOptions(out=tmp_path, samples=0, progress=False)
    evaluate(opts, items[:1], {"identity": IdentityEditor()}, scorer)
    with open(tmp_path / "items.jsonl", "a") as fh:
        fh.write('{"editor": "identity", "key": "tes')
    assert len(read_records(tmp_path / "items.jsonl")) == 1
    with pytest.raises(EveditError, match="another seed"):
        evaluate(EvalOptions(out=tmp_path, seed=5, progress=False), items[:1], {"identity": IdentityEditor()}, scorer)


def test_saved_outputs_rescore_identically(tmp_path, scorer, items):
    from evedit.eval.editors import FolderEditor

    first = evaluate(EvalOptions(out=tmp_path / "a", samples=0, progress=False), items[:2],
                     {"reverse": Counting()}, scorer)
    again = evaluate(EvalOptions(out=tmp_path / "b", samples=1, progress=False, outputs=(tmp_path / "a/videos/reverse",)),
                     items[:2], {"reverse": FolderEditor(tmp_path / "a/videos/reverse")}, scorer)
    assert again["editors"]["reverse"]["metrics"] == pytest.approx(first["editors"]["reverse"]["metrics"])
    record = json.loads((tmp_path / "b" / "run.json").read_text())  # what was scored, and by whose ShapeCLIP
    assert record["outputs"] == {"reverse": str(tmp_path / "a/videos/reverse")}
    assert record["model"] == "shapeworld" and "baseline_steps" not in record
    with pytest.raises(EveditError, match="No edited video"):
        evaluate(EvalOptions(out=tmp_path / "c", samples=0, progress=False), items[2:3],
                 {"x": FolderEditor(tmp_path / "a/videos/reverse")}, scorer)


def test_pipeline_editor_is_lazy_and_adapts_the_pipeline(monkeypatch, items):
    calls = {}

    class FakePipeline:
        @classmethod
        def from_pretrained(cls, model):
            calls["model"] = model
            return cls()

        def __call__(self, frames, instruction, *, editor, task, caption, seed, progress, steps=None):
            calls.update(editor=editor, task=task, caption=caption, seed=seed, progress=progress, steps=steps)
            return types.SimpleNamespace(frames=frames.copy(), fps=8.0)  # an EditResult

    monkeypatch.setitem(sys.modules, "evedit.editing", types.SimpleNamespace(EditPipeline=FakePipeline))
    monkeypatch.setattr("evedit.eval.editors._PIPELINES", {})
    item = items[0]
    out = PipelineEditor("sdedit", "some/model")(item.frames, item.instruction, "style", item.output_caption, 3)
    assert np.array_equal(out, item.frames)
    assert calls == {"model": "some/model", "editor": "sdedit", "task": "auto", "caption": None,
                     "seed": 3, "progress": False, "steps": None}  # the instruction alone, as a user edits
    editors = resolve_editors(["eve", "pnp"], "some/model", baseline_steps=7)
    editors["pnp"](item.frames, item.instruction, "color", item.output_caption, 0)
    assert calls["steps"] == 7 and calls["task"] == "color" and calls["editor"] == "pnp"
    resolve_editors(["pnp"], "some/model", with_caption=True)["pnp"](item.frames, item.instruction, "color",
                                                                        item.output_caption, 0)
    assert calls["caption"] == item.output_caption
    editors["eve"](item.frames, item.instruction, "color", item.output_caption, 0)
    assert calls["steps"] is None  # EVE keeps its distilled step count
    monkeypatch.setitem(sys.modules, "evedit.editing", None)  # not installed: one sentence, at the first edit
    monkeypatch.setattr("evedit.eval.editors._PIPELINES", {})
    editors = resolve_editors(["eve", "plug-and-play"])
    with pytest.raises(EveditError, match="--outputs"):
        editors["eve"](item.frames, item.instruction, item.task, item.output_caption, 0)
    with pytest.raises(EveditError, match="Unknown editor"):
        resolve_editors(["nope"])


def test_shapeclip_is_found_in_the_model_folder_or_named(tmp_path):
    tiny_shapeclip(tmp_path / "clip")
    assert shapeclip_folder("shapeworld", tmp_path / "clip") == tmp_path / "clip"
    (tmp_path / "m").mkdir()
    (tmp_path / "m/evedit_model.json").write_text(json.dumps({"extras": {"shapeclip": "shapeclip"}}))
    assert shapeclip_folder(tmp_path / "m") == tmp_path / "m/shapeclip"
    (tmp_path / "m/evedit_model.json").write_text(json.dumps({"extras": {}}))
    with pytest.raises(EveditError, match="--shapeclip"):
        shapeclip_folder(tmp_path / "m")


def test_scorer_from_a_saved_folder_with_real_minilm(tmp_path, items):
    tiny_shapeclip(tmp_path / "clip")
    scorer = ShapeWorldScorer.from_pretrained(shapeclip=tmp_path / "clip")
    res = scorer.score(items[0], items[0].frames, items[0].target)
    assert -1 <= res["clip_out"] <= 1 and res["psnr"] == 100.0
    (tmp_path / "clip/weights.pt").write_bytes(b"x")
    with pytest.raises(EveditError, match="pickle"):
        ShapeWorldScorer.from_pretrained(shapeclip=tmp_path / "clip")


def test_parallel_workers_give_the_same_records(tmp_path, scorer, items):
    editors = {"identity": IdentityEditor(), "reverse": Counting()}
    one = evaluate(EvalOptions(out=tmp_path / "one", samples=0, progress=False), items[:3], editors, scorer)
    two = evaluate(EvalOptions(out=tmp_path / "two", samples=1, progress=False, workers=2), items[:3], editors, scorer)
    assert two["editors"]["reverse"]["metrics"] == pytest.approx(one["editors"]["reverse"]["metrics"])
    keys = [(r["editor"], r["key"]) for r in read_records(tmp_path / "two/items.jsonl")]
    assert keys == [(e, it.key) for it in items[:3] for e in editors]  # item order kept


def test_real_pipeline_editor_on_one_item(tmp_path, scorer, items, monkeypatch):
    pytest.importorskip("evedit.editing.pipeline")
    monkeypatch.setattr("evedit.eval.editors._PIPELINES", {})
    item = items[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights until the trained model ships
        doc = evaluate(EvalOptions(out=tmp_path, samples=1, progress=False), [item],
                       {"eve": PipelineEditor("eve", "shapeworld")}, scorer)
    record = read_records(tmp_path / "items.jsonl")[0]
    assert record["editor"] == "eve" and record["edit_s"] > 0
    assert doc["editors"]["eve"]["metrics"]["psnr"] is not None
    assert (tmp_path / "videos/eve" / item.key / "00007.png").is_file()
    from evedit.models import folder_spec, shipped_shapeworld_folder

    settings = json.loads((tmp_path / "run.json").read_text())  # EVE's figures depend on the strength
    spec = folder_spec(shipped_shapeworld_folder())
    assert (settings["eve_lora_scale"], settings["eve_guidance"]) == (spec.lora_scale, spec.student_guidance)
