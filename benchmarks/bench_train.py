"""Training speed of the ``codec`` and ``t2i`` stages at their real recipes (configs/*.yaml).

Each stage runs through the real loop (:class:`evedit.training.Trainer`) for ``--steps`` steps plus
one warm-up step, with samples, evaluations and intermediate checkpoints off; steps/s is the loop's
own figure (train time after the warm-up step; data loading included). The t2i run uses a randomly
initialised codec saved to a temporary folder (speed does not depend on its weights). The full
recipe's duration is extrapolated from steps/s and its max_steps (its periodic samples, evaluations
and checkpoints add a little).

Run: ``python benchmarks/bench_train.py [--steps 20] [--threads 2 1]`` (writes benchmarks/results/train.md).
``--compare-store``: step time from an encoded store against on the fly, per diffusion stage
(``benchmarks/bench_store.py``; its own section of the same results file).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
from datetime import date
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "train.md"
STAGES = ("codec", "t2i")


def random_vae(folder: Path) -> Path:
    from diffusers import AutoencoderKL

    from evedit.models.presets import SHAPEWORLD_VAE

    vae = AutoencoderKL(**SHAPEWORLD_VAE)
    vae.save_pretrained(folder / "vae", safe_serialization=True)
    return folder / "vae"


def bench_stage(name: str, steps: int, tmp: Path) -> dict:
    from accelerate.utils import set_seed

    from evedit.training import Trainer, load_config
    from evedit.training.stages import build_stage

    recipe = ROOT / "configs" / f"{name}.yaml"
    cfg, section = load_config(recipe, name, {"out": str(tmp / name)})
    full_steps = cfg.max_steps
    cfg = dataclasses.replace(cfg, max_steps=steps + 1, sample_every=0, eval_every=0, ckpt_every=0, log_every=0)
    if name == "t2i":  # on-the-fly encoding: the store comparison is --compare-store
        section = {**section, "vae_path": str(random_vae(tmp / "codec")), "data": {"kind": "shapeworld"}}
    set_seed(cfg.seed)
    stage = build_stage(name, section)
    Trainer(stage, cfg).fit()
    summary = json.loads((tmp / name / "export" / "train_summary.json").read_text())
    rate = summary["steps_per_s"]
    return {"stage": name, "threads": torch.get_num_threads(), "batch": cfg.batch_size * cfg.grad_accum, "steps_per_s": rate,
            "images_per_s": rate * cfg.batch_size * cfg.grad_accum, "recipe_steps": full_steps,
            "recipe_min": full_steps / rate / 60}


def write_results(rows: list[dict], steps: int) -> None:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        "# Training speed (codec, t2i)",
        "",
        f"{date.today()}, {platform.machine()} ({os.cpu_count()} CPUs), torch {torch.__version__}, "
        f"{steps} timed steps after 1 warm-up step, load average at the end {load:.1f}.",
        "The machine is shared with other jobs: with a busy second core, two torch threads can run",
        "several times slower than one (OpenMP threads wait on each other), so both are measured.",
        "Command: `python benchmarks/bench_train.py`.",
        "",
        "| stage | threads | batch | steps/s | images/s | recipe steps | recipe time (min) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['stage']} | {r['threads']} | {r['batch']} | {r['steps_per_s']:.2f} | {r['images_per_s']:.1f} | "
                     f"{r['recipe_steps']} | {r['recipe_min']:.0f} |")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    old = RESULTS.read_text() if RESULTS.is_file() else ""
    cut = old.find("\n## ")  # later sections (the store comparison) are kept
    RESULTS.write_text("\n".join(lines) + "\n" + (old[cut:] if cut >= 0 else ""))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    parser.add_argument("--compare-store", action="store_true",
                        help="step time from an encoded store vs on the fly (t2i, adapters, align)")
    args, rest = parser.parse_known_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.compare_store:
        sys.path.insert(0, str(Path(__file__).parent))
        from bench_store import main as store_main

        return store_main(["--compare-store", *rest])
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name in args.stages:
            with tempfile.TemporaryDirectory() as tmp:
                rows.append(bench_stage(name, args.steps, Path(tmp)))
            print(json.dumps(rows[-1]), file=sys.stderr)
    write_results(rows, args.steps)  # the speed table; the store section is kept

    print(RESULTS.read_text())


if __name__ == "__main__":
    main()
