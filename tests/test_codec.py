"""The codec layer: AutoencoderKL and AutoencoderDC behind one set of functions, the ``dc`` codec
stage, and every consumer (stores, t2i, model folders) reading the class from the saved config."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from diffusers import AutoencoderDC, AutoencoderKL

from evedit.cli import main
from evedit.models import load_model, save_model
from evedit.models.codec import (
    codec_class, decode_images, decode_video, downsampling, encode_images, encode_video, fit_channel_norm,
    posterior, raw_latents,
)
from evedit.models.presets import SHAPEWORLD_DC, SHAPEWORLD_VAE
from evedit.training.stages.common import load_vae
from evedit.training.stages.codec import CodecConfig, CodecStage
from model_utils import tiny_model

TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny"


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread


@pytest.fixture(scope="module")
def dc_run(tmp_path_factory) -> Path:
    """Two steps of the ``dc`` codec stage through the CLI (the tiny recipe, architecture dc)."""
    root = tmp_path_factory.mktemp("dc")
    recipe = yaml.safe_load((TINY / "codec.yaml").read_text())
    recipe["stage"].update(architecture="dc", latent_channels=8)
    (root / "codec.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["train", "codec", "--config", str(root / "codec.yaml"), "--out", str(root / "run")]) == 0
    return root / "run"


def test_the_dc_stage_exports_an_autoencoder_dc_with_its_latent_scale(dc_run):
    folder = dc_run / "export" / "vae"
    config = json.loads((folder / "config.json").read_text())
    assert config["_class_name"] == "AutoencoderDC" and config["latent_channels"] == 8
    vae = load_vae(folder)
    assert isinstance(vae, AutoencoderDC) and codec_class(folder) is AutoencoderDC
    stage = CodecStage.from_config(yaml.safe_load((TINY / "codec.yaml").read_text())["stage"])
    images = stage._images("train", 4)
    std = float(raw_latents(vae, images).std())
    assert config["scaling_factor"] == pytest.approx(1 / std, rel=1e-3)  # same images as export
    assert float(encode_images(vae, images).std()) == pytest.approx(1.0, rel=1e-3)


def test_the_dc_loss_has_no_kl_and_the_kl_loss_keeps_it():
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    dc = CodecStage(CodecConfig(architecture="dc", latent_channels=8)).loss({"image": x})
    kl = CodecStage(CodecConfig(architecture="kl")).loss({"image": x})
    assert "kl" not in dc and "kl" in kl
    assert float(dc["loss"].detach()) == pytest.approx(float(dc["l1"] + dc["l2"]), rel=1e-5)


def test_an_unknown_architecture_is_one_sentence():
    from evedit.errors import EveditError

    with pytest.raises(EveditError, match="'kl' or 'dc'"):
        CodecStage(CodecConfig(architecture="vq"))


@torch.no_grad()
def test_one_set_of_functions_for_both_classes():
    torch.manual_seed(0)
    video = torch.rand(1, 3, 2, 64, 64) * 2 - 1
    for vae, channels in ((AutoencoderKL(**SHAPEWORLD_VAE), 4), (AutoencoderDC(**SHAPEWORLD_DC), 16)):
        vae.register_to_config(scaling_factor=0.5)
        z = encode_video(vae, video)
        assert z.shape == (1, channels, 2, 16, 16) and downsampling(vae) == 4
        assert decode_video(vae, z).shape == video.shape
        mode, std = posterior(vae, video[:, :, 0])
        assert torch.allclose(mode, z[:, :, 0], atol=1e-5)
    # a deterministic codec: sampling gives the latent itself, and a zero posterior std
    assert torch.equal(encode_video(vae, video, sample=True), z) and not std.any()


def test_a_foreign_codec_class_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "AutoencoderTiny"}))
    with pytest.raises(ValueError, match="AutoencoderTiny"):
        codec_class(tmp_path)


def _train(stage: str, root: Path, **paths) -> Path:
    """The tiny recipe of ``stage`` with the given stage paths, through the CLI; its export."""
    recipe = yaml.safe_load((TINY / f"{stage}.yaml").read_text())
    recipe["stage"].update({k: str(v) for k, v in paths.items()})
    (root / f"{stage}.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["train", stage, "--config", str(root / f"{stage}.yaml"), "--out", str(root / stage)]) == 0
    return root / stage / "export"


@pytest.fixture(scope="module")
def dc_t2i(dc_run, tmp_path_factory) -> Path:
    return _train("t2i", tmp_path_factory.mktemp("dc_t2i"), vae_path=dc_run / "export" / "vae")


def test_t2i_trains_on_the_dc_codec_with_a_unet_of_its_width(dc_t2i):
    unet = json.loads((dc_t2i / "unet" / "config.json").read_text())
    assert unet["in_channels"] == unet["out_channels"] == 8


@pytest.mark.parametrize("stage, part", [("edit-adapter", "controlnet"), ("video-adapter", "motion_adapter")])
def test_both_adapters_train_on_a_dc_backbone(dc_run, dc_t2i, tmp_path, stage, part):
    """The retrain on the DC codec: each adapter follows the backbone's latent width."""
    export = _train(stage, tmp_path, vae_path=dc_run / "export" / "vae", unet_path=dc_t2i / "unet")
    config = json.loads((export / part / "config.json").read_text())
    if part == "controlnet":  # the ControlNet reads the input frame's latent
        assert config["in_channels"] == config["conditioning_channels"] == 8
    else:  # the first-frame branch reads the first frame's latent
        assert json.loads((export / "first_frame" / "config.json").read_text())["latent_channels"] == 8


