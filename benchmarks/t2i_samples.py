"""What the backbone alone draws from a caption: a sample grid, several models side by side.

For each model folder: the first ``--items`` test-split frames of ``ImageCaptionDataset`` as the top
row (the truth the caption describes), then, for each guidance scale, ``--seeds`` rows of the
backbone's own DDIM generations with classifier-free guidance (``evedit.training.quality
.t2i_generate``, the generator of the model report's ShapeCLIP top-1). The captions are printed.
One PNG per model; the figures beside it are the model report's ``t2i.top1``.

Usage: ``python benchmarks/t2i_samples.py --model models/shapeworld --model runs/dc/teachers
--guidance 1 4 8 --out results/t2i``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from evedit.models import load_model
from evedit.training.quality import t2i_generate
from evedit.training.stages.common import grid, to_uint8
from evedit.world.datasets import ImageCaptionDataset


@torch.no_grad()
def sample_grid(folder: str, captions: list[str], truth: torch.Tensor, guidances: list[float],
                seeds: int, steps: int) -> np.ndarray:
    model = load_model(folder)
    rows = [list(to_uint8(truth))]
    for g in guidances:
        for seed in range(seeds):
            rows.append(list(to_uint8(t2i_generate(model, captions, steps, g, seed=seed))))
    return grid(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", action="append", required=True, help="model folder (repeatable)")
    ap.add_argument("--items", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--guidance", type=float, nargs="+", default=[4.0])
    ap.add_argument("--scale", type=int, default=2, help="nearest-neighbour upscaling of the PNG")
    ap.add_argument("--out", default="runs/t2i_samples")
    args = ap.parse_args()
    data = ImageCaptionDataset("test", args.items)
    items = [data[i] for i in range(args.items)]
    captions = [it["caption"] for it in items]
    truth = torch.stack([it["image"] for it in items])
    for i, c in enumerate(captions):
        print(f"column {i}: {c}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for folder in args.model:
        img = Image.fromarray(sample_grid(folder, captions, truth, args.guidance, args.seeds, args.steps))
        img = img.resize((img.width * args.scale, img.height * args.scale), Image.NEAREST)
        path = out / f"{Path(folder).parent.name}_{Path(folder).name}.png"
        img.save(path)
        print(f"{folder}: rows truth, then guidance {args.guidance} x {args.seeds} seeds -> {path}")


if __name__ == "__main__":
    main()
