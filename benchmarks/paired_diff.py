"""Is one editor's lead real? Paired differences of two `evedit eval` runs' per-clip figures.

Each side is ``LABEL=ITEMS:EDITOR``: an ``items.jsonl`` that ``evedit eval`` wrote and the editor's
name in it (``eve``, ``pnp``, ``per-frame``, ...). Clips are paired by their key (the same
benchmark item); the script prints, per metric, the mean of A - B, its standard error, a 95%
bootstrap interval (10,000 resamples of the clips, fixed seed) and on how many clips A's figure is the larger,
overall and per group (ShapeWorld split)::

    python benchmarks/paired_diff.py "EVE=results/shapeworld/items.jsonl:eve" \\
        "plug-and-play=results/shapeworld/items.jsonl:pnp" --metrics psnr flicker
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def read_side(spec: str) -> tuple[str, dict[str, dict]]:
    """``LABEL=ITEMS:EDITOR`` -> (label, {key: row})."""
    label, _, rest = spec.partition("=")
    path, _, editor = rest.rpartition(":")
    if not label or not path or not editor:
        raise SystemExit(f"A side is LABEL=ITEMS.jsonl:EDITOR, got {spec!r}.")
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    picked = {r["key"]: r for r in rows if r.get("editor") == editor}
    if not picked:
        raise SystemExit(f"{path} holds no rows of editor {editor!r}.")
    return label, picked


def paired(a: np.ndarray, b: np.ndarray, resamples: int = 10_000, seed: int = 0) -> dict[str, float]:
    """Mean, standard error and 95% bootstrap interval of ``a - b``; the count of clips with a > b."""
    d = a - b
    rng = np.random.default_rng(seed)
    boots = d[rng.integers(0, len(d), size=(resamples, len(d)))].mean(axis=1)
    return {"mean": float(d.mean()), "se": float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan"),
            "lo": float(np.percentile(boots, 2.5)), "hi": float(np.percentile(boots, 97.5)),
            "ahead": int((d > 0).sum()), "n": len(d)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", help="LABEL=ITEMS.jsonl:EDITOR (the side whose lead is asked about)")
    ap.add_argument("b", help="LABEL=ITEMS.jsonl:EDITOR")
    ap.add_argument("--metrics", nargs="+", default=["psnr", "edit_accuracy", "flicker"])
    args = ap.parse_args(argv)
    (la, a), (lb, b) = read_side(args.a), read_side(args.b)
    keys = sorted(set(a) & set(b))
    if not keys:
        raise SystemExit("The two sides share no clip keys.")
    print(f"{la} - {lb}, {len(keys)} clips paired by key")
    print("| metric | group | mean A - B | SE | 95% bootstrap interval | clips with A > B |\n|---|---|---:|---:|---|---:|")
    groups = ["all", *sorted({a[k].get("group", "") for k in keys} - {""})]
    for metric in args.metrics:
        for group in groups:
            ks = [k for k in keys if group == "all" or a[k].get("group") == group]
            ks = [k for k in ks if a[k].get(metric) is not None and b[k].get(metric) is not None]
            if not ks:
                continue
            r = paired(np.array([a[k][metric] for k in ks], float), np.array([b[k][metric] for k in ks], float))
            print(f"| {metric} | {group} | {r['mean']:+.3f} | {r['se']:.3f} | [{r['lo']:+.3f}, {r['hi']:+.3f}] "
                  f"| {r['ahead']} of {r['n']} |")


if __name__ == "__main__":
    main()
