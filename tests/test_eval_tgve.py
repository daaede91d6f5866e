"""TGVE and TGVE+ on tiny folders in the official layouts, scored with tiny CLIP / PickScore / ViCLIP."""

import json

import numpy as np
import pytest

from evedit.errors import EveditError
from evedit.eval.clipscores import CLIPScorer, TGVEScorer, load_tgve_scorer
from evedit.eval.convert import convert_viclip
from evedit.eval.entry import EvalOptions, run_eval
from evedit.eval.items import save_output
from evedit.eval.tgve import read_tgve_plus_rows, tgve_items, tgve_plus_items
from test_eval_helpers import moving_video, tiny_clip, tiny_tokenizer, tiny_viclip_pth, write_tgve, write_tgve_plus_rows


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tgve_models")
    clip = tiny_clip(root / "clip")
    pick = tiny_clip(root / "pick", projection_dim=24, seed=1)
    tiny_viclip_pth(root / "v.pth", vocab=len(tiny_tokenizer()))
    viclip = convert_viclip(root / "v.pth", root / "viclip", tokenizer=clip, vision_heads=2, text_heads=2)
    return {"clip": str(clip), "pickscore": str(pick), "pickscore_processor": str(pick), "viclip": viclip}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_tgve(tmp_path_factory.mktemp("tgve") / "loveu-tgve-2023")


def test_tgve_items_follow_the_csv_and_submission_layout(data):
    with pytest.warns(UserWarning, match="no instruction"):
        items = tgve_items(data)
    assert [it.key for it in items[:4]] == [f"DAVIS_480p/bmx-rider/{t}" for t in ("style", "object", "background",
                                                                                    "multiple")]
    assert items[4].key == "youtube_480p/cat-dog-play/style" and items[4].video.suffix == ".mp4"
    assert items[1].output_caption == "a dog rides a bike" and items[1].input_caption == "a man rides a bike"
    assert items[1].instruction == items[1].output_caption  # no instruction source: the caption stands in
    assert items[0].load().shape == (8, 32, 32, 3) and items[5].load().shape == (8, 32, 32, 3)


def test_instructions_come_from_insv2v_prompts(tmp_path):
    root = write_tgve(tmp_path / "t")
    prompts = {"bmx-rider": {"edit_style": "make it watercolor", "edit_object": "turn the man into a dog",
                             "edit_background": "put it in the snow", "edit_multiple": "dog and snow"},
               "cat-dog-play": {"edit_style": "s", "edit_object": "o", "edit_background": "b", "edit_multiple": "m"}}
    (root / "loveu_tgve_edit_prompt_dict.json").write_text(json.dumps(prompts))
    items = tgve_items(root)
    assert items[1].instruction == "turn the man into a dog" and items[7].instruction == "m"


def test_missing_data_says_what_to_get(tmp_path):
    with pytest.raises(EveditError, match="loveu-tgve-2023.zip"):
        tgve_items(tmp_path)
    root = write_tgve(tmp_path / "t")
    with pytest.raises(EveditError, match="tgve_plus.jsonl"):
        tgve_plus_items(root)
    import shutil

    shutil.rmtree(root / "youtube_480p")
    with pytest.raises(EveditError, match="cat-dog-play"):
        tgve_items(root)


def test_tgve_plus_rows_in_each_format(tmp_path):
    data = write_tgve(tmp_path / "t")
    write_tgve_plus_rows(data / "tgve_plus.jsonl")
    items = tgve_plus_items(data)
    assert [it.key for it in items] == ["DAVIS_480p/bmx-rider/remove", "DAVIS_480p/bmx-rider/add",
                                        "youtube_480p/cat-dog-play/add", "youtube_480p/cat-dog-play/add-2"]
    assert items[0].instruction == "remove the man" and items[0].video.is_dir()
    rows = read_tgve_plus_rows(data / "tgve_plus.jsonl")
    csv_path = tmp_path / "tgve_plus.csv"
    import csv

    with open(csv_path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["instruction", "source_caption", "target_caption", "video_path"])
        w.writeheader()
        for r in rows:
            w.writerow({"instruction": r["instruction"], "source_caption": r["input_caption"],
                        "target_caption": r["output_caption"], "video_path": r["video"]})
    again = read_tgve_plus_rows(csv_path)
    assert [r["output_caption"] for r in again] == [r["output_caption"] for r in rows]
    (tmp_path / "bad_tgve_plus.json").write_text(json.dumps([{"instruction": "x", "video": "y"}]))
    with pytest.raises(EveditError, match="input caption"):
        read_tgve_plus_rows(tmp_path / "bad_tgve_plus.json")


