"""Does the edit adapter fit its own training edits? Train items against held-out ones.

Isolates data from capacity: the edit teacher (instruction alone, DDIM 25, the teacher's guidance)
edits the first ``--per-task`` items of each local task among the store's items (train split seeds
0..items-1, all tasks drawn as the store drew them: items the adapter was trained on) and the same
number of validation items; PSNR outside / inside the edit footprint and edit accuracy, as in
``edit_fidelity.py``. Train about equal to validation: the adapter underfits (conditioning,
capacity, objective), not a data limit.

Run: ``python benchmarks/edit_fit.py --model runs/dc-gpu/teachers --store-items 60000``.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch.utils.data import default_collate

from edit_fidelity import TASKS, footprint_psnrs
from evedit.models import load_model
from evedit.training.quality import guided_edits, triplet_accuracies
from evedit.world import EditTripletDataset


def rows(model, data, indices: list[int], steps: int) -> dict[str, float]:
    batch = default_collate([data[i] for i in indices])
    edits = guided_edits(model, batch, None, steps, seed=0)
    keep, edit = footprint_psnrs(data, indices, edits, batch["output_image"])
    acc = [a for j, i in enumerate(indices) for a in triplet_accuracies(data, i, edits[j:j + 1]) if a is not None]
    return {"keep": float(np.mean(keep)), "edit": float(np.mean(edit)),
            "acc": float(np.mean(acc)) if acc else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--store-items", type=int, required=True, help="items in the adapter's train store")
    parser.add_argument("--per-task", type=int, default=16)
    parser.add_argument("--steps", type=int, default=25)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.model)
    train = EditTripletDataset("train", args.store_items)
    print(f"model {args.model}, {args.per_task} frames per task, DDIM {args.steps}, instruction alone; "
          "cells keep dB / edit dB / accuracy")
    print("| task | trained items | validation items |")
    print("|---|---:|---:|")
    for task in TASKS:
        seen = [i for i in range(args.store_items) if train.draw(i)[0].task == task][:args.per_task]
        val = EditTripletDataset("val", args.per_task, tasks=(task,))
        cells = [rows(model, train, seen, args.steps), rows(model, val, list(range(args.per_task)), args.steps)]
        print(f"| {task} | " + " | ".join(f"{c['keep']:.2f} / {c['edit']:.2f} / {c['acc']:.0%}" for c in cells)
              + " |", flush=True)


if __name__ == "__main__":
    main()
