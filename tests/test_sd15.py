"""The SD 1.5 family loader on tiny random parts saved in exactly the hub layouts."""

import json

import pytest
import torch
from diffusers import (
    AutoencoderKL, ControlNetModel, DDIMScheduler, MotionAdapter, UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from evedit.errors import EveditError
from evedit.models import Conditioning, SD15Sources, load_model, save_model
from evedit.models.sd15 import load_sd15

CORPUS = ["a photo of a cat", "make the car red", "a dog on the beach", "in watercolor style"] * 20


def write_tiny_sd15(root):
    """base/ (unet, vae, text_encoder, tokenizer, scheduler), controlnet/, motion_adapter/."""
    torch.manual_seed(0)
    base = root / "base"
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), layers_per_block=1,
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8,
    )
    unet.save_pretrained(base / "unet")
    AutoencoderKL(
        block_out_channels=(32, 64), down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=16,
    ).save_pretrained(base / "vae")
    tokenizer = CLIPTokenizer(vocab={"<|startoftext|>": 0, "<|endoftext|>": 1}, merges=[],
                              model_max_length=77)
    tokenizer = tokenizer.train_new_from_iterator(CORPUS, vocab_size=120)
    tokenizer.save_pretrained(base / "tokenizer")
    CLIPTextModel(CLIPTextConfig(
        hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )).save_pretrained(base / "text_encoder")
    DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                  prediction_type="epsilon").save_pretrained(base / "scheduler")
    ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32)).save_pretrained(
        root / "controlnet")
    MotionAdapter(block_out_channels=(32, 64), motion_layers_per_block=1,
                  motion_num_attention_heads=4, motion_norm_num_groups=8).save_pretrained(
        root / "motion_adapter")
    return SD15Sources(base=str(base), controlnet=str(root / "controlnet"),
                       motion_adapter=str(root / "motion_adapter"))


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    return write_tiny_sd15(tmp_path_factory.mktemp("sd15"))


def test_sd15_parts_load_and_every_denoiser_runs(sources, tmp_path):
    model = load_sd15(sources)
    assert model.spec.cond_space == "pixel" and model.spec.prompt_routing == "instruction"
    assert model.schedule.config.prediction_type == "epsilon"
    assert not model.schedule.config.zero_terminal_snr
    text = model.text_encoder(["make the car red", "a dog"])
    assert text.hidden_states.shape == (2, 77, 32)
    b, f = 2, 3
    x = torch.randn(b, 4, f, 8, 8)
    cond = Conditioning(caption=text.hidden_states, instruction=text.hidden_states,
                        source=torch.rand(b, 3, f, 16, 16), first_frame=torch.randn(b, 4, 8, 8))
    model.add_alignment_lora(rank=4)
    with torch.no_grad():
        outs = {k: model.denoiser(k)(x, torch.tensor([10, 900]), cond)
                for k in ("edit", "video", "pnp", "student")}
    assert all(o.shape == x.shape for o in outs.values())
    folder = save_model(model, tmp_path / "aligned")
    manifest = json.loads((folder / "evedit_model.json").read_text())
    assert manifest["spec"]["text_encoder"] == "clip" and "text_encoder" in manifest["parts"]
    again = load_model(folder)
    with torch.no_grad():
        out = again.denoiser("student")(x, torch.tensor([10, 900]), cond)
    assert torch.equal(out, outs["student"])


def test_sd15_missing_or_pickled_sources_are_refused(sources, tmp_path):
    missing = SD15Sources(base="nobody/not-a-cached-model", controlnet=sources.controlnet,
                          motion_adapter=sources.motion_adapter)
    with pytest.raises(EveditError, match="neither a local folder nor in the local Hugging Face"):
        load_sd15(missing)
    (tmp_path / "cn").mkdir()
    (tmp_path / "cn" / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(EveditError, match="pickle"):
        load_sd15(SD15Sources(base=sources.base, controlnet=str(tmp_path / "cn"),
                              motion_adapter=sources.motion_adapter))


def test_sd15_edit_adapter_finds_a_region(sources):
    """`--region auto`'s estimate on the SD 1.5 family's pixel-space ControlNet (as on ShapeWorld's)."""
    from evedit.editing.auto_region import estimate_region

    model = load_sd15(sources)
    text = model.text_encoder(["make the car red", ""]).hidden_states
    cond = Conditioning(caption=text[:1], instruction=text[:1], source=torch.rand(1, 3, 3, 16, 16))
    latents = torch.randn(1, 4, 3, 8, 8)
    noises = [torch.randn(latents.shape, generator=torch.Generator().manual_seed(s)) for s in (0, 1)]
    with torch.no_grad():
        region = estimate_region(model, cond, text[1:], latents, noises)
    assert region.shape == (1, 1, 3, 8, 8) and set(region.unique().tolist()) <= {0.0, 1.0}
    assert (region.amax(dim=(-2, -1)) == 1).all()
