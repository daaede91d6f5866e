"""Can a backbone draw ShapeWorld's objects? Object colour accuracy of its drawings.

For each backbone (a UNet export; the shipped model supplies codec, text encoder and schedule):

- **train** (``--store-items N``): generations from noise (DDIM, CFG) for the captions of the first
  ``--items`` items of a ShapeWorld ``image`` store of N train items (``evedit data build image -n
  N``; the items the proxy ``benchmarks/proxies/t2i_overfit.yaml`` trained on). A backbone that
  memorised its items redraws them: PSNR against the item and, per object, whether its drawing
  there has the object's colour (``evedit.eval.accuracy.color_check`` over the object's main-colour
  pixels in its visible mask: the edit-accuracy colour rule).
- **test t=500 / t=700**: SDEdit round trips of unseen test frames from that noise level (the
  layout survives, the objects' look must be drawn): the same two figures. This is generalisation.
- ``--top1-items N``: also ShapeCLIP top-1 of generations for N test captions among 10
  one-attribute-off ones (the model report's t2i figure; chance 10%).

Object colour accuracy is the share of (image, object) pairs drawn in the right colour. On the 64
test frames (89 objects shown): the exact frames 1.000, through the codec 0.989, a flat grey frame
0.157 (the grey, white and black objects).

Usage: ``python benchmarks/t2i_overfit.py --unet runs/proxy/t2i_overfit/shipped/run/export/unet
--unet models/shapeworld/unet --store-items 256 [--write NAME]``.
"""

from __future__ import annotations

import argparse
import platform
from datetime import date
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from evedit.eval.accuracy import color_check
from evedit.eval.metrics import psnr
from evedit.models import load_model
from evedit.training.quality import sdedit_round_trip, t2i_generate
from evedit.training.stages.common import grid, load_unet, to_uint8
from evedit.training.store_build import object_sizes
from evedit.world import ImageCaptionDataset, WorldConfig, visible_masks
from evedit.world.config import SIZE_FRACTIONS

ROOT = Path(__file__).resolve().parents[1]


def store_items(split: str, length: int, items: int, tasks: tuple[str, ...] | None = None,
                world: dict | None = None) -> tuple[torch.Tensor, list[str], list[tuple]]:
    """Items ``0..items-1`` of the ``image`` view a store of ``length`` items renders (``tasks``: of
    those tasks' examples only): pixels, captions and per item ``(objects, visible masks (n_obj, H,
    W))`` (``ImageCaptionDataset.example_frame``); ``world``: other ShapeWorld settings (object sizes)."""
    data = ImageCaptionDataset(split, length, WorldConfig(frames=8, **(world or {})), tasks=tasks)
    xs, caps, objs = [], [], []
    for i in range(items):
        item, (ex, f, edited) = data[i], data.example_frame(i)
        scene = ex.edit.edited_scene if edited else ex.scene
        xs.append(item["image"])
        caps.append(item["caption"])
        objs.append((scene.objects, visible_masks(scene, data.config.frames, data.config.size)[f]))
    return torch.stack(xs), caps, objs


def colour_accuracy(out: np.ndarray, truth: np.ndarray, objs: list[tuple], size: str | None = None,
                    count: int | None = None) -> float:
    """Share of (image, object) pairs whose drawing has the object's colour (objects shown at all);
    ``size``: only the objects of that size ("small" or "large"); ``count``: only the images whose
    scene (and caption) holds that many objects."""
    hits = []
    for o, t, (objects, masks) in zip(out, truth, objs):
        if count is not None and len(objects) != count:
            continue
        for obj, mask in zip(objects, masks):
            if size is not None and obj.size != size:
                continue
            ok = color_check(o[None], t[None], mask[None], obj.color)
            if ok is not None:
                hits.append(ok)
    return float(np.mean(hits)) if hits else float("nan")


def object_mask(objs: list[tuple]) -> np.ndarray:
    return np.stack([masks.any(0) for _, masks in objs])


def label(folder: str) -> str:
    """A short name for a UNet folder: the proxy variant (``.../VARIANT/run/export/unet``) or the model."""
    parts = Path(folder).parts
    return parts[-4] if parts[-3:-1] == ("run", "export") else parts[-2]


def object_colour_figures(model, items: int = 64, levels: tuple[int, ...] = (500, 700), steps: int = 25,
                        guidance: float = 4.0) -> dict[str, float]:
    """Object colour accuracy of SDEdit round trips of ``items`` test frames from each of ``levels``
    (``obj_color_tN``): how well ``model``'s backbone draws objects where a layout is given."""
    row, _ = rows_for(model, {"test": store_items("test", items, items)}, list(levels), steps, guidance)
    return {f"obj_color_t{k.split('=')[1]}": v[2] for k, v in row.items()}


def rows_for(model, data: dict, levels: list[int], steps: int, guidance: float,
             by_size: bool = False, by_count: bool = False) -> tuple[dict, list]:
    row, pictures = {}, []
    for name, (x, caps, objs) in data.items():
        truth = to_uint8(x)
        for t in (levels if name == "test" else [None]):
            g = torch.Generator().manual_seed(0)
            made = (t2i_generate(model, caps, steps, guidance, seed=0) if t is None
                    else sdedit_round_trip(model, x, caps, t, steps, guidance, g))
            out = to_uint8(made)
            key = name if t is None else f"{name} t={t}"
            row[key] = (psnr(out, truth), psnr(out, truth, mask=object_mask(objs)), colour_accuracy(out, truth, objs))
            for size in ("small", "large") if by_size else ():
                row[f"{key}, {size} objects"] = (float("nan"), float("nan"), colour_accuracy(out, truth, objs, size))
            for n in (1, 2, 3) if by_count else ():
                row[f"{key}, scenes of {n} object{'s' * (n > 1)}"] = (
                    float("nan"), float("nan"), colour_accuracy(out, truth, objs, count=n))
            pictures.append((key, truth[:8], out[:8]))
    return row, pictures


