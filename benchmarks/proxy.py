"""Equal-time proxy runs: train several variants of one stage side by side, compare their figures.

A proxy file (``benchmarks/proxies/*.yaml``) names the stage, a base recipe, the training-time
budget and the variants, each a set of overrides of the recipe::

    stage: t2i
    base: configs/t2i.yaml
    minutes: 15
    overrides: {train: {eval_every: 0, sample_every: 0}}   # for every variant
    variants:
      uniform: {}
      min-snr-5: {stage: {snr_gamma: 5.0}}

Every variant trains at the same time (one process and one torch thread each, so they share the
machine alike) for ``minutes`` of training time (``evedit train --max-minutes``), then is
evaluated by its stage (the final evaluation of its export) and, for ``t2i``, by ShapeCLIP top-1
of its generations for test captions (the model report's figure), the SDEdit round trip of test
frames, both through the variant's own codec, and the object colour accuracy of SDEdit from t = 500
and 700 (``benchmarks/t2i_overfit.py``: are the objects drawn in their colours); for ``edit-adapter``, by the shipped model with the
variant's adapter (or, with ``model: FOLDER`` in the proxy file, that model folder with it) on the
local tasks' test frames (or the file's ``tasks`` and ``split``) from the instruction alone: PSNR outside and
inside the edit's footprint and edit accuracy (``benchmarks/edit_fidelity.py``). The table goes to ``benchmarks/results/proxy_NAME.md``.
A variant whose export exists is not trained again (a proxy run resumes).

Run: ``python benchmarks/proxy.py benchmarks/proxies/t2i_store_weighting.yaml [--minutes M]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from datetime import date
from pathlib import Path

from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
EVEDIT = [sys.executable, "-m", "evedit.cli"]


def variant_recipes(spec: dict, out: Path) -> dict[str, Path]:
    """Write each variant's resolved recipe (base < shared overrides < variant) under ``out``."""
    base = OmegaConf.load(ROOT / spec["base"])
    recipes = {}
    for name, over in spec["variants"].items():
        merged = OmegaConf.merge(base, spec.get("overrides") or {}, over or {})
        path = out / name / "recipe.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(merged, path)
        recipes[name] = path
    return recipes


def train_side_by_side(stage: str, recipes: dict[str, Path], minutes: float) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    procs = {}
    for name, recipe in recipes.items():
        run = recipe.parent / "run"
        if (run / "export" / "train_summary.json").is_file():
            continue
        resume = ["--resume"] if list((run / "checkpoints").glob("step_*")) else []
        cmd = [*EVEDIT, "train", stage, "--config", str(recipe), "--out", str(run),
               "--max-minutes", str(minutes), *resume]
        log = (recipe.parent / "train.log").open("w")
        procs[name] = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    failed = [name for name, p in procs.items() if p.wait() != 0]
    if failed:
        sys.exit(f"proxy variant(s) {', '.join(failed)} failed; see their train.log")


def t2i_figures(export: Path, vae_path: str, items: int, grid_path: Path | None = None) -> dict:
    """ShapeCLIP top-1 of the variant's generations (test captions, 10 candidates) and the SDEdit
    round trip (:func:`~evedit.training.quality.t2i_round_trip`), on the variant's own codec; with
    ``grid_path``, a PNG of 8 test frames (top) over the variant's generations for their captions."""
    import torch
    from PIL import Image

    from evedit.eval.shapeworld import ShapeWorldScorer
    from evedit.models import load_model
    from evedit.training.quality import t2i_generate, t2i_quality, t2i_round_trip
    from evedit.training.stages.common import grid, load_unet, load_vae, to_uint8
    from evedit.training.stages.t2i import resolve_vae_folder
    from evedit.world import ImageCaptionDataset
    from t2i_overfit import object_colour_figures

    shipped = ROOT / "models" / "shapeworld"
    torch.set_num_threads(1)
    model = load_model(shipped)  # text encoder, schedule and spec; ShapeCLIP scores pixels
    model.unet, model.vae = load_unet(export / "unet"), load_vae(resolve_vae_folder(vae_path))
    if grid_path is not None:
        test = [ImageCaptionDataset("test", 8)[i] for i in range(8)]
        made = t2i_generate(model, [x["caption"] for x in test])
        truth = to_uint8(torch.stack([x["image"] for x in test]))
        grid_path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(grid([list(truth), list(to_uint8(made))])).save(grid_path)
    trip = t2i_round_trip(model, items=items)
    top1 = t2i_quality(model, ShapeWorldScorer.from_pretrained(shipped), items=items)["top1"]
    colour = object_colour_figures(model, items)  # does it draw the objects' colours where they are?
    return {"t2i_top1": top1, **{k: v for k, v in trip.items() if k.startswith("psnr")}, **colour}


