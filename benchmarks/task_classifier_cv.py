"""Task classifier settings by leave-one-phrasing-out cross-validation (the test phrasing untouched).

The shipped classifier reaches 90.4% on the held-out (last) phrasing of every task, under the 95%
target. Tuning its settings on that phrasing would be tuning on the test set, so this compares
settings on the *training* phrasings only: fold j holds out phrasing j of every task (j mod n-1),
trains on the other non-last phrasings of 2800 train scenes and scores phrasing j on 700
validation scenes. Frozen MiniLM embeddings are computed once; each fit is the stage's own model
(:class:`TaskClassifier`) and optimiser settings (AdamW, batch 64). Writes
``benchmarks/results/task_classifier_cv.md``.

Run: ``python benchmarks/task_classifier_cv.py`` (~4 min on one core).
"""

from __future__ import annotations

import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {  # name -> overrides of the shipped recipe (configs/task-classifier.yaml)
    "shipped (h256, dropout 0.1, noise 0.02, 600 steps)": {},
    "embedding noise 0.05": {"noise": 0.05}, "embedding noise 0.1": {"noise": 0.1},
    "no embedding noise": {"noise": 0.0}, "dropout 0.3": {"dropout": 0.3},
    "hidden 1024": {"hidden": 1024}, "200 steps": {"steps": 200}, "1500 steps": {"steps": 1500},
    "centred embeddings": {"center": True},
}


def instructions(split: str, n: int):
    import numpy as np

    from evedit.world import SPLITS, TASKS, WorldConfig, make_edit, sample_scene
    from evedit.world.edits import object_count_range

    world, out = WorldConfig(), []
    for index in range(n):  # the scenes InstructionDataset draws for item `index`
        task = TASKS[index % len(TASKS)]
        rng = np.random.default_rng([SPLITS[split][0] + index, 23])
        lo, hi = object_count_range(task, world)
        scene = sample_scene(rng, world, int(rng.integers(lo, hi + 1)))
        out.append((TASKS.index(task), make_edit(scene, task, rng, world).instructions))
    return out


def embed(rows, cache):
    texts = [o for _, opts in rows for o in opts]
    emb, k, out = cache(texts), 0, []
    for label, opts in rows:
        out.append((label, emb[k:k + len(opts)]))
        k += len(opts)
    return out


def fold(rows, j: int):
    """Train on phrasings other than j and the last; test on phrasing j (mod n-1)."""
    import torch

    x, y, xt, yt = [], [], [], []
    for label, e in rows:
        held = j % (e.shape[0] - 1)
        for i in range(e.shape[0] - 1):
            (xt if i == held else x).append(e[i])
            (yt if i == held else y).append(label)
    return torch.stack(x), torch.tensor(y), torch.stack(xt), torch.tensor(yt)


def fit(x, y, hidden=256, dropout=0.1, noise=0.02, steps=600, lr=2e-3, wd=0.01, center=False, seed=0):
    import torch
    import torch.nn.functional as F

    from evedit.models.task_classifier import TaskClassifier
    from evedit.world import TASKS

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    mu = x.mean(0) if center else torch.zeros(x.shape[1])
    model = TaskClassifier(tasks=list(TASKS), hidden=hidden, dropout=dropout)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (64,), generator=g)
        xb = x[idx]
        if noise > 0:
            xb = F.normalize(xb + noise * torch.randn(xb.shape, generator=g), dim=-1)
        loss = F.cross_entropy(model(xb - mu), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return lambda z: model(z - mu).argmax(1)


def main() -> None:
    import numpy as np
    import torch

    from evedit.training.stages.clip import PooledTextCache
    from evedit.training.stages.common import text_encoder

    torch.set_num_threads(1)
    start = time.time()
    cache = PooledTextCache(text_encoder(), 48)
    train, val = embed(instructions("train", 2800), cache), embed(instructions("val", 700), cache)
    lines = []
    for name, kw in SETTINGS.items():
        accs = []
        for j in range(4):
            x, y, _, _ = fold(train, j)
            _, _, xv, yv = fold(val, j)
            accs.append(float((fit(x, y, **kw)(xv) == yv).float().mean()))
        lines.append(f"| {name} | {np.mean(accs):.3f} | {' / '.join(f'{a:.3f}' for a in accs)} |")
        print(lines[-1], flush=True)
    text = "\n".join([
        "# Task classifier: leave-one-phrasing-out cross-validation (`benchmarks/task_classifier_cv.py`)", "",
        "Folds hold out one training phrasing of every task (the test phrasing, the last, is never used);",
        f"accuracy on that phrasing for 700 validation scenes. One torch thread, {(time.time() - start) / 60:.1f} min.",
        "", "| setting | mean | folds 0 / 1 / 2 / 3 |", "|---|---:|---|", *lines, ""])
    (ROOT / "benchmarks" / "results" / "task_classifier_cv.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