def cell(value: float, digits: int) -> str:
    """A table cell: the figure, or empty where it was not measured (NaN)."""
    return "" if np.isnan(value) else f"{value:.{digits}f}"


def top1(model, args) -> float:
    """ShapeCLIP (the ``--model`` folder's) top-1 of the backbone's generations among 10 captions."""
    from evedit.eval.shapeworld import ShapeWorldScorer
    from evedit.training.quality import t2i_quality

    scorer = ShapeWorldScorer.from_pretrained(args.model)
    return t2i_quality(model, scorer, args.top1_items, steps=args.steps)["top1"]


def header(args) -> list[str]:
    """The written table's title, settings and the command that reproduces it."""
    flags = (f" --top1-items {args.top1_items}" if args.top1_items else "") + (" --by-size" if args.by_size else "") \
        + (" --by-count" if args.by_count else "") + (f" --tasks {args.tasks}" if args.tasks else "") \
        + (f" --items {args.items}" if args.items != 64 else "") + (f" --guidance {args.guidance:g}" if args.guidance != 4.0 else "") \
        + (f" --object-px {args.object_px}" if args.object_px else "") + (f" --write {args.write}" if args.write else "")
    world = WorldConfig(**object_sizes(args.object_px))
    small, large = (round(world.size_fraction(k) * 64) for k in ("small", "large"))
    what_if = round(SIZE_FRACTIONS["small"] * 64) != 14 or round(SIZE_FRACTIONS["large"] * 64) != 24  # benchmarks/object_sizes.py
    prefix = f"python benchmarks/object_sizes.py {small} {large} --script " if what_if else "python "
    return ["# Object colour accuracy of backbone drawings (`benchmarks/t2i_overfit.py`)", "",
            f"{date.today()}, {platform.machine()}. First {args.items} items "
            + (f"of a {args.store_items}-item train store (generated from noise for their captions) and "
               if args.store_items else "") + f"of the test split (SDEdit from t), DDIM "
            f"{args.steps}, CFG {args.guidance}; codec and text encoder of `{Path(args.model).name}`; "
            f"ShapeWorld objects {small} and {large} px across" + (" (a what-if world)." if what_if else
                                                                 " (not the preset's)." if (small, large) != (14, 24) else "."),
            f"Command: `{prefix}benchmarks/t2i_overfit.py " + " ".join(f"--unet {u}" for u in args.unet)
            + f" --store-items {args.store_items}{flags}`.", ""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--unet", action="append", required=True, help="UNet folder (repeatable)")
    ap.add_argument("--model", default=str(ROOT / "models" / "shapeworld"), help="codec, text encoder, schedule")
    ap.add_argument("--store-items", type=int, default=256,
                    help="items of the train store the backbone saw (0: no generations from noise, test rows only)")
    ap.add_argument("--items", type=int, default=64)
    ap.add_argument("--t", type=int, nargs="+", default=[500, 700])
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--guidance", type=float, default=4.0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--top1-items", type=int, default=0,
                    help="also ShapeCLIP top-1 of generations for this many test captions (the model report's t2i figure)")
    ap.add_argument("--by-size", action="store_true", help="also object colour accuracy of small and large objects apart")
    ap.add_argument("--by-count", action="store_true",
                    help="also object colour accuracy in scenes of 1, 2 and 3 objects apart (the caption's binding load)")
    ap.add_argument("--tasks", help="only these tasks' examples, comma-separated (a store built with --tasks)")
    ap.add_argument("--object-px", help="ShapeWorld's small and large object diameters, e.g. 20,24 (as `evedit data build --object-px`)")
    ap.add_argument("--write", help="write benchmarks/results/NAME.md and results/NAME/*.png")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    tasks = tuple(args.tasks.split(",")) if args.tasks else None
    world = object_sizes(args.object_px)
    data = {"test": store_items("test", args.items, args.items, tasks, world)}
    if args.store_items:
        data = {"train": store_items("train", args.store_items, args.items, tasks, world), **data}
    lines = ["| backbone | figure | PSNR dB | PSNR inside objects dB | object colour accuracy |", "|---|---|---:|---:|---:|"]
    for folder in args.unet:
        model.unet = load_unet(folder).eval()
        row, pictures = rows_for(model, data, args.t, args.steps, args.guidance, args.by_size, args.by_count)
        mine = [f"| `{folder}` | {k} | {cell(a, 2)} | {cell(b, 2)} | {cell(c, 3)} |" for k, (a, b, c) in row.items()]
        if args.top1_items:
            mine.append(f"| `{folder}` | ShapeCLIP t2i top-1, {args.top1_items} test captions | | | {top1(model, args):.3f} |")
        lines += mine
        print("\n".join(mine), flush=True)
        if args.write:
            out = ROOT / "results" / args.write / f"{label(folder)}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(grid([r for _, truth, made in pictures for r in (list(truth), list(made))])).save(out)
    text = "\n".join(header(args) + lines) + "\n"
    print(text)
    if args.write:
        (ROOT / "benchmarks" / "results" / f"{args.write}.md").write_text(text)


if __name__ == "__main__":
    main()
