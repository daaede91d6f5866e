"""Steps per second and wall time of every ShapeWorld training stage, from the real runs.

Reads ``runs/<stage>/export/train_summary.json`` (written by ``make train-shapeworld``) and
``runs/align/align_summary.json``, and writes ``benchmarks/results/recipe.md``. The figures are the
loop's own (train time after the first step); a resumed stage reports its last run only.

Run: ``python benchmarks/recipe_times.py [--runs runs] [--note "what shared the cores"]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("codec", "t2i", "clip", "task-classifier", "edit-adapter", "video-adapter")


def rows(runs: Path) -> list[str]:
    out = []
    for stage in STAGES:
        path = runs / stage / "export" / "train_summary.json"
        if not path.is_file():
            out.append(f"| {stage} | not trained | | | |")
            continue
        s = json.loads(path.read_text())
        out.append(f"| {stage} | {s['steps']} | {s['steps_this_run']} | {s['steps_per_s']:.2f} | "
                   f"{s['wall_time_s'] / 60:.1f} |")
    seen = set()  # an ablation folder may be a link to the main align run
    for name in sorted(p.parent.name for p in runs.glob("*/align_summary.json")) + \
            sorted(f"ablations/{p.parent.name}" for p in runs.glob("ablations/*/align_summary.json")):
        if (runs / name).resolve() in seen:
            continue
        seen.add((runs / name).resolve())
        s = json.loads((runs / name / "align_summary.json").read_text())
        out.append(f"| align ({name}) | {s['steps']} | {s['steps']} | {s['steps'] / s['seconds']:.2f} | "
                   f"{s['seconds'] / 60:.1f} |")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=Path, default=ROOT / "runs")
    p.add_argument("--note", default="")
    args = p.parse_args()
    lines = ["# The ShapeWorld recipe, stage by stage (measured on the real runs)", "",
             f"{date.today()}, {platform.machine()}, {os.cpu_count()} CPUs, one torch thread per process. {args.note}",
             "Source: each run's `train_summary.json` / `align_summary.json`. Command: "
             "`python benchmarks/recipe_times.py`.", "",
             "| stage | steps | steps this run | steps/s | wall time this run (min) |", "|---|---:|---:|---:|---:|",
             *rows(args.runs), ""]
    out = ROOT / "benchmarks" / "results" / "recipe.md"
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
