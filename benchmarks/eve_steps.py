"""EVE's student at several step counts on the ShapeWorld benchmark, in one run.

The student was distilled for k = 3 (K-bin timesteps); this asks whether more DDIM steps of the same
aligned student close its gap to the teachers (a sampling limit) or not (a limit of what the LoRA
learned). Every row edits the same items from the instruction alone with the same seeds, e.g.::

    python benchmarks/eve_steps.py --model runs/dc-obj20b/model --steps 3,4,6 --limit 56 \\
        --out runs/eval/eve-steps
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    from evedit.eval.editors import PipelineEditor
    from evedit.eval.entry import EvalOptions, evaluate, load_items, load_scorer, print_summary

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--steps", default="3,4,6", help="Comma-separated step counts.")
    ap.add_argument("--limit", type=int, default=56)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    opts = EvalOptions(model=args.model, limit=args.limit, out=args.out, samples=2,
                       extra_settings={"eve_steps": steps})
    editors = {f"eve-k{k}": PipelineEditor("eve", args.model, steps=k) for k in steps}
    doc = evaluate(opts, load_items(opts), editors, load_scorer(opts))
    print(print_summary(doc))


if __name__ == "__main__":
    main()
