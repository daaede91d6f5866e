"""What the backbone gets when the user gives only an instruction: the choices side by side.

For a ShapeWorld model folder, per-frame edits by the edit teacher (ip2p dual guidance, DDIM) of
frames of ``--split`` (test by default) of the model's own world (``spec.world``), per task, with the
backbone's text set to each choice:

- ``output``: the ground-truth output caption (what the paper's routing trains with; a user lacks it);
- ``instruction``: the instruction itself (evedit 0.1.0's default when no caption is given);
- ``empty``: the empty text (the backbone unconditioned; the ControlNet carries the instruction);
- ``input``: the input frame's true caption (the best a captioner of the input could give).

Writes a Markdown table of PSNR against the exact edited frame (and, if available, edit accuracy)
per task and mean. Usage:
    python benchmarks/caption_choice.py --model models/shapeworld --per-task 8 --steps 25 --out FILE.md
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from evedit.eval.shapeworld import model_world
from evedit.models import load_model
from evedit.training.fdd.config import FDDConfig
from evedit.training.quality import guided_edits, mean_accuracy
from evedit.training.stages.common import psnr
from evedit.world import TASKS, EditTripletDataset

CHOICES = ("output", "instruction", "empty", "input")
LOCAL = ("color", "texture", "shape", "add", "remove")


def caption_texts(batch: dict, choice: str) -> list[str]:
    n = len(batch["instruction"])
    return {"output": list(batch["output_caption"]), "instruction": list(batch["instruction"]),
            "empty": [""] * n, "input": list(batch["input_caption"])}[choice]


@torch.no_grad()
def run(model, choices, per_task: int, steps: int, split: str, world=None) -> dict:
    table = {c: {} for c in choices}
    table["identity"] = {}
    acc = {c: {} for c in choices}
    for task in TASKS:
        data = EditTripletDataset(split, per_task, tasks=(task,), config=world)
        batch = torch.utils.data.default_collate([data[i] for i in range(per_task)])
        table["identity"][task] = float(psnr(batch["input_image"], batch["output_image"]).mean())
        for choice in choices:
            out = guided_edits(model, batch, caption_texts(batch, choice), steps, 17 * TASKS.index(task))
            table[choice][task] = float(psnr(out, batch["output_image"]).mean())
            acc[choice][task] = mean_accuracy(data, 0, out)
        print(task, {c: round(table[c][task], 2) for c in table}, {c: acc[c][task] for c in acc}, flush=True)
    return table, acc


def markdown(table: dict, acc: dict, args, seconds: float) -> str:
    cols = list(table)
    lines = [f"Model `{args.model}`, split `{args.split}`, {args.per_task} frames per task, DDIM {args.steps}, "
             f"teacher guidance (image {FDDConfig.edit_image_scale}, text {FDDConfig.edit_text_scale}); "
             f"{seconds / 60:.1f} min. PSNR (dB) against the exact edited frame / edit accuracy "
             "(evedit.eval.accuracy; identity: the unchanged input).", "",
             "| task | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]

    def cell(c, tasks):
        value = f"{np.mean([table[c][t] for t in tasks]):.2f}"
        return value if c not in acc else f"{value} / {np.nanmean([acc[c][t] for t in tasks]):.0%}"

    for task in TASKS:
        lines.append(f"| {task} | " + " | ".join(cell(c, [task]) for c in cols) + " |")
    for name, tasks in (("local mean", LOCAL), ("mean", TASKS)):
        lines.append(f"| **{name}** | " + " | ".join(cell(c, tasks) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="models/shapeworld")
    p.add_argument("--per-task", type=int, default=8)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--split", default="test")
    p.add_argument("--choices", default=",".join(CHOICES))
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.manual_seed(0)
    model = load_model(args.model)
    start = time.time()
    table, acc = run(model, args.choices.split(","), args.per_task, args.steps, args.split, model_world(args.model))
    text = markdown(table, acc, args, time.time() - start)
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text + "\n")
        with open(args.out.replace(".md", ".json"), "a") as f:
            f.write(json.dumps({"model": args.model, "psnr": table, "accuracy": acc}) + "\n")


if __name__ == "__main__":
    main()
