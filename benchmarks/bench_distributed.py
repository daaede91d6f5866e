"""Training speed of the tiny ``t2i`` stage with 1 process and with 2 CPU processes, side by side.

Each variant is a real ``evedit train t2i`` run (configs/tiny/t2i.yaml, per-process batch 2) with
one torch thread per process (``OMP_NUM_THREADS=1``), started the way tests/test_multiprocess.py
and the README start them: ``evedit train t2i ...`` for one process, ``accelerate launch --cpu
--num_processes 2 $(which evedit) train t2i ...`` for two (gloo between them). Both main variants
train the same global batch per step: 1 process at ``grad_accum: 2`` against 2 processes at
``grad_accum: 1``; a third row is 1 process at ``grad_accum: 1`` (half the global batch).

Timed: the training steps only, as the loop itself measures them (``export/train_summary.json``:
``steps_per_s``, train-step time after the first step; on the main process, so the 2-process figure
includes waiting for the other process and the gradient all-reduce). Process start-up, model
building, the initial and final checkpoints, the final evaluation and the export are not timed;
samples and periodic evaluations are off. The tiny codec the stage needs is trained first (a few
seconds). Run folders go to a temporary directory.

With ``--fsdp`` (its own section): 1 process at ``grad_accum: 2``, 2 processes data-parallel and 2
processes with ``train.shard: fsdp`` (:mod:`evedit.training.sharding`), with the trained state each
process holds (``train_summary.json``'s ``trained_state_mb``).

Run: ``python benchmarks/bench_distributed.py [--steps 200] [--fsdp] [--out benchmarks/results/distributed.md]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny"
BIN = Path(sys.executable).parent
RESULTS = ROOT / "benchmarks" / "results" / "distributed.md"
TITLE = "Tiny t2i: 1 process against 2 processes (CPU, gloo)"
VARIANTS = ((1, 2), (2, 1), (1, 1))  # (processes, grad_accum); per-process batch_size as the recipe


def run_command(cmd: list[str], log: Path) -> float:
    """Run ``cmd`` with one torch thread per process; its output goes to ``log``; seconds it took."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    began = time.perf_counter()
    with log.open("w") as handle:
        code = subprocess.run(cmd, env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=log.parent).returncode
    if code != 0:
        sys.exit(f"{' '.join(cmd)} failed ({code}):\n{log.read_text()[-3000:]}")
    return time.perf_counter() - began


def tiny_codec(tmp: Path) -> Path:
    """The tiny codec export the t2i recipe needs (configs/tiny/codec.yaml, as the tests train it)."""
    out = tmp / "codec"
    run_command([str(BIN / "evedit"), "train", "codec", "--config", str(TINY / "codec.yaml"),
                 "--out", str(out)], tmp / "codec.log")
    return out / "export" / "vae"


def recipe(tmp: Path, vae: Path, steps: int, grad_accum: int, out: Path, shard: str = "none") -> Path:
    """A copy of the tiny t2i recipe: ``steps`` + 1 warm-up step, ``grad_accum``, no samples/evals."""
    cfg = yaml.safe_load((TINY / "t2i.yaml").read_text())
    cfg["train"].update(out=str(out), max_steps=steps + 1, grad_accum=grad_accum, log_every=0,
                        sample_every=0, eval_every=0, ckpt_every=0, shard=shard)
    cfg["stage"]["vae_path"] = str(vae)
    path = tmp / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_variant(tmp: Path, vae: Path, steps: int, processes: int, grad_accum: int, shard: str = "none") -> dict:
    """One training run; its steps/s from the loop's own summary (warm-up step excluded)."""
    out = tmp / f"p{processes}-accum{grad_accum}-{shard}"
    train = [str(BIN / "evedit"), "train", "t2i", "--config", str(recipe(tmp, vae, steps, grad_accum, out, shard)),
             "--out", str(out)]
    launch = [str(BIN / "accelerate"), "launch", "--cpu", "--num_processes", str(processes),
              "--main_process_port", str(free_port())]
    total = run_command(launch + train if processes > 1 else train, tmp / f"{out.name}.log")
    summary = json.loads((out / "export" / "train_summary.json").read_text())
    assert summary["num_processes"] == processes and summary["steps"] == steps + 1, summary
    rate = summary["steps_per_s"]
    batch = int(summary["global_batch"].rpartition("=")[2])
    return {"processes": processes, "grad_accum": grad_accum, "batch": batch, "steps": steps, "shard": shard,
            "wall_s": steps / rate, "steps_per_s": rate, "items_per_s": rate * batch, "total_s": total,
            "state_mb": summary["trained_state_mb"]}


def comparison(rows: list[dict]) -> str:
    """One sentence: items/s of 2 processes against 1 process at the same global batch."""
    one = next(r for r in rows if r["processes"] == 1 and r["grad_accum"] == 2)
    two = next(r for r in rows if r["processes"] == 2)
    ratio = two["items_per_s"] / one["items_per_s"]
    verdict = "faster" if ratio >= 1 else "slower"
    return (f"At the same global batch of {one['batch']}, 2 processes train {two['items_per_s']:.1f} items/s "
            f"against {one['items_per_s']:.1f} items/s for 1 process at `grad_accum: 2`: "
            f"{ratio:.2f}x ({abs(ratio - 1) * 100:.0f}% {verdict}).")