def test_clip_scores_known_answers(models):
    clip = CLIPScorer.from_pretrained(models["clip"])
    video = moving_video()
    still = np.repeat(video[:1], 8, axis=0)
    scorer = TGVEScorer(clip=clip)
    from evedit.eval.items import Item

    item = Item("k", "object", "i", "a man rides a bike", "a dog rides a bike", frames=video)
    res = scorer.score(item, video, still)
    assert res["clip_frame"] == pytest.approx(1.0, abs=1e-5)
    e = clip.image_features(still)
    t = clip.text_features(["a dog rides a bike"])
    assert res["clip_text"] == pytest.approx(float(clip.model.logit_scale.exp() * (e @ t.T).mean()), rel=1e-5)
    assert scorer.score(item, video, video)["clip_dir"] == 0.0
    swapped = Item("k2", "object", "i", "a man rides a bike", "a dog rides a bike", frames=still)
    assert scorer.score(swapped, still, video)["clip_dir"] == pytest.approx(-res["clip_dir"], abs=1e-5)


def test_missing_models_are_one_sentence(tmp_path, models):
    with pytest.raises(EveditError, match="huggingface-cli download"):
        CLIPScorer.from_pretrained(tmp_path / "nothing")
    with pytest.raises(EveditError, match="evedit convert viclip"):
        load_tgve_scorer(("viclip",))
    bin_only = tmp_path / "bin"
    tiny_clip(bin_only)
    (bin_only / "model.safetensors").rename(bin_only / "pytorch_model.bin")
    with pytest.raises(EveditError, match="safetensors"):
        CLIPScorer.from_pretrained(bin_only)


def test_scoring_submitted_outputs_end_to_end(tmp_path, data, models):
    with pytest.warns(UserWarning):
        items = tgve_items(data)
    sub = tmp_path / "team_videos"
    for it in items:  # a "system" that returns each input, reversed in time, in the submission layout
        save_output(sub, it.key, it.load()[::-1].copy(), ".jpg")
    opts = EvalOptions(benchmark="tgve", data=data, out=tmp_path / "run", outputs=(sub,), samples=2, progress=False,
                       **models)
    with pytest.warns(UserWarning):
        doc = run_eval(opts)
    entry = doc["editors"]["team_videos"]
    assert entry["n"] == 8 and set(entry["per_task"]) == {"style", "object", "background", "multiple"}
    assert set(entry["metrics"]) == {"pick_score", "clip_frame", "viclip_dir", "viclip_out", "clip_text", "clip_dir"}
    assert all(v is not None for v in entry["metrics"].values())
    md = (tmp_path / "run/summary.md").read_text()
    assert "| TGVE | EVE (paper) | 20.76 | 0.922 | 0.221 | 0.262 |" in md
    assert (tmp_path / "run/samples/DAVIS_480p__bmx-rider__style.png").is_file()


def test_tgve_plus_identity_run_writes_a_valid_submission(tmp_path, models):
    data = write_tgve(tmp_path / "t")
    write_tgve_plus_rows(data / "tgve_plus.jsonl")
    opts = EvalOptions(benchmark="tgve-plus", editors=["identity"], data=data, out=tmp_path / "run", samples=0,
                       progress=False, metrics=["viclip"], viclip=models["viclip"])
    doc = run_eval(opts)
    metrics = doc["editors"]["identity"]["metrics"]
    assert set(metrics) == {"viclip_dir", "viclip_out"}
    assert metrics["viclip_dir"] == 0.0 and -1.0 <= metrics["viclip_out"] <= 1.0
    frames = sorted((tmp_path / "run/videos/identity/youtube_480p/cat-dog-play/add-2").glob("*.jpg"))
    assert [f.name for f in frames[:2]] == ["00000.jpg", "00001.jpg"] and len(frames) == 8
