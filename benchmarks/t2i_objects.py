"""Does the backbone keep objects or only backgrounds? The SDEdit round trip, inside and outside objects.

For each model folder: the first frame of ``--items`` test-split examples is encoded, noised to
step t (one fixed draw), denoised by the backbone alone with DDIM and classifier-free guidance on
its input caption and decoded (``evedit.training.quality.sdedit_round_trip``), and scored
by PSNR against the frame **inside the objects** (their visible masks) and **outside** them. The
``codec`` row is the frame encoded and decoded without noise: the ceiling of both figures. A
backbone that keeps the background from t = 500 but not the objects cannot draw objects, whatever
the adapters on it do.

Usage: ``python benchmarks/t2i_objects.py --model models/shapeworld --model runs/dc/teachers``
(one table per model; ``--write`` puts them in ``benchmarks/results/t2i_objects.md``).
"""

from __future__ import annotations

import argparse
import platform
from datetime import date
from pathlib import Path

import numpy as np
import torch

from evedit.eval.metrics import psnr
from evedit.models import load_model
from evedit.training.quality import sdedit_round_trip
from evedit.training.stages.common import to_uint8
from evedit.world import SPLITS, WorldConfig, make_example, visible_masks
from evedit.world.datasets import image_tensor



def frames_and_masks(items: int) -> tuple[torch.Tensor, list[str], np.ndarray]:
    cfg, xs, caps, masks = WorldConfig(frames=8, size=64), [], [], []
    for i in range(items):
        ex = make_example(SPLITS["test"][0] + i, "color", cfg)
        xs.append(image_tensor(ex.clip[0]))
        caps.append(ex.edit.input_caption)
        masks.append(visible_masks(ex.scene, 8, 64)[0].any(0))
    return torch.stack(xs), caps, np.stack(masks)


def table(folder: str, items: int, levels: list[int], steps: int, guidance: float) -> list[str]:
    model = load_model(folder)
    x, caps, masks = frames_and_masks(items)
    truth = to_uint8(x)
    lines = [f"### `{folder}`", "", "| from t | inside objects dB | outside dB |", "|---|---:|---:|"]
    for t in [0, *levels]:
        out = to_uint8(sdedit_round_trip(model, x, caps, t, steps, guidance, torch.Generator().manual_seed(0)))
        lines.append(f"| {'codec only' if t == 0 else t} | {psnr(out, truth, mask=masks):.2f} "
                     f"| {psnr(out, truth, mask=~masks):.2f} |")
    return lines + [""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", action="append", required=True, help="model folder (repeatable)")
    ap.add_argument("--items", type=int, default=64)
    ap.add_argument("--t", type=int, nargs="+", default=[300, 500, 700])
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--guidance", type=float, default=4.0)
    ap.add_argument("--write", action="store_true", help="write benchmarks/results/t2i_objects.md")
    args = ap.parse_args()
    torch.set_num_threads(1)
    lines = ["# The backbone's round trip inside and outside objects", "",
             f"{date.today()}, {platform.machine()}. First frames of the first {args.items} test-split "
             f"examples, DDIM {args.steps} from t with CFG {args.guidance} on the input caption; PSNR "
             "inside the objects' visible masks and outside them.",
             "Command: `python benchmarks/t2i_objects.py " + " ".join(f"--model {m}" for m in args.model)
             + " --write`.", ""]
    for folder in args.model:
        lines += table(folder, args.items, args.t, args.steps, args.guidance)
    text = "\n".join(lines)
    print(text)
    if args.write:
        Path(__file__).parent.joinpath("results", "t2i_objects.md").write_text(text)


if __name__ == "__main__":
    main()
