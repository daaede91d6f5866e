"""Stage ``task-classifier``: instruction -> task label (for ``--task auto``), on frozen MiniLM.

Data (:class:`InstructionDataset`): ShapeWorld edits of random scenes, tasks in turn (balanced).
Every task has several phrasings (``Edit.instructions``); the *last* one of each is held out:
training never sees it, and :meth:`TaskClassifierStage.evaluate` measures accuracy on it
(``heldout_phrasing_acc``, the generalisation figure), next to accuracy on the trained phrasings
of unseen scenes (``seen_phrasing_acc``) and on hand-written user-style instructions mapped to the
nearest ShapeWorld task (``paraphrase_acc``, :data:`PARAPHRASES`; some accept any of a category's
tasks, e.g. "in watercolor style" is a style edit but neither an outline nor pixel art).

Construction: ``TaskClassifierStage(TaskClassifierStageConfig(...))`` or
``TaskClassifierStage.from_config(dict)`` (the recipe's ``stage:`` section).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ...errors import EveditError
from ...models.task_classifier import TaskClassifier
from ...world import SPLITS, TASKS, WorldConfig, make_edit, sample_scene
from ...world.edits import object_count_range
from .clip import PooledTextCache
from .common import load_trainable, text_encoder

STYLE = ("outline", "pixelate")
#: Hand-written instructions in users' words (other objects, other styles) and the ShapeWorld
#: task(s) nearest to each; evaluation only, never trained on.
PARAPHRASES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("make the car red", ("color",)),
    ("change the color of her dress to green", ("color",)),
    ("make the shirt polka dotted", ("texture",)),
    ("give the zebra stripes", ("texture",)),
    ("turn the cat into a dog", ("shape",)),
    ("replace the apple with a banana", ("shape",)),
    ("add a hat to the man", ("add",)),
    ("put a boat on the lake", ("add",)),
    ("remove the dog", ("remove",)),
    ("delete the person on the left", ("remove",)),
    ("change the background to a beach", ("background",)),
    ("replace the sky with a sunset", ("background",)),
    ("make the video black and white", ("grayscale",)),
    ("make it look like an old monochrome film", ("grayscale",)),
    ("invert the colors of the image", ("invert",)),
    ("make the photo darker, like at night", ("brightness",)),
    ("brighten the image", ("brightness",)),
    ("in watercolor style", STYLE),
    ("make it look like a pencil sketch", ("outline",)),
    ("turn it into 8-bit pixel art", ("pixelate",)),
    ("segment the horse", ("segment",)),
    ("create a binary mask of the car", ("segment",)),
    ("draw a bounding box around the bird", ("detect",)),
    ("apply canny edge detection", ("edges",)),
)


@dataclass
class TaskClassifierStageConfig:
    hidden: int = 256  # MLP width: 384 -> 256 -> 14 is ~100k parameters, trains in a minute
    dropout: float = 0.1  # on the hidden layer
    embed_noise: float = 0.02  # std of Gaussian noise added to the (unit) embedding when training
    train_items: int = 8_400  # distinct (scene, task, phrasing) draws, tasks in turn: 600 per task
    eval_items: int = 700  # held-out-phrasing items per evaluation (50 per task)
    holdout: str = "last"  # phrasing index held out of training: "last" or "none"
    text_max_length: int = 48  # instructions are far shorter; no truncation
    init_from: str | None = None  # a TaskClassifier folder to start from; None: scratch


class InstructionDataset(Dataset):
    """``{"instruction", "label", "task"}``: item ``i`` is an edit of task ``TASKS[i % 14]``.

    ``phrasings="train"``: a phrasing other than the held-out one; ``"heldout"``: the held-out
    (last) phrasing; ``"all"``: any. Scenes and choices come from the split's seeds.
    """

    def __init__(self, split: str, length: int, phrasings: str = "train", holdout: str = "last",
                 world: WorldConfig | None = None):
        if split not in SPLITS:
            raise EveditError(f"Unknown ShapeWorld split {split!r}; splits are {', '.join(SPLITS)}.")
        if phrasings not in ("train", "heldout", "all") or holdout not in ("last", "none"):
            raise EveditError("phrasings must be train, heldout or all, and holdout last or none.")
        self.split, self.length, self.phrasings, self.holdout = split, int(length), phrasings, holdout
        self.world = world or WorldConfig()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} items")
        task = TASKS[index % len(TASKS)]
        rng = np.random.default_rng([SPLITS[self.split][0] + index, 23])
        lo, hi = object_count_range(task, self.world)
        scene = sample_scene(rng, self.world, int(rng.integers(lo, hi + 1)))
        options = make_edit(scene, task, rng, self.world).instructions
        if self.phrasings == "heldout":
            text = options[-1]
        elif self.phrasings == "train" and self.holdout == "last":
            text = options[int(rng.integers(len(options) - 1))]
        else:
            text = options[int(rng.integers(len(options)))]
        return {"instruction": text, "label": TASKS.index(task), "task": task}


class TaskClassifierStage:
    name = "task-classifier"

    def __init__(self, config: TaskClassifierStageConfig | None = None):
        self.config = c = config or TaskClassifierStageConfig()
        if c.init_from:
            self.model = load_trainable(TaskClassifier, c.init_from, "task classifier")
        else:
            self.model = TaskClassifier(tasks=list(TASKS), hidden=c.hidden, dropout=c.dropout)
        self.text = text_encoder()
        self.texts = PooledTextCache(self.text, c.text_max_length)

    @classmethod
    def from_config(cls, data: dict | None) -> TaskClassifierStage:
        from ..config import structured

        return cls(structured(TaskClassifierStageConfig, data or {}, "stage section of the task-classifier recipe"))

    def trainable_modules(self) -> list[nn.Module]:
        return [self.model]

    def modules(self) -> dict[str, nn.Module]:
        return {"task_classifier": self.model, "text": self.text}

    def dataset(self, split: str) -> Dataset:
        c = self.config
        if split == "train":
            return InstructionDataset("train", c.train_items, "train", c.holdout)
        return InstructionDataset(split, c.eval_items, "heldout" if c.holdout == "last" else "all", c.holdout)

    def logits(self, instructions: list[str]) -> torch.Tensor:
        return self.model(self.texts(list(instructions)).to(self.model.device))

    def loss(self, batch: dict, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        device = self.model.device
        pooled = self.texts([str(t) for t in batch["instruction"]]).to(device)
        if self.config.embed_noise > 0 and self.model.training:
            noise = torch.randn(pooled.shape, generator=generator).to(device)
            pooled = F.normalize(pooled + self.config.embed_noise * noise, dim=-1)
        logits = self.model(pooled)
        labels = torch.as_tensor(batch["label"], device=device).long()
        loss = F.cross_entropy(logits, labels)
        return {"loss": loss, "acc": (logits.argmax(1) == labels).float().mean().detach()}

    @torch.no_grad()
    def _accuracy(self, texts: list[str], accepted: list[tuple[str, ...]]) -> tuple[float, list[str]]:
        was_training = self.model.training
        self.model.eval()
        try:
            pred = [TASKS[i] for i in self.logits(texts).argmax(1).tolist()]
        finally:
            self.model.train(was_training)
        return float(np.mean([p in a for p, a in zip(pred, accepted)])), pred

    @torch.no_grad()
    def evaluate(self, batches: int = 4) -> dict[str, float]:
        """Accuracy on held-out phrasings, trained phrasings of new scenes, and user paraphrases."""
        c = self.config
        out = {}
        for key, phrasings in (("heldout_phrasing_acc", "heldout"), ("seen_phrasing_acc", "train")):
            if key == "heldout_phrasing_acc" and c.holdout == "none":
                continue
            data = InstructionDataset("val", c.eval_items, phrasings, c.holdout)
            items = [data[i] for i in range(len(data))]
            out[key], _ = self._accuracy([x["instruction"] for x in items], [(x["task"],) for x in items])
        out["paraphrase_acc"], _ = self._accuracy([t for t, _ in PARAPHRASES], [a for _, a in PARAPHRASES])
        return out

    def predict(self, instructions: list[str]) -> list[tuple[str, float]]:
        """``(task name, probability)`` per instruction (see :meth:`TaskClassifier.predict`)."""
        return self.model.predict(instructions, self.text)

    @torch.no_grad()
    def sample(self, out_dir: Path, step: int) -> list[Path]:
        """A text file of the paraphrases with the predicted task and its probability."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        texts = [t for t, _ in PARAPHRASES]
        lines = [f"{'ok ' if task in accepted else 'BAD'} {p:.2f} {task:<10} <- {text}  (expected {'/'.join(accepted)})"
                 for (text, accepted), (task, p) in zip(PARAPHRASES, self.predict(texts))]
        path = out_dir / f"task_classifier_{step:06d}.txt"
        path.write_text("\n".join(lines) + "\n")
        return [path]

    def export(self, folder: Path) -> None:
        self.model.save_pretrained(Path(folder) / "task_classifier", safe_serialization=True)