def test_a_model_folder_with_a_dc_codec_loads_back(tmp_path):
    model = tiny_model()
    torch.manual_seed(1)
    model.vae = AutoencoderDC(**{**SHAPEWORLD_DC, "latent_channels": 4, "scaling_factor": 0.7}).eval()
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert isinstance(loaded.vae, AutoencoderDC)
    x = torch.rand(1, 3, 1, 64, 64) * 2 - 1
    assert torch.allclose(encode_video(loaded.vae, x), encode_video(model.vae, x), atol=1e-5)


def test_channel_norm_gives_unit_channels_and_the_same_pixels(dc_run, tmp_path):
    """latents_mean/latents_std in the config (diffusers' SDXL convention) normalise each channel;
    decoding inverts it exactly, the folder keeps the keys, and a store tells the two spaces apart."""
    from evedit.training.store import codec_hash

    scalar = load_vae(dc_run / "export" / "vae")
    images = CodecStage.from_config(yaml.safe_load((TINY / "codec.yaml").read_text())["stage"])._images("train", 8)
    with torch.no_grad():
        raw = raw_latents(scalar, images)
    normed = load_vae(dc_run / "export" / "vae")
    normed.register_to_config(**fit_channel_norm(raw))
    normed.save_pretrained(tmp_path / "vae")
    normed = load_vae(tmp_path / "vae")
    assert len(normed.config.latents_std) == 8 and normed.config.scaling_factor == 1.0
    with torch.no_grad():
        z = encode_images(normed, images)
        assert torch.allclose(z.std((0, 2, 3)), torch.ones(8), atol=1e-3)
        assert torch.allclose(z.mean((0, 2, 3)), torch.zeros(8), atol=1e-4)
        same = decode_images(normed, z, clamp=False), decode_images(scalar, encode_images(scalar, images), clamp=False)
        assert torch.allclose(*same, atol=1e-4)
        assert torch.allclose(posterior(normed, images)[0], z)
    assert codec_hash(normed) != codec_hash(scalar)


def test_the_codec_stage_exports_a_channel_norm(tmp_path):
    recipe = yaml.safe_load((TINY / "codec.yaml").read_text())
    recipe["stage"].update(architecture="dc", latent_channels=8, channel_norm=True)
    (tmp_path / "codec.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["train", "codec", "--config", str(tmp_path / "codec.yaml"), "--out", str(tmp_path / "run"),
                 "--max-steps", "1"]) == 0
    config = json.loads((tmp_path / "run" / "export" / "vae" / "config.json").read_text())
    assert len(config["latents_mean"]) == len(config["latents_std"]) == 8 and config["scaling_factor"] == 1.0
