"""Where ShapeCLIP's caption retrieval misses: split by how much of the scene's objects a frame shows.

ShapeCLIP's quality figure (`evedit model report`, :func:`evedit.training.quality.shapeclip_quality`)
ranks a test frame's caption among 9 one-attribute-off siblings. A frame shows one moment of a clip,
and ShapeWorld's objects move over each other: an object half hidden by another can leave its shape
or size undecidable from that frame, while the clip shows it whole at another moment. This script
scores the same items as the report (test split, the model's world) and splits them by the least
visible object's visible share of its own pixels in the frame shown (image tower) and in its best
frame of the clip (video tower), so a miss can be told apart from a frame that does not show the
answer. Usage::

    python benchmarks/clip_occlusion.py --model models/shapeworld --items 500 [--shapeclip FOLDER]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from torch.utils.data import default_collate

BINS = ((0.0, 0.5), (0.5, 0.8), (0.8, 0.95), (0.95, 1.01))


def visibility(seed: int, frame: int, world) -> tuple[float, float]:
    """The least visible object's share of its pixels: in ``frame``, and in its best frame of the clip."""
    from evedit.world import make_example
    from evedit.world.render import object_masks, visible_masks

    scene = make_example(seed, None, world).scene
    full = object_masks(scene, world.frames, world.size).sum((2, 3)).astype(float)  # (F, n_obj)
    share = visible_masks(scene, world.frames, world.size).sum((2, 3)) / np.maximum(full, 1)
    return float(share[frame].min()), float(share.max(0).min())


@torch.no_grad()
def item_wins(clip, pooled, items: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Per item: whether the frame's (image tower) and the clip's (video tower) caption ranks first."""
    from evedit.training.stages.clip import group_text

    image, video = [], []
    for start in range(0, len(items), 32):
        batch = default_collate(items[start:start + 32])
        _, valid, text = group_text(clip, pooled, batch)  # text (B, G, D)
        b, g = valid.shape
        frames = clip.image_features(batch["images"].flatten(0, 1)).view(b, g, -1)[:, 0]
        for emb, out in ((frames, image), (clip.video_features(batch["clip"]), video)):
            scores = torch.einsum("bd,bgd->bg", emb, text).masked_fill(~valid, float("-inf"))
            out += (scores.argmax(1) == 0).tolist()
    return np.array(image, float), np.array(video, float)


def table(image, video, vis_frame, vis_clip) -> list[str]:
    lines = ["| least visible object (share of its pixels) | frames | frame top-1 | clips | clip top-1 |",
             "|---|---:|---:|---:|---:|"]
    for lo, hi in BINS:
        f, c = (vis_frame >= lo) & (vis_frame < hi), (vis_clip >= lo) & (vis_clip < hi)
        cell = lambda wins, sel: f"{wins[sel].mean():.1%}" if sel.any() else "-"  # noqa: E731
        lines.append(f"| {lo:.2f} to {min(hi, 1.0):.2f} | {f.sum()} | {cell(image, f)} | {c.sum()} | {cell(video, c)} |")
    lines.append(f"| all | {len(image)} | {image.mean():.1%} | {len(video)} | {video.mean():.1%} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    from evedit.eval.shapeworld import load_shapeclip, model_world, shapeclip_folder
    from evedit.training.stages.clip import ShapeCLIPDataset
    from evedit.training.stages.common import text_encoder
    from evedit.world import SPLITS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/shapeworld", help="model folder (its world and ShapeCLIP)")
    ap.add_argument("--shapeclip", default=None, help="a ShapeCLIP folder instead of the model's")
    ap.add_argument("--items", type=int, default=500, help="test scenes (the report's full size: 500)")
    ap.add_argument("--json", default=None, help="also write the per-item figures here")
    args = ap.parse_args(argv)
    world = model_world(args.model)
    folder = shapeclip_folder(args.model, args.shapeclip)
    clip = load_shapeclip(folder)
    encoder = text_encoder()
    data = ShapeCLIPDataset("test", args.items, 9, world)
    items = [data[i] for i in range(args.items)]
    seeds = [SPLITS["test"][0] + i for i in range(args.items)]
    vis = np.array([visibility(s, s % world.frames, world) for s in seeds])  # the dataset's frame rule
    image, video = item_wins(clip, lambda texts: encoder(texts).pooled, items)
    print(f"ShapeCLIP `{folder}`, {args.items} test scenes of the model's world, 10 candidates each.\n")
    print("\n".join(table(image, video, vis[:, 0], vis[:, 1])))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"shapeclip": str(folder), "image": image.tolist(), "video": video.tolist(),
                       "visible_frame": vis[:, 0].tolist(), "visible_clip": vis[:, 1].tolist()}, f)


if __name__ == "__main__":
    main()
