"""Noise schedule, samplers and guidance: known answers."""

import pytest
import torch

from evedit.diffusion import (
    NoiseSchedule, ScheduleConfig, cfg, ddim_sample, ddim_timesteps, dual_guidance,
    fixed_timesteps, kbin_timesteps,
)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_target_and_split_invert_each_other(prediction):
    s = NoiseSchedule(ScheduleConfig(prediction_type=prediction, zero_terminal_snr=False))
    x0 = torch.randn(3, 4, 2, 8, 8)
    noise = torch.randn_like(x0)
    t = torch.tensor([0, 500, 999])
    x_t = s.add_noise(x0, noise, t)
    x0_hat, eps_hat = s.split(s.target(x0, noise, t), x_t, t)
    assert torch.allclose(x0_hat, x0, atol=1e-3) and torch.allclose(eps_hat, noise, atol=1e-3)


def test_zero_terminal_snr_makes_last_step_pure_noise():
    s = NoiseSchedule()
    assert s.alphas_cumprod[-1] == 0 and s.alphas_cumprod[0] > 0.99
    x0, noise = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    assert torch.equal(s.add_noise(x0, noise, torch.tensor([999])), noise)
    plain = NoiseSchedule(ScheduleConfig(zero_terminal_snr=False, prediction_type="epsilon"))
    assert plain.alphas_cumprod[-1] > 0
    with pytest.raises(ValueError):
        NoiseSchedule(ScheduleConfig(prediction_type="sample"))


def test_schedule_matches_diffusers_and_ddim_timesteps():
    s = NoiseSchedule()
    ddim = s.ddim_scheduler()
    assert torch.allclose(ddim.alphas_cumprod.float(), s.alphas_cumprod)
    for n in (1, 3, 10, 50):
        ddim.set_timesteps(n)
        assert ddim.timesteps.tolist() == ddim_timesteps(n)
    assert fixed_timesteps(3) == [999, 666, 332]


def test_kbin_draws_one_timestep_per_bin():
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(200):
        steps = kbin_timesteps(3, 1000, g)
        assert len(steps) == 3 and steps == sorted(steps, reverse=True)
        lo = [667, 334, 0]
        hi = [999, 666, 333]
        for s, a, b in zip(steps, lo, hi):
            assert a - 1 <= s <= b
        seen.add(tuple(steps))
    assert len(seen) > 150, "timesteps must be random, not fixed"


def test_ddim_with_an_oracle_recovers_x0_exactly():
    s = NoiseSchedule()
    x0 = torch.randn(2, 4, 3, 8, 8)
    noise = torch.randn_like(x0)

    def oracle(x_t, t):
        # the true model output given the known x0
        a = s.alpha_bar(t, x_t)
        eps = (x_t - a.sqrt() * x0) / (1 - a).sqrt()
        return s.target(x0, eps, t)

    out = ddim_sample(oracle, noise, ddim_timesteps(5), s)
    assert torch.allclose(out, x0, atol=1e-4)


def test_guidance_rules():
    u, c = torch.zeros(3), torch.ones(3)
    assert torch.equal(cfg(u, c, 1.0), c) and torch.equal(cfg(u, c, 0.0), u)
    assert torch.allclose(cfg(u, c, 7.5), torch.full((3,), 7.5))
    img, full = torch.full((3,), 2.0), torch.full((3,), 3.0)
    assert torch.equal(dual_guidance(u, img, full, 1.0, 1.0), full)
    assert torch.allclose(dual_guidance(u, img, full, 1.5, 2.0), torch.full((3,), 1.5 * 2 + 2 * 1))
