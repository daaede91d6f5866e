"""Quick standalone training of the auxiliary models (ShapeCLIP, task classifier) for checking.

A plain AdamW loop (linear warm-up, cosine decay, grad clipping) over a stage's ``dataset("train")``,
``loss`` and ``evaluate``: enough to see that a recipe learns and to measure its quality before
the shared loop (``evedit.training.loop``) runs it for real. Not the project's trainer.

    .venv/bin/python benchmarks/train_aux_quick.py clip configs/clip.yaml --max-steps 300 \
        --out runs/quick-clip
    .venv/bin/python benchmarks/train_aux_quick.py task-classifier configs/task-classifier.yaml

Writes ``<out>/log.jsonl`` (losses and evaluations), samples and the export under ``<out>``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, RandomSampler


def build(name: str, stage_cfg: dict):
    if name == "clip":
        from evedit.training.stages.clip import ClipStage

        return ClipStage.from_config(stage_cfg)
    if name == "task-classifier":
        from evedit.training.stages.task_classifier import TaskClassifierStage

        return TaskClassifierStage.from_config(stage_cfg)
    raise SystemExit(f"unknown stage {name!r}")


def lr_at(step: int, base: float, warmup: int, total: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train(name: str, cfg: dict, out: Path, max_steps: int | None, max_minutes: float | None,
          eval_batches: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    t = cfg.get("train", {})
    steps = int(max_steps or t.get("max_steps", 100))
    torch.manual_seed(int(t.get("seed", 0)))
    stage = build(name, cfg.get("stage", {}))
    params = [p for m in stage.trainable_modules() for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=float(t.get("lr", 1e-3)), weight_decay=float(t.get("weight_decay", 0.0)))
    data = stage.dataset("train")
    gen = torch.Generator().manual_seed(int(t.get("seed", 0)))
    loader = DataLoader(data, batch_size=int(t.get("batch_size", 16)), drop_last=True,
                        sampler=RandomSampler(data, replacement=False, generator=gen))
    out.mkdir(parents=True, exist_ok=True)
    log = (out / "log.jsonl").open("w")
    start, step, it = time.time(), 0, iter(loader)
    n_params = sum(p.numel() for p in params)
    print(f"{name}: {n_params / 1e6:.3f}M trainable parameters, {steps} steps")
    eval_every = int(t.get("eval_every", 0))
    while step < steps:
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, float(t.get("lr", 1e-3)), int(t.get("warmup_steps", 0)), steps)
        terms = stage.loss(batch, generator=gen)
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        clip = float(t.get("clip_grad", 1.0))
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        step += 1
        elapsed = time.time() - start
        if step % int(t.get("log_every", 10)) == 0 or step == steps:
            row = {"step": step, "time_s": round(elapsed, 1),
                   **{k: round(float(v.detach()), 4) for k, v in terms.items()}}
            print(json.dumps(row), flush=True)
            log.write(json.dumps(row) + "\n")
        if eval_every and step % eval_every == 0 and step < steps:
            row = {"step": step, "eval": stage.evaluate(eval_batches)}
            print(json.dumps(row), flush=True)
            log.write(json.dumps(row) + "\n")
        if max_minutes and elapsed > 60 * max_minutes:
            print(f"time budget of {max_minutes} min reached at step {step}")
            break
    train_time = time.time() - start
    t0 = time.time()
    metrics = stage.evaluate(eval_batches)
    result = {"stage": name, "steps": step, "train_time_s": round(train_time, 1),
              "eval_time_s": round(time.time() - t0, 1), "params": n_params, "eval": metrics}
    print(json.dumps(result, indent=1))
    log.write(json.dumps(result) + "\n")
    log.close()
    cache_file = cfg.get("stage", {}).get("text_cache_file")
    if cache_file and hasattr(stage, "texts"):
        stage.texts.save(cache_file)
    stage.sample(out / "samples", step)
    stage.export(out / "export")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stage", choices=["clip", "task-classifier"])
    ap.add_argument("config", type=Path)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--max-minutes", type=float, default=None, help="stop early after this much training time")
    ap.add_argument("--eval-batches", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--set", nargs="*", default=[], help="stage overrides, key=value (YAML values)")
    args = ap.parse_args()
    cfg = OmegaConf.to_container(OmegaConf.load(args.config), resolve=True)
    cfg.setdefault("stage", {})
    for item in args.set:
        key, value = item.split("=", 1)
        cfg["stage"][key] = _yaml_value(value)
    out = args.out or Path("runs") / f"quick-{args.stage}"
    train(args.stage, cfg, out, args.max_steps, args.max_minutes, args.eval_batches, args.threads)


def _yaml_value(text: str):
    import yaml

    return yaml.safe_load(text)


if __name__ == "__main__":
    main()
