"""Time of the whole ShapeWorld benchmark (112 clips x 4 editors) on this machine: measured and estimated.

Measured: the real ``evaluate()`` over all 112 items with four instant editors (identity, ground
truth, time-reversed, noisy), so everything but editing is in it: building the items, ShapeCLIP (at
the clip recipe's size, random weights: the cost does not depend on them) and MiniLM scoring, the
per-item JSONL, saving every output, the reports, plots and sample grids.

Editors: when ``evedit.editing.EditPipeline`` imports, each of eve / pnp / per-frame / sdedit is
timed on a few items in this process (one torch thread; shipped model, or random weights if none:
the cost is the same), at the pipeline's default steps and with the baselines at ``--steps``, and
multiplied by 112; ``--workers 2`` is projected as half the editing time, and optionally measured
(``--workers-check N``). Without the pipeline their cost is an ESTIMATE: one denoiser forward at
the editor's guidance batch, times an assumed step count, plus the codec; printed as such.

Run: ``.venv/bin/python benchmarks/bench_eval.py`` (writes ``benchmarks/results/eval.md``).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import datetime  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
RESULTS = ROOT / "benchmarks" / "results" / "eval.md"
TARGET_MIN = 15.0
EDITORS = ("eve", "pnp", "per-frame", "sdedit")
#: ESTIMATE assumptions: editor -> (denoiser, guidance batch, sampling steps, why).
ASSUMED = {
    "eve": ("student", 1, 4, "distilled student, no guidance; a few steps (FDD trains k = 3)"),
    "pnp": ("pnp", 3, 20, "both adapters, InstructPix2Pix dual guidance (3 branches), 20 DDIM steps"),
    "per-frame": ("edit", 3, 20, "edit teacher per frame, dual guidance, 20 DDIM steps"),
    "sdedit": ("video", 2, 15, "video teacher, CFG, strength 0.75 of 20 steps"),
}


class Reverse:
    def __call__(self, frames, instruction, task, output_caption, seed):
        return frames[::-1].copy()


class Noisy:
    def __call__(self, frames, instruction, task, output_caption, seed):
        rng = np.random.default_rng(seed)
        return np.clip(frames.astype(int) + rng.integers(-20, 21, frames.shape), 0, 255).astype(np.uint8)


def _scorer():
    """ShapeCLIP at the clip recipe's size (random weights) and the real MiniLM."""
    from evedit.eval.shapeworld import ShapeWorldScorer
    from evedit.models.shapeclip import ShapeCLIP
    from evedit.text import MiniLMTextEncoder
    from evedit.training.stages.clip import ClipStageConfig

    cfg = ClipStageConfig()
    return ShapeWorldScorer(ShapeCLIP(channels=tuple(cfg.channels), embed_dim=cfg.embed_dim),
                            MiniLMTextEncoder.from_pretrained(max_length=64))


def time_metrics(items) -> dict:
    """The real evaluate() with four instant editors over ``items``; seconds by phase."""
    from evedit.eval.editors import GroundTruthEditor, IdentityEditor
    from evedit.eval.entry import EvalOptions, evaluate

    t0 = time.perf_counter()
    scorer = _scorer()
    load_s = time.perf_counter() - t0
    editors = {"identity": IdentityEditor(), "ground-truth": GroundTruthEditor(), "reverse": Reverse(),
               "noisy": Noisy()}
    with tempfile.TemporaryDirectory() as tmp:
        opts = EvalOptions(out=Path(tmp), samples=6, progress=False)
        t0 = time.perf_counter()
        doc = evaluate(opts, items, editors, scorer)
        total_s = time.perf_counter() - t0
    score_s = sum(e["score_s"] * e["n"] for e in doc["editors"].values())
    return {"load_s": load_s, "total_s": total_s, "score_s": score_s, "pairs": len(items) * len(editors)}