def edit_figures(export: Path, per_task: int, model_folder: Path, recipe: Path, grid_path: Path | None = None,
                 tasks: tuple[str, ...] | None = None, split: str = "test") -> dict:
    """``model_folder`` (the shipped model unless the proxy file names another ``model``) with the
    variant's ControlNet (and source branch, if it trained one) and the backbone it was trained on
    (the recipe's ``unet_path``), on ``split`` frames of the world of its store: keep / edit PSNR and
    edit accuracy per task of ``tasks`` (default the local ones) and their means (edit_fidelity.py's
    figures); with ``grid_path``, a PNG of input | edit | truth, four frames per task."""
    from dataclasses import replace

    import numpy as np
    import torch

    from edit_fidelity import TASKS, task_rows
    from evedit.io import write_image
    from evedit.models import load_model
    from evedit.training.stages.common import grid
    from evedit.training.stages.common import load_unet
    from evedit.training.store import store_world

    torch.set_num_threads(1)
    model = load_model(model_folder, edit_adapter=export)
    stage = OmegaConf.to_container(OmegaConf.load(recipe).stage)
    if stage.get("unet_path"):
        model.unet = load_unet(ROOT / stage["unet_path"])
    model.spec = replace(model.spec, world=store_world(stage.get("data") or {}) or model.spec.world)
    row, shown, tasks = {}, [], tuple(tasks or TASKS)
    for task in tasks:
        r = task_rows(model, task, per_task, steps=25, image_scale=None, split=split, grid_rows=shown)
        row.update({f"{task}_keep": r["keep"], f"{task}_edit": r["edit"], f"{task}_acc": r["acc"]})
    for k in ("keep", "edit", "acc"):
        row[f"mean_{k}"] = float(np.nanmean([row[f"{t}_{k}"] for t in tasks]))  # keep: none on whole-frame tasks
    if grid_path is not None:
        grid_path.parent.mkdir(parents=True, exist_ok=True)
        write_image(grid_path, grid(shown))
    return row


def figures(stage: str, recipe: Path, items: int, grid_path: Path | None = None,
            model_folder: Path = ROOT / "models" / "shapeworld", per_task: int = 16,
            tasks: tuple[str, ...] | None = None, split: str = "test") -> dict:
    run = recipe.parent / "run" / "export"
    summary = json.loads((run / "train_summary.json").read_text())
    row = {"steps": summary["steps"], "train_min": summary["train_time_s"] / 60, **summary["final_eval"]}
    if stage == "t2i":
        vae = OmegaConf.load(recipe).stage.get("vae_path", "")
        row.update(t2i_figures(run, vae, items, grid_path))
    if stage == "edit-adapter":
        row.update(edit_figures(run, per_task=per_task, model_folder=model_folder, recipe=recipe, grid_path=grid_path,
                                tasks=tasks, split=split))
    return row


def write_table(spec: dict, name: str, rows: dict[str, dict], minutes: float, args: list[str]) -> Path:
    keys = sorted({k for r in rows.values() for k in r} - {"steps", "train_min"})
    fmt = lambda v: "n/a" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))  # noqa: E731
    lines = [f"# Proxy: {name} ({spec['stage']})", "",
             f"{date.today()}, {platform.machine()} ({os.cpu_count()} CPUs). {len(rows)} variants of "
             f"`{spec['base']}` trained side by side, one thread each, {minutes:g} min of training time "
             "each; figures are each export's final evaluation on the stage's fixed validation items.",
             f"Command: `python benchmarks/proxy.py {' '.join(args)}`.", "",
             "| variant | steps | " + " | ".join(keys) + " |", "|---|---:|" + "---:|" * len(keys)]
    for variant, r in rows.items():
        lines.append(f"| {variant} | {r['steps']} | " + " | ".join(fmt(r.get(k)) for k in keys) + " |")
    if spec.get("note"):
        lines += ["", spec["note"].strip()]
    path = ROOT / "benchmarks" / "results" / f"proxy_{name}.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("proxy", type=Path, help="a proxy file, e.g. benchmarks/proxies/t2i_store_weighting.yaml")
    parser.add_argument("--minutes", type=float, help="override the file's training-time budget")
    parser.add_argument("--out", type=Path, help="run folder (default runs/proxy/NAME)")
    parser.add_argument("--eval-items", type=int, default=64, help="t2i: test captions ranked by ShapeCLIP")
    parser.add_argument("--per-task", type=int, default=16, help="edit-adapter: frames per scored task")
    args = parser.parse_args(argv)
    spec = OmegaConf.to_container(OmegaConf.load(args.proxy))
    name, minutes = args.proxy.stem, args.minutes or spec["minutes"]
    recipes = variant_recipes(spec, args.out or ROOT / "runs" / "proxy" / name)
    train_side_by_side(spec["stage"], recipes, minutes)
    grids = ROOT / "results" / "proxy"
    model = ROOT / spec.get("model", "models/shapeworld")  # edit-adapter: the parts around the variant's
    tasks, split = spec.get("tasks"), spec.get("split", "test")  # edit-adapter: which frames score the variants
    rows = {v: figures(spec["stage"], r, args.eval_items, grids / f"{name}_{v}.png", model, args.per_task,
                       tuple(tasks) if tasks else None, split)
            for v, r in recipes.items()}
    print(write_table(spec, name, rows, minutes, argv if argv is not None else sys.argv[1:]).read_text())


if __name__ == "__main__":
    main()
