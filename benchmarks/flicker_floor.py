"""The flicker floor of the ShapeWorld benchmark: what the codec alone leaves, beside Identity.

Flicker (``evedit.eval.metrics.flicker``) compares an output's frame-to-frame changes with the exact
edit's, so the exact edit scores 0. This script scores, on the benchmark's clips (`evedit eval
--benchmark shapeworld --limit N`, the model's world): the input unchanged (Identity), the exact
edit through the model's codec, the same kept only inside the edit's footprint (the input's pixels
elsewhere, as ``--region`` edits keep them), and the input through the codec. An editor's flicker
above the codec's is the editor's own. Usage::

    python benchmarks/flicker_floor.py --model models/shapeworld --limit 56
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from demo_ceiling import through_codec
from evedit.eval.metrics import flicker
from evedit.eval.shapeworld import ShapeWorldBenchmark, model_world
from evedit.training.stages.common import load_vae


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/shapeworld", help="model folder (its codec and world)")
    ap.add_argument("--limit", type=int, default=56, help="benchmark clips, as evedit eval --limit")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    vae = load_vae(f"{args.model}/vae")
    rows: dict[str, list[float]] = {"Identity (input unchanged)": [], "exact edit through the codec": [],
                                    "the same inside the footprint, input elsewhere": [],
                                    "input through the codec": []}
    for item in ShapeWorldBenchmark(config=model_world(args.model)).items(args.limit):
        truth, inp, inside = item.target, item.frames, item.footprint[..., None]
        coded = through_codec(vae, truth).numpy()
        for name, out in zip(rows, (inp, coded, np.where(inside, coded, inp), through_codec(vae, inp).numpy())):
            rows[name].append(flicker(out, truth))
    print(f"| output ({args.limit} clips, {args.model}) | Flicker |\n|---|---:|")
    for name, values in rows.items():
        print(f"| {name} | {np.mean(values):.4f} |")


if __name__ == "__main__":
    main()
