"""Training step time from an encoded store against on the fly, and the store's shard format.

``--compare-store`` (the default): for ``t2i``, ``edit-adapter`` and ``video-adapter`` (their
recipes' batch sizes, the shipped model's codec and backbone) one training step is: fetch a batch
(render and collate, or read from the store), the stage's loss, backward, AdamW. Both paths run in
the same process on the same items; the median of ``--steps`` steps after one warm-up step is
reported. For ``align``, one FDD iteration (configs/align.yaml, the shipped model as teachers) on
the same items, after warm-up iterations that fill the teachers' sample bank for every item, so
both paths time the same work apart from the data.

``--formats``: random-access read speed and size of one shard layout written three ways
(safetensors, numpy ``.npy`` memory maps, and Arrow through HF ``datasets`` when installed).

Run: ``python benchmarks/bench_train.py --compare-store`` (this file; it writes a section of
``benchmarks/results/train.md``) or ``python benchmarks/bench_store.py --formats``
(``benchmarks/results/store.md``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch
from torch.utils.data import default_collate

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "shapeworld"
STAGE_KIND = {"t2i": "image", "edit-adapter": "edit", "video-adapter": "video"}
STAGE_BATCH = {"t2i": 32, "edit-adapter": 16, "video-adapter": 4}  # configs/<stage>.yaml


def _stage(name: str, data: dict):
    from evedit.training.stages import build_stage

    section = {"vae_path": str(MODEL / "vae"), "data": data}
    if name != "t2i":
        section["unet_path"] = str(MODEL / "unet")
    return build_stage(name, section)


def time_steps(stage, data, batch: int, steps: int) -> float:
    """Median seconds of one step: fetch + loss + backward + AdamW."""
    params = [p for m in stage.trainable_modules() for p in m.parameters()]
    for m in stage.trainable_modules():
        m.requires_grad_(True).train()
    opt = torch.optim.AdamW(params, lr=1e-5)
    times = []
    for step in range(steps + 1):
        began = time.perf_counter()
        first = (step * batch) % max(1, len(data) - batch)
        items = default_collate([data[first + i] for i in range(batch)])
        loss = stage.loss(items, torch.Generator().manual_seed(step))["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - began)
    return statistics.median(times[1:])


def compare_stage(name: str, steps: int, tmp: Path) -> dict:
    from evedit.training.store_build import build_command

    batch, kind = STAGE_BATCH[name], STAGE_KIND[name]
    n = batch * 2
    build_command(kind, tmp / kind, items=n, vae=MODEL / "vae", progress=False)
    fly = _stage(name, {"kind": "shapeworld"})  # each path its own stage: same parts, same work
    fly_data = fly.dataset("train")
    stored = _stage(name, {"kind": "store", "path": str(tmp / kind)})
    store_data = stored.dataset("train")
    t_fly = time_steps(fly, fly_data, batch, steps)
    t_store = time_steps(stored, store_data, batch, steps)
    return {"stage": name, "batch": batch, "fly_s": t_fly, "store_s": t_store, "ratio": t_fly / t_store}


def compare_align(steps: int, tmp: Path) -> dict:
    from evedit.training.fdd.entry import load_fdd_config
    from evedit.training.fdd.stage import one_step, set_up
    from evedit.training.store_build import build_command

    items = 4
    cfg = load_fdd_config(ROOT / "configs" / "align.yaml")
    cfg = dataclasses.replace(cfg, model=str(MODEL), sample_every=0, ckpt_every=10**6, log_every=10**6,
                              data={"kind": "shapeworld", "length": items, "frames": 8})
    build_command("align", tmp / "align", items=items, vae=MODEL, progress=False)
    out = {}
    for label, data in (("fly", cfg.data), ("store", {"kind": "store", "path": str(tmp / "align")})):
        run = set_up(dataclasses.replace(cfg, data=data, out=str(tmp / f"run-{label}")))
        warm = items // cfg.batch_size  # every item's teacher samples are generated here
        for step in range(warm):
            one_step(run, step)
        times = []
        for step in range(warm, warm + steps):
            began = time.perf_counter()
            one_step(run, step)
            times.append(time.perf_counter() - began)
        out[label] = statistics.median(times)
    return {"stage": "align (1 iteration)", "batch": cfg.batch_size, "fly_s": out["fly"],
            "store_s": out["store"], "ratio": out["fly"] / out["store"]}


def write_section(path: Path, title: str, body: list[str]) -> None:
    """Replace (or append) the ``## title`` section of a results file."""
    text = path.read_text() if path.is_file() else ""
    head, _, rest = text.partition(f"## {title}\n")
    cut = rest.find("\n## ")
    tail = rest[cut:] if cut >= 0 else ""
    path.write_text(head.rstrip("\n") + f"\n\n## {title}\n" + "\n".join(body) + "\n" + tail)


