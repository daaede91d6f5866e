"""Does the backbone draw an object in the colour its caption asks, or in the colour the noise holds?

An isolating measurement of the backbone's text path (issue 16). For each test frame (the
``image`` view of the test split, as ``benchmarks/t2i_overfit.py`` takes it), the top object's
colour word in the caption is swapped for a colour the scene does not show (``"a small striped blue
square"`` -> ``"... red square"``); the frame is noised to t and denoised by the backbone with the
swapped caption (SDEdit, DDIM, CFG; the same noise as with the true caption). Over the object's
pixels (its visible mask, main colour) the drawing's mean colour is the caption's (**follows**),
the frame's (**keeps**) or another palette colour. With the true caption the same frames give the
plain object colour accuracy (the caption and the noise agree). A backbone whose text path binds
colour to objects follows the caption from a noisy enough start; one that mostly keeps the input's
colour there draws objects from the noisy latent, not from the words.

Usage: ``python benchmarks/t2i_caption_follow.py --unet models/shapeworld/unet --unet ... [--items
128] [--t 500 700 900] [--object-px 20,24] [--write NAME]``.
"""

from __future__ import annotations

import argparse
import platform
from datetime import date
from pathlib import Path

import numpy as np
import torch

from evedit.eval.accuracy import nearest_color
from evedit.models import load_model
from evedit.training.quality import sdedit_round_trip
from evedit.training.stages.common import load_unet, to_uint8
from evedit.training.store_build import object_sizes
from evedit.world import ImageCaptionDataset, WorldConfig, visible_masks
from evedit.world.config import COLOR_NAMES, COLORS

ROOT = Path(__file__).resolve().parents[1]


def swapped_items(items: int, world: dict) -> list[dict]:
    """Test frames with the top object's colour swapped in the caption: pixels, both captions, the
    object's main-colour pixels, its colour and the caption's new one (items whose top object is
    hidden, or whose caption does not name it as ``colour shape``, are left out)."""
    data = ImageCaptionDataset("test", items, WorldConfig(frames=8, **world), edited_prob=0.0)
    rng, out = np.random.default_rng(0), []
    for i in range(items):
        item, (ex, f, _) = data[i], data.example_frame(i)
        scene, k = ex.scene, len(ex.scene.objects) - 1  # the top object: never hidden by another
        obj = scene.objects[k]
        words = f"{obj.color} {obj.shape}"
        frame = to_uint8(item["image"])
        main = visible_masks(scene, 8, data.config.size)[f][k] & np.all(frame == COLORS[obj.color], axis=-1)
        if item["caption"].count(words) != 1 or not main.any():
            continue
        shown = {o.color for o in scene.objects} | set(scene.background.colors)
        new = str(rng.choice([c for c in COLOR_NAMES if c not in shown]))
        out.append({"image": item["image"], "caption": item["caption"], "main": main, "old": obj.color,
                    "new": new, "swapped": item["caption"].replace(words, f"{new} {obj.shape}")})
    return out


def drawn_colours(model, items: list[dict], captions: list[str], t: int, steps: int, guidance: float) -> list[str]:
    """The nearest palette colour of each item's drawing over its object's main pixels."""
    x = torch.stack([it["image"] for it in items])
    made = to_uint8(sdedit_round_trip(model, x, captions, t, steps, guidance, torch.Generator().manual_seed(0)))
    return [nearest_color(m[it["main"]].astype(np.float64).mean(0)) for m, it in zip(made, items)]


def rows(model, items: list[dict], levels: list[int], steps: int, guidance: float) -> list[tuple]:
    """(t, true caption: share in the object's colour, swapped: follows, keeps, other) per level."""
    out = []
    for t in levels:
        true = drawn_colours(model, items, [it["caption"] for it in items], t, steps, guidance)
        swap = drawn_colours(model, items, [it["swapped"] for it in items], t, steps, guidance)
        n = len(items)
        follows = sum(c == it["new"] for c, it in zip(swap, items)) / n
        keeps = sum(c == it["old"] for c, it in zip(swap, items)) / n
        out.append((t, sum(c == it["old"] for c, it in zip(true, items)) / n, follows, keeps, 1 - follows - keeps))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--unet", action="append", required=True, help="UNet folder (repeatable)")
    ap.add_argument("--model", default=str(ROOT / "models" / "shapeworld"), help="codec, text encoder, schedule")
    ap.add_argument("--items", type=int, default=128)
    ap.add_argument("--t", type=int, nargs="+", default=[500, 700, 900])
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--guidance", type=float, default=4.0)
    ap.add_argument("--object-px", help="ShapeWorld's small and large object diameters, e.g. 20,24")
    ap.add_argument("--write", help="write benchmarks/results/NAME.md")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.model)
    items = swapped_items(args.items, object_sizes(args.object_px))
    flags = f" --items {args.items} --t {' '.join(map(str, args.t))}" + (f" --object-px {args.object_px}" if args.object_px else "")
    lines = ["# Does the backbone follow the caption's colour? (`benchmarks/t2i_caption_follow.py`)", "",
             f"{date.today()}, {platform.machine()}. {len(items)} test frames (of {args.items}), the top object's colour "
             f"swapped in the caption; SDEdit from t, DDIM {args.steps}, CFG {args.guidance:g}; codec and text encoder "
             f"of `{Path(args.model).name}`.",
             "Command: `python benchmarks/t2i_caption_follow.py " + " ".join(f"--unet {u}" for u in args.unet) + flags
             + (f" --write {args.write}" if args.write else "") + "`.", "",
             "| backbone | t | true caption: object in its colour | swapped: follows the caption | keeps the frame's | other |",
             "|---|---:|---:|---:|---:|---:|"]
    for folder in args.unet:
        model.unet = load_unet(folder).eval()
        for t, true, follows, keeps, other in rows(model, items, args.t, args.steps, args.guidance):
            lines.append(f"| `{folder}` | {t} | {true:.3f} | {follows:.3f} | {keeps:.3f} | {other:.3f} |")
            print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        (ROOT / "benchmarks" / "results" / f"{args.write}.md").write_text(text)


if __name__ == "__main__":
    main()
