"""The web app's overhead: one edit through ``evedit ui`` (gradio_client) against the pipeline itself.

Same clip (the bundled ShapeWorld clip, 8 frames 64x64), same instruction, seed and settings
(EVE, its default 3 steps, task auto): the direct figure is ``EditPipeline.__call__`` on the clip's
path; the app figure is a whole ``/edit`` request from ``gradio_client`` on this machine (queue,
reading the clip, the same pipeline call, writing edit.mp4 and the side-by-side mp4, sending and
downloading both). Both run in this one process on one torch thread, warmed up once, then
alternated ``--repeats`` times; medians are reported, and the app's own pipeline time
(its timings line) shows where the difference goes.

Run: ``python benchmarks/bench_ui.py [--repeats 7]`` (writes benchmarks/results/ui.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import socket
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "ui.md"
TARGET = 1.2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _app_args(instruction: str) -> list:
    """The /edit arguments (see evedit.ui.app.EDIT_FIELDS): bundled clip, EVE defaults, seed 0."""
    return ["bundled example", None, "any", None, instruction, "eve", "auto", 0, 0, 0, False, 0, 1, 0.0,
            0, 1, "none", "shapeworld"]


def measure(repeats: int) -> dict:
    """Alternate direct and app edits; return the lists of seconds and the app's pipeline seconds."""
    import torch
    from gradio_client import Client

    from evedit.demo import BUNDLED_CLIP
    from evedit.editing import EditPipeline
    from evedit.ui import launch
    from evedit.ui.inputs import bundled_clip

    torch.set_num_threads(1)
    instruction = bundled_clip().instruction
    pipe = EditPipeline.from_pretrained("shapeworld", "cpu")
    server = launch("shapeworld", "127.0.0.1", _free_port(), device="cpu")
    direct, app, inside = [], [], []
    try:
        with tempfile.TemporaryDirectory() as downloads:
            client = Client(server.url, verbose=False, download_files=downloads)
            args = _app_args(instruction)
            for i in range(repeats + 1):  # round 0 warms both up and is not counted
                t = time.perf_counter()
                result = pipe(str(BUNDLED_CLIP), instruction, seed=0, editor="eve", progress=False)
                d = time.perf_counter() - t
                t = time.perf_counter()
                out = client.predict(*args, api_name="/edit")
                a = time.perf_counter() - t
                if i:
                    direct.append(d)
                    app.append(a)
                    inside.append(float(re.search(r"eve: ([0-9.]+) s", out[3]).group(1)))
            frames = len(result.frames)
    finally:
        server.close()
    return {"direct": direct, "app": app, "inside": inside, "frames": frames}


def report(m: dict, repeats: int) -> str:
    """The Markdown table and the ratio."""
    med = {k: statistics.median(m[k]) for k in ("direct", "app", "inside")}
    ratio = med["app"] / med["direct"]
    verdict = "within" if ratio <= TARGET else "over"
    rows = [
        ("pipeline directly (`EditPipeline.__call__`)", m["direct"]),
        ("through the app (`gradio_client` `/edit`, whole request)", m["app"]),
        ("  of which the app's pipeline call (its timings line)", m["inside"]),
    ]
    lines = [
        "# Web app overhead: one edit through `evedit ui` vs the pipeline",
        "",
        f"Made by `python benchmarks/bench_ui.py --repeats {repeats}` on {date.today()} "
        f"({platform.machine()}, {os.cpu_count()} CPUs shared with other jobs, torch on 1 thread, CPU).",
        f"Clip: the bundled ShapeWorld clip ({m['frames']} frames, 64x64), its instruction, EVE with its "
        "default 3 steps, task auto, seed 0; warmed up once, then alternated.",
        "",
        "| path | median s | min s | max s |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {name} | {statistics.median(v):.3f} | {min(v):.3f} | {max(v):.3f} |" for name, v in rows]
    lines += [
        "",
        f"**Ratio app / direct: {ratio:.2f}x** (target at most {TARGET}x: {verdict} the target).",
        "",
        f"The app adds {med['app'] - med['direct']:.3f} s per edit (median): the queue and HTTP round trips, "
        "decoding the clip, writing `edit.mp4` and the side-by-side mp4, and the client "
        "downloading both. The edit itself costs the same in both paths.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="Timed edits per path (after one warm-up).")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    m = measure(args.repeats)
    text = report(m, args.repeats)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
