"""The quality report's outputs: ``quality.json`` and the model card's "Quality" section.

:func:`evedit.training.quality.quality_report` measures; this module writes what it measured.
"""

from __future__ import annotations

import json
from pathlib import Path


def quality_markdown(report: dict) -> str:
    """The report as the model card's "Quality" section."""
    lines = ["## Quality (held-out test split, `evedit model report`)", "",
             "| figure | value | target | met |", "|---|---:|---:|---|"]
    for key, t in report["targets"].items():
        value = "n/a" if t["value"] is None else f"{t['value']:.3g}"
        lines.append(f"| {key} | {value} | {t['target']:g} | {'yes' if t['met'] else 'no'} |")
    v = report.get("video_teacher")
    if v:
        lines += ["", f"Video teacher ({v['items']} clips from a real first frame, DDIM {v['steps']}): "
                  f"first-frame PSNR {v['first_frame_psnr']:.2f} dB; ShapeCLIP frame consistency "
                  f"{v['clip_frame_generated']:.3f} (real clips {v['clip_frame_real']:.3f}); motion ratio "
                  f"{v['motion_ratio']:.2f} (generated / real mean frame change)."]
    e = report.get("edit_teacher")
    if e:
        lines += ["", f"Edit teacher PSNR per task (dB, {e['frames_per_task']} frames each, DDIM {e['steps']}):", "",
                  "| | " + " | ".join(e["psnr_per_task"]) + " |", "|---|" + "---:|" * len(e["psnr_per_task"]),
                  "| teacher | " + " | ".join(f"{x:.1f}" for x in e["psnr_per_task"].values()) + " |"]
        ident = e.get("identity_psnr_per_task")
        if ident:  # reports written before 0.4.14 lack it
            lines.append("| Identity (input unchanged) | " + " | ".join(f"{ident[t]:.1f}" for t in e["psnr_per_task"]) + " |")
        acc = e.get("accuracy_per_task")
        if acc:
            lines += ["", "Edit teacher accuracy per task (share of frames where the asked change happened):", "",
                      "| " + " | ".join(acc) + " |", "|" + "---:|" * len(acc),
                      "| " + " | ".join("–" if x is None else f"{x:.2f}" for x in acc.values()) + " |"]
    s = report.get("shapeclip")
    if s:
        pairs = ", ".join(f"{k.removeprefix('image_pair_')} {v:.2f}" for k, v in s.items() if k.startswith("image_pair_"))
        lines += ["", f"ShapeCLIP video-tower top-1: {s['video_top1']:.3f}"
                  + (f"; frame vs one-attribute-off caption, pairwise: {pairs}." if pairs else ".")]
    lines += ["", f"Measured in {report['seconds'] / 60:.1f} min.", ""]
    return "\n".join(lines)


def write_report(folder: str | Path, report: dict, card: bool = True) -> Path:
    """``quality.json`` in the folder; with ``card``, the folder's README.md gets the section."""
    folder = Path(folder)
    path = folder / "quality.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(path)
    readme = folder / "README.md"
    if card and readme.is_file():
        text = readme.read_text().split("## Quality (held-out test split")[0].rstrip() + "\n\n"
        tmp = readme.with_suffix(".md.tmp")
        tmp.write_text(text + quality_markdown(report))
        tmp.replace(readme)
    return path
