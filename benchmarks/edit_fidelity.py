"""Where an edit teacher loses what it should keep: the codec, or the backbone and adapter?

For test triplets of each local task, PSNR against the true edit, split by ShapeWorld's edit
footprint (:func:`evedit.world.edit_footprint`):

- ``keep``: outside the footprint, the pixels the edit must leave as they are;
- ``edit``: inside it;
- ``codec keep``: the input frame through the codec alone, outside the footprint: the most any
  editor on this codec can keep there;
- ``acc``: edit accuracy (:func:`evedit.training.quality.mean_accuracy`), did the asked change happen.

The gap between ``codec keep`` and the teacher's ``keep`` is what the denoising (backbone +
ControlNet, from noise, from the instruction alone) loses on pixels it only has to copy.
``--starts`` isolates where along the sampling the kept pixels are lost: besides DDIM from noise
(``noise``), the teacher finishes the schedule from the true edit noised to t (``truth@T``: the
decisions above t are the truth's) or from the input frame noised to t (``input@T``, SDEdit), and
``codec edit`` is the true edit through the codec alone inside the footprint.
``--split val`` chooses settings (``--image-scale``, ``--text-scale``) away from the test frames;
``--caption output`` hands the backbone the true output caption instead of the empty text (an
isolation of what the backbone is told; a user has no such caption); ``--grid`` writes samples.
Run: ``python benchmarks/edit_fidelity.py --model models/shapeworld [--per-task 16] [--steps 25]
[--image-scale S] [--text-scale S] [--split val] [--caption output] [--grid FILE]
[--starts noise truth@600 truth@300 truth@100 input@600] [--tasks color,background]``.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch.utils.data import default_collate

from evedit.models import load_model
from evedit.io import write_image
from evedit.models.codec import decode_video, encode_video
from evedit.training.stages.common import grid, to_uint8
from evedit.training.quality import guided_edits, mean_accuracy
from evedit.world import EditTripletDataset, edit_footprint

TASKS = ("color", "texture", "shape", "add", "remove")


def masked_psnr(a: torch.Tensor, b: torch.Tensor, mask: np.ndarray) -> float:
    """PSNR (dB) of images in [-1, 1] (3, H, W) over the pixels where ``mask`` (H, W) is True."""
    m = torch.from_numpy(mask)
    err = ((a.clamp(-1, 1) - b.clamp(-1, 1)) / 2).pow(2)[:, m].mean()
    return float(10 * torch.log10(1 / err.clamp(min=1e-10)))


@torch.no_grad()
def start_rows(model, task: str, per_task: int, steps: int, starts: list[str]) -> dict[str, tuple[float, float]]:
    """(keep, edit) PSNR per start (see the module's docstring), and ``codec edit``."""
    data = EditTripletDataset("test", per_task, tasks=(task,), config=model.spec.world_config())
    batch = default_collate([data[i] for i in range(per_task)])
    inside = [edit_footprint(data.example_frame(i)[0])[data.example_frame(i)[1]] for i in range(per_task)]
    truth = batch["output_image"]
    codec = decode_video(model.vae, encode_video(model.vae, truth[:, :, None]))[:, :, 0]
    out = {"codec edit": (float("nan"), float(np.mean([masked_psnr(codec[i], truth[i], inside[i])
                                                      for i in range(per_task)])))}
    for start in starts:
        which, _, t0 = start.partition("@")
        frames = {"noise": None, "truth": truth, "input": batch["input_image"]}[which]
        e = guided_edits(model, batch, None, steps, seed=0, start=None if frames is None else (frames, int(t0)))
        out[start] = tuple(float(np.mean([masked_psnr(e[i], truth[i], m) for i, m in enumerate(masks)]))
                           for masks in ([~k for k in inside], inside))
    return out


def footprint_psnrs(data, indices: list[int], images: torch.Tensor, truth: torch.Tensor) -> tuple[list, list]:
    """PSNR outside and inside the edit footprint of items ``indices`` of ``data``, per item."""
    keep, edit = [], []
    for j, i in enumerate(indices):
        ex, f = data.example_frame(i)
        inside = edit_footprint(ex)[f]
        keep.append(masked_psnr(images[j], truth[j], ~inside))
        edit.append(masked_psnr(images[j], truth[j], inside))
    return keep, edit


@torch.no_grad()
def task_rows(model, task: str, per_task: int, steps: int, image_scale: float | None,
              text_scale: float | None = None, split: str = "test", grid_rows: list | None = None,
              caption: str = "none") -> dict[str, float]:
    data = EditTripletDataset(split, per_task, tasks=(task,), config=model.spec.world_config())
    batch = default_collate([data[i] for i in range(per_task)])
    captions = None if caption == "none" else list(batch[f"{caption}_caption"])  # none: what a user gives
    edits = guided_edits(model, batch, captions, steps, seed=0, image_scale=image_scale, text_scale=text_scale)
    codec = decode_video(model.vae, encode_video(model.vae, batch["input_image"][:, :, None]))[:, :, 0]
    indices, truth = list(range(per_task)), batch["output_image"]
    keep, edit = footprint_psnrs(data, indices, edits, truth)
    rows = {"keep": keep, "edit": edit, "codec keep": footprint_psnrs(data, indices, codec, truth)[0]}
    if grid_rows is not None:  # input | edit | truth, the first four frames
        shown = [to_uint8(x[:4]) for x in (batch["input_image"], edits, batch["output_image"])]
        grid_rows.extend([list(cols) for cols in zip(*shown)])
    return {**{k: float(np.mean(v)) for k, v in rows.items()}, "acc": mean_accuracy(data, 0, edits)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/shapeworld")
    parser.add_argument("--per-task", type=int, default=16)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--image-scale", type=float, help="ip2p image guidance (default: the teacher's, 1.5)")
    parser.add_argument("--text-scale", type=float, help="ip2p text guidance (default: the teacher's, 2.0)")
    parser.add_argument("--split", default="test", choices=("val", "test"),
                        help="frames to edit: val for choosing settings, test for reporting")
    parser.add_argument("--caption", default="none", choices=("none", "output", "input"),
                        help="the backbone's text: none (the instruction alone, as a user) or a true caption "
                             "(isolation: what the backbone is told)")
    parser.add_argument("--grid", help="write a PNG of input | edit | truth, four frames per task, here")
    parser.add_argument("--starts", nargs="+", help="keep / edit PSNR per start: noise, truth@T, input@T")
    parser.add_argument("--tasks", default=",".join(TASKS),
                        help="comma-separated tasks (default the local ones; background's footprint is all "
                             "but the objects, so its keep is the objects)")
    args = parser.parse_args()
    tasks = tuple(args.tasks.split(","))
    torch.set_num_threads(1)
    model = load_model(args.model)
    if args.starts:
        print(f"model {args.model}, {args.per_task} test frames per task, DDIM {args.steps} schedule, "
              "instruction alone; cells: keep dB / edit dB")
        print("| task | " + " | ".join(args.starts) + " | codec edit dB |")
        print("|---|" + "---:|" * (len(args.starts) + 1))
        for task in tasks:
            r = start_rows(model, task, args.per_task, args.steps, args.starts)
            print(f"| {task} | " + " | ".join(f"{r[s][0]:.2f} / {r[s][1]:.2f}" for s in args.starts)
                  + f" | {r['codec edit'][1]:.2f} |", flush=True)
        return
    told = "instruction alone" if args.caption == "none" else f"instruction + true {args.caption} caption"
    print(f"model {args.model}, {args.per_task} {args.split} frames per task, DDIM {args.steps}, {told}, "
          f"image guidance {args.image_scale or 'default'}, text guidance {args.text_scale or 'default'}")
    print("| task | keep dB | codec keep dB | lost by denoising dB | edit dB | edit accuracy |")
    print("|---|---:|---:|---:|---:|---:|")
    shown: list | None = [] if args.grid else None
    for task in tasks:
        r = task_rows(model, task, args.per_task, args.steps, args.image_scale, args.text_scale, args.split, shown,
                      args.caption)
        print(f"| {task} | {r['keep']:.2f} | {r['codec keep']:.2f} | {r['codec keep'] - r['keep']:.2f} | "
              f"{r['edit']:.2f} | {r['acc']:.0%} |", flush=True)
    if args.grid:
        write_image(args.grid, grid(shown))
        print(f"samples: {args.grid} (rows: {', '.join(tasks)}, four each; input | edit | truth)")


if __name__ == "__main__":
    main()
