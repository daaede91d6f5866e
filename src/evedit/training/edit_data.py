"""Real image-edit triples for the edit-adapter stage, in the InstructPix2Pix dataset layout.

A JSONL (or, with pyarrow installed, parquet) file of rows with image paths relative to the file:
``original_image``, ``edited_image``, ``edit_prompt`` (the instruction), optional
``edited_prompt`` (output caption), ``original_prompt`` (input caption) and ``task`` (a task name
from the model's vocabulary, or an integer label). The ip2p column names are used as they are, so
an exported ip2p split works directly; ``input_image`` / ``output_image`` / ``instruction`` /
``output_caption`` / ``input_caption`` are accepted as aliases.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import EveditError

ALIASES = {
    "original_image": "input_image", "edited_image": "output_image", "edit_prompt": "instruction",
    "edited_prompt": "output_caption", "original_prompt": "input_caption",
}


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        raise EveditError(f"The edit-triples file '{path}' does not exist.")
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise EveditError(f"Reading '{path}' needs pyarrow: `pip install pyarrow`.") from exc
        return pq.read_table(path).to_pylist()
    if path.suffix not in (".jsonl", ".json"):
        raise EveditError(f"Edit triples must be .jsonl or .parquet, got '{path.name}'.")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise EveditError(f"Line {n} of '{path}' is not valid JSON.") from exc
    return rows


def load_image(path: Path, size: int) -> torch.Tensor:
    """RGB image resized (shorter side) and centre-cropped to ``size``; (3, size, size) in [-1, 1]."""
    try:
        image = Image.open(path).convert("RGB")
    except (OSError, ValueError) as exc:
        raise EveditError(f"Cannot read image '{path}'.") from exc
    scale = size / min(image.size)
    image = image.resize((max(size, round(image.width * scale)), max(size, round(image.height * scale))),
                         Image.BICUBIC)
    left, top = (image.width - size) // 2, (image.height - size) // 2
    array = np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.float32)
    return torch.from_numpy(array).permute(2, 0, 1) / 127.5 - 1.0


class EditTripletFile(Dataset):
    """Items shaped like ShapeWorld's ``EditTripletDataset``, read from an ip2p-style file."""

    def __init__(self, path: str | Path, size: int = 64, tasks: tuple[str, ...] = ()):
        self.path = Path(path)
        self.size, self.tasks = size, tuple(tasks)
        self.rows = [{ALIASES.get(k, k): v for k, v in row.items()} for row in read_rows(self.path)]
        missing = {"input_image", "output_image", "instruction"} - set(self.rows[0] if self.rows else {})
        if not self.rows or missing:
            raise EveditError(f"'{self.path}' has no rows with input_image, output_image and instruction.")

    def __len__(self) -> int:
        return len(self.rows)

    def _task(self, row: dict) -> int:
        task = row.get("task", 0)
        if isinstance(task, str):
            if task not in self.tasks:
                raise EveditError(f"Unknown task {task!r} in '{self.path}'; known: {', '.join(self.tasks)}.")
            return self.tasks.index(task)
        return int(task)

    def __getitem__(self, index: int) -> dict:
        row = self.rows[index]
        root = self.path.parent
        return {
            "input_image": load_image(root / row["input_image"], self.size),
            "output_image": load_image(root / row["output_image"], self.size),
            "instruction": row["instruction"], "task": self._task(row),
            "output_caption": row.get("output_caption", row["instruction"]),
            "input_caption": row.get("input_caption", ""),
        }
