"""Tiny fixtures for the evaluation tests, each saved in the layout of the real thing.

- a ShapeCLIP folder (``save_pretrained``), and a fast deterministic stand-in for MiniLM;
- CLIP / PickScore folders: a tiny ``CLIPModel`` and a ``CLIPProcessor`` (trained BPE tokenizer);
- a ViCLIP ``.pth`` whose keys and shapes are written out here from the reference source's
  module tree (independently of :mod:`evedit.eval.viclip`), wrapped as ``{"model": state_dict}``;
- a TGVE folder (CSV with section rows, a frame folder and an mp4) and TGVE+ rows.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import torch

CORPUS = ["a photo of a cat", "make the car red", "a dog on the beach", "in watercolor style",
          "a man rides a bike", "a bike in the snow", "remove the dog", "add a hat"] * 20


class FakeText:
    """MiniLM's interface (``encoder(texts).pooled`` of width 384), deterministic per string, instant."""

    class _Out:
        def __init__(self, pooled):
            self.pooled = pooled

    def __call__(self, texts):
        rows = []
        for t in texts:
            seed = int(hashlib.sha256(t.encode()).hexdigest()[:8], 16)
            rows.append(torch.randn(384, generator=torch.Generator().manual_seed(seed)))
        return self._Out(torch.nn.functional.normalize(torch.stack(rows), dim=-1))


def tiny_shapeclip(folder: Path | None = None):
    from evedit.models.shapeclip import ShapeCLIP

    torch.manual_seed(0)
    model = ShapeCLIP(channels=(8, 16, 16, 32), embed_dim=32, temporal_heads=2)
    with torch.no_grad():  # make the temporal layer non-trivial (it starts as the identity)
        for p in model.temporal.parameters():
            p.add_(0.05 * torch.randn_like(p))
    if folder is not None:
        model.save_pretrained(folder, safe_serialization=True)
    return model


def tiny_tokenizer():
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer(vocab={"<|startoftext|>": 0, "<|endoftext|>": 1}, merges=[], model_max_length=77)
    return tok.train_new_from_iterator(CORPUS, vocab_size=120)


