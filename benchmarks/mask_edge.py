"""How a ``--mask``'s edge is blended in pixels: hard, feathered inward, centred or outward, in one run.

EVE edits ShapeWorld **val** clips of the local tasks (color, texture, shape, add, remove) from the
instruction alone with each clip's exact edit footprint (:func:`evedit.world.edit_footprint`) as
its mask, grown by ``--grow`` pixels (0: as tight as the objects; 3: a loose brush); only the pixel
blend after decoding changes between variants (the latent blend is the same). Figures: PSNR against
the exact edit and edit accuracy, mean and per task. The variants:

- ``hard``: the mask as it is (what :mod:`evedit.editing.region` does);
- ``inward``: eroded by 1/32 of the side and blurred (earlier versions: every pixel outside the mask
  stays the input's, and so does the mask's rim);
- ``centred``: the mask blurred across its edge (changes a few pixels outside it);
- ``outward``: grown by 1/32 of the side and blurred, never below the mask.

::

    python benchmarks/mask_edge.py --model models/shapeworld --grow 0
    python benchmarks/mask_edge.py --model models/shapeworld --grow 3
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from PIL import Image, ImageFilter

LOCAL = ("color", "texture", "shape", "add", "remove")


def _width(mask: np.ndarray) -> int:
    return max(2, round(min(mask.shape) / 32))


def _image(mask: np.ndarray) -> Image.Image:
    return Image.fromarray((mask * 255).astype(np.uint8))


def _soft(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float32) / 255.0


def inward(mask):
    w = _width(mask)
    return mask * _soft(_image(mask).filter(ImageFilter.MinFilter(2 * w + 1)).filter(ImageFilter.GaussianBlur(w / 2)))


def centred(mask):
    return _soft(_image(mask).filter(ImageFilter.GaussianBlur(_width(mask) / 2)))


def outward(mask):
    w = _width(mask)
    return np.maximum(mask, _soft(_image(mask).filter(ImageFilter.MaxFilter(2 * w + 1)).filter(ImageFilter.GaussianBlur(w / 2))))


def soft_blend(original, edited, soft):
    mix = original.astype(np.float32) + soft[..., None] * (edited.astype(np.float32) - original)
    return np.clip(np.rint(mix), 0, 255).astype(np.uint8)


def grown(footprint: np.ndarray, pixels: int) -> np.ndarray:
    if pixels <= 0:
        return footprint
    size = 2 * pixels + 1
    return np.stack([np.asarray(_image(m.astype(np.float32)).filter(ImageFilter.MaxFilter(size))) > 127 for m in footprint])


def main() -> None:
    from evedit.editing import stream
    from evedit.eval.accuracy import edit_accuracy, item_example
    from evedit.eval.editors import _pipeline, as_uint8_frames
    from evedit.eval.metrics import psnr
    from evedit.eval.shapeworld import ShapeWorldBenchmark, model_world

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--limit", type=int, default=112, help="Val clips read (112: the local tasks give 40).")
    ap.add_argument("--grow", type=int, default=0, help="Pixels the exact footprint grows by.")
    ap.add_argument("--variants", default="hard,inward,centred,outward")
    args = ap.parse_args()
    variants = {"hard": None, "inward": inward, "centred": centred, "outward": outward}
    items = [it for it in ShapeWorldBenchmark(args.limit, ("val",), config=model_world(args.model)).items(args.limit)
             if it.task in LOCAL]
    pipe, hard = _pipeline(args.model), stream.blend_pixels
    print(f"{len(items)} val clips; mask = footprint grown by {args.grow} px")
    print("| edge | PSNR | accuracy | " + " | ".join(f"{t} PSNR / acc" for t in LOCAL) + " | s |")
    print("| --- " * (len(LOCAL) + 4) + "|")
    for name in args.variants.split(","):
        soften = variants[name]
        stream.blend_pixels = hard if soften is None else (lambda o, e, m, f=soften: soft_blend(o, e, f(m)))
        clock, per = time.perf_counter(), {}
        for it in items:
            mask = grown(np.stack([np.asarray(m) for m in it.footprint]).astype(bool), args.grow)
            out = as_uint8_frames(pipe(it.frames, it.instruction, editor="eve", task=it.task, seed=0,
                                       progress=False, mask=mask))
            acc = edit_accuracy(item_example(it.meta["seed"], it.task, it.meta["config"]), out)
            per.setdefault(it.task, []).append((psnr(out, it.target), float(acc or 0)))
        mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
        rows = [r for t in per for r in per[t]]
        cells = " | ".join(f"{mean([p for p, _ in per[t]]):.2f} / {mean([a for _, a in per[t]]):.2f}" for t in LOCAL if t in per)
        print(f"| {name} | {mean([p for p, _ in rows]):.2f} | {mean([a for _, a in rows]):.3f} | {cells} | "
              f"{time.perf_counter() - clock:.0f} |", flush=True)
    stream.blend_pixels = hard


if __name__ == "__main__":
    main()
