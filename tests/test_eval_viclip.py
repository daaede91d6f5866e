"""ViCLIP: conversion of a reference-layout .pth, loading, pickle refusal, and numerics against transformers' CLIP.

The tiny checkpoint's keys come from :func:`test_eval_helpers.viclip_reference_shapes`, written out
from the reference source's module tree. Numerics, against transformers' ``CLIPTextModelWithProjection``
/ ``CLIPVisionModelWithProjection`` given the same weights: ViCLIP's text tower is CLIP's; its video
tower on one frame with a zero temporal embedding is CLIP's image tower; on T frames it is one class
token plus every frame's patch embeddings (with positions and the temporal embedding) through
CLIP's encoder, pooled at the class token.
"""

import pickle

import numpy as np
import pytest
import torch
from transformers import (CLIPTextConfig, CLIPTextModelWithProjection, CLIPVisionConfig,
                          CLIPVisionModelWithProjection)

from evedit.cli import main
from evedit.errors import EveditError
from evedit.eval.convert import convert_viclip, infer_config
from evedit.eval.viclip import load_viclip
from test_eval_helpers import VICLIP_TINY, moving_video, tiny_clip, tiny_tokenizer, tiny_viclip_pth

S = VICLIP_TINY
HEADS = 2


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("viclip")
    tok_dir = tiny_clip(root / "clip")
    state = tiny_viclip_pth(root / "ViClip-tiny.pth", vocab=len(tiny_tokenizer()))
    out = convert_viclip(root / "ViClip-tiny.pth", root / "converted", tokenizer=tok_dir, vision_heads=HEADS,
                         text_heads=HEADS)
    return out, state


def _block_map(src: str, dst: str, width: int, state: dict) -> dict:
    q, k, v = state[f"{src}.attn.in_proj_weight"].split(width)
    qb, kb, vb = state[f"{src}.attn.in_proj_bias"].split(width)
    return {
        f"{dst}.self_attn.q_proj.weight": q, f"{dst}.self_attn.k_proj.weight": k, f"{dst}.self_attn.v_proj.weight": v,
        f"{dst}.self_attn.q_proj.bias": qb, f"{dst}.self_attn.k_proj.bias": kb, f"{dst}.self_attn.v_proj.bias": vb,
        f"{dst}.self_attn.out_proj.weight": state[f"{src}.attn.out_proj.weight"],
        f"{dst}.self_attn.out_proj.bias": state[f"{src}.attn.out_proj.bias"],
        f"{dst}.layer_norm1.weight": state[f"{src}.ln_1.weight"], f"{dst}.layer_norm1.bias": state[f"{src}.ln_1.bias"],
        f"{dst}.layer_norm2.weight": state[f"{src}.ln_2.weight"], f"{dst}.layer_norm2.bias": state[f"{src}.ln_2.bias"],
        f"{dst}.mlp.fc1.weight": state[f"{src}.mlp.c_fc.weight"], f"{dst}.mlp.fc1.bias": state[f"{src}.mlp.c_fc.bias"],
        f"{dst}.mlp.fc2.weight": state[f"{src}.mlp.c_proj.weight"], f"{dst}.mlp.fc2.bias": state[f"{src}.mlp.c_proj.bias"],
    }


def hf_text(state, tok):
    cfg = CLIPTextConfig(hidden_size=S["text_width"], intermediate_size=4 * S["text_width"], num_hidden_layers=S["text_layers"],
                         num_attention_heads=HEADS, max_position_embeddings=S["context"], vocab_size=len(tok),
                         projection_dim=S["embed"], hidden_act="quick_gelu", eos_token_id=tok.eos_token_id,
                         bos_token_id=tok.bos_token_id, pad_token_id=tok.pad_token_id)
    model = CLIPTextModelWithProjection(cfg).eval()
    p = "text_encoder"
    sd = {"text_model.embeddings.token_embedding.weight": state[f"{p}.token_embedding.weight"],
          "text_model.embeddings.position_embedding.weight": state[f"{p}.positional_embedding"],
          "text_model.final_layer_norm.weight": state[f"{p}.ln_final.weight"],
          "text_model.final_layer_norm.bias": state[f"{p}.ln_final.bias"],
          "text_projection.weight": state[f"{p}.text_projection"].T}
    for i in range(S["text_layers"]):
        sd.update(_block_map(f"{p}.transformer.resblocks.{i}", f"text_model.encoder.layers.{i}", S["text_width"], state))
    model.load_state_dict(sd, strict=False)
    return model


def hf_vision(state):
    cfg = CLIPVisionConfig(hidden_size=S["width"], intermediate_size=4 * S["width"], num_hidden_layers=S["layers"],
                           num_attention_heads=HEADS, image_size=S["image"], patch_size=S["patch"],
                           projection_dim=S["embed"], hidden_act="quick_gelu")
    model = CLIPVisionModelWithProjection(cfg).eval()
    p = "vision_encoder"
    sd = {"vision_model.embeddings.patch_embedding.weight": state[f"{p}.conv1.weight"][:, :, 0],
          "vision_model.embeddings.class_embedding": state[f"{p}.class_embedding"],
          "vision_model.embeddings.position_embedding.weight": state[f"{p}.positional_embedding"],
          "vision_model.pre_layrnorm.weight": state[f"{p}.ln_pre.weight"], "vision_model.pre_layrnorm.bias": state[f"{p}.ln_pre.bias"],
          "vision_model.post_layernorm.weight": state[f"{p}.ln_post.weight"],
          "vision_model.post_layernorm.bias": state[f"{p}.ln_post.bias"],
          "visual_projection.weight": state[f"{p}.proj"].T}
    for i in range(S["layers"]):
        sd.update(_block_map(f"{p}.transformer.resblocks.{i}", f"vision_model.encoder.layers.{i}", S["width"], state))
    missing, _ = model.load_state_dict(sd, strict=False)
    assert not [k for k in missing if "position_ids" not in k], missing
    return model