def _median_s(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


@torch.no_grad()
def estimate_editors(reps: int = 3) -> dict[str, dict]:
    """ESTIMATE: per-item seconds of each editor from measured forwards and assumed step counts."""
    from model_utils import inputs, perturb_new_branches, tiny_model

    from evedit.models.codec import decode_video, encode_video

    model = tiny_model()  # the ShapeWorld preset's sizes, random weights
    model.add_alignment_lora()
    perturb_new_branches(model)
    video = torch.rand(1, 3, 8, 64, 64) * 2 - 1
    codec_s = _median_s(lambda: decode_video(model.vae, encode_video(model.vae, video)), reps)
    out = {}
    for editor, (denoiser, batch, steps, why) in ASSUMED.items():
        x, t, cond = inputs(batch=batch, frames=8)
        den = model.denoiser(denoiser)
        step_s = _median_s(lambda: den(x, t, cond), reps)
        out[editor] = {"step_s": step_s, "steps": steps, "batch": batch, "codec_s": codec_s,
                       "item_s": steps * step_s + codec_s, "why": why, "measured": False}
    return out


def measure_pipeline(items, n: int = 2, baseline_steps: int | None = None) -> dict[str, dict] | None:
    """Per-item seconds of each pipeline editor on ``n`` items (one thread), or None without the pipeline."""
    try:
        from evedit.editing import EditPipeline  # noqa: F401
    except ImportError:
        return None
    from evedit.eval.editors import resolve_editors, run_editor

    out = {}
    for name, editor in resolve_editors(EDITORS, "shapeworld", baseline_steps).items():
        run_editor(editor, items[0], items[0].frames, 0)  # load and warm up
        t0 = time.perf_counter()
        for it in items[1:n + 1]:
            run_editor(editor, it, it.frames, it.index)
        steps = "default steps" if baseline_steps is None or name == "eve" else f"{baseline_steps} steps"
        out[name] = {"item_s": (time.perf_counter() - t0) / n, "measured": True,
                     "why": f"timed on {n} items, {steps}"}
    return out


def measure_workers(items, workers: int) -> float:
    """Wall seconds per item of the real evaluate() with the four pipeline editors and ``workers`` processes."""
    from evedit.eval.editors import resolve_editors
    from evedit.eval.entry import EvalOptions, evaluate

    scorer = _scorer()
    with tempfile.TemporaryDirectory() as tmp:
        opts = EvalOptions(out=Path(tmp), samples=0, progress=False, workers=workers)
        t0 = time.perf_counter()
        evaluate(opts, items, resolve_editors(EDITORS), scorer)
        return (time.perf_counter() - t0) / len(items)


def report(m: dict, runs: dict[str, dict], n_items: int, threads: int, build_s: float, full: int,
           parallel: tuple[int, int, float] | None, load: tuple[float, float]) -> str:
    scale = full / n_items  # a --limit run is scaled up to the full benchmark
    fixed_s = scale * (build_s + m["total_s"]) + m["load_s"]
    lines = [
        f"# ShapeWorld benchmark time ({full} clips x 4 editors)", "",
        f"- date: {datetime.date.today().isoformat()}; {platform.machine()}, {os.cpu_count()} cores visible, "
        f"{threads} torch thread(s) per process, torch {torch.__version__}; load average {load[0]:.1f} at the start "
        f"and {load[1]:.1f} at the end: a training job and other test runs shared the 2 cores, so every time here "
        "is pessimistic",
        "- model: the shapeworld preset (random weights until the trained folder ships: the cost is the same)",
        f"- target: the whole benchmark, all four editors, under {TARGET_MIN:.0f} min on 2 cores", "",
        "## Measured: everything but editing", "",
        "| phase | seconds |", "|---|---:|",
        f"| build {n_items} items (render inputs and ground truths) | {build_s:.2f} |",
        f"| load ShapeCLIP (clip recipe size) + MiniLM | {m['load_s']:.2f} |",
        f"| evaluate(): {m['pairs']} (item, editor) pairs with instant editors: scoring, JSONL, outputs, "
        f"reports, plots, 6 grids | {m['total_s']:.1f} |",
        f"| of which metric computation | {m['score_s']:.1f} ({1000 * m['score_s'] / m['pairs']:.0f} ms a pair) |",
        "",
    ]
    for label, editors in runs.items():
        kind = "measured" if all(e["measured"] for e in editors.values()) else "ESTIMATE"
        per_item = sum(e["item_s"] for e in editors.values())
        lines += [f"## Editors, {label} ({kind}, one process, one thread)", "",
                  f"| editor | per item (s) | x {full} (min) | basis |", "|---|---:|---:|---|"]
        for name, e in editors.items():
            basis = e["why"] if e["measured"] else (
                f"{e['steps']} steps x {1000 * e['step_s']:.0f} ms (batch {e['batch']}) + codec "
                f"{1000 * e['codec_s']:.0f} ms; assumed: {e['why']}")
            lines.append(f"| {name} | {e['item_s']:.2f} | {e['item_s'] * full / 60:.1f} | {basis} |")
        one = (fixed_s + per_item * full) / 60
        two = (fixed_s + per_item * full / 2) / 60
        lines += ["", f"Whole benchmark: **{one:.1f} min** in one process ({kind.lower()}); "
                  f"**{two:.1f} min** with `--workers 2` (ESTIMATE: half the editing time, two free cores).", ""]
    if parallel is not None:
        workers, n, per = parallel
        lines += [f"Measured with `--workers {workers}` on {n} items (all four editors, the real evaluate()): "
                  f"{per:.1f} s an item, **{(per * full + m['load_s']) / 60:.1f} min** for {full} items "
                  "under this load.", ""]
    lines += ["Scoring costs little beside editing; the editors' sampling steps decide the total. "
              "The real run waits for the trained weights.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads of this process (default 1)")
    parser.add_argument("--steps", type=int, default=20, help="also time the baselines at this many steps")
    parser.add_argument("--workers-check", type=int, default=0, metavar="N",
                        help="also time the real evaluate() with --workers 2 on N items")
    parser.add_argument("--limit", type=int, default=None, help="items (default: all 112)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="No trained ShapeWorld model")
    from evedit.eval.shapeworld import ShapeWorldBenchmark

    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    bench = ShapeWorldBenchmark()
    items = bench.items(args.limit)
    build_s = time.perf_counter() - t0
    metrics = time_metrics(items)
    default = measure_pipeline(items)
    if default is None:
        runs = {"assumed step counts": estimate_editors()}
    else:
        runs = {"pipeline defaults": default,
                f"baselines at {args.steps} steps": measure_pipeline(items, baseline_steps=args.steps)}
    parallel = None
    if args.workers_check and default is not None:
        parallel = (2, args.workers_check, measure_workers(items[:args.workers_check], 2))
    text = report(metrics, runs, len(items), args.threads, build_s, bench.per_split * len(bench.splits), parallel,
                  (load0, os.getloadavg()[0]))
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
