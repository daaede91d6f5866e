"""Where an edit teacher loses what it should keep: the codec, or the backbone and adapter?

For test triplets of each local task, PSNR against the true edit, split by ShapeWorld's edit
footprint (:func:`evedit.world.edit_footprint`):

- ``keep``: outside the footprint, the pixels the edit must leave as they are;
- ``edit``: inside it;
- ``codec keep``: the input frame through the codec alone, outside the footprint: the most any
  editor on this codec can keep there.

The gap between ``codec keep`` and the teacher's ``keep`` is what the denoising (backbone +
ControlNet, from noise, from the instruction alone) loses on pixels it only has to copy.
Run: ``python benchmarks/edit_fidelity.py --model models/shapeworld [--per-task 16] [--steps 25]
[--image-scale S]``.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch.utils.data import default_collate

from evedit.models import load_model
from evedit.models.codec import decode_video, encode_video
from evedit.training.quality import guided_edits
from evedit.world import EditTripletDataset, edit_footprint

TASKS = ("color", "texture", "shape", "add", "remove")


def masked_psnr(a: torch.Tensor, b: torch.Tensor, mask: np.ndarray) -> float:
    """PSNR (dB) of images in [-1, 1] (3, H, W) over the pixels where ``mask`` (H, W) is True."""
    m = torch.from_numpy(mask)
    err = ((a.clamp(-1, 1) - b.clamp(-1, 1)) / 2).pow(2)[:, m].mean()
    return float(10 * torch.log10(1 / err.clamp(min=1e-10)))


@torch.no_grad()
def task_rows(model, task: str, per_task: int, steps: int, image_scale: float | None) -> dict[str, float]:
    data = EditTripletDataset("test", per_task, tasks=(task,))
    batch = default_collate([data[i] for i in range(per_task)])
    edits = guided_edits(model, batch, None, steps, seed=0, image_scale=image_scale)
    codec = decode_video(model.vae, encode_video(model.vae, batch["input_image"][:, :, None]))[:, :, 0]
    rows = {"keep": [], "edit": [], "codec keep": []}
    for i in range(per_task):
        ex, f = data.example_frame(i)
        inside = edit_footprint(ex)[f]
        truth = batch["output_image"][i]
        rows["keep"].append(masked_psnr(edits[i], truth, ~inside))
        rows["edit"].append(masked_psnr(edits[i], truth, inside))
        rows["codec keep"].append(masked_psnr(codec[i], truth, ~inside))
    return {k: float(np.mean(v)) for k, v in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/shapeworld")
    parser.add_argument("--per-task", type=int, default=16)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--image-scale", type=float, help="ip2p image guidance (default: the teacher's, 1.5)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.model)
    print(f"model {args.model}, {args.per_task} test frames per task, DDIM {args.steps}, instruction alone, "
          f"image guidance {args.image_scale or 'default'}")
    print("| task | keep dB | codec keep dB | lost by denoising dB | edit dB |")
    print("|---|---:|---:|---:|---:|")
    for task in TASKS:
        r = task_rows(model, task, args.per_task, args.steps, args.image_scale)
        print(f"| {task} | {r['keep']:.2f} | {r['codec keep']:.2f} | {r['codec keep'] - r['keep']:.2f} | "
              f"{r['edit']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
