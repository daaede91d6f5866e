"""Time ShapeWorld: one 8-frame 64x64 clip with its edited ground truth, per task, on one core.

Two figures per task, each the median (and 90th percentile) over ``--runs`` distinct seeds
after a warm-up on other seeds, so per-scene caches (background patterns) do not flatter it:

- ``make_example``: sample the scene and edit, caption both, render input and ground truth;
- ``render``: only the two renderings of an already sampled example.

Run: ``.venv/bin/python benchmarks/bench_world.py`` (writes ``benchmarks/results/world.md``).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one core, before numpy loads
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import datetime  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
try:
    import evedit  # noqa: F401, E402
except ImportError:  # a checkout without the package installed
    sys.path.insert(0, str(ROOT / "src"))

from evedit.world import TASK_CATEGORIES, TASKS, WorldConfig, make_example, render_clip  # noqa: E402
from evedit.world.examples import render_edited  # noqa: E402

TARGET_MS = 5.0


def _ms(samples: list[float]) -> tuple[float, float]:
    """Median and 90th percentile of durations in seconds, as milliseconds."""
    a = np.asarray(samples) * 1e3
    return float(np.median(a)), float(np.percentile(a, 90))


def time_task(task: str, runs: int, config: WorldConfig) -> dict[str, float]:
    """Median / p90 of make_example and of rendering alone, over ``runs`` distinct seeds."""
    for seed in range(500_000, 500_020):  # warm-up: imports, shape and sprite caches
        make_example(seed, task, config)
    full, render = [], []
    for seed in range(runs):
        t0 = time.perf_counter()
        ex = make_example(seed, task, config)
        full.append(time.perf_counter() - t0)
    for seed in range(runs, 2 * runs):  # fresh seeds: their background patterns are not cached yet
        ex = make_example(seed, task, config)
        t0 = time.perf_counter()
        clip = render_clip(ex.scene, config.frames, config.size)
        render_edited(clip, ex.scene, ex.edit.edited_scene, config)
        render.append(time.perf_counter() - t0)
    (fm, fp), (rm, rp) = _ms(full), _ms(render)
    return {"full_median": fm, "full_p90": fp, "render_median": rm, "render_p90": rp}


def _cpu_name() -> str:
    """The CPU model from /proc/cpuinfo where there is one, else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def markdown(rows: dict[str, dict[str, float]], runs: int) -> str:
    """The results as a Markdown report."""
    lines = [
        "# ShapeWorld rendering speed",
        "",
        f"- date: {datetime.date.today().isoformat()}",
        f"- machine: {_cpu_name()} ({platform.machine()}), {os.cpu_count()} cores visible, "
        f"one core used; Python {platform.python_version()}, numpy {np.__version__}",
        f"- workload: one 8-frame 64x64 clip plus its edited ground truth; median and p90 over {runs} "
        "distinct seeds after a 20-seed warm-up",
        f"- target: under {TARGET_MS:.0f} ms for make_example",
        "",
        "| task | category | make_example median (ms) | p90 (ms) | render only median (ms) | p90 (ms) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for task, r in rows.items():
        lines.append(f"| {task} | {TASK_CATEGORIES[task]} | {r['full_median']:.2f} | {r['full_p90']:.2f} "
                     f"| {r['render_median']:.2f} | {r['render_p90']:.2f} |")
    worst = max(r["full_median"] for r in rows.values())
    verdict = "meets" if worst < TARGET_MS else "misses"
    lines += ["", f"Slowest task median: {worst:.2f} ms, which {verdict} the {TARGET_MS:.0f} ms target.", ""]
    return "\n".join(lines)


def main() -> None:
    """Time every task, print the table and write it to benchmarks/results/world.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="timed seeds per task (default 200)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "world.md")
    args = parser.parse_args()
    config = WorldConfig()
    rows = {task: time_task(task, args.runs, config) for task in TASKS}
    report = markdown(rows, args.runs)
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)


if __name__ == "__main__":
    main()
