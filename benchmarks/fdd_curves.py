"""FDD runs side by side: loss curves and per-term gradient norms from their ``metrics.jsonl``.

Each run is ``LABEL=FOLDER`` (an ``evedit align`` run folder or a ``models/parts/align-*`` folder,
both hold ``metrics.jsonl``). Writes a Markdown table (the mean of each term over the SDS-only and
the adversarial iterations, split at ``--split``, default the recipes' 400) and one PNG of curves
per term (PIL, one line per run), e.g.::

    python benchmarks/fdd_curves.py full=models/parts/align-dc-obj20 \\
        no-adv=runs/ablations-obj20/no-adv/model --out benchmarks/results/fdd_curves_obj20
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
from pathlib import Path

from PIL import Image, ImageDraw

TERMS = ("sds_edit", "sds_video", "g_edit", "g_video", "d_edit", "d_video", "gradnorm_sds_edit",
         "gradnorm_sds_video", "gradnorm_g_edit", "gradnorm_g_video", "g_grad_norm")
COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207)]


def read_metrics(folder: Path) -> list[dict]:
    """The train rows of a run's metrics.jsonl (looked for in the folder and its parent)."""
    for path in (folder / "metrics.jsonl", folder.parent / "metrics.jsonl"):
        if path.is_file():
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            return [r for r in rows if r.get("split", "train") == "train"]
    raise SystemExit(f"No metrics.jsonl in '{folder}' or its parent.")


def window_means(rows: list[dict], split: int) -> dict[str, tuple[float | None, float | None]]:
    """term -> (mean over steps <= split, mean over steps > split); None where the term is absent."""
    def mean(term, keep):
        values = [r[term] for r in rows if term in r and keep(r["step"])]
        return statistics.fmean(values) if values else None

    return {t: (mean(t, lambda s: s <= split), mean(t, lambda s: s > split)) for t in TERMS}


def line_chart(title: str, series: dict[str, list[tuple[int, float]]], path: Path, w: int = 720, h: int = 240) -> None:
    """One PNG: a line per series of (step, value) points, shared axes, a legend."""
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    points = [p for s in series.values() for p in s]
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
    y1 = y1 if y1 > y0 else y0 + 1.0
    left, top, right, bottom = 50, 20, w - 10, h - 30

    def xy(step, value):
        return (left + (step - x0) / max(x1 - x0, 1) * (right - left),
                bottom - (value - y0) / (y1 - y0) * (bottom - top))

    draw.rectangle((left, top, right, bottom), outline=(160, 160, 160))
    draw.text((left, 4), title, fill="black")
    draw.text((2, top), f"{y1:.3g}", fill="black")
    draw.text((2, bottom - 10), f"{y0:.3g}", fill="black")
    draw.text((left, bottom + 4), str(x0), fill="black")
    draw.text((right - 30, bottom + 4), str(x1), fill="black")
    step = (right - left) // max(len(series), 1)  # legend: one slot per run
    for i, (label, pts) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        if len(pts) > 1:
            draw.line([xy(*p) for p in pts], fill=colour, width=2)
        draw.text((left + 8 + step * i, bottom + 14), label, fill=colour)
    img.save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="LABEL=FOLDER")
    ap.add_argument("--split", type=int, default=400, help="Last step of the SDS-only phase.")
    ap.add_argument("--out", type=Path, required=True, help="Output stem: STEM.md and STEM/<term>.png")
    args = ap.parse_args()
    runs = {}
    for spec in args.runs:
        label, _, folder = spec.partition("=")
        if not folder:
            raise SystemExit(f"Give each run as LABEL=FOLDER, got {spec!r}.")
        runs[label] = read_metrics(Path(folder))
    means = {label: window_means(rows, args.split) for label, rows in runs.items()}
    fmt = lambda v: "" if v is None else f"{v:.4g}"  # noqa: E731
    lines = [f"# FDD runs: mean of each term over steps 1-{args.split} / after {args.split}", "",
             "| term | " + " | ".join(runs) + " |", "|---|" + "---:|" * len(runs)]
    for term in TERMS:
        if all(means[r][term] == (None, None) for r in runs):
            continue
        cells = [f"{fmt(means[r][term][0])} / {fmt(means[r][term][1])}" for r in runs]
        lines.append(f"| {term} | " + " | ".join(cells) + " |")
    charts = args.out.with_suffix("")
    charts.mkdir(parents=True, exist_ok=True)
    for term in TERMS:
        series = {label: [(r["step"], r[term]) for r in rows if term in r] for label, rows in runs.items()}
        series = {k: v for k, v in series.items() if v}
        if series:
            line_chart(term, series, charts / f"{term}.png")
    lines += ["", f"Curves: `{charts.name}/<term>.png`. Command: `python benchmarks/fdd_curves.py "
              + " ".join(shlex.quote(r) for r in args.runs) + f" --split {args.split} --out {args.out}`"]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