def tiny_clip(folder: Path, projection_dim: int = 16, seed: int = 0, image_size: int = 32) -> Path:
    """A CLIPModel + CLIPProcessor saved like openai/clip-vit-large-patch14 (or PickScore_v1)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    torch.manual_seed(seed)
    tok = tiny_tokenizer()
    config = CLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                         vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                           image_size=image_size, patch_size=8),
        projection_dim=projection_dim,
    )
    CLIPModel(config).save_pretrained(folder, safe_serialization=True)
    proc = CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})
    CLIPProcessor(image_processor=proc, tokenizer=tok).save_pretrained(folder)
    return folder


# ViCLIP, tiny: the reference layout with small sizes.
VICLIP_TINY = dict(width=32, layers=2, patch=8, image=32, frames=4, embed=16, text_width=32, text_layers=2,
                   context=16)


def _block_shapes(prefix: str, width: int) -> dict[str, tuple[int, ...]]:
    """One ``ResidualAttentionBlock`` of the reference code (nn.MultiheadAttention, ln_1, mlp, ln_2)."""
    return {
        f"{prefix}.attn.in_proj_weight": (3 * width, width), f"{prefix}.attn.in_proj_bias": (3 * width,),
        f"{prefix}.attn.out_proj.weight": (width, width), f"{prefix}.attn.out_proj.bias": (width,),
        f"{prefix}.ln_1.weight": (width,), f"{prefix}.ln_1.bias": (width,),
        f"{prefix}.mlp.c_fc.weight": (4 * width, width), f"{prefix}.mlp.c_fc.bias": (4 * width,),
        f"{prefix}.mlp.c_proj.weight": (width, 4 * width), f"{prefix}.mlp.c_proj.bias": (width,),
        f"{prefix}.ln_2.weight": (width,), f"{prefix}.ln_2.bias": (width,),
    }


def viclip_reference_shapes(vocab: int, s: dict = VICLIP_TINY) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of ``ViCLIP.state_dict()`` in InternVideo's viclip.py / viclip_vision.py / viclip_text.py."""
    w, tw = s["width"], s["text_width"]
    shapes = {
        "vision_encoder.conv1.weight": (w, 3, 1, s["patch"], s["patch"]),
        "vision_encoder.class_embedding": (w,),
        "vision_encoder.positional_embedding": ((s["image"] // s["patch"]) ** 2 + 1, w),
        "vision_encoder.temporal_positional_embedding": (1, s["frames"], w),
        "vision_encoder.ln_pre.weight": (w,), "vision_encoder.ln_pre.bias": (w,),
        "vision_encoder.ln_post.weight": (w,), "vision_encoder.ln_post.bias": (w,),
        "vision_encoder.proj": (w, s["embed"]),
        "text_encoder.token_embedding.weight": (vocab, tw),
        "text_encoder.positional_embedding": (s["context"], tw),
        "text_encoder.ln_final.weight": (tw,), "text_encoder.ln_final.bias": (tw,),
        "text_encoder.text_projection": (tw, s["embed"]),
        "temp": (),
    }
    for i in range(s["layers"]):
        shapes.update(_block_shapes(f"vision_encoder.transformer.resblocks.{i}", w))
    for i in range(s["text_layers"]):
        shapes.update(_block_shapes(f"text_encoder.transformer.resblocks.{i}", tw))
    return shapes


def tiny_viclip_pth(path: Path, vocab: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in the reference layout, saved as the release is: ``torch.save({"model": sd})``."""
    g = torch.Generator().manual_seed(seed)
    state = {k: (0.2 * torch.randn(shape, generator=g) if shape else torch.tensor(0.01))
             for k, shape in viclip_reference_shapes(vocab).items()}
    for k in state:  # LayerNorms near identity, as trained ones are
        if ".ln" in k and k.endswith(".weight"):
            state[k] = 1.0 + 0.05 * torch.randn(state[k].shape, generator=g)
    torch.save({"model": state, "epoch": 10}, path)
    return state


def moving_video(frames: int = 8, size: int = 32, seed: int = 0) -> np.ndarray:
    """A bright square moving over a textured background, uint8 (F, H, W, 3)."""
    rng = np.random.default_rng(seed)
    bg = rng.integers(0, 120, (size, size, 3), dtype=np.uint8)
    out = np.repeat(bg[None], frames, axis=0)
    for f in range(frames):
        x = 2 + f * (size - 12) // max(1, frames - 1)
        out[f, 10:20, x:x + 8] = (230, 40, 40)
    return out


TGVE_VIDEOS = {"DAVIS_480p": "bmx-rider", "youtube_480p": "cat-dog-play"}


def write_tgve(root: Path, frames: int = 8, size: int = 32) -> Path:
    """A two-video TGVE folder: the CSV (with section rows), a JPEG frame folder and an mp4."""
    from evedit.io import write_video

    root.mkdir(parents=True, exist_ok=True)
    cols = ["Video name", "Our GT caption", "Style Change Caption", "Object Change Caption",
            "Background Change Caption", "Multiple Changes Caption"]
    with open(root / "LOVEU-TGVE-2023_Dataset.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        w.writerow(["DAVIS Videos:", "", "", "", "", ""])
        w.writerow(["bmx-rider", "a man rides a bike", "a man rides a bike in watercolor style",
                    "a dog rides a bike", "a man rides a bike in the snow", "a dog rides a bike in the snow"])
        w.writerow(["", "", "", "", "", ""])
        w.writerow(["Youtube Videos:", "", "", "", "", ""])
        w.writerow(["cat-dog-play", "a cat and a dog play", "a cat and a dog play in watercolor style",
                    "a cat and a fox play", "a cat and a dog play on the beach", "a fox and a dog play on the beach"])
    from PIL import Image

    folder = root / "DAVIS_480p" / "480p_frames" / "bmx-rider"
    folder.mkdir(parents=True)
    for i, f in enumerate(moving_video(frames, size, 1)):
        Image.fromarray(f).save(folder / f"{i:05d}.jpg", quality=95)
    write_video(root / "youtube_480p" / "480p_videos" / "cat-dog-play.mp4", moving_video(frames, size, 2), fps=8)
    return root


def write_tgve_plus_rows(path: Path) -> Path:
    rows = [
        {"instruction": "remove the man", "input_caption": "a man rides a bike", "output_caption": "a bike",
         "video": "DAVIS_480p/480p_frames/bmx-rider", "edit_type": "Object Removal"},
        {"instruction": "add a hat to the man", "input_caption": "a man rides a bike",
         "output_caption": "a man with a hat rides a bike", "video": "DAVIS_480p/480p_frames/bmx-rider",
         "edit_type": "Object Addition"},
        {"instruction": "add a hat to the dog", "input_caption": "a cat and a dog play",
         "output_caption": "a cat and a dog with a hat play", "video": "youtube_480p/480p_videos/cat-dog-play.mp4",
         "edit_type": "Object Addition"},
        {"instruction": "add a scarf to the dog", "input_caption": "a cat and a dog play",
         "output_caption": "a cat and a dog with a scarf play", "video": "youtube_480p/480p_videos/cat-dog-play.mp4",
         "edit_type": "Object Addition"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path