def write_results(path: Path, rows: list[dict], steps: int, command: str) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_store import write_section

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    cpu = " ".join(filter(None, (platform.machine(), platform.processor())))
    body = [
        "",
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {cpu} ({os.cpu_count()} CPUs), {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}, torch {torch.__version__}; one torch "
        f"thread per process; load average at the end {load:.1f}.",
        f"Command: `{command}`.",
        "",
        f"Timed: {steps} training steps after 1 warm-up step, as the training loop measures them "
        "(`export/train_summary.json`, main process: fetch, forward, backward, gradient all-reduce, "
        "optimizer step); process start-up, model building, checkpoints, the final evaluation and the "
        "export are not. Per-process batch 2 (configs/tiny/t2i.yaml); the global batch is "
        "batch x grad_accum x processes.",
        "",
        "| processes | global batch | steps | wall s | steps/s | items/s |",
        "|---:|---|---:|---:|---:|---:|",
        *[f"| {r['processes']} | {r['batch']} (2 x {r['grad_accum']} x {r['processes']}) | {r['steps']} | "
          f"{r['wall_s']:.1f} | {r['steps_per_s']:.2f} | {r['items_per_s']:.1f} |" for r in rows],
        "",
        comparison(rows),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file():
        path.write_text("# Training with several processes\n")
    write_section(path, TITLE, body)


FSDP_TITLE = "Tiny t2i, 2 processes: data-parallel against FSDP (CPU, gloo)"
FSDP_VARIANTS = ((1, 2, "none"), (2, 1, "none"), (2, 1, "fsdp"))  # (processes, grad_accum, train.shard)


def write_fsdp_results(path: Path, rows: list[dict], steps: int, command: str) -> None:
    """The ``--fsdp`` section: speed and the trained state each process holds, sharded or not."""
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_store import write_section

    ddp, fsdp = (next(r for r in rows if r["processes"] == 2 and r["shard"] == k) for k in ("none", "fsdp"))
    body = [
        "",
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()} ({os.cpu_count()} CPUs), torch "
        f"{torch.__version__}; one torch thread per process. Command: `{command}`.",
        "",
        f"Timed as above ({steps} steps after 1 warm-up step). Trained state: the bytes the main process "
        "holds for the trained UNet (its part of the weights, of the gradients laid out as them, of AdamW's "
        "moments and of the EMA), counted from the tensors by the loop (`train_summary.json`: "
        "`trained_state_mb`); activations and the frozen codec and text encoder are not in it.",
        "",
        "| processes | shard | global batch | steps/s | items/s | trained state per process (MB) |",
        "|---:|---|---|---:|---:|---:|",
        *[f"| {r['processes']} | {r['shard']} | {r['batch']} (2 x {r['grad_accum']} x {r['processes']}) | "
          f"{r['steps_per_s']:.2f} | {r['items_per_s']:.1f} | {r['state_mb']:.2f} |" for r in rows],
        "",
        f"Sharded, each of the 2 processes holds {fsdp['state_mb']:.2f} MB of trained state against "
        f"{ddp['state_mb']:.2f} MB data-parallel ({fsdp['state_mb'] / ddp['state_mb']:.2f}x) and trains "
        f"{fsdp['items_per_s'] / ddp['items_per_s']:.2f}x as many items/s (the blocks' weights are gathered at "
        "each forward and backward, and their gradients reduce-scattered). Sharding is for a trained state "
        "that does not fit a GPU; on a tiny UNet over gloo it only costs speed.",
    ]
    write_section(path, FSDP_TITLE, body)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="timed steps per variant (after 1 warm-up step)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file (its section is replaced)")
    parser.add_argument("--no-third", action="store_true", help="skip the 1-process grad_accum 1 row")
    parser.add_argument("--fsdp", action="store_true", help="2 processes data-parallel against FSDP (own section)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.fsdp:
        return main_fsdp(args)
    command = "python benchmarks/bench_distributed.py" + (f" --steps {args.steps}" if args.steps != 200 else "")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-distributed-") as tmp:
        vae = tiny_codec(Path(tmp))
        for processes, grad_accum in VARIANTS[:2] if args.no_third else VARIANTS:
            rows.append(run_variant(Path(tmp), vae, args.steps, processes, grad_accum))
            r = rows[-1]
            print(f"{processes} process(es), grad_accum {grad_accum}, global batch {r['batch']}: "
                  f"{r['steps_per_s']:.2f} steps/s, {r['items_per_s']:.1f} items/s "
                  f"({r['wall_s']:.1f} s timed, {r['total_s']:.0f} s with start-up)", flush=True)
    write_results(args.out, rows, args.steps, command)
    print(comparison(rows))
    print(f"wrote {args.out}")


def main_fsdp(args) -> None:
    command = "python benchmarks/bench_distributed.py --fsdp" + (f" --steps {args.steps}" if args.steps != 200 else "")
    with tempfile.TemporaryDirectory(prefix="bench-fsdp-") as tmp:
        vae = tiny_codec(Path(tmp))
        rows = [run_variant(Path(tmp), vae, args.steps, *variant) for variant in FSDP_VARIANTS]
    for r in rows:
        print(f"{r['processes']} process(es), shard {r['shard']}: {r['items_per_s']:.1f} items/s, "
              f"trained state {r['state_mb']:.2f} MB per process", flush=True)
    write_fsdp_results(args.out, rows, args.steps, command)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
