"""EVE's alignment-LoRA strength (``--lora-scale``) swept on ShapeWorld's **val** split, in one run.

Scale 0 is the unaligned student (both adapters, EVE's 3 steps), 1 the LoRA as trained. EVE runs at
the model's ``student_guidance`` unless ``--guidance`` names one (1: unguided; > 1: ip2p dual
guidance, image 1.5; at scale 0 that is plug-and-play at 3 steps).
The sweep picks a model's ``spec.lora_scale`` on clips the benchmark never shows (val seeds; the
benchmark reads test and heldout), so the benchmark's figures stay an honest test. Plug-and-play
(20 steps, the benchmark's setting) runs on the same clips as the reference, e.g.::

    python benchmarks/lora_scale.py --model models/shapeworld --scales 0,0.25,0.5,0.75,1 \\
        --limit 56 --out runs/eval/lora-scale-val [--write]

The rule (decided here; EVE has no LoRA scale): the scale with the highest mean val PSNR, the
larger scale on a tie (to 0.01 dB). ``--write`` records it as ``spec.lora_scale`` in the model's
manifest (``evedit_model.json``, rewritten atomically), the default ``evedit edit`` then uses, and
with ``--guidance`` that guidance as ``spec.student_guidance``.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    from evedit.eval.editors import PipelineEditor
    from evedit.eval.entry import EvalOptions, evaluate, load_scorer, print_summary
    from evedit.eval.shapeworld import ShapeWorldBenchmark, model_world

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--scales", default="0,0.25,0.5,0.75,1", help="Comma-separated LoRA scales.")
    ap.add_argument("--limit", type=int, default=56, help="Val clips (56: four of each task).")
    ap.add_argument("--guidance", type=float, default=None,
                    help="EVE's guidance in the sweep (default: the model's student_guidance).")
    ap.add_argument("--no-pnp", action="store_true", help="Leave out the plug-and-play reference row.")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--write", action="store_true", help="Record the chosen scale in the model's manifest.")
    args = ap.parse_args()
    scales = [float(s) for s in args.scales.split(",")]
    opts = EvalOptions(model=args.model, limit=args.limit, out=args.out, samples=2,
                       extra_settings={"split": "val", "lora_scales": scales, "guidance": args.guidance})
    items = ShapeWorldBenchmark(args.limit, ("val",), config=model_world(args.model)).items(args.limit)
    guided = {} if args.guidance is None else {"guidance": args.guidance}
    editors = {f"eve-s{s:g}": PipelineEditor("eve", args.model, lora_scale=s, **guided) for s in scales}
    if not args.no_pnp:
        editors["pnp"] = PipelineEditor("pnp", args.model, steps=20)
    doc = evaluate(opts, items, editors, load_scorer(opts))
    print(print_summary(doc))
    psnr = {s: doc["editors"][f"eve-s{s:g}"]["metrics"]["psnr"] for s in scales}
    best = max(scales, key=lambda s: (round(psnr[s], 2), s))
    print("val PSNR by scale: " + ", ".join(f"{s:g}: {v:.2f}" for s, v in psnr.items()) + f"; chosen: {best:g}")
    if args.write:
        _write_scale(Path(args.model), best, args.guidance)


def _write_scale(folder: Path, scale: float, guidance: float | None) -> None:
    from evedit.models.folder import set_spec

    fields = {"lora_scale": scale, **({} if guidance is None else {"student_guidance": guidance})}
    print(f"wrote {fields} into {set_spec(folder, **fields)}")


if __name__ == "__main__":
    main()
