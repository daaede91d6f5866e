"""``--region auto`` against whole-frame edits, per task, on ShapeWorld's **val** split, in one run.

Each editor edits every val clip twice from the instruction alone, with ``region="full"`` (the
paper's whole-frame edit) and ``region="auto"`` (:mod:`evedit.editing.auto_region`), on the same
seeds; the table gives PSNR against the exact edit, edit accuracy and flicker per task. The rule
that picks a model's ``spec.region_tasks`` (decided before the run): a task joins when ``auto``
raises EVE's mean val PSNR on it and leaves its edit accuracy no lower. ``--write`` records the
tasks in the model's manifest (``evedit_model.json``, atomically). The benchmark reads test and
heldout clips, so its figures stay an honest test::

    python benchmarks/auto_region.py --model models/shapeworld --limit 112 --editors eve \\
        --out runs/eval/auto-region-val [--write]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def main() -> None:
    from evedit.eval.accuracy import edit_accuracy, item_example
    from evedit.eval.editors import PipelineEditor
    from evedit.eval.metrics import flicker, psnr
    from evedit.eval.shapeworld import ShapeWorldBenchmark, model_world

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--limit", type=int, default=112, help="Val clips (112: eight of each task).")
    ap.add_argument("--editors", default="eve", help="Comma-separated editors (eve, pnp, per-frame).")
    ap.add_argument("--baseline-steps", type=int, default=20, help="DDIM steps of the baselines.")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--write", action="store_true", help="Record the chosen tasks in the model's manifest.")
    args = ap.parse_args()
    items = ShapeWorldBenchmark(args.limit, ("val",), config=model_world(args.model)).items(args.limit)
    rows = []
    for name in args.editors.split(","):
        extra = {} if name == "eve" else {"steps": args.baseline_steps}
        for region in ("full", "auto"):
            editor = PipelineEditor(name, args.model, region=region, **extra)
            for it in items:
                out = editor(it.frames, it.instruction, it.task, it.output_caption, 0)
                acc = edit_accuracy(item_example(it.meta["seed"], it.task, it.meta["config"]), out)
                rows.append({"editor": name, "region": region, "key": it.key, "task": it.task,
                             "psnr": psnr(out, it.target), "flicker": flicker(out, it.target),
                             "accuracy": None if acc is None else float(acc)})
            print(f"{name} {region}: {len(items)} clips", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "items.json").write_text(json.dumps(rows, indent=1))
    table, chosen = summarise(rows)
    (args.out / "summary.md").write_text(table)
    print(table)
    print("region_tasks chosen (EVE, val): " + (", ".join(chosen) or "none"))
    if args.write:
        _write_tasks(Path(args.model), chosen)


def summarise(rows: list[dict]) -> tuple[str, list[str]]:
    """Markdown table (per editor and task: full -> auto) and the tasks the rule picks for EVE."""
    groups = defaultdict(list)
    for r in rows:
        groups[(r["editor"], r["region"], r["task"])].append(r)
        groups[(r["editor"], r["region"], "mean")].append(r)
    mean = lambda rs, k: sum(r[k] or 0.0 for r in rs) / len(rs)  # noqa: E731
    tasks = list(dict.fromkeys(r["task"] for r in rows)) + ["mean"]
    lines = ["| editor | task | PSNR full | PSNR auto | accuracy full | accuracy auto | flicker full | flicker auto |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    chosen = []
    for editor in dict.fromkeys(r["editor"] for r in rows):
        for task in tasks:
            full, auto = groups[(editor, "full", task)], groups[(editor, "auto", task)]
            if not full or not auto:
                continue
            lines.append(f"| {editor} | {task} | {mean(full, 'psnr'):.2f} | {mean(auto, 'psnr'):.2f} | "
                         f"{mean(full, 'accuracy'):.3f} | {mean(auto, 'accuracy'):.3f} | "
                         f"{mean(full, 'flicker'):.4f} | {mean(auto, 'flicker'):.4f} |")
            if editor == "eve" and task != "mean" and mean(auto, "psnr") > mean(full, "psnr") \
                    and mean(auto, "accuracy") >= mean(full, "accuracy"):
                chosen.append(task)
    return "\n".join(lines) + "\n", chosen


def _write_tasks(folder: Path, tasks: list[str]) -> None:
    from evedit.eval.report import write_json
    from evedit.models.folder import MANIFEST, read_manifest

    manifest = read_manifest(folder)
    manifest["spec"]["region_tasks"] = tasks
    write_json(folder / MANIFEST, manifest)  # atomic
    print(f"wrote region_tasks {tasks} into {folder / MANIFEST}")


if __name__ == "__main__":
    main()
