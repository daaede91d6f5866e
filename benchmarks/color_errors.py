"""Where EVE's colour edits fail: by the object's size and by the asked colour, at several guidances.

EVE edits ShapeWorld **val** colour clips from the instruction alone (the model's defaults: its
region, LoRA strength; ``--guidance`` the text guidances compared, in one run). For every clip the
colour rule of :mod:`evedit.eval.accuracy` is read apart: the mean colour of the output over the
object's main-colour pixels, the palette colour nearest to it, and the object's visible size in
the first frame. The table gives accuracy per size bin and per asked colour, the most common
misses (asked -> got) and PSNR against the exact edit::

    python benchmarks/color_errors.py --model models/shapeworld --limit 100 --guidance 2,3,4,5,6,8

A diagnostic: it chooses nothing. The benchmark reads test and heldout clips only.
"""

from __future__ import annotations

import argparse
import collections
import time

import numpy as np

SIZES = ((0, 100), (100, 200), (200, 400), (400, 64 * 64 + 1))  # visible pixels on a 64 px frame


def read_colour(example, out: np.ndarray) -> tuple[str, str, int] | None:
    """(asked colour, nearest palette colour of the output, visible size in frame 0), or None when
    the ground truth shows none of the asked colour on the object."""
    from evedit.eval.accuracy import COLORS, _target_region, nearest_color

    asked = example.edit.edited_scene.objects[example.edit.target].color
    region = _target_region(example, np.arange(example.config.frames))
    main = region & np.all(example.edited_clip == np.asarray(COLORS[asked], np.uint8), axis=-1)
    if not main.any():
        return None
    return asked, nearest_color(out.astype(np.float64)[main].mean(axis=0)), int(region[0].sum())


def report(guidance: float, rows: list[tuple[str, str, int, float]]) -> list[str]:
    ok = [asked == got for asked, got, _, _ in rows]
    lines = [f"### guidance {guidance:g}: {sum(ok)}/{len(rows)} colour edits made, "
             f"PSNR {np.mean([p for *_, p in rows]):.2f} dB", "", "| visible size (px) | made |", "|---|---:|"]
    for lo, hi in SIZES:
        sel = [a == g for a, g, s, _ in rows if lo <= s < hi]
        lines.append(f"| {lo}-{hi - 1 if hi <= 4096 else 'more'} | {sum(sel)}/{len(sel)} |")
    per = collections.defaultdict(lambda: [0, 0])
    for asked, got, _, _ in rows:
        per[asked][0] += asked == got
        per[asked][1] += 1
    lines += ["", "per asked colour: " + ", ".join(f"{c} {a}/{b}" for c, (a, b) in sorted(per.items()))]
    misses = collections.Counter((a, g) for a, g, _, _ in rows if a != g).most_common(6)
    lines += ["commonest misses (asked -> got): " + ", ".join(f"{a} -> {g} ({n})" for (a, g), n in misses), ""]
    return lines


def main() -> None:
    from evedit.eval.accuracy import item_example
    from evedit.eval.editors import PipelineEditor
    from evedit.eval.metrics import psnr
    from evedit.eval.shapeworld import ShapeWorldBenchmark, model_world

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--limit", type=int, default=100, help="Val colour clips.")
    ap.add_argument("--guidance", default="2", help="Comma-separated EVE text guidances.")
    args = ap.parse_args()
    items = ShapeWorldBenchmark(args.limit, ("val",), ("color",), config=model_world(args.model)).items(args.limit)
    for guidance in (float(g) for g in args.guidance.split(",")):
        editor, rows, clock = PipelineEditor("eve", args.model, guidance=guidance), [], time.perf_counter()
        for it in items:
            out = editor(it.frames, it.instruction, "color", None, 0)
            read = read_colour(item_example(it.meta["seed"], "color", it.meta["config"]), out)
            if read is not None:
                rows.append((*read, psnr(out, it.target)))
        print("\n".join(report(guidance, rows)) + f"({time.perf_counter() - clock:.0f} s)\n", flush=True)


if __name__ == "__main__":
    main()
