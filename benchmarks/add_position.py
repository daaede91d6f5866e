"""The add task's ceiling from the instruction alone: where the new object goes is not said.

ShapeWorld's add instructions name the new object's size, texture, colour and shape ("add a small
striped red circle"), never its place: ``evedit.world.edits._edit_add`` draws the position and
motion at random (``evedit.world.scene.sample_object``). An editor that reads only the instruction
can at best draw the right object somewhere the world might have put it. This script scores that
best case against the exact edit, beside Identity (the input unchanged), on the frames the model
report's edit teacher is scored on (``EditTripletDataset(split, n, tasks=("add",))``) and on whole
clips:

- **identity**: the input frame (clip) unchanged;
- **oracle, random place**: the exact edited scene re-rendered with the added object's position and
  motion drawn again from the world's own distribution (``--draws`` times per item, averaged); size,
  texture, colour and shape exact, nothing lost to a codec;
- **oracle, place named to a 3x3 cell**: the same, its frame-0 centre drawn inside the true one's
  cell of a 3x3 grid (what an instruction such as "add ... at the top left" would tell), its motion
  at random;
- **oracle, true start**: the true frame-0 centre, its motion at random (an instruction naming the
  place exactly but not where the object goes);
- **oracle, right place**: the exact edit (infinite PSNR; listed only as the bound it is).

No model is run: rendering only, under a minute. Usage::

    python benchmarks/add_position.py --model models/shapeworld --items 64 --draws 8
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np

from evedit.eval.accuracy import edit_accuracy
from evedit.eval.metrics import psnr
from evedit.models.folder import folder_spec
from evedit.world import EditTripletDataset
from evedit.world.render import render_clip
from evedit.world.scene import sample_motion


ORACLES = ("random place", "place named to a 3x3 cell", "true start")


def moved(obj, config, rng: np.random.Generator, oracle: str = ORACLES[0]):
    """``obj`` at a position and velocity drawn as ``sample_object`` draws them
    (``evedit.world.scene.sample_motion``); ``oracle`` keeps what an instruction would tell of its
    frame-0 centre (nothing, its 3x3 cell, or all of it)."""
    across = obj.across if obj.across is not None else config.size_fraction(obj.size)
    lo, hi = across / 2, 1.0 - across / 2
    start = None
    if oracle == "true start":
        start = (obj.x0, obj.y0)
    elif oracle == "place named to a 3x3 cell":
        cell = [min(int(v * 3), 2) for v in (obj.x0, obj.y0)]
        start = tuple(rng.uniform(max(lo, c / 3), min(hi, (c + 1) / 3)) for c in cell)
    return replace(obj, **sample_motion(rng, config, across, start))


def score_split(split: str, items: int, draws: int, config, oracle: str, seed: int = 0) -> dict[str, float]:
    """PSNR (dB) of identity and of the oracle, per frame (median over items) and per clip (mean);
    the share of the oracle's clips above identity and its edit accuracy (``evedit.eval.accuracy``)."""
    data = EditTripletDataset(split, items, tasks=("add",), config=config)
    rng = np.random.default_rng(seed)
    rows: dict[str, list[float]] = {k: [] for k in ("identity frame", "oracle frame", "identity clip",
                                                     "oracle clip", "oracle wins", "oracle accuracy")}
    for i in range(items):
        ex, f = data.example_frame(i)
        edited, truth = ex.edit.edited_scene, ex.edited_clip
        ident_clip = psnr(ex.clip, truth)
        rows["identity frame"].append(psnr(ex.clip[f:f + 1], truth[f:f + 1]))
        rows["identity clip"].append(ident_clip)
        frame_scores, clip_scores, hits = [], [], []
        for _ in range(draws):
            new = moved(edited.objects[-1], config, rng, oracle)
            clip = render_clip(replace(edited, objects=edited.objects[:-1] + (new,)), config.frames, config.size)
            frame_scores.append(min(psnr(clip[f:f + 1], truth[f:f + 1]), 100.0))
            clip_scores.append(min(psnr(clip, truth), 100.0))
            hits.append(bool(edit_accuracy(ex, clip)))
        rows["oracle frame"].append(float(np.mean(frame_scores)))
        rows["oracle clip"].append(float(np.mean(clip_scores)))
        rows["oracle wins"].append(float(np.mean([s > ident_clip for s in clip_scores])))
        rows["oracle accuracy"].append(float(np.mean(hits)))
    # frames: the median over items (a true-start oracle is exact on frame 0, 100 dB after the cap)
    return {k: float(np.median(v) if k.endswith("frame") else np.mean(v)) for k, v in rows.items()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="models/shapeworld", help="model folder whose world to render")
    ap.add_argument("--items", type=int, default=64, help="add items per split")
    ap.add_argument("--draws", type=int, default=8, help="random places per item")
    ap.add_argument("--splits", nargs="+", default=["test", "heldout"])
    args = ap.parse_args(argv)
    config = folder_spec(args.model).world_config()
    print(f"world of {args.model}: {config.size}x{config.size}, {config.frames} frames; "
          f"{args.items} add items per split, {args.draws} places each")
    print("| split | oracle | Identity, frame (median) | oracle, frame (median) | Identity, clip | oracle, clip "
          "| oracle's clips above Identity | oracle's edit accuracy (clip) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for split in args.splits:
        for oracle in ORACLES:
            r = score_split(split, args.items, args.draws, config, oracle)
            print(f"| {split} | {oracle} | {r['identity frame']:.2f} | {r['oracle frame']:.2f} "
                  f"| {r['identity clip']:.2f} | {r['oracle clip']:.2f} | {100 * r['oracle wins']:.0f}% "
                  f"| {100 * r['oracle accuracy']:.0f}% |")


if __name__ == "__main__":
    main()
