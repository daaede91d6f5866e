"""Real alignment data: a JSONL manifest of (video path, instruction, output caption[, input
caption, task]); paths are relative to the manifest. No targets, as in FDD."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ...errors import EveditError
from ...io import read_video
from ..video_data import _resize


class AlignmentManifest(Dataset):
    def __init__(self, path: str | Path, frames: int = 8, size: int = 64, tasks: tuple[str, ...] = ()):
        self.path = Path(path)
        if not self.path.is_file():
            raise EveditError(f"The alignment manifest '{self.path}' does not exist.")
        self.rows = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
        for n, row in enumerate(self.rows, 1):
            missing = {"video", "instruction", "output_caption"} - set(row)
            if missing:
                raise EveditError(f"Row {n} of '{self.path}' lacks {', '.join(sorted(missing))}.")
        self.frames, self.size, self.tasks = frames, size, tuple(tasks)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        row = self.rows[index]
        video = read_video(self.path.parent / row["video"], max_frames=self.frames)
        frames = video.frames
        if len(frames) < self.frames:
            frames = np.concatenate([frames, np.repeat(frames[-1:], self.frames - len(frames), 0)])
        clip = np.stack([_resize(f, self.size) for f in frames]).astype(np.float32)
        task = row.get("task", 0)
        if isinstance(task, str):
            if task not in self.tasks:
                raise EveditError(f"Unknown task {task!r} in '{self.path}'; known: {', '.join(self.tasks)}.")
            task = self.tasks.index(task)
        return {"clip": torch.from_numpy(clip).permute(3, 0, 1, 2) / 127.5 - 1.0,
                "instruction": row["instruction"], "output_caption": row["output_caption"],
                "input_caption": row.get("input_caption", ""), "task": task}
