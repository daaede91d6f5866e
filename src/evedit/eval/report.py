"""Reports: the summary JSON and Markdown tables laid out like EVE's Table 1 (and Table 2 for ablations).

Human-evaluation columns of the paper's tables are left out (no raters here). For TGVE and TGVE+
the paper's own automatic scores are appended as "(paper)" rows for comparison.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

#: metric -> (column title, higher is better, decimals)
METRIC_INFO: dict[str, tuple[str, bool, int]] = {
    "pick_score": ("PickScore", True, 2), "clip_frame": ("CLIPFrame", True, 3),
    "viclip_dir": ("ViCLIP_dir", True, 3), "viclip_out": ("ViCLIP_out", True, 3),
    "clip_text": ("CLIPText", True, 2), "clip_dir": ("CLIP_dir", True, 3),
    "video_clip_dir": ("VideoCLIP_dir", True, 3), "video_clip_out": ("VideoCLIP_out", True, 3),
    "clip_out": ("CLIP_out", True, 3), "psnr": ("PSNR", True, 2), "flicker": ("Flicker", False, 4),
    "structure_psnr": ("StructPSNR", True, 2), "edit_accuracy": ("EditAcc", True, 3),
}
#: Table 1 column order of each benchmark (the paper's four first).
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "shapeworld": ("clip_frame", "video_clip_dir", "video_clip_out", "clip_out", "clip_dir", "psnr",
                   "edit_accuracy", "flicker", "structure_psnr"),
    "tgve": ("pick_score", "clip_frame", "viclip_dir", "viclip_out", "clip_text", "clip_dir"),
}
TABLE_COLUMNS["tgve-plus"] = TABLE_COLUMNS["tgve"]
SET_NAMES = {"shapeworld": "ShapeWorld", "tgve": "TGVE", "tgve-plus": "TGVE+"}
EDITOR_NAMES = {"eve": "EVE", "pnp": "Plug-and-play", "per-frame": "Per-frame", "sdedit": "SDEdit",
                "identity": "Identity (no edit)", "ground-truth": "Ground truth"}
#: EVE Table 1, automatic metrics: set -> method -> (PickScore, CLIPFrame, ViCLIP_dir, ViCLIP_out).
PAPER_TABLE1: dict[str, dict[str, tuple[float, float, float, float]]] = {
    "tgve": {"TAV": (20.36, 0.924, 0.162, 0.243), "SDEdit": (20.18, 0.896, 0.172, 0.253),
             "STDF": (20.40, 0.933, 0.110, 0.226), "Fairy": (19.80, 0.933, 0.164, 0.208),
             "InsV2V": (20.76, 0.911, 0.208, 0.262), "EVE": (20.76, 0.922, 0.221, 0.262)},
    "tgve-plus": {"TAV": (20.47, 0.933, 0.131, 0.242), "SDEdit": (20.35, 0.899, 0.144, 0.246),
                  "STDF": (20.60, 0.933, 0.093, 0.227), "Fairy": (19.81, 0.933, 0.140, 0.197),
                  "InsV2V": (20.37, 0.925, 0.174, 0.236), "EVE": (20.88, 0.926, 0.198, 0.251)},
}
#: Ablation folder names (``evedit align --ablation``) -> EVE Table 2 rows.
ABLATION_NAMES = {"random-init": "Random Init", "pnp": "w/o alignment (plug-and-play)", "no-sds": "w/o SDS",
                  "no-adv": "w/o discriminators (SDS only)", "no-kbin": "w/o K-Bin sampling", "none": "EVE (full)"}


def editor_label(name: str) -> str:
    return EDITOR_NAMES.get(name, name)


def fmt(value: float | None, metric: str) -> str:
    if value is None:
        return "–"
    return f"{value:.{METRIC_INFO.get(metric, ('', True, 3))[2]}f}"


def header(metric: str) -> str:
    title, higher, _ = METRIC_INFO.get(metric, (metric, True, 3))
    return f"{title}{'↑' if higher else '↓'}"


def columns_for(benchmark: str, metrics: Sequence[str]) -> list[str]:
    order = TABLE_COLUMNS.get(benchmark, ())
    return [m for m in order if m in metrics] + [m for m in metrics if m not in order]


def write_json(path: str | Path, data: dict) -> Path:
    """Atomic JSON write."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)
    return path


