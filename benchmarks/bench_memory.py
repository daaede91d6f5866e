"""Peak memory and time of `evedit edit` on synthetic 640x360 clips of growing length (issue 21).

    python benchmarks/bench_memory.py                         # 250,500,1000,2000 frames, this code
    python benchmarks/bench_memory.py --frames 250,500 --before /tmp/old/src   # also older code

Each clip (moving coloured discs on a gradient, H.264, 8 fps) is written with PyAV into a temporary
folder, then `python -m evedit.cli edit CLIP "make the circle red" -o OUT.mp4 --task color -q` runs
as a child process with the shipped ShapeWorld model; its peak resident memory comes from
``os.wait4`` (the child's own ``ru_maxrss``) and its time is the wall clock around it. ``--before``
runs the same commands with ``PYTHONPATH`` set to another ``src`` folder (e.g. ``git archive HEAD
src | tar -x -C /tmp/old``) so both columns come from one run. The table goes to
``benchmarks/results/memory.md`` with the date and the machine.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def make_clip(path: Path, frames: int, width: int = 640, height: int = 360, fps: int = 8) -> Path:
    """A synthetic clip: two discs moving over a gradient (frames made one at a time)."""
    y, x = np.mgrid[0:height, 0:width]
    background = np.stack([x * 255 // width, y * 255 // height, np.full_like(x, 96)], -1).astype(np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "18"}
        for i in range(frames):
            frame = background.copy()
            for k, colour in enumerate(((40, 80, 230), (230, 200, 40))):
                cx = int(width / 2 + width / 3 * np.sin(0.05 * i + 2 * k))
                cy = int(height / 2 + height / 4 * np.cos(0.07 * i + k))
                frame[(x - cx) ** 2 + (y - cy) ** 2 < (height // 8) ** 2] = colour
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def measure(clip: Path, out: Path, src: Path | None, threads: int) -> tuple[float, float]:
    """(peak RSS in GB, seconds) of one `evedit edit` child process."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.setdefault("EVEDIT_SHAPEWORLD_MODEL", str(ROOT / "models" / "shapeworld"))  # also for --before
    if src is not None:
        env["PYTHONPATH"] = str(src)
    args = [sys.executable, "-m", "evedit.cli", "edit", str(clip), "make the circle red", "-o", str(out),
            "--task", "color", "-q"]
    start = time.perf_counter()
    child = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"evedit edit failed on {clip.name}: {child.stderr.read().decode()[-500:]}")
    return usage.ru_maxrss / 2**20, seconds  # ru_maxrss is in kB on Linux


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, load average {load} at the start"


def table(rows: list[dict], before: bool) -> str:
    head = "| frames | after: peak RSS (GB) | after: time (s) | s / frame |"
    line = "|---:|---:|---:|---:|"
    if before:
        head += " before: peak RSS (GB) | before: time (s) |"
        line += "---:|---:|"
    out = [head, line]
    for r in rows:
        text = f"| {r['frames']} | {r['rss']:.2f} | {r['time']:.0f} | {r['time'] / r['frames']:.3f} |"
        if before:
            text += f" {r['rss_before']:.2f} | {r['time_before']:.0f} |"
        out.append(text)
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", default="250,500,1000,2000", help="clip lengths, comma-separated")
    parser.add_argument("--before", type=Path, default=None, help="another src folder to measure too")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the edits")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "memory.md")
    parser.add_argument("--note", default="", help="a line about the conditions (e.g. a loaded machine)")
    args = parser.parse_args()
    lengths = [int(n) for n in args.frames.split(",") if n.strip()]
    header = machine()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for frames in lengths:
            clip = make_clip(Path(tmp) / f"clip{frames}.mp4", frames)
            row = {"frames": frames}
            row["rss"], row["time"] = measure(clip, Path(tmp) / "out.mp4", None, args.threads)
            if args.before is not None:
                row["rss_before"], row["time_before"] = measure(clip, Path(tmp) / "old.mp4", args.before, args.threads)
            rows.append(row)
            print(table(rows, args.before is not None).splitlines()[-1], flush=True)
    text = [
        "# `evedit edit` peak memory and time against clip length (issue 21)", "",
        f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC with "
        f"`python benchmarks/bench_memory.py --frames {args.frames}"
        + (" --before OLD_SRC" if args.before else "") + f" --threads {args.threads}`.", "",
        f"Machine: {header}.", "",
        "Synthetic 640x360 H.264 clips at 8 fps; `evedit edit CLIP \"make the circle red\" -o OUT.mp4 "
        "--task color -q` with the shipped ShapeWorld model (EVE, 3 steps, windows of 8 frames), one "
        "child process per row; peak RSS is the child's `ru_maxrss`.", "",
    ]
    if args.note:
        text += [args.note, ""]
    text += [table(rows, args.before is not None), ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(text))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
