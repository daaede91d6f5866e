"""Many edits: one ``evedit edit --jobs`` run against the same edits as separate ``evedit edit`` runs.

20 ShapeWorld clips (8 frames, 64x64, seeds 100-119) are edited with the shipped model by EVE at
1 student step and a 1-step first-frame edit (short, so the run takes a few minutes; the load cost
is what is measured), once as 20 separate ``evedit edit`` processes and once as one
``evedit edit --jobs jobs.jsonl --out-dir DIR`` process, both timed by the wall clock from start to
exit. The batch prints its model load time (from before torch and the model code are imported to
the loaded pipeline: what every separate run pays again); the target is

    separate total - batch total >= 19 x load time

(the batch saves at least the 19 model loads the separate runs repeat). Both runs' outputs are
checked to be the same frames (written as lossless .mkv: libx264 itself does not always give the
same bytes twice, which would hide whether the edits match). Run: ``python benchmarks/bench_jobs.py [--clips 20]`` (writes
benchmarks/results/jobs.md); ``--device cpu`` by default.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "jobs.md"
INSTRUCTION = "make the blue circle red"
OPTIONS = ["--task", "color", "--steps", "1", "--first-frame-steps", "1", "-q"]


def evedit(*args: str) -> tuple[float, str]:
    """Run ``evedit`` in a fresh process; -> (wall seconds, stdout)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    clock = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "evedit.cli", *args], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - clock
    if done.returncode != 0:
        raise SystemExit(f"evedit {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return seconds, done.stdout


def make_clips(folder: Path, count: int) -> list[Path]:
    from evedit.io import write_video
    from evedit.world import make_example

    paths = []
    for i in range(count):
        path = folder / f"clip{i:02d}.mp4"
        write_video(path, make_example(100 + i, "color").clip, fps=8)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--model", default="shapeworld")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    common = [*OPTIONS, "--model", args.model, "--device", args.device]
    from evedit.io import read_video

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        clips = make_clips(root, args.clips)
        (root / "jobs.jsonl").write_text("".join(
            json.dumps({"input": clip.name, "instruction": INSTRUCTION, "output": f"{clip.stem}.mkv"}) + "\n"
            for clip in clips))
        separate = []
        for i, clip in enumerate(clips):
            seconds, _ = evedit("edit", str(clip), INSTRUCTION, "-o", str(root / "separate" / f"{clip.stem}.mkv"), *common)
            separate.append(seconds)
            print(f"separate run {i + 1}/{len(clips)}: {seconds:.2f} s", flush=True)
        batch, out = evedit("edit", "--jobs", str(root / "jobs.jsonl"), "--out-dir", str(root / "batch"), *common)
        loads = [float(x) for x in re.findall(r"loaded in ([0-9.]+) s", out)]
        same = all(np.array_equal(read_video(root / "separate" / f"{c.stem}.mkv").frames,
                                  read_video(root / "batch" / f"{c.stem}.mkv").frames) for c in clips)
    report(args, separate, batch, loads, same)


def report(args, separate: list[float], batch: float, loads: list[float], same: bool) -> None:
    n, total = len(separate), sum(separate)
    load = loads[0] if loads else float("nan")
    saved, needed = total - batch, (n - 1) * load
    holds = len(loads) == 1 and saved >= needed
    lines = [
        f"# `evedit edit --jobs`: {n} clips with one model load vs {n} separate runs",
        "",
        f"{date.today()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f} at the end (a codec training ran alongside), "
        f"device {args.device}, model {args.model}; each clip 8 frames 64x64, EVE 1 step, "
        "first-frame edit 1 step; `python benchmarks/bench_jobs.py`.",
        "",
        "| | seconds |",
        "|---|---:|",
        f"| model load, imports included (measured in the batch; loads counted: {len(loads)}) | {load:.2f} |",
        f"| {n} separate `evedit edit` runs, total | {total:.1f} |",
        f"| one separate run (mean, min, max) | {total / n:.2f}, {min(separate):.2f}, {max(separate):.2f} |",
        f"| one `evedit edit --jobs` run, total | {batch:.1f} |",
        f"| saved (separate - batch) | {saved:.1f} |",
        f"| target: at least {n - 1} x load | {needed:.1f} |",
        "",
        f"Target {'holds' if holds else 'does NOT hold'}: the batch is {saved:.1f} s faster, "
        f"{saved / load if load else float('nan'):.1f} loads' worth (each separate run also pays Python's "
        f"start and the CLI's own imports). Same frames in both outputs: {'yes' if same else 'NO'}.",
    ]
    text = "\n".join(lines) + "\n"
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
