"""Scratch probe: edit a small object zoomed in. The edit adapter's text direction (the map
``--region auto`` thresholds) gives each frame's peak; a square crop of side S follows it (centres
median-filtered over 3 frames), is resized to the model's square, edited (the model's defaults, its
region re-found in the crop), resized back and pasted where the crop's region is. Against the
shipped whole-frame edit on the same clips.

    python benchmarks/probes/zoom/zoom_probe.py --limit 100 --tasks color --sides 24,32,40
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from PIL import Image
from scipy import ndimage

import evedit.editing.auto_region as A
import evedit.editing.stream as S
from evedit.editing import EditPipeline

MASKS: list[np.ndarray] = []
DIRS: list[np.ndarray] = []
_pixel_mask, _threshold_map = S.pixel_mask, A.threshold_map


def _record_mask(cells, fit):
    m = _pixel_mask(cells, fit)
    MASKS.append(m)
    return m


def _record_dir(d, threshold=A.THRESHOLD):
    DIRS.append((d / d.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12))[0, 0].cpu().numpy())
    return _threshold_map(d, threshold)


S.pixel_mask, A.threshold_map = _record_mask, _record_dir


def run(pipe, frames, instruction, task, **kw):
    MASKS.clear(), DIRS.clear()
    out = pipe(frames, instruction, task=task, seed=0, progress=False, **kw).frames
    masks = np.stack(MASKS[-len(frames):]) if MASKS else None
    dirs = np.concatenate(DIRS, 0)[-len(frames):] if DIRS else None
    return out, masks, dirs


def centres(dirs, cell, level=0.7):
    """Each frame's peak component's centroid in pixels, median-filtered over 3 frames."""
    pts = []
    for d in dirs:
        py, px = np.unravel_index(np.argmax(d), d.shape)
        lab, _ = ndimage.label(d > level)
        ys, xs = np.nonzero(lab == lab[py, px])
        pts.append(((ys.mean() + 0.5) * cell, (xs.mean() + 0.5) * cell))
    pts = np.asarray(pts)
    if len(pts) >= 3:
        pts = ndimage.median_filter(pts, size=(3, 1), mode="nearest")
    return pts


def resize(frames, size, method):
    return np.stack([np.asarray(Image.fromarray(f).resize((size, size), method)) for f in frames])


def zoom(pipe, frames, instruction, task, dirs, side, **kw):
    F, H = frames.shape[:2]
    cell = H // dirs.shape[-1]
    tl = [(int(np.clip(round(cy - side / 2), 0, H - side)), int(np.clip(round(cx - side / 2), 0, H - side)))
          for cy, cx in centres(dirs, cell)]
    crops = np.stack([f[t:t + side, l:l + side] for f, (t, l) in zip(frames, tl)])
    zout, zmasks, _ = run(pipe, resize(crops, H, Image.BICUBIC), instruction, task, **kw)
    small = resize(zout, side, Image.LANCZOS)
    keep = np.stack([np.asarray(Image.fromarray((m * 255).astype(np.uint8)).resize((side, side), Image.NEAREST)) >= 128
                     for m in zmasks])
    out = frames.copy()
    for f, (t, l) in enumerate(tl):
        out[f, t:t + side, l:l + side] = np.where(keep[f][..., None], small[f], frames[f, t:t + side, l:l + side])
    return out


def main():
    sys.path.insert(0, "benchmarks")
    from color_errors import read_colour
    from evedit.eval.accuracy import edit_accuracy, item_example
    from evedit.eval.metrics import flicker, psnr
    from evedit.eval.shapeworld import ShapeWorldBenchmark, model_world

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/shapeworld")
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--tasks", default="color")
    ap.add_argument("--sides", default="32")
    ap.add_argument("--split", default="val")
    ap.add_argument("--save", default=None)
    args = ap.parse_args()
    pipe = EditPipeline.from_pretrained(args.model, device="cpu")
    tasks = tuple(args.tasks.split(","))
    items = ShapeWorldBenchmark(args.limit, (args.split,), tasks, config=model_world(args.model)).items(args.limit)
    sides = [int(s) for s in args.sides.split(",")]
    rows = {k: [] for k in ["base"] + [f"zoom {s}" for s in sides]}
    saved = {}
    clock = time.perf_counter()
    for n, it in enumerate(items):
        ex = item_example(it.meta["seed"], it.task, it.meta["config"])
        base, _, dirs = run(pipe, it.frames, it.instruction, it.task)
        rows["base"].append(score(ex, it, base, read_colour, edit_accuracy, psnr, flicker))
        outs = [base]
        for s in sides:
            out = base if dirs is None else zoom(pipe, it.frames, it.instruction, it.task, dirs, s)
            rows[f"zoom {s}"].append(score(ex, it, out, read_colour, edit_accuracy, psnr, flicker))
            outs.append(out)
        if args.save and n < 12:
            saved[n] = np.concatenate([it.frames, it.target] + outs, axis=2)
        if n % 10 == 9:
            print(f"{n + 1} items, {time.perf_counter() - clock:.0f} s", flush=True)
            summary(rows)
    summary(rows)
    if args.save:
        grid = np.concatenate([v[0] for v in saved.values()], axis=0)  # frame 0 of each clip, one row each
        Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(args.save)


def score(ex, it, out, read_colour, edit_accuracy, psnr, flicker):
    made = edit_accuracy(ex, out)
    colour = None
    if it.task == "color":
        r = read_colour(ex, out)
        colour = None if r is None else r[0] == r[1]
    return it.task, made, colour, psnr(out, it.target), flicker(out, it.target)


def summary(rows):
    print("| variant | n | EditAcc | colour made | PSNR | flicker |\n|---|---:|---:|---:|---:|---:|")
    for k, r in rows.items():
        acc = [a for _, a, *_ in r if a is not None]
        col = [c for _, _, c, *_ in r if c is not None]
        print(f"| {k} | {len(r)} | {np.mean(acc):.3f} | {np.mean(col) if col else float('nan'):.3f} | "
              f"{np.mean([p for *_, p, _ in r]):.2f} | {np.mean([f for *_, f in r]):.4f} |", flush=True)


if __name__ == "__main__":
    main()
