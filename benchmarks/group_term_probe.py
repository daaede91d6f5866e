"""Where, over the SDS timestep, each teacher of a style or subject group pushes the student: toward
the edit, and toward or away from the style or subject (an isolating probe: teacher forward passes
only, no training).

On ``--clips`` edits of the val split (the shipped model's world), it evaluates each teacher's SDS
gradient ``g = c(t) (eps_hat - eps)`` (:func:`evedit.losses.sds_weight`, the FDD config's weighting
and guidance) at fixed timesteps and reports how far one descent step ``-g`` moves the student's
output along a direction ``d`` (``-<g, d> / |d|``, mean over clips and noises). With the latents
of the input ``s`` and of the exact result ``y``:

- ``--group style`` (colour edits; ``M`` the zwx mosaic): **token push** at the perfect answer
  ``M(y)`` along ``M(y) - y`` (negative: the term takes the mosaic off the right answer); **edit
  push** at the unedited clip's mosaic ``M(s)`` along ``M(y) - M(s)``;
- ``--group subject`` ("replace the X with the sks star"; ``p`` the result with a plain star of the
  replaced object's colour in its place): **token push** at ``y`` along ``y - p`` (negative: the
  term takes the sks star's rings off the right answer); **edit push** at ``s`` along ``y - s``.

The teachers are those of the group's alignment config (``--config``): the edit teacher (the
student's routing, the empty caption, and the instruction), the style or subject teacher (its
caption per ``token_teacher_caption``), and the edit adapter on that LoRA's backbone
(``edit-token``, :class:`evedit.models.compose.TokenEditTeacher`) reading the trigger alone or the
output caption with the trigger.

Usage: ``python benchmarks/group_term_probe.py --config configs/align-style-obj20w.yaml --clips 6``
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import torch
from torch.utils.data import default_collate

from evedit.losses import sds_weight
from evedit.models.codec import encode_video
from evedit.models.guided import edit_teacher_guided, text_guided
from evedit.training.fdd.entry import load_fdd_config
from evedit.training.fdd.run import build_state
from evedit.training.fdd.teachers import encode_batch, with_teacher_caption
from evedit.world import SPLITS, make_example
from evedit.world.datasets import clip_tensor
from evedit.world.datasets import AlignmentDataset
from evedit.world.groups import SubjectEditDataset, mosaic, subject_edit
from evedit.world.render import render_clip


def items(group: str, n: int, world) -> tuple[dict, list, list, list, list]:
    """The collated alignment batch (the datasets' own fields) and the clips ``(token_at,
    token_from, edit_at, edit_to)``: the token push is measured at ``token_at`` along
    ``token_at - token_from``, the edit push at ``edit_at`` along ``edit_to - edit_at``."""
    if group == "style":
        exs = [make_example(SPLITS["val"][0] + i, "color", world) for i in range(n)]
        batch = default_collate([AlignmentDataset("val", n, world).fields(ex) for ex in exs])
        return (batch, [mosaic(ex.edited_clip) for ex in exs], [ex.edited_clip for ex in exs],
                [mosaic(ex.clip) for ex in exs], [mosaic(ex.edited_clip) for ex in exs])
    view = SubjectEditDataset("val", n, world)
    edits = [subject_edit(view.seed_of(i), world) for i in range(n)]
    plain = []
    for e in edits:
        ex, k = e.example, e.example.edit.target
        scene = replace(ex.scene, objects=[replace(o, shape="star") if j == k else o
                                           for j, o in enumerate(ex.scene.objects)])
        plain.append(render_clip(scene, ex.config.frames, ex.config.size))
    return (default_collate([view[i] for i in range(n)]), [e.edited_clip for e in edits], plain,
            [e.example.clip for e in edits], [e.edited_clip for e in edits])


def latents(model, clips) -> torch.Tensor:
    return encode_video(model.vae, torch.stack([clip_tensor(c) for c in clips]))


def push(model, fn, x0: torch.Tensor, d: torch.Tensor, t: int, kind: str, seeds: list[int]) -> float:
    """Mean of ``-<g, d> / |d|`` over items and ``seeds`` at timestep ``t``."""
    tt = torch.full((x0.shape[0],), t, dtype=torch.long)
    w = sds_weight(kind, model.schedule.alpha_bar(tt, x0))
    out = []
    for s in seeds:
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(s))
        x_t = model.schedule.add_noise(x0, noise, tt)
        _, eps_hat = model.schedule.split(fn(x_t, tt), x_t, tt)
        g, dn = (w * (eps_hat - noise)).flatten(1), d.flatten(1)
        out.append((-(g * dn).sum(1) / dn.norm(dim=1)).mean().item())
    return float(np.mean(out))


def teachers(model, cfg, ab) -> dict:
    """Each probed teacher as ``fn(x_t, t) -> model output``, guided as FDD guides it."""
    token = model.denoiser(model.token_lora.kind)
    out = {model.token_lora.kind: lambda x, t: text_guided(token, x, t, ab.token_cond(), ab.null, cfg.token_scale)}
    for name, denoiser, caption in (("edit", model.denoiser("edit"), ab.caption),
                                    ("edit+lora/trigger", model.denoiser("edit-token"), ab.token_caption),
                                    ("edit+lora/output", model.denoiser("edit-token"), ab.token_cond().caption)):
        cond = ab.edit_cond().replace(caption=caption)
        out[name] = (lambda d, c: lambda x, t: edit_teacher_guided(d, x, t, c, ab.null, cfg.edit_image_scale,
                                                                    cfg.edit_text_scale))(denoiser, cond)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True, help="the group's alignment config (its teachers)")
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--noises", type=int, default=2)
    ap.add_argument("--timesteps", default="20,200,400,600,800,950")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    cfg = load_fdd_config(args.config).effective()
    model = build_state(cfg).teacher
    group = model.token_lora.kind
    batch, token_at, token_from, edit_at, edit_to = items(group, args.clips, model.spec.world_config())
    ab = encode_batch(model, batch, cfg.video_teacher_caption)
    ab = with_teacher_caption(model, ab, batch) if cfg.token_teacher_caption == "output" else ab
    x_token, x_edit = latents(model, token_at), latents(model, edit_at)
    d_token, d_edit = x_token - latents(model, token_from), latents(model, edit_to) - x_edit
    fns = teachers(model, cfg, ab)
    seeds = list(range(args.noises))
    print("| t | " + " | ".join(f"{n}: {group} push" for n in fns) + " | " + " | ".join(f"{n}: edit push" for n in fns) + " |")
    print("|---:|" + "---:|" * 2 * len(fns))
    for t in (int(v) for v in args.timesteps.split(",")):
        row = [push(model, fn, x_token, d_token, t, cfg.sds_weighting, seeds)
               for fn in fns.values()]
        row += [push(model, fn, x_edit, d_edit, t, cfg.sds_weighting, seeds) for fn in fns.values()]
        print(f"| {t} | " + " | ".join(f"{v:+.2f}" for v in row) + " |", flush=True)


if __name__ == "__main__":
    main()
