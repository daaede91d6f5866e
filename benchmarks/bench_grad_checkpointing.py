"""Memory and time of one training step with and without gradient checkpointing
(the recipe's ``train: gradient_checkpointing``, :mod:`evedit.training.recompute`).

Each (stage, batch, setting) runs in its own fresh process, one after another (never two at
once), on the shipped ShapeWorld parts and its recipe's stage section, with items rendered on the
fly: build the stage, then ``--steps`` training steps (loss, backward, AdamW on the stage's
trainable modules) after one warm-up step. Memory is the process's peak resident size during the
steps minus its resident size before the first step (activations, gradients and optimizer state;
the models' weights are in both settings alike); time is the median step.

Run: ``python benchmarks/bench_grad_checkpointing.py [--steps 4] [--threads 1]`` (writes
benchmarks/results/grad_checkpointing.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "grad_checkpointing.md"
CASES = [("edit-adapter", 16), ("edit-adapter", 64), ("video-adapter", 4), ("t2i", 32)]


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def one_case(stage_name: str, batch: int, recompute: bool, steps: int) -> dict:
    """Run in a child process: the figures of one (stage, batch, setting)."""
    import torch
    from omegaconf import OmegaConf
    from torch.utils.data import default_collate

    from evedit.training.recompute import enable_activation_checkpointing
    from evedit.training.stages import build_stage

    torch.manual_seed(0)
    section = OmegaConf.to_container(OmegaConf.load(ROOT / "configs" / f"{stage_name}.yaml"))["stage"]
    parts = ROOT / "models" / "shapeworld"
    section.update(vae_path=str(parts / "vae"), data={"kind": "shapeworld"})
    if "unet_path" in section:
        section["unet_path"] = str(parts / "unet")
    stage = build_stage(stage_name, section)
    for module in stage.modules().values():
        module.requires_grad_(False)
    trained = [p for m in stage.trainable_modules() for p in m.requires_grad_(True).parameters()]
    if recompute:
        enable_activation_checkpointing(stage.modules())
    data = stage.dataset("train")
    batches = [default_collate([data[i * batch + j] for j in range(batch)]) for i in range(steps + 1)]
    optimizer = torch.optim.AdamW(trained, lr=1e-5)
    base, times = rss_mib(), []
    for i, item in enumerate(batches):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        stage.loss(item, torch.Generator().manual_seed(i))["loss"].backward()
        optimizer.step()
        if i:
            times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"step_mem_mib": peak - base, "s_per_step": statistics.median(times)}


def measure(stage: str, batch: int, recompute: bool, steps: int, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    code = (f"import json, sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); "
            f"from bench_grad_checkpointing import one_case; "
            f"print(json.dumps(one_case({stage!r}, {batch}, {recompute}, {steps})))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    rows = []
    for stage, batch in CASES:
        plain, recomputed = (measure(stage, batch, flag, args.steps, args.threads) for flag in (False, True))
        rows.append((stage, batch, plain, recomputed))
        print(stage, batch, plain, recomputed, flush=True)
    lines = [
        "# Gradient checkpointing: memory and time of a training step", "",
        f"{date.today()}, {platform.machine()} ({os.cpu_count()} CPUs), {args.threads} thread(s), load average "
        f"at the end {os.getloadavg()[0]:.1f}; median of {args.steps} steps after one warm-up step, each "
        "setting in its own fresh process, one after another; the shipped ShapeWorld parts.",
        "Memory: peak resident size during the steps minus the size before the first step.",
        "Command: `python benchmarks/bench_grad_checkpointing.py`.", "",
        "| stage | batch | step memory, off (MiB) | on (MiB) | memory on/off | s/step off | on | time on/off |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for stage, batch, a, b in rows:
        lines.append(f"| {stage} | {batch} | {a['step_mem_mib']:.0f} | {b['step_mem_mib']:.0f} | "
                     f"{b['step_mem_mib'] / a['step_mem_mib']:.2f} | {a['s_per_step']:.3f} | "
                     f"{b['s_per_step']:.3f} | {b['s_per_step'] / a['s_per_step']:.2f} |")
    RESULTS.write_text("\n".join(lines) + "\n")
    print(RESULTS.read_text())


if __name__ == "__main__":
    main()