def summary(benchmark: str, aggregated: dict, metrics: Sequence[str], settings: dict | None = None,
            n_items: int | None = None) -> dict:
    """The summary document: ``{"benchmark", "editors": {NAME: {"metrics", "per_task", ...}}, ...}``."""
    return {"benchmark": benchmark, "n_items": n_items, "metrics": list(metrics), "settings": settings or {},
            "editors": aggregated}


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def table1(doc: dict) -> str:
    """Overall results, one row per (set, editor), the paper's layout; ShapeWorld adds a row per split."""
    bench, metrics = doc["benchmark"], columns_for(doc["benchmark"], doc["metrics"])
    lines = [_row(["Set", "Method", *map(header, metrics)]), _row(["---"] * (2 + len(metrics)))]
    name = SET_NAMES.get(bench, bench)
    for editor, entry in doc["editors"].items():
        lines.append(_row([name, f"**{editor_label(editor)}**" if editor == "eve" else editor_label(editor),
                           *(fmt(entry["metrics"].get(m), m) for m in metrics)]))
    if bench == "shapeworld":
        groups = dict.fromkeys(g for e in doc["editors"].values() for g in e.get("per_group", {}))
        for group in groups:
            for editor, entry in doc["editors"].items():
                values = entry.get("per_group", {}).get(group, {})
                lines.append(_row([f"{name}-{group}", editor_label(editor), *(fmt(values.get(m), m) for m in metrics)]))
    for method, vals in PAPER_TABLE1.get(bench, {}).items():
        paper = dict(zip(("pick_score", "clip_frame", "viclip_dir", "viclip_out"), vals))
        lines.append(_row([name, f"{method} (paper)", *(fmt(paper.get(m), m) for m in metrics)]))
    return "\n".join(lines)


def per_task_tables(doc: dict) -> str:
    """One table per metric: tasks as rows, editors as columns."""
    editors = list(doc["editors"])
    tasks = list(dict.fromkeys(t for e in doc["editors"].values() for t in e.get("per_task", {})))
    parts = []
    for m in columns_for(doc["benchmark"], doc["metrics"]):
        lines = [f"### {header(m)}", "", _row(["task", *map(editor_label, editors)]),
                 _row(["---"] * (1 + len(editors)))]
        for task in tasks:
            lines.append(_row([task, *(fmt(doc["editors"][e].get("per_task", {}).get(task, {}).get(m), m)
                                       for e in editors)]))
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def markdown(doc: dict) -> str:
    """The whole report: Table 1 analogue, then per-task tables."""
    bench = SET_NAMES.get(doc["benchmark"], doc["benchmark"])
    note = ("CLIP-style scores computed with ShapeCLIP (VideoCLIP_* use its video tower, in ViCLIP's role); PSNR "
            "and Flicker against the exact ground truth, StructPSNR against the input outside the edit; EditAcc "
            "is the share of edits where the asked change happened, judged from the scene graphs and masks "
            "(`evedit.eval.accuracy`)."
            if doc["benchmark"] == "shapeworld" else
            "Automatic metrics only (the paper's human-evaluation columns are left out).")
    return (f"# {bench} evaluation ({doc.get('n_items')} items)\n\n{note}\n\n" + table1(doc)
            + "\n\n## Per task\n\n" + per_task_tables(doc) + "\n")


def table2(doc: dict, variants: dict[str, str]) -> str:
    """Ablations: one row per variant (``variants``: editor name in ``doc`` -> ablation name)."""
    metrics = columns_for(doc["benchmark"], doc["metrics"])
    lines = [_row(["Variant", *map(header, metrics)]), _row(["---"] * (1 + len(metrics)))]
    for editor, ablation in variants.items():
        entry = doc["editors"].get(editor)
        if entry is not None:
            lines.append(_row([ABLATION_NAMES.get(ablation, ablation),
                               *(fmt(entry["metrics"].get(m), m) for m in metrics)]))
    return "\n".join(lines)
