"""ShapeCLIP, one-attribute-off captions, the task classifier and their two training stages."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, default_collate

from evedit.errors import EveditError
from evedit.eval.captions import ATTRIBUTES, one_attribute_off, one_attribute_off_captions
from evedit.models.shapeclip import ShapeCLIP, clip_loss
from evedit.models.task_classifier import TaskClassifier
from evedit.training.stage import Stage
from evedit.world import TASKS, background_phrase, caption, image_tensor, make_example

ROOT = Path(__file__).resolve().parents[1]


def tiny_clip(**kw) -> ShapeCLIP:
    torch.manual_seed(0)
    return ShapeCLIP(channels=(8, 8, 16, 16), embed_dim=32, temporal_heads=2, **kw)


def stage_cfg(name: str) -> dict:
    return OmegaConf.to_container(OmegaConf.load(ROOT / "configs" / "tiny" / f"{name}.yaml"))["stage"]


# ----------------------------------------------------------------------------- ShapeCLIP


def test_shapeclip_shapes_and_normalisation():
    model = tiny_clip()
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    maps = model.feature_maps(x)
    assert [tuple(m.shape) for m in maps] == [(3, 8, 32, 32), (3, 8, 16, 16), (3, 16, 8, 8), (3, 16, 4, 4)]
    img = model.image_features(x)
    vid = model.video_features(torch.rand(2, 3, 5, 64, 64) * 2 - 1)
    txt = model.text_features(torch.randn(4, 384))
    assert img.shape == (3, 32) and vid.shape == (2, 32) and txt.shape == (4, 32)
    for e in (img, vid, txt):
        torch.testing.assert_close(e.norm(dim=-1), torch.ones(len(e)))
    assert model.logit_scale.item() == pytest.approx(1 / 0.07, rel=1e-5)
    with torch.no_grad():
        model.log_logit_scale.fill_(10.0)
    assert model.logit_scale.item() == pytest.approx(100.0)  # clamped like CLIP
    with pytest.raises(ValueError):
        model.video_features(x)  # a video must be (B, C, F, H, W)


def test_shapeclip_stem_sees_full_resolution(tmp_path):
    """The stem runs at 64 x 64 before the stride-2 blocks; the maps a discriminator reads keep
    their shapes, and a saved model rebuilds its stem from the config."""
    model = tiny_clip(stem=4)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    assert [tuple(m.shape) for m in model.feature_maps(x)] == [(2, 8, 32, 32), (2, 8, 16, 16), (2, 16, 8, 8), (2, 16, 4, 4)]
    assert model.blocks[0].down.in_channels == 4 and model.stem_block.down.stride == (1, 1)
    with torch.no_grad():  # a one-pixel change reaches the embedding through the stem
        y = x.clone()
        y[:, :, 10, 10] = -x[:, :, 10, 10]
        assert not torch.allclose(model.image_features(x), model.image_features(y))
    model.save_pretrained(tmp_path)
    again = ShapeCLIP.from_pretrained(tmp_path)
    torch.testing.assert_close(again.image_features(x), model.image_features(x))
    assert tiny_clip().stem_block is None  # stem=0: the earlier architecture, loadable as before


def test_video_tower_starts_as_image_tower():
    """Zero-initialised temporal layer: a still clip embeds exactly like its frame."""
    model = tiny_clip()
    frame = torch.rand(2, 3, 64, 64) * 2 - 1
    still = frame[:, :, None].expand(-1, -1, 4, -1, -1)  # (2, 3, 4, H, W)
    torch.testing.assert_close(model.video_features(still), model.image_features(frame), atol=1e-5, rtol=1e-5)


def test_shapeclip_save_load_round_trip(tmp_path):
    model = tiny_clip(text_hidden=16)
    model.set_text_whitening(torch.nn.functional.normalize(torch.randn(50, 384), dim=-1))
    model.save_pretrained(tmp_path / "shapeclip")
    assert (tmp_path / "shapeclip" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = ShapeCLIP.from_pretrained(tmp_path / "shapeclip", use_safetensors=True)
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x, t = torch.rand(2, 3, 64, 64), torch.randn(2, 384)
    assert torch.equal(model.image_features(x), loaded.image_features(x))
    assert torch.equal(model.text_features(t), loaded.text_features(t))


def test_contrastive_training_separates_matched_from_shuffled(minilm):
    """A few dozen steps on 8 ShapeWorld (frame, caption) pairs: matched loss drops below shuffled."""
    examples = [make_example(seed) for seed in range(8)]
    images = torch.stack([image_tensor(ex.clip[0]) for ex in examples])
    pooled = minilm([ex.edit.input_caption for ex in examples]).pooled
    model = tiny_clip()
    model.set_text_whitening(pooled, eps=0.1)
    shuffled = torch.roll(torch.arange(8), 1)

    def losses():
        with torch.no_grad():
            img, txt = model.image_features(images), model.text_features(pooled)
            matched = clip_loss(img, txt, model.logit_scale)["loss"]
            wrong = clip_loss(img, txt[shuffled], model.logit_scale)["loss"]
        return matched.item(), wrong.item()

    m0, w0 = losses()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    for _ in range(40):
        loss = clip_loss(model.image_features(images), model.text_features(pooled), model.logit_scale)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    m1, w1 = losses()
    assert abs(m0 - w0) < 0.5  # untrained: pairing does not matter
    assert m1 < m0 - 0.5 and m1 < w1 - 1.0


# ----------------------------------------------------------------------------- captions


def _changed(scene, other) -> list[tuple[int | None, str]]:
    """(object index or None for the background, attribute) pairs where the scenes differ."""
    out = [(None, "background")] if scene.background != other.background else []
    for k, (a, b) in enumerate(zip(scene.objects, other.objects)):
        out += [(k, f) for f in ("color", "shape", "texture", "size") if getattr(a, f) != getattr(b, f)]
    return out


def _texture_words(text: str) -> tuple[int, int]:
    words = text.replace(",", " ").split()
    return sum(w in ("striped", "stripes") for w in words), sum(w in ("dotted", "dots") for w in words)


@pytest.mark.parametrize("seed", range(6))
def test_one_attribute_off_captions(seed):
    scene = make_example(seed).scene
    true, chosen = one_attribute_off(scene, 9, np.random.default_rng(seed), phrasing_seed=seed)
    assert true == caption(scene, np.random.default_rng(seed))
    texts = [t for t, _ in chosen]
    assert len(texts) == 9 and len({true, *texts}) == 10
    assert {p.attribute for _, p in chosen} == set(ATTRIBUTES)  # every kind is represented
    for text, p in chosen:
        assert text == caption(p.scene, np.random.default_rng(seed))  # same phrasing
        assert _changed(scene, p.scene) == [(p.target, p.attribute)]  # exactly one attribute
        assert p.old != p.new
        if p.attribute == "background":
            assert background_phrase(p.scene.background) in text and background_phrase(scene.background) not in text
        elif p.attribute == "texture":
            assert _texture_words(text) != _texture_words(true)
        else:
            assert text.split().count(p.new) + text.count(p.new + ",") > true.split().count(p.new) + true.count(
                p.new + ",")
    assert one_attribute_off_captions(scene, 9, np.random.default_rng(seed), seed) == (true, texts)


# ----------------------------------------------------------------------------- task classifier


def test_task_classifier_save_load_and_predict(tmp_path, minilm):
    torch.manual_seed(0)
    model = TaskClassifier(tasks=list(TASKS), hidden=16)
    model.save_pretrained(tmp_path / "tc")
    loaded = TaskClassifier.from_pretrained(tmp_path / "tc", use_safetensors=True)
    assert loaded.tasks == TASKS
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    out = loaded.predict(["make the red circle blue", "remove the dog"], text_encoder=minilm)
    assert len(out) == 2
    for task, p in out:
        assert task in TASKS and isinstance(p, float) and 0.0 <= p <= 1.0
    assert loaded.predict([], text_encoder=minilm) == []


def test_task_classifier_stage_learns_heldout_phrasings(minilm):
    from evedit.training.stages.task_classifier import TaskClassifierStage

    stage = TaskClassifierStage.from_config({"hidden": 64, "train_items": 140, "eval_items": 56})
    data = stage.dataset("train")
    heldout = stage.dataset("val")
    assert {data[i]["instruction"] for i in range(0, 140, 14)}.isdisjoint(
        {heldout[i]["instruction"] for i in range(0, 56, 14)})
    opt = torch.optim.AdamW(stage.model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    loader = DataLoader(data, batch_size=28, shuffle=True, generator=gen)
    for _ in range(15):
        for batch in loader:
            loss = stage.loss(batch, gen)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
    items = [heldout[i] for i in range(len(heldout))]
    acc, _ = stage._accuracy([x["instruction"] for x in items], [(x["task"],) for x in items])
    assert acc > 0.4  # chance is 1/14
    assert [t for t, _ in stage.predict(["segment the red circle"])] == ["segment"]


# ----------------------------------------------------------------------------- stages


def _check_only_trainable_changes(stage, steps: int = 2, batch_size: int = 2) -> dict:
    """Run a plain AdamW loop over ``trainable_modules``; assert every other module is untouched."""
    trainable = stage.trainable_modules()
    frozen = [m for m in stage.modules().values() if all(m is not t for t in trainable)]
    assert frozen and all(not p.requires_grad for m in frozen for p in m.parameters())
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in frozen]
    trained_before = [{k: v.clone() for k, v in m.state_dict().items()} for m in trainable]
    opt = torch.optim.AdamW([p for m in trainable for p in m.parameters()], lr=1e-3)
    loader = DataLoader(stage.dataset("train"), batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    for _, batch in zip(range(steps), loader):
        terms = stage.loss(batch, torch.Generator().manual_seed(0))
        assert terms["loss"].ndim == 0 and torch.isfinite(terms["loss"])
        opt.zero_grad()
        terms["loss"].backward()
        opt.step()
    for m, state in zip(frozen, before):
        assert all(p.grad is None for p in m.parameters())
        assert all(torch.equal(v, state[k]) for k, v in m.state_dict().items())
    changed = [any(not torch.equal(v, s[k]) for k, v in m.state_dict().items())
               for m, s in zip(trainable, trained_before)]
    assert all(changed)
    return terms


def test_clip_stage_protocol_freezing_and_export(tmp_path):
    from evedit.training.stages.clip import ClipStage, ClipStageConfig

    cfg = stage_cfg("clip")
    assert set(cfg) <= {f.name for f in fields(ClipStageConfig)}
    stage = ClipStage.from_config(cfg)
    assert isinstance(stage, Stage) and stage.name == "clip"
    assert stage.trainable_modules() == [stage.model]
    item = stage.dataset("train")[3]
    g = 1 + cfg["hard_negatives"]
    assert item["clip"].shape == (3, 8, 64, 64) and item["images"].shape == (g, 3, 64, 64)
    assert len(item["captions"]) == g and item["valid"].shape == (g,)
    assert torch.equal(stage.dataset("train")[3]["images"], item["images"])  # deterministic by index
    terms = _check_only_trainable_changes(stage)
    assert {"loss", "image_loss", "video_loss"} <= set(terms)
    metrics = stage.evaluate(1)
    assert 0.0 <= metrics["image_top1"] <= 1.0 and 0.0 <= metrics["video_top1"] <= 1.0
    paths = stage.sample(tmp_path / "samples", 2)
    assert [p.suffix for p in paths] == [".png", ".txt"] and all(p.is_file() for p in paths)
    stage.export(tmp_path / "export")
    loaded = ShapeCLIP.from_pretrained(tmp_path / "export" / "shapeclip", use_safetensors=True)
    assert all(torch.equal(a, b) for a, b in zip(stage.model.state_dict().values(), loaded.state_dict().values()))
    with pytest.raises(EveditError):
        ClipStage.from_config({"no_such_option": 1})


def test_clip_stage_val_groups_are_true_negatives():
    """Every validation sibling renders differently from the scene, and captions are all distinct."""
    from evedit.training.stages.clip import ShapeCLIPDataset

    data = ShapeCLIPDataset("val", 4, 9)
    batch = default_collate([data[i] for i in range(4)])
    assert batch["images"].shape == (4, 10, 3, 64, 64)
    for i in range(4):
        caps = [col[i] for col in batch["captions"]]
        assert batch["valid"][i].all() and len(set(caps)) == 10
        imgs = batch["images"][i]
        assert all(not torch.equal(imgs[0], imgs[j]) for j in range(1, 10))


def test_task_classifier_stage_protocol_and_freezing(tmp_path):
    from evedit.training.stages.task_classifier import TaskClassifierStage

    stage = TaskClassifierStage.from_config(stage_cfg("task-classifier"))
    assert isinstance(stage, Stage) and stage.name == "task-classifier"
    assert stage.trainable_modules() == [stage.model]
    _check_only_trainable_changes(stage)
    metrics = stage.evaluate()
    assert set(metrics) == {"heldout_phrasing_acc", "seen_phrasing_acc", "paraphrase_acc"}
    assert all(0.0 <= v <= 1.0 for v in metrics.values())
    assert stage.sample(tmp_path / "s", 2)[0].is_file()
    stage.export(tmp_path / "export")
    assert TaskClassifier.from_pretrained(tmp_path / "export" / "task_classifier").tasks == TASKS
    with pytest.raises(EveditError):
        TaskClassifierStage.from_config({"hidden": "wide"})