def test_conversion_keeps_every_reference_key_and_infers_sizes(converted):
    from safetensors.torch import load_file

    out, state = converted
    saved = load_file(str(out / "model.safetensors"))
    assert set(saved) == set(state)
    assert all(torch.equal(saved[k], state[k]) for k in state)
    cfg = infer_config(state)
    assert (cfg.vision_width, cfg.vision_layers, cfg.patch_size, cfg.image_size, cfg.num_frames, cfg.context_length) == (
        S["width"], S["layers"], S["patch"], S["image"], S["frames"], S["context"])
    model = load_viclip(out)
    assert model.tokenizer is not None and torch.equal(model.state_dict()["temp"], state["temp"])


def test_text_tower_matches_transformers_clip(converted):
    out, state = converted
    model = load_viclip(out)
    texts = ["a man rides a bike", "remove the dog"]
    tok = model.tokenizer(texts, padding="max_length", truncation=True, max_length=S["context"], return_tensors="pt")
    with torch.no_grad():
        ref = hf_text(state, model.tokenizer)(**tok).text_embeds
    assert torch.allclose(model.text_features(texts), torch.nn.functional.normalize(ref, dim=-1), atol=1e-5)


def test_video_tower_matches_transformers_clip_blocks(converted):
    out, state = converted
    model = load_viclip(out)
    hf = hf_vision(state)
    video = moving_video(frames=S["frames"], size=S["image"])
    pixels = model.preprocess(video)  # (1, 3, T, H, W)
    frames = pixels[0].permute(1, 0, 2, 3)  # (T, 3, H, W)
    with torch.no_grad():
        # one frame, no temporal embedding: exactly CLIP's image tower
        model.vision_encoder.temporal_positional_embedding.zero_()
        one = model.vision_encoder(pixels[:, :, :1])
        assert torch.allclose(one, hf(pixel_values=frames[:1]).image_embeds, atol=1e-5)
        # T frames: CLIP embeddings per frame, + temporal embedding per patch, one class token, joint attention
        model = load_viclip(out)
        emb = hf.vision_model.embeddings(frames)  # (T, 1 + n, W), class token and positions included
        patches = emb[:, 1:] + state["vision_encoder.temporal_positional_embedding"][0][:, None]
        seq = torch.cat([emb[:1, :1], patches.reshape(1, -1, S["width"])], dim=1)
        h = hf.vision_model.encoder(inputs_embeds=hf.vision_model.pre_layrnorm(seq)).last_hidden_state
        ref = hf.visual_projection(hf.vision_model.post_layernorm(h[:, 0]))
    assert torch.allclose(model.video_features(video), torch.nn.functional.normalize(ref, dim=-1), atol=1e-5)
    assert not torch.allclose(model.video_features(video), model.video_features(video[::-1].copy()), atol=1e-4)


def test_preprocess_takes_frames2tensor_frames(converted):
    model = load_viclip(converted[0])
    video = np.zeros((17, 8, 8, 3), np.uint8)
    video[:, 0, 0, 0] = np.arange(17) * 10
    x = model.preprocess(video)
    assert x.shape == (1, 3, S["frames"], S["image"], S["image"])
    # step = 17 // 4 = 4: frames 0, 4, 8, 12 (the reference's frames[::step][:n])
    mean, std = 0.485, 0.229
    corner = (x[0, 0, :, 0, 0] * std + mean) * 255
    assert torch.allclose(corner, torch.tensor([0.0, 40.0, 80.0, 120.0]), atol=0.5)


def test_pickles_are_never_loaded_directly(converted, tmp_path):
    with pytest.raises(EveditError, match="evedit convert viclip"):
        load_viclip(tmp_path / "ViClip-InternVid-10M-FLT.pth")
    with pytest.raises(EveditError, match="No converted ViCLIP"):
        load_viclip(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "evil.pth").write_bytes(pickle.dumps({"model": Evil()}, protocol=2))
    with pytest.raises(EveditError, match="weights-only"):
        convert_viclip(tmp_path / "evil.pth", tmp_path / "never")
    assert not (tmp_path / "never").exists()
    torch.save({"model": {"foo": torch.zeros(1)}}, tmp_path / "other.pth")
    with pytest.raises(EveditError, match="not a ViCLIP state dict"):
        convert_viclip(tmp_path / "other.pth", tmp_path / "never")


def test_convert_command(tmp_path, capsys):
    tiny_viclip_pth(tmp_path / "v.pth", vocab=len(tiny_tokenizer()))
    tok = tiny_clip(tmp_path / "clip")
    code = main(["convert", "viclip", str(tmp_path / "v.pth"), str(tmp_path / "out"), "--tokenizer", str(tok)])
    assert code == 0 and "converted ViCLIP" in capsys.readouterr().out
    assert (tmp_path / "out/model.safetensors").is_file() and (tmp_path / "out/config.json").is_file()
    code = main(["convert", "viclip", str(tmp_path / "missing.pth"), str(tmp_path / "out2")])
    assert code == 1 and "does not exist" in capsys.readouterr().err
