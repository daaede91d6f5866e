"""Assembling the shipped model: the alignment LoRA from an align run or from a kept part folder."""

import json

import pytest
import torch

from evedit.errors import EveditError
from evedit.models.lora import lora_parameters, save_lora
from evedit.training.ship import _take_lora
from model_utils import tiny_model


def _aligned_part(tmp_path, steps=600):
    """A models/parts/align-* layout: lora/ with a trained-looking LoRA and the run's summary."""
    source = tiny_model(seed=0)
    source.add_alignment_lora(rank=4)
    with torch.no_grad():
        for p in lora_parameters(source.motion_unet):
            p.normal_()
    save_lora(source.motion_unet, tmp_path / "part" / "lora", dtype=torch.float16)
    (tmp_path / "part" / "align_summary.json").write_text(json.dumps(
        {"steps": steps, "seconds": 120.0, "config": {"steps_sds": 600, "steps_adv": 0, "batch_size": 2,
                                                       "lora_rank": 4, "disc_warmup": 0}}))
    return source, tmp_path / "part"


def test_a_part_folder_lora_is_taken_with_its_run_summary(tmp_path):
    source, part = _aligned_part(tmp_path)
    target = tiny_model(seed=1)
    card = _take_lora(target, part)
    want = [p.half().float() for p in lora_parameters(source.motion_unet)]
    got = lora_parameters(target.motion_unet)
    assert len(got) == len(want) > 0
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    assert "600 iterations (600 SDS-only + 0 with the adversarial terms)" in card


def test_a_folder_without_a_lora_is_refused_in_one_sentence(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(EveditError, match="is not an evedit model folder"):
        _take_lora(tiny_model(), tmp_path / "empty")
