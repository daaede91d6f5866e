"""Batched guided teacher calls equal the guidance rules applied to separate calls."""

import torch

from evedit.diffusion import cfg, dual_guidance
from evedit.models.guided import edit_teacher_guided, text_guided
from model_utils import inputs, perturb_new_branches, tiny_model


def test_guided_calls_match_separate_calls():
    model = tiny_model()
    perturb_new_branches(model)
    x, t, cond = inputs()
    null = torch.randn(1, 32, 384)
    nulls = null.expand(2, -1, -1)
    edit, video = model.denoiser("edit"), model.denoiser("video")
    with torch.no_grad():
        full = edit(x, t, cond)
        img = edit(x, t, cond.replace(caption=nulls, instruction=nulls))
        unc = edit(x, t, cond.replace(caption=nulls, instruction=nulls, source=cond.source * 0))
        want = dual_guidance(unc, img, full, 1.5, 4.0)
        got = edit_teacher_guided(edit, x, t, cond, null, image_scale=1.5, text_scale=4.0)
        assert torch.allclose(got, want, atol=1e-5)
        assert torch.equal(edit_teacher_guided(edit, x, t, cond, null, 1.0, 1.0), full)
        c = video(x, t, cond)
        u = video(x, t, cond.replace(caption=nulls, instruction=nulls))
        assert torch.allclose(text_guided(video, x, t, cond, null, 3.0), cfg(u, c, 3.0), atol=1e-5)
