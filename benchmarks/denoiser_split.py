"""Whose loss is it at mid noise, the backbone's or the edit adapter's?

For test triplets of each local task, both started from the *input* frame noised to t (one noise
draw) and finished by DDIM on the same schedule, PSNR against the true edit outside the edit's
footprint (the pixels to keep):

- ``backbone``: the frozen backbone alone with the input's caption (text guidance 4, the t2i
  round trip's), no adapter: what it gives back on its own;
- ``teacher``: the edit teacher with the instruction alone (``edit_fidelity.py``'s ``input@t``);
- ``codec``: the input frame through the codec alone.

``teacher - backbone`` is what the edit adapter adds on pixels it only has to copy.

The same, before the decoder: each one's final latent against the true output's latent on the
latent positions outside the footprint (max-pooled to latent resolution), as the error's share of
each channel's variance there, averaged over channels (and the worst channel). Codecs differ in
how far a latent error moves pixels (benchmarks/results/codec_latent_noise.md); this says whether
a small pixel gain is the adapter's copy or the decoder's sensitivity.
Run: ``python benchmarks/denoiser_split.py --model models/shapeworld [--t 600] [--per-task 8]
[--edit-adapter EXPORT]`` (an edit-adapter run's export in place of the folder's).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch.utils.data import default_collate

from edit_fidelity import TASKS, masked_psnr
from evedit.diffusion import ddim_sample, ddim_timesteps
from evedit.diffusion.guidance import cfg
from evedit.models import load_model
from evedit.models.codec import decode_video, encode_video
from evedit.training.quality import guided_edit_latents
from evedit.world import EditTripletDataset, edit_footprint


@torch.no_grad()
def backbone_from(model, images: torch.Tensor, captions: list[str], t0: int, steps: int, seed: int = 0):
    """The backbone alone, from ``images`` noised to the first step at or below ``t0``: latents."""
    timesteps = [t for t in ddim_timesteps(steps) if t <= t0]
    z = encode_video(model.vae, images[:, :, None])[:, :, 0]
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(seed))
    z_t = model.schedule.add_noise(z, noise, torch.full((len(z),), timesteps[0]))
    text = model.text_encoder(captions).hidden_states
    null = model.text_encoder([""]).hidden_states.expand_as(text)

    def fn(x, t):
        c, u = model.unet(torch.cat([x, x]), torch.cat([t, t]), torch.cat([text, null])).sample.chunk(2)
        return cfg(u, c, 4.0)

    return ddim_sample(fn, z_t, timesteps, model.schedule)


def latent_error(z: torch.Tensor, truth: torch.Tensor, keep: torch.Tensor) -> tuple[float, float]:
    """(mean, worst) over channels of the squared error's share of the truth's variance, on ``keep``
    positions; ``z``, ``truth`` (B, C, h, w), ``keep`` (B, h, w) bool."""
    m = keep[:, None].expand_as(truth)
    per_channel = []
    for c in range(truth.shape[1]):
        true_c, made_c = truth[:, c][m[:, c]], z[:, c][m[:, c]]
        per_channel.append(float(((made_c - true_c) ** 2).mean() / true_c.var()))
    return float(np.mean(per_channel)), float(np.max(per_channel))


@torch.no_grad()
def task_row(model, task: str, per_task: int, t0: int, steps: int) -> dict[str, float]:
    data = EditTripletDataset("test", per_task, tasks=(task,))
    batch = default_collate([data[i] for i in range(per_task)])
    keep = [~edit_footprint(data.example_frame(i)[0])[data.example_frame(i)[1]] for i in range(per_task)]
    truth, inputs = batch["output_image"], batch["input_image"]
    latents = {
        "backbone": backbone_from(model, inputs, list(batch["input_caption"]), t0, steps),
        "teacher": guided_edit_latents(model, batch, None, steps, seed=0, start=(inputs, t0)),
        "codec": encode_video(model.vae, inputs[:, :, None])[:, :, 0],
    }
    row = {}
    for k, z in latents.items():
        made = decode_video(model.vae, z[:, :, None])[:, :, 0]
        row[k] = float(np.mean([masked_psnr(made[i], truth[i], keep[i]) for i in range(per_task)]))
    true_z = encode_video(model.vae, truth[:, :, None])[:, :, 0]
    factor = truth.shape[-1] // true_z.shape[-1]
    touched = torch.nn.functional.max_pool2d((~torch.as_tensor(np.stack(keep))).float()[:, None], factor)[:, 0]
    for k in ("backbone", "teacher"):
        row[f"{k}_latent"], row[f"{k}_latent_worst"] = latent_error(latents[k], true_z, touched == 0)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/shapeworld")
    parser.add_argument("--per-task", type=int, default=8)
    parser.add_argument("--t", type=int, default=600)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--edit-adapter", help="an edit-adapter stage export to score inside --model")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.model, edit_adapter=args.edit_adapter)
    print(f"model {args.model}, {args.per_task} test frames per task, from the input noised to t = {args.t}, "
          f"DDIM {args.steps} schedule; keep dB (outside the edit's footprint)")
    print("latent error: % of each channel's variance outside the footprint, mean over channels (worst)")
    print("| task | backbone alone | teacher | adapter adds | codec | latent error, backbone | latent error, teacher |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for task in TASKS:
        r = task_row(model, task, args.per_task, args.t, args.steps)
        print(f"| {task} | {r['backbone']:.2f} | {r['teacher']:.2f} | {r['teacher'] - r['backbone']:+.2f} | "
              f"{r['codec']:.2f} | {100 * r['backbone_latent']:.1f} ({100 * r['backbone_latent_worst']:.0f}) | "
              f"{100 * r['teacher_latent']:.1f} ({100 * r['teacher_latent_worst']:.0f}) |", flush=True)


if __name__ == "__main__":
    main()
