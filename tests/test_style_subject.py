"""The world's style (zwx mosaic) and subject (sks star), and the style-lora / subject-lora stages."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel
from omegaconf import OmegaConf

from evedit.cli import main
from evedit.models.lora import load_lora, lora_parameters
from evedit.models.presets import SHAPEWORLD_UNET
from evedit.world import ImageCaptionDataset, make_example
from evedit.world.groups import (
    GROUT, SUBJECT_RINGS, StyleDataset, SubjectDataset, draw_subject, mosaic, style_score,
    subject_sprite,
)
from evedit.world.scene import Obj

TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny"


def test_mosaic_is_a_fixed_point_and_the_style_score_tells_it_apart():
    clip = make_example(7, "color").clip
    tiles = mosaic(clip)
    assert np.array_equal(mosaic(tiles), tiles)
    assert (tiles[:, 3::4] == GROUT).all() and (tiles[:, :, 3::4] == GROUT).all()
    assert style_score(tiles) == 1.0
    assert style_score(clip) < 0.2 and style_score(clip // 4) < 0.2  # plain, and plain but dark
    assert style_score(np.zeros_like(clip)) == 0.0
    with pytest.raises(ValueError, match="multiples of 4"):
        mosaic(clip[:, :62, :62])


def test_subject_is_drawn_in_its_rings_inside_the_star_only():
    mask, patch = subject_sprite(24)
    colours = {tuple(c) for c in patch[mask]}
    assert colours == {tuple(c) for c in SUBJECT_RINGS}
    blank = np.zeros((2, 64, 64, 3), dtype=np.uint8)
    star = Obj("star", "red", "solid", "large", 0.5, 0.5, 0.05, 0.0)
    drawn = draw_subject(blank, star)
    assert (drawn.any(-1).sum((1, 2)) == mask.sum()).all()  # every frame: exactly the star's pixels
    assert not np.array_equal(drawn[0], drawn[1])  # it moves
    assert not blank.any()  # the input is left alone


def test_datasets_caption_the_token_and_mix_in_plain_items():
    style, subject = StyleDataset("val", 8), SubjectDataset("val", 8)
    assert all(style[i]["caption"].endswith(", as a zwx mosaic") for i in range(8))
    assert all("sks star" in subject[i]["caption"] for i in range(8))
    plain = StyleDataset("val", 8, prior_prob=1.0)
    reference = ImageCaptionDataset("val", 8, edited_prob=0.0)
    for i in range(4):
        assert "zwx" not in plain[i]["caption"]
        item = plain[i]["image"]
        assert item.shape == reference[i]["image"].shape and item.min() >= -1 and item.max() <= 1


@pytest.fixture(scope="module")
def parts(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lora")
    assert main(["train", "codec", "--config", str(TINY / "codec.yaml"), "--out", str(root / "codec")]) == 0
    torch.manual_seed(0)
    UNet2DConditionModel(**SHAPEWORLD_UNET).save_pretrained(root / "unet", safe_serialization=True)
    return root


def recipe(parts: Path, folder: Path, kind: str, **stage) -> str:
    """The tiny recipe of ``kind``-lora pointed at the test's codec and backbone."""
    cfg = OmegaConf.load(TINY / f"{kind}-lora.yaml")
    cfg.stage.vae_path, cfg.stage.unet_path = str(parts / "codec" / "export" / "vae"), str(parts / "unet")
    cfg.stage = OmegaConf.merge(cfg.stage, stage)
    path = folder / f"{kind}-lora.yaml"
    OmegaConf.save(cfg, path)
    return str(path)


@pytest.mark.parametrize("kind", ["style", "subject"])
def test_lora_stage_trains_only_its_lora_and_exports_a_loadable_file(parts, tmp_path, kind):
    out = tmp_path / kind
    assert main(["train", f"{kind}-lora", "--config", recipe(parts, tmp_path, kind), "--out", str(out)]) == 0
    export = out / "export"
    info = json.loads((export / "lora.json").read_text())
    assert info["adapter"] == kind and info["rank"] == 4 and info["token"] == ("zwx" if kind == "style" else "sks")
    summary = json.loads((export / "train_summary.json").read_text())
    assert "val_loss" in summary["final_eval"]
    if kind == "style":
        assert 0 <= summary["final_eval"]["style_score"] <= 1
    else:  # the exact star passed through the backbone with the LoRA, and without it
        final = summary["final_eval"]
        assert 0 <= final["subject_score"] <= 1 and 0 <= final["subject_score_off"] <= 1

    backbone = UNet2DConditionModel.from_pretrained(parts / "unet")
    x, t, text = torch.randn(1, 4, 16, 16), torch.tensor([500]), torch.randn(1, 3, 384)
    with torch.no_grad():
        plain = backbone(x, t, text).sample
        load_lora(backbone, export, rank=4, adapter=kind, file=f"{kind}_lora.safetensors")
        styled = backbone(x, t, text).sample
    assert lora_parameters(backbone, kind) and not any(p.requires_grad for p in backbone.parameters())
    assert not torch.allclose(plain, styled)  # the trained LoRA changes the backbone's output
    original = UNet2DConditionModel.from_pretrained(parts / "unet").state_dict()
    assert all(torch.equal(original[k], v) for k, v in original.items())  # the backbone file is untouched


def test_lora_stage_refuses_a_store_and_a_codec_of_other_channels(parts, tmp_path, capsys):
    out = ["--out", str(tmp_path / "a")]
    store = recipe(parts, tmp_path, "style", data={"kind": "store", "path": str(tmp_path / "store")})
    assert main(["train", "style-lora", "--config", store, *out]) == 1
    assert "not an encoded store" in capsys.readouterr().err
    wide = tmp_path / "unet16"
    UNet2DConditionModel(**{**SHAPEWORLD_UNET, "in_channels": 16, "out_channels": 16}).save_pretrained(wide)
    assert main(["train", "style-lora", "--config", recipe(parts, tmp_path, "style", unet_path=str(wide)), *out]) == 1
    assert "16-channel" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("kind", ["style", "subject"])
def test_lora_stage_draws_its_backbones_world(parts, tmp_path, kind):
    """``stage.world`` sets the world of the training frames (a backbone of the 20 px world learns the
    token on that world's frames), not the preset's."""
    from evedit.training.stages.lora import StyleLoRAStage, SubjectLoRAStage

    world = {"small_px": 20.0, "large_px": 24.0}
    cls = StyleLoRAStage if kind == "style" else SubjectLoRAStage
    section = OmegaConf.to_container(OmegaConf.load(recipe(parts, tmp_path, kind, world=world)).stage, resolve=True)
    stage, preset = cls.from_config(section), cls.from_config({**section, "world": {}})
    drawn, plain = stage.dataset("val"), preset.dataset("val")
    assert (drawn.config.small_px, drawn.config.large_px) == (20.0, 24.0)
    assert (plain.config.small_px, plain.config.large_px) != (20.0, 24.0)
    assert not torch.equal(drawn[0]["image"], plain[0]["image"])  # same seed, larger objects