def compare_store(steps: int, stages: list[str]) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in stages:
            row = compare_align(max(2, steps // 4), Path(tmp)) if name == "align" else compare_stage(name, steps, Path(tmp))
            print(f"{row['stage']}: on the fly {row['fly_s']:.3f} s/step, store {row['store_s']:.3f} s/step, "
                  f"{row['ratio']:.1f}x", flush=True)
            rows.append(row)
    load = os.getloadavg()[0]
    body = [
        "",
        f"{date.today()}, {platform.machine()} ({os.cpu_count()} CPUs), torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s), load average at the end {load:.1f}. Median of {steps} steps "
        "(align: of its iterations) after warm-up, same process, same items, the shipped model's parts.",
        "One step: fetch a batch (render + collate, or read the store), loss, backward, AdamW.",
        "Command: `python benchmarks/bench_train.py --compare-store`.",
        "",
        "| stage | batch | on the fly (s/step) | from the store (s/step) | speed-up |",
        "|---|---:|---:|---:|---:|",
        *[f"| {r['stage']} | {r['batch']} | {r['fly_s']:.3f} | {r['store_s']:.3f} | {r['ratio']:.1f}x |" for r in rows],
        "",
        "The store removes rendering and the frozen encoders from the step; what is left is the part "
        "that trains. For the video adapter that part dominates (the motion UNet, forward and "
        "backward through the frozen backbone, on 32 frames), and an FDD iteration is mostly the "
        "student's k-step rollout with gradients, the teachers' SDS passes and the critic, so the "
        "store cannot make those steps several times faster.",
    ]
    write_section(ROOT / "benchmarks" / "results" / "train.md", "Store against on the fly", body)
    return rows


def _shard(n: int, strings: int, channels: int) -> dict[str, "np.ndarray"]:
    """An ``edit`` shard's arrays: two latents per item, a text table, indices into it."""
    import numpy as np

    g = np.random.default_rng(0)
    return {"source": g.standard_normal((n, channels, 16, 16)).astype(np.float16),
            "target": g.standard_normal((n, channels, 16, 16)).astype(np.float16),
            "caption_index": g.integers(0, strings, n).astype(np.int32),
            "instruction_index": g.integers(0, strings, n).astype(np.int32),
            "text_states": g.standard_normal((strings, 48, 384)).astype(np.float16)}


def _readers(arrays: dict, folder: Path) -> dict:
    """Per format: (write seconds, bytes, a function reading item i as numpy arrays)."""
    import numpy as np
    from safetensors import safe_open
    from safetensors.numpy import save_file

    out = {}
    began = time.perf_counter()
    save_file(arrays, str(folder / "shard.safetensors"))
    f = safe_open(str(folder / "shard.safetensors"), framework="np")

    def st_item(i):
        t = [int(f.get_slice(k)[i:i + 1][0]) for k in ("caption_index", "instruction_index")]
        return [f.get_slice("source")[i:i + 1], f.get_slice("target")[i:i + 1],
                *(f.get_slice("text_states")[j:j + 1] for j in t)]
    out["safetensors (safe_open slices)"] = (time.perf_counter() - began, (folder / "shard.safetensors").stat().st_size, st_item)
    began = time.perf_counter()
    for k, v in arrays.items():
        np.save(folder / f"{k}.npy", v)
    mm = {k: np.load(folder / f"{k}.npy", mmap_mode="r") for k in arrays}

    def npy_item(i):
        t = [int(mm[k][i]) for k in ("caption_index", "instruction_index")]
        return [np.array(mm["source"][i]), np.array(mm["target"][i]), *(np.array(mm["text_states"][j]) for j in t)]
    out["numpy .npy memory maps"] = (time.perf_counter() - began, sum((folder / f"{k}.npy").stat().st_size for k in arrays), npy_item)
    try:
        import datasets
    except ImportError:
        return out
    began = time.perf_counter()
    n = len(arrays["source"])
    items = datasets.Dataset.from_dict({k: list(arrays[k]) for k in ("source", "target", "caption_index", "instruction_index")})
    items.save_to_disk(str(folder / "items"))
    table = datasets.Dataset.from_dict({"states": list(arrays["text_states"])})
    table.save_to_disk(str(folder / "texts"))
    items = datasets.load_from_disk(str(folder / "items")).with_format("numpy")
    table = datasets.load_from_disk(str(folder / "texts")).with_format("numpy")

    def arrow_item(i):
        row = items[i]
        return [row["source"], row["target"], table[int(row["caption_index"])]["states"],
                table[int(row["instruction_index"])]["states"]]
    size = sum(p.stat().st_size for p in folder.rglob("*.arrow"))
    out[f"Arrow via datasets {datasets.__version__}"] = (time.perf_counter() - began, size, arrow_item)
    assert n == len(items)
    return out


def compare_formats(n: int = 1024, strings: int = 1500, batches: int = 50, batch: int = 16) -> None:
    """Random batches of ``batch`` items from one shard written three ways; items/s and size."""
    import numpy as np

    arrays = _shard(n, strings, channels=16)
    g = np.random.default_rng(1)
    order = g.integers(0, n, (batches, batch))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (write_s, size, read) in _readers(arrays, Path(tmp)).items():
            first = read(0)
            assert np.array_equal(first[0], arrays["source"][0:1].reshape(first[0].shape))
            began = time.perf_counter()
            for idx in order:
                [read(int(i)) for i in idx]
            rate = batches * batch / (time.perf_counter() - began)
            rows.append((name, write_s, size / 2**20, rate))
            print(f"{name}: write {write_s:.2f} s, {size / 2**20:.1f} MiB, {rate:.0f} items/s", flush=True)
    lines = [
        "# Store shard format: read speed and size",
        "",
        f"{date.today()}, {platform.machine()} ({os.cpu_count()} CPUs). One `edit` shard of {n} items "
        f"(two 16x16x16 fp16 latents each) and a text table of {strings} strings (48 x 384 fp16), written "
        f"each way; then {batches} batches of {batch} random items read (latents and both texts' states).",
        "Command: `python benchmarks/bench_store.py --formats`.",
        "",
        "| format | write (s) | size (MiB) | random reads (items/s) |",
        "|---|---:|---:|---:|",
        *[f"| {r[0]} | {r[1]:.2f} | {r[2]:.1f} | {r[3]:.0f} |" for r in rows],
    ]
    (ROOT / "benchmarks" / "results" / "store.md").write_text("\n".join(lines) + "\n")


def compare_build_workers(items: int, workers: list[int], vae_path: str = "models/parts/codec-dc/vae") -> None:
    """``evedit data build edit`` of the same ``items`` with each number of rendering workers."""
    import torch
    from safetensors.torch import load_file

    from evedit.training.stages.common import load_vae, text_encoder
    from evedit.training.store_build import build_store, source_dataset

    torch.set_num_threads(1)
    vae, text = load_vae(ROOT / vae_path), text_encoder()
    rows, first = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for w in workers:
            out = Path(tmp) / f"w{w}"
            began = time.perf_counter()
            m = build_store("edit", source_dataset("edit", "shapeworld", items), vae, text, out,
                            vae_path=vae_path, progress=False, workers=w)
            rate = items / (time.perf_counter() - began)
            shards = [load_file(str(out / name)) for name in m["shards"]]
            same = first is None or all(torch.equal(a[k], b[k]) for a, b in zip(first, shards) for k in a)
            first = first or shards
            rows.append((w, rate, same))
            print(f"workers {w}: {rate:.0f} items/s, same store: {same}", flush=True)
    write_section(ROOT / "benchmarks" / "results" / "store.md", "Build: rendering workers", [
        "",
        f"{date.today()}, {platform.machine()} ({os.cpu_count()} CPUs), one torch thread. `edit` store of "
        f"{items} ShapeWorld items through the DC codec (`{vae_path}`) and MiniLM; `--workers` processes "
        "render while the main process encodes.",
        f"Command: `python benchmarks/bench_store.py --build-workers {' '.join(map(str, workers))} "
        f"--build-items {items}`.",
        "",
        "| workers | items/s | store identical to the first row's |",
        "|---:|---:|---|",
        *[f"| {w} | {r:.0f} | {'yes' if same else 'NO'} |" for w, r, same in rows],
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare-store", action="store_true", help="step time from the store vs on the fly")
    parser.add_argument("--formats", action="store_true", help="shard format read speed and size")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--stages", nargs="+", default=[*STAGE_KIND, "align"],
                        choices=[*STAGE_KIND, "align"])
    parser.add_argument("--build-workers", type=int, nargs="+", help="store build speed with these --workers")
    parser.add_argument("--build-items", type=int, default=1024)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.build_workers:
        compare_build_workers(args.build_items, args.build_workers)
    if args.formats:
        compare_formats()
    if args.compare_store or not (args.formats or args.build_workers):
        compare_store(args.steps, args.stages)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
