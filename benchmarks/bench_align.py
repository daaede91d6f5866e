"""FDD alignment speed and memory: seconds per iteration (2 clips x 8 frames) and peak RSS.

Runs the real named steps (``Aligner.iteration``: load_batch -> generator_step -> critic_step) of
``configs/align.yaml`` on the ShapeWorld teachers (``runs/teachers`` if present, else the shipped
folder; speed does not depend on the weights), in both phases: SDS only, and SDS + adversarial (teacher bank already filled, so the
steady state is timed; the bank's one-off cost per item is timed separately). Side by side in one
run: the rollout's gradients kept for all k steps (default) against gradient checkpointing
(``grad_checkpointing: true``), each in a fresh process so peak memory is its own.

Run: ``python benchmarks/bench_align.py [--iters 6]`` (writes benchmarks/results/align.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "align.md"


def child(iters: int, checkpointing: bool) -> dict:
    """One measurement in this process; returns its figures."""
    from dataclasses import replace

    import torch

    from evedit.training.fdd.entry import load_fdd_config
    from evedit.training.fdd.loop import Aligner

    torch.set_num_threads(1)
    teachers = ROOT / "runs" / "teachers"  # make train-shapeworld's teachers, else the shipped model
    cfg = replace(load_fdd_config(ROOT / "configs" / "align.yaml"), model=str(teachers) if teachers.is_dir() else "shapeworld",
                  grad_checkpointing=checkpointing, sample_every=0, ckpt_every=10_000, log_every=10_000,
                  out=tempfile.mkdtemp(prefix="bench-align-"), data={"kind": "shapeworld", "length": 2, "frames": 8})
    aligner = Aligner(cfg, progress=False)
    out = {}
    for phase, first in (("sds", 0), ("adv", aligner.cfg.steps_sds)):
        t0 = time.perf_counter()
        aligner.iteration(first)  # warm-up: fills the teacher bank for the batch's items
        out[f"{phase}_first_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for step in range(first + 1, first + 1 + iters):  # 2 items of batch 2: the same, bank filled
            aligner.iteration(step)
        out[f"{phase}_s_per_it"] = (time.perf_counter() - t0) / iters
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iters", type=int, default=6)
    p.add_argument("--child", choices=("plain", "checkpointing"))
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.iters, args.child == "checkpointing")))
        return
    load_before = os.getloadavg()
    rows = {}
    for mode in ("plain", "checkpointing"):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        res = subprocess.run([sys.executable, __file__, "--child", mode, "--iters", str(args.iters)],
                             capture_output=True, text=True, env=env, check=True)
        rows[mode] = json.loads(res.stdout.strip().splitlines()[-1])
    write(rows, args.iters, load_before, os.getloadavg())


def write(rows: dict, iters: int, before, after) -> None:
    import torch

    lines = ["# FDD alignment speed and memory (configs/align.yaml, ShapeWorld model)", "",
             f"{date.today()}, {platform.machine()}, {os.cpu_count()} CPUs, 1 torch thread, torch {torch.__version__}. "
             f"Load average (1 min) before {before[0]:.1f}, after {after[0]:.1f}: other jobs shared the cores, "
             "so times are pessimistic.",
             f"Batch 2 clips x 8 frames, k = 3 rollout steps; {iters} timed iterations per phase after a warm-up "
             "iteration that fills the teacher bank. Command: `python benchmarks/bench_align.py`.", "",
             "| rollout gradients | SDS-only s/it | SDS+adv s/it | first adv it (bank) s | peak RSS MiB |",
             "|---|---:|---:|---:|---:|"]
    for mode, r in rows.items():
        label = "all k steps kept" if mode == "plain" else "gradient checkpointing"
        lines.append(f"| {label} | {r['sds_s_per_it']:.2f} | {r['adv_s_per_it']:.2f} | {r['adv_first_s']:.2f} | "
                     f"{r['peak_rss_mib']:.0f} |")
    plain = rows["plain"]
    total = 400 * plain["sds_s_per_it"] + 200 * plain["adv_s_per_it"]
    lines += ["", f"The recipe (400 SDS-only + 200 adversarial iterations, plus the bank's first pass over "
              f"128 items) extrapolates to {total / 60:.0f} min + {64 * plain['adv_first_s'] / 60:.0f} min of bank "
              "on one core (target: under 60 min).", ""]
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
