"""Metric formulas on cases with known answers."""

import math

import numpy as np
import pytest
import torch

from evedit.errors import EveditError
from evedit.eval import metrics as M
from evedit.eval.editors import as_uint8_frames
from test_eval_helpers import moving_video


def test_psnr_identical_is_capped_and_known_value():
    v = moving_video()
    assert M.psnr(v, v.copy()) == M.PSNR_CAP
    shifted = np.clip(v.astype(int) + 10, 0, 255).astype(np.uint8)
    mse = np.mean((v.astype(float) - shifted.astype(float)) ** 2)
    assert M.psnr(v, shifted) == pytest.approx(10 * math.log10(255**2 / mse))


def test_flicker_zero_for_identical_and_static_offsets_higher_when_shuffled():
    v = moving_video(frames=8)
    assert M.flicker(v, v) == 0.0
    brighter = np.clip(v.astype(int) + 20, 0, 255).astype(np.uint8)  # same motion, other colours
    shuffled = v[np.random.default_rng(0).permutation(8)]
    assert M.flicker(brighter, v) < M.flicker(shuffled, v)
    assert M.flicker(shuffled, v) > 0.0
    assert M.flicker(v[:1], v[:1]) == 0.0  # one frame: no changes to compare


def test_structure_psnr_ignores_the_footprint():
    v = moving_video()
    footprint = np.zeros(v.shape[:3], bool)
    footprint[:, 8:22, :] = True
    out = v.copy()
    out[footprint] = 255 - out[footprint]  # change everything inside the footprint
    assert M.structure_psnr(out, v, footprint) == M.PSNR_CAP
    out[:, 0, 0] = 255 - out[:, 0, 0]  # and one pixel outside
    assert M.structure_psnr(out, v, footprint) < 60
    assert M.structure_psnr(out, v, np.ones_like(footprint)) is None  # a global edit has no outside


def test_frame_consistency_static_is_one_and_all_pairs():
    e = torch.randn(1, 8).repeat(5, 1)
    assert M.frame_consistency(e) == pytest.approx(1.0, abs=1e-6)
    x = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    sim = x @ x.T
    expected = (sim.sum() - sim.trace()) / 12  # every ordered off-diagonal pair, as the TGVE script
    assert M.frame_consistency(3 * x) == pytest.approx(float(expected), abs=1e-6)
    assert M.frame_consistency(x[:1]) is None


def test_directional_sign_flips_when_in_and_out_swap_and_zero_without_change():
    g = torch.Generator().manual_seed(0)
    e_in, e_out = torch.randn(6, 16, generator=g), torch.randn(6, 16, generator=g)
    t_in, t_out = torch.randn(1, 16, generator=g), torch.randn(1, 16, generator=g)
    forward = M.directional(e_out, e_in, t_out, t_in)
    assert M.directional(e_in, e_out, t_out, t_in) == pytest.approx(-forward, abs=1e-6)
    assert M.directional(e_in, e_in, t_out, t_in) == 0.0
    # aligned change: the image moves exactly along the text direction
    d = torch.nn.functional.normalize(t_out, dim=-1) - torch.nn.functional.normalize(t_in, dim=-1)
    base = torch.nn.functional.normalize(torch.randn(1, 16, generator=g), dim=-1)
    assert M.directional(base + 0.01 * d, base, t_out, t_in) > 0.99


def test_mean_and_scaled_cosine():
    e = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    t = torch.tensor([3.0, 0.0])
    assert M.mean_cosine(e, t) == pytest.approx(0.5)
    assert M.scaled_cosine(e, t, 100.0) == pytest.approx(50.0)


def test_match_frames_resizes_and_refuses_other_frame_counts():
    v = moving_video(frames=4, size=32)
    big = np.repeat(np.repeat(v, 2, axis=1), 2, axis=2)
    assert M.match_frames(big, v).shape == v.shape
    with pytest.raises(EveditError, match="frame count"):
        M.match_frames(v[:3], v)


@pytest.mark.parametrize("convert", [
    lambda v: v,
    lambda v: v.astype(np.float32) / 255.0,
    lambda v: torch.from_numpy(v).permute(3, 0, 1, 2).float() / 127.5 - 1.0,  # (3, F, H, W) in [-1, 1]
    lambda v: torch.from_numpy(v)[None],  # (1, F, H, W, 3)
])
def test_editor_outputs_are_normalised_to_uint8(convert):
    v = moving_video(frames=3, size=16)
    out = as_uint8_frames(convert(v))
    assert out.dtype == np.uint8 and out.shape == v.shape
    assert np.abs(out.astype(int) - v.astype(int)).max() <= 1
