"""A subject LoRA as the third adapter (EVE's "Additional Adapter Combinations", editing with a
personal subject): the world's subject edit and score, the subject teacher, its place in a model
folder, and FDD over the edit and subject teachers."""

import json

import numpy as np
import pytest
import torch

from evedit.errors import EveditError
from evedit.models import load_model, save_model
from evedit.models.token_lora import attach_token_lora, read_token_lora
from evedit.training.fdd import FDDConfig, align
from evedit.world import SPLITS, TASKS
from evedit.world.groups import (SUBJECT_RINGS, SubjectEditDataset, subject_edit, subject_layout,
                                 subject_score)
from model_utils import inputs, tiny_model
from test_style_group import TINY, style_folder


def subject_folder(model, root):
    """A random subject LoRA as the subject-lora stage exports it (weights named for the kind)."""
    style_folder(model, root)
    (root / "style_lora.safetensors").rename(root / "subject_lora.safetensors")
    meta = {"adapter": "subject", "rank": 4, "alpha": 4, "token": "sks"}
    (root / "lora.json").write_text(json.dumps(meta))
    return root


def test_the_subject_edit_is_exact_and_scored():
    e = subject_edit(SPLITS["test"][0] + 1)
    assert e.instruction == f"replace the {e.subject.name} with the sks star" and "sks star" in e.output_caption
    assert e.task == "shape" and e.edited_clip.shape == e.example.clip.shape
    mask, ring = subject_layout(e.subject, len(e.edited_clip), e.edited_clip.shape[1])
    for r, colour in enumerate(SUBJECT_RINGS):  # every star pixel shows its ring's colour
        assert (e.edited_clip[ring == r] == colour).all()
    assert subject_score(e.edited_clip, e.subject) == 1.0
    assert subject_score(e.example.clip, e.subject) < 0.5
    changed = (e.edited_clip != e.example.clip).any(-1)
    assert changed.any() and not (changed & ~e.footprint).any()  # only the footprint changes
    one_colour = e.edited_clip.copy()
    one_colour[mask] = SUBJECT_RINGS[0]
    assert subject_score(one_colour, e.subject) == pytest.approx(0.5)
    blurred = e.edited_clip.copy()
    blurred[mask] = np.mean(SUBJECT_RINGS, axis=0).astype(np.uint8)
    assert subject_score(blurred, e.subject) == 0.0
    again = subject_edit(SPLITS["test"][0] + 1)
    assert np.array_equal(again.edited_clip, e.edited_clip) and again.output_caption == e.output_caption
    item = SubjectEditDataset("val", 3)[2]
    assert item["task"] == TASKS.index("shape") and "sks star" in item["instruction"]
    assert item["clip"].shape == (3, 8, 64, 64)


def test_the_subject_teacher_and_a_subject_model_folder(tmp_path):
    model = tiny_model()
    lora = read_token_lora(subject_folder(model, tmp_path / "s"), "{caption}, and a sks star")
    assert lora.kind == "subject" and lora.caption("") == "a sks star"
    assert lora.caption("a red circle") == "a red circle, and a sks star"
    attach_token_lora(model, lora)
    x, t, cond = inputs()
    with pytest.raises(ValueError, match="needs a style LoRA"):
        model.denoiser("style")
    frames = model.denoiser("subject")(x, t, cond)
    assert frames.shape == x.shape and not torch.allclose(frames, model.denoiser("edit")(x, t, cond))
    assert model.motion_unet.active_adapters() == ["subject"]
    with pytest.raises(EveditError, match="already holds a subject LoRA"):
        attach_token_lora(model, read_token_lora(style_folder(model, tmp_path / "st"), "{caption}, as a zwx mosaic"))
    model.add_alignment_lora(4)
    save_model(model, tmp_path / "m")
    assert (tmp_path / "m" / "subject_lora" / "subject_lora.safetensors").is_file()
    back = load_model(tmp_path / "m", text_encoder=model.text_encoder)
    assert back.token_lora.kind == "subject" and back.has_lora
    assert torch.allclose(back.denoiser("subject")(x, t, cond), frames, atol=1e-5)


def test_fdd_over_the_edit_and_subject_teachers(minilm, tmp_path):
    model = tiny_model(text_encoder=minilm, num_tasks=len(TASKS))
    folder = subject_folder(model, tmp_path / "subject")
    cfg = FDDConfig(**{**TINY, "teachers": {"edit": 0.5, "subject": 0.5}, "data": {"kind": "subject-edits",
                    "length": 4, "frames": 2}}, token_lora=str(folder), token_template="{caption}, and a sks star",
                    out=str(tmp_path / "run"))
    align(cfg, teacher=model, progress=False)
    logs = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {"sds_subject", "g_subject", "d_subject", "sds_edit"} <= set(logs[-1]) and "sds_video" not in logs[-1]
    back = load_model(tmp_path / "run" / "model", text_encoder=minilm)
    assert back.token_lora.kind == "subject" and back.token_lora.caption("") == "a sks star"
    with pytest.raises(EveditError, match="style teacher or a subject teacher"):
        FDDConfig(teachers={"edit": 1.0, "style": 0.5, "subject": 0.5}).effective()
