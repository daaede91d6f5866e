"""Edit teacher's InstructPix2Pix guidance scales, swept on the validation split.

The edit teacher (backbone + ControlNet) is sampled with dual classifier-free guidance
(``image_scale`` on the input frame, ``text_scale`` on the instruction/caption). The scales were
InstructPix2Pix's habits (1.5 / 3.0 here, :class:`~evedit.training.fdd.config.FDDConfig`), never
measured on ShapeWorld. This runs :func:`~evedit.training.quality.edit_teacher_quality` on
**validation** frames (the test split stays for the model card) for every pair of the grid and
writes ``benchmarks/results/guidance_sweep.md``: mean PSNR against the true edit and per task.

Run: ``python benchmarks/guidance_sweep.py --model models/shapeworld``
(``--per-task 6 --steps 25``: 84 frames per pair; one torch thread).
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sweep(model_path: str, image_scales, text_scales, per_task: int, steps: int) -> list[dict]:
    import torch

    from evedit.models import load_model
    from evedit.training.quality import edit_teacher_quality

    torch.set_num_threads(1)
    model = load_model(model_path)
    rows = []
    for image_scale, text_scale in itertools.product(image_scales, text_scales):
        start = time.perf_counter()
        r = edit_teacher_quality(model, per_task=per_task, steps=steps, image_scale=image_scale,
                                 text_scale=text_scale, progress=False, split="val")
        r["seconds"] = time.perf_counter() - start
        rows.append(r)
        print(f"image {image_scale:4.2f} text {text_scale:4.2f}: {r['psnr_mean']:.2f} dB ({r['seconds']:.0f} s)",
              flush=True)
    return rows


def table(rows: list[dict], model_path: str, per_task: int, steps: int) -> str:
    tasks = list(rows[0]["psnr_per_task"])
    best = max(rows, key=lambda r: r["psnr_mean"])
    lines = [
        "# Edit teacher guidance sweep (`benchmarks/guidance_sweep.py`)", "",
        f"Model `{model_path}`; validation split, {per_task} frames per task ({per_task * len(tasks)} per pair), "
        f"DDIM {steps}, seeded draws (the same noise for every pair). PSNR (dB) against the true edit.", "",
        "| image | text | mean | " + " | ".join(tasks) + " |",
        "|---:|---:|---:|" + "---:|" * len(tasks),
    ]
    for r in rows:
        mark = "**" if r is best else ""
        cells = " | ".join(f"{r['psnr_per_task'][t]:.1f}" for t in tasks)
        lines.append(f"| {r['image_scale']:g} | {r['text_scale']:g} | {mark}{r['psnr_mean']:.2f}{mark} | {cells} |")
    lines += ["", f"Best pair: image {best['image_scale']:g}, text {best['text_scale']:g} "
              f"({best['psnr_mean']:.2f} dB). {min(r['seconds'] for r in rows):.0f}-{max(r['seconds'] for r in rows):.0f} s "
              "per pair on one thread.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="models/shapeworld")
    ap.add_argument("--image-scales", type=float, nargs="+", default=[1.0, 1.5, 2.5])
    ap.add_argument("--text-scales", type=float, nargs="+", default=[1.0, 2.0, 3.0, 5.0])
    ap.add_argument("--per-task", type=int, default=6)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "guidance_sweep.md"))
    args = ap.parse_args()
    rows = sweep(args.model, args.image_scales, args.text_scales, args.per_task, args.steps)
    Path(args.out).write_text(table(rows, args.model, args.per_task, args.steps))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
