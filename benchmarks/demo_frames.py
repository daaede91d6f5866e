"""The demo clip ("make the blue circle red") edited by several editors and step counts: PSNR
against ShapeWorld's exact edit outside the circle, per frame (the demo test's second check, frame
by frame). Arguments are ``editor:steps`` pairs, e.g.::

    python benchmarks/demo_frames.py eve:3 plug-and-play:3 plug-and-play:20 per-frame:20 [--model DIR]
"""

from __future__ import annotations

import argparse


def main() -> None:
    from evedit.demo import _demo_input
    from evedit.editing import EditPipeline
    from evedit.eval.metrics import psnr
    from evedit.models import folder_spec
    from evedit.world import WorldConfig, edit_footprint, make_example

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="editor:steps pairs")
    ap.add_argument("--model", default="models/shapeworld")
    args = ap.parse_args()
    world = folder_spec(args.model).world
    source, info, truth = _demo_input(7, "color", world)
    outside = ~edit_footprint(make_example(7, "color", WorldConfig(frames=8, size=64, **world)))
    pipe = EditPipeline.from_pretrained(args.model)
    print("| editor | steps | " + " | ".join(f"f{i + 1}" for i in range(len(truth))) + " |")
    for run in args.runs:
        editor, steps = run.split(":")
        frames = pipe(source, info["instruction"], task="color", editor=editor, steps=int(steps), progress=False).frames
        per = [psnr(frames[i:i + 1], truth[i:i + 1], mask=outside[i:i + 1]) for i in range(len(truth))]
        print(f"| {editor} | {steps} | " + " | ".join(f"{p:.1f}" for p in per) + " |")


if __name__ == "__main__":
    main()
