"""Whose loss is it at mid noise, the backbone's or the edit adapter's?

For test triplets of each local task, both started from the *input* frame noised to t (one noise
draw) and finished by DDIM on the same schedule, PSNR against the true edit outside the edit's
footprint (the pixels to keep):

- ``backbone``: the frozen backbone alone with the input's caption (text guidance 4, the t2i
  round trip's), no adapter: what it gives back on its own;
- ``teacher``: the edit teacher with the instruction alone (``edit_fidelity.py``'s ``input@t``);
- ``codec``: the input frame through the codec alone.

``teacher - backbone`` is what the edit adapter adds on pixels it only has to copy.
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
from evedit.training.quality import guided_edits
from evedit.world import EditTripletDataset, edit_footprint


@torch.no_grad()
def backbone_from(model, images: torch.Tensor, captions: list[str], t0: int, steps: int, seed: int = 0):
    """The backbone alone, from ``images`` noised to the first step at or below ``t0``."""
    timesteps = [t for t in ddim_timesteps(steps) if t <= t0]
    z = encode_video(model.vae, images[:, :, None])[:, :, 0]
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(seed))
    z_t = model.schedule.add_noise(z, noise, torch.full((len(z),), timesteps[0]))
    text = model.text_encoder(captions).hidden_states
    null = model.text_encoder([""]).hidden_states.expand_as(text)

    def fn(x, t):
        c, u = model.unet(torch.cat([x, x]), torch.cat([t, t]), torch.cat([text, null])).sample.chunk(2)
        return cfg(u, c, 4.0)

    return decode_video(model.vae, ddim_sample(fn, z_t, timesteps, model.schedule)[:, :, None])[:, :, 0]


@torch.no_grad()
def task_row(model, task: str, per_task: int, t0: int, steps: int) -> dict[str, float]:
    data = EditTripletDataset("test", per_task, tasks=(task,))
    batch = default_collate([data[i] for i in range(per_task)])
    keep = [~edit_footprint(data.example_frame(i)[0])[data.example_frame(i)[1]] for i in range(per_task)]
    truth, inputs = batch["output_image"], batch["input_image"]
    made = {
        "backbone": backbone_from(model, inputs, list(batch["input_caption"]), t0, steps),
        "teacher": guided_edits(model, batch, None, steps, seed=0, start=(inputs, t0)),
        "codec": decode_video(model.vae, encode_video(model.vae, inputs[:, :, None]))[:, :, 0],
    }
    return {k: float(np.mean([masked_psnr(v[i], truth[i], keep[i]) for i in range(per_task)])) for k, v in made.items()}


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
    print("| task | backbone alone | teacher | adapter adds | codec |")
    print("|---|---:|---:|---:|---:|")
    for task in TASKS:
        r = task_row(model, task, args.per_task, args.t, args.steps)
        print(f"| {task} | {r['backbone']:.2f} | {r['teacher']:.2f} | {r['teacher'] - r['backbone']:+.2f} | "
              f"{r['codec']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
