"""Which FDD term drives the LoRA update: each generator term's own gradient norm.

Runs a few real iterations of ``configs/align.yaml`` (SDS phase, then adversarial phase) with
``term_grads_every: 1`` from a given LoRA (default: the fresh one; ``--lora-from`` an aligned model
folder, e.g. the shipped one, to see the end of training) and prints the mean of every
``gradnorm_*`` term and of the discriminators' real/fake logits. Writes
``benchmarks/results/fdd_term_grads.md``.

Run: ``python benchmarks/fdd_term_grads.py --model runs/teachers --lora-from models/shapeworld``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(model: str, lora_from: str | None, iters: int) -> dict[str, dict[str, float]]:
    import torch

    from evedit.models import load_model
    from evedit.training.fdd.entry import load_fdd_config
    from evedit.training.fdd.stage import one_step, set_up

    torch.set_num_threads(1)
    torch.manual_seed(0)  # the discriminator heads are initialised from torch's global generator
    teacher = load_model(lora_from or model)  # lora_from's teachers are the same parts plus its LoRA
    cfg = replace(load_fdd_config(ROOT / "configs" / "align.yaml"), model=lora_from or model, term_grads_every=1,
                  lora_init="continue" if lora_from else "fresh", sample_every=0, ckpt_every=10_000,
                  log_every=10_000, out=tempfile.mkdtemp(prefix="fdd-terms-"),
                  data={"kind": "shapeworld", "length": 2, "frames": 8})
    trainer = set_up(cfg, teacher=teacher)
    out = {}
    for phase, first in (("SDS only", 0), ("SDS + adversarial", cfg.steps_sds)):
        logs = [one_step(trainer, step) for step in range(first, first + iters)]
        keys = sorted({k for log in logs for k in log if k.startswith(("gradnorm_", "d_edit_", "d_video_"))})
        out[phase] = {k: statistics.mean(log[k] for log in logs) for k in keys}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="runs/teachers")
    p.add_argument("--lora-from", default=None)
    p.add_argument("--iters", type=int, default=4)
    args = p.parse_args()
    res = measure(args.model, args.lora_from, args.iters)
    source = (f"Teachers and LoRA from `{args.lora_from}`" if args.lora_from
              else f"Teachers `{args.model}`, LoRA fresh (B = 0)")
    command = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None)
    lines = ["# FDD: each generator term's LoRA gradient norm (weights alpha, beta, lambda applied)", "",
             f"{source}; mean of {args.iters} iterations per phase, batch 2 x 8 frames. "
             f"Command: `python benchmarks/fdd_term_grads.py {command}`.", ""]
    for phase, figures in res.items():
        lines += [f"**{phase}**", "", "| term | mean |", "|---|---:|",
                  *[f"| {k} | {v:.4g} |" for k, v in figures.items()], ""]
    text = "\n".join(lines)
    (ROOT / "benchmarks" / "results" / "fdd_term_grads.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
