"""Cost of each composed denoiser on an 8-frame ShapeWorld clip, against direct diffusers calls.

For each denoiser (edit teacher, video teacher, plug-and-play, student) and for the bare backbone
applied frame by frame: median forward (no_grad) and forward+backward time over repeats, and the
peak RSS increase (polled) of a subprocess that only builds the model and runs that call. "direct" is the
same computation written as plain diffusers calls (ControlNet, then UNet / UNetMotionModel), so
"overhead" is what the composition layer adds (target: under 10%).

Run: ``python benchmarks/bench_models.py [--threads N]`` (writes benchmarks/results/models.md).
On a shared 2-core machine use ``--threads 1``: two threads competing with another job are
several times slower and very noisy (benchmarks/results/train.md).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import platform
import threading
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
RESULTS = Path(__file__).resolve().parent / "results" / "models.md"
BATCH, FRAMES, REPEATS = 2, 8, 11


THREADS = int(sys.argv[sys.argv.index("--threads") + 1]) if "--threads" in sys.argv else 2


def setup():
    from model_utils import inputs, perturb_new_branches, tiny_model

    torch.set_num_threads(THREADS)
    model = tiny_model()
    model.add_alignment_lora()
    perturb_new_branches(model)
    x, t, cond = inputs(batch=BATCH, frames=FRAMES)
    x.requires_grad_(True)  # frozen teachers: backward w.r.t. the input latents
    return model, x, t, cond


def direct_fns(model, x, t, cond):
    """The same computations as plain diffusers calls (no composition layer)."""
    from evedit.models.lora import lora_disabled

    b, c, f, h, w = x.shape
    cn = model.edit_adapter.controlnet

    def fold():
        """What any caller must do: fold frames into the batch and repeat per-video inputs."""
        flat = x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
        src = cond.source.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
        return (flat, t.repeat_interleave(f), cond.caption.repeat_interleave(f, 0),
                cond.instruction.repeat_interleave(f, 0), src, cond.task.repeat_interleave(f))

    def residuals(flat, tf, ins, src, task):
        return cn(flat, tf, ins, src, class_labels=task, return_dict=False)

    def edit():
        flat, tf, cap, ins, src, task = fold()
        d, m = residuals(flat, tf, ins, src, task)
        out = model.unet(flat, tf, cap, down_block_additional_residuals=d,
                         mid_block_additional_residual=m).sample
        return out.reshape(b, f, c, h, w).permute(0, 2, 1, 3, 4)

    def video():
        cap = cond.caption.repeat_interleave(f, 0)
        with lora_disabled(model.motion_unet):
            return model.motion_unet(x, t, cap).sample

    def both():
        flat, tf, cap, ins, src, task = fold()
        d, m = residuals(flat, tf, ins, src, task)
        return model.motion_unet(x, t, cap, down_block_additional_residuals=d,
                                 mid_block_additional_residual=m).sample

    def pnp():
        with lora_disabled(model.motion_unet):
            return both()

    def backbone():
        flat, tf, cap, _, _, _ = fold()
        return model.unet(flat, tf, cap).sample

    return {"edit": edit, "video": video, "pnp": pnp, "student": both, "backbone": backbone}


def composed_fns(model, x, t, cond):
    nofirst = cond.replace(first_frame=None)  # the direct video calls have no first-frame hook
    return {k: (lambda k=k: model.denoiser(k)(x, t, nofirst)) for k in ("edit", "video", "pnp", "student")}


def _once(fn, backward: bool) -> float:
    start = time.perf_counter()
    if backward:
        fn().square().mean().backward()
    else:
        with torch.no_grad():
            fn()
    return time.perf_counter() - start


def timeit_pair(direct, composed, backward: bool) -> tuple[float, float]:
    """Median times of the two versions, run alternately so machine load hits both alike."""
    times = ([], [])
    for i in range(REPEATS + 1):
        for k, fn in enumerate((direct, composed)):
            elapsed = _once(fn, backward)
            if i:  # the first round is a warm-up
                times[k].append(elapsed)
    return statistics.median(times[0]), statistics.median(times[1])


def peak_worker(kind: str, name: str, backward: bool, queue) -> None:
    """In a fresh process: RSS polled every 0.5 ms during one call, peak minus the RSS before."""
    import psutil

    model, x, t, cond = setup()
    fns = composed_fns(model, x, t, cond) if kind == "composed" else direct_fns(model, x, t, cond)
    proc, peak, done = psutil.Process(), [0], threading.Event()

    def poll():
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.0005)

    base = proc.memory_info().rss
    watcher = threading.Thread(target=poll)
    watcher.start()
    if backward:
        fns[name]().square().mean().backward()
    else:
        with torch.no_grad():
            fns[name]()
    done.set()
    watcher.join()
    queue.put(max(0, peak[0] - base) / 2**20)


def peak_mib(kind: str, name: str, backward: bool) -> float:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=peak_worker, args=(kind, name, backward, queue))
    proc.start()
    value = queue.get()
    proc.join()
    return value


def main() -> None:
    model, x, t, cond = setup()
    direct, composed = direct_fns(model, x, t, cond), composed_fns(model, x, t, cond)
    rows = []
    for name in ("backbone", "edit", "video", "pnp", "student"):
        other = composed.get(name, direct[name])
        d_f, c_f = timeit_pair(direct[name], other, False)
        d_b, c_b = timeit_pair(direct[name], other, True)
        mem = peak_mib("composed" if name in composed else "direct", name, True)
        rows.append((name, d_f, c_f, d_b, c_b, mem))
        print(rows[-1], flush=True)
    write(rows)


def write(rows) -> None:
    base_b = rows[0][4]  # composed f+b of the bare backbone
    lines = [
        f"# Denoiser cost, {BATCH} clips x {FRAMES} frames of 16x16x4 latents (ShapeWorld preset)",
        "",
        f"{date.today()}, {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"load average {os.getloadavg()[0]:.1f} at the end; "
        f"median of {REPEATS}, direct and composed alternating, after a warm-up. Peak = RSS increase (polled every 0.5 ms) of a fresh process during one forward+backward.",
        "",
        "| denoiser | direct fwd ms | composed fwd ms | overhead fwd | direct f+b ms | composed f+b ms "
        "| overhead f+b | f+b vs backbone | peak f+b MiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, d_f, c_f, d_b, c_b, mem in rows:
        lines.append(
            f"| {name} | {d_f*1e3:.0f} | {c_f*1e3:.0f} | {100*(c_f/d_f-1):+.1f}% | {d_b*1e3:.0f} | "
            f"{c_b*1e3:.0f} | {100*(c_b/d_b-1):+.1f}% | {c_b/base_b:.2f}x | {mem:.0f} |"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
