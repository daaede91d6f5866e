"""``--region auto`` against whole-frame edits, per task, on ShapeWorld's **val** split, in one run.

Each editor edits every val clip from the instruction alone with ``region="full"`` (the paper's
whole-frame edit) and with ``region="auto"`` (:mod:`evedit.editing.auto_region`) at each
``--variants`` setting (threshold / growth in latent cells; default the module's), on the same
seeds; the table gives PSNR against the exact edit, edit accuracy and flicker per task. The rule
that picks a model's ``spec.region_tasks`` (decided before the run), on the first variant: a task
joins when ``auto`` raises EVE's mean val PSNR on it and leaves its edit accuracy no lower.
``--write`` records the tasks in the model's manifest (``evedit_model.json``, atomically). The
benchmark reads test and heldout clips, so its figures stay an honest test::

    python benchmarks/auto_region.py --model models/shapeworld --limit 112 --editors eve \\
        --out runs/eval/auto-region-val [--write]
    python benchmarks/auto_region.py --model models/shapeworld --limit 100 --tasks color \\
        --variants 0.5/1,0.4/0 --out runs/eval/auto-region-colour
"""

from __future__ import annotations

import argparse
import functools
import json
from collections import defaultdict
from pathlib import Path


def main() -> None:
    from evedit.editing import auto_region, stream
    from evedit.eval.accuracy import edit_accuracy, item_example
    from evedit.eval.editors import PipelineEditor
    from evedit.eval.metrics import flicker, psnr
    from evedit.eval.shapeworld import ShapeWorldBenchmark, model_world
    from evedit.world import TASKS

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--limit", type=int, default=112, help="Val clips (112: eight of each task).")
    ap.add_argument("--tasks", default=",".join(TASKS), help="Comma-separated tasks (default: all).")
    ap.add_argument("--editors", default="eve", help="Comma-separated editors (eve, pnp, per-frame).")
    ap.add_argument("--variants", default=f"{auto_region.THRESHOLD:g}/{auto_region.DILATE}",
                    help="Comma-separated threshold/growth settings of the found region.")
    ap.add_argument("--baseline-steps", type=int, default=20, help="DDIM steps of the baselines.")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--write", action="store_true", help="Record the chosen tasks in the model's manifest.")
    args = ap.parse_args()
    tasks = tuple(args.tasks.split(","))
    items = ShapeWorldBenchmark(args.limit, ("val",), tasks, config=model_world(args.model)).items(args.limit)
    variants = args.variants.split(",")
    rows = []
    for name in args.editors.split(","):
        extra = {} if name == "eve" else {"steps": args.baseline_steps}
        for region in ("full", *variants):
            if region != "full":  # the stream's estimator at this setting (a benchmark-only knob)
                threshold, growth = region.split("/")
                stream.estimate_region = functools.partial(auto_region.estimate_region,
                                                           threshold=float(threshold), dilate=int(growth))
            editor = PipelineEditor(name, args.model, region="full" if region == "full" else "auto", **extra)
            for it in items:
                out = editor(it.frames, it.instruction, it.task, it.output_caption, 0)
                acc = edit_accuracy(item_example(it.meta["seed"], it.task, it.meta["config"]), out)
                rows.append({"editor": name, "region": region, "key": it.key, "task": it.task,
                             "psnr": psnr(out, it.target), "flicker": flicker(out, it.target),
                             "accuracy": None if acc is None else float(acc)})
            print(f"{name} {region}: {len(items)} clips", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "items.json").write_text(json.dumps(rows, indent=1))
    table, chosen = summarise(rows, variants)
    (args.out / "summary.md").write_text(table)
    print(table)
    print(f"region_tasks chosen (EVE, val, {variants[0]}): " + (", ".join(chosen) or "none"))
    if args.write:
        _write_tasks(Path(args.model), chosen)


def summarise(rows: list[dict], variants: list[str]) -> tuple[str, list[str]]:
    """Markdown table (per editor and task: PSNR / accuracy / flicker, whole frames then each
    variant) and the tasks the rule picks for EVE on the first variant."""
    groups = defaultdict(list)
    for r in rows:
        for task in (r["task"], "mean"):
            groups[(r["editor"], r["region"], task)].append(r)
    mean = lambda rs, k: sum(r[k] or 0.0 for r in rs) / len(rs)  # noqa: E731
    tasks = list(dict.fromkeys(r["task"] for r in rows)) + ["mean"]
    regions = ["full", *variants]
    head = " | ".join(f"{'whole frames' if g == 'full' else 'auto ' + g} PSNR / acc / flicker" for g in regions)
    lines = [f"| editor | task | {head} |", "|---|---|" + "---|" * len(regions)]
    chosen = []
    for editor in dict.fromkeys(r["editor"] for r in rows):
        for task in tasks:
            cells = [groups[(editor, g, task)] for g in regions]
            if not all(cells):
                continue
            lines.append(f"| {editor} | {task} | " + " | ".join(
                f"{mean(c, 'psnr'):.2f} / {mean(c, 'accuracy'):.3f} / {mean(c, 'flicker'):.4f}" for c in cells) + " |")
            full, auto = cells[0], cells[1]
            if editor == "eve" and task != "mean" and mean(auto, "psnr") > mean(full, "psnr") \
                    and mean(auto, "accuracy") >= mean(full, "accuracy"):
                chosen.append(task)
    return "\n".join(lines) + "\n", chosen


def _write_tasks(folder: Path, tasks: list[str]) -> None:
    from evedit.models.folder import set_spec

    print(f"wrote region_tasks {tasks} into {set_spec(folder, region_tasks=tasks)}")


if __name__ == "__main__":
    main()
