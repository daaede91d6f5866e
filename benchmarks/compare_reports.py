"""Model reports side by side: the pretraining figures of several ``quality.json`` files in one table.

Each file is what ``evedit model report`` wrote (edit teacher from the instruction alone, DDIM 50, 16
test frames per task; video teacher; t2i ShapeCLIP top-1; ShapeCLIP retrieval). The world a report
was measured in is the model folder's (``spec.world`` in its ``evedit_model.json``): name it in the
label.

Run: ``python benchmarks/compare_reports.py "0.4.1=models/shapeworld/quality.json" "obj20=runs/x/quality.json"``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

LOCAL = ("color", "texture", "shape", "add", "remove")
ROWS = [  # (label, getter)
    ("edit teacher dB, 14 tasks", lambda q: q["edit_teacher"]["psnr_mean"]),
    *[(f"edit dB {t}", lambda q, t=t: q["edit_teacher"]["psnr_per_task"][t]) for t in LOCAL],
    ("edit accuracy, 14 tasks", lambda q: q["edit_teacher"]["accuracy_mean"]),
    *[(f"accuracy {t}", lambda q, t=t: q["edit_teacher"]["accuracy_per_task"][t]) for t in LOCAL],
    ("video: first-frame dB", lambda q: q["video_teacher"]["first_frame_psnr"]),
    ("video: ShapeCLIP frame consistency", lambda q: q["video_teacher"]["clip_frame_generated"]),
    ("video: motion ratio", lambda q: q["video_teacher"]["motion_ratio"]),
    ("t2i ShapeCLIP top-1", lambda q: q["t2i"]["top1"]),
    ("ShapeCLIP image / video top-1", lambda q: (q["shapeclip"]["image_top1"], q["shapeclip"]["video_top1"])),
]


def cell(value) -> str:
    if isinstance(value, tuple):
        return " / ".join(cell(v) for v in value)
    if value is None:
        return "n/a"
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"


def table(reports: dict[str, dict]) -> str:
    lines = ["| figure | " + " | ".join(reports) + " |", "|---|" + "---:|" * len(reports)]
    for label, get in ROWS:
        values = []
        for q in reports.values():
            try:
                values.append(cell(get(q)))
            except (KeyError, TypeError):
                values.append("n/a")
        lines.append(f"| {label} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", help="LABEL=PATH to a quality.json")
    args = parser.parse_args()
    reports = {}
    for arg in args.reports:
        label, sep, path = arg.partition("=")
        if not sep:
            parser.error(f"give LABEL=PATH, got {arg!r}")
        if not Path(path).is_file():
            parser.error(f"no report at {path}")
        reports[label] = json.loads(Path(path).read_text())
    print(table(reports))


if __name__ == "__main__":
    main()
