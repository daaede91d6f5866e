"""Real (clip, caption) data for the video-adapter stage: a folder of videos with captions.

WebVid-style: a folder of video files plus a captions table, CSV or JSONL, with a file column
(``file_name``, ``video``, ``videoid`` or ``path``) and a caption column (``text``, ``caption`` or
``name``). Each item is ``frames`` frames taken every ``stride`` frames from the start, resized
(shorter side) and centre-cropped to ``size``, as a (3, F, size, size) tensor in [-1, 1].
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import EveditError
from ..io import read_video

FILE_KEYS = ("file_name", "video", "videoid", "path")
TEXT_KEYS = ("text", "caption", "name")


def _rows(table: Path) -> list[dict]:
    if not table.is_file():
        raise EveditError(f"The captions file '{table}' does not exist.")
    if table.suffix == ".csv":
        with table.open(newline="") as handle:
            return list(csv.DictReader(handle))
    if table.suffix in (".jsonl", ".json"):
        return [json.loads(line) for line in table.read_text().splitlines() if line.strip()]
    raise EveditError(f"Captions must be .csv or .jsonl, got '{table.name}'.")


def _pick(row: dict, keys: tuple[str, ...], table: Path) -> str:
    for key in keys:
        if row.get(key) not in (None, ""):
            return str(row[key])
    raise EveditError(f"A row of '{table}' has none of the columns {', '.join(keys)}.")


def _resize(frame: np.ndarray, size: int) -> np.ndarray:
    image = Image.fromarray(frame)
    scale = size / min(image.size)
    image = image.resize((max(size, round(image.width * scale)), max(size, round(image.height * scale))),
                         Image.BICUBIC)
    left, top = (image.width - size) // 2, (image.height - size) // 2
    return np.asarray(image.crop((left, top, left + size, top + size)))


class VideoCaptionFolder(Dataset):
    def __init__(self, folder: str | Path, captions: str | Path | None = None, size: int = 64,
                 frames: int = 8, stride: int = 1):
        self.folder = Path(folder)
        table = Path(captions) if captions else self.folder / "captions.csv"
        self.items = [(_pick(r, FILE_KEYS, table), _pick(r, TEXT_KEYS, table)) for r in _rows(table)]
        if not self.items:
            raise EveditError(f"The captions file '{table}' has no rows.")
        self.size, self.frames, self.stride = size, frames, stride

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        name, caption = self.items[index]
        path = self.folder / name
        if not path.exists() and not Path(name).suffix:
            path = self.folder / f"{name}.mp4"
        video = read_video(path, max_frames=self.frames * self.stride)
        picked = video.frames[:: self.stride][: self.frames]
        if len(picked) < self.frames:  # short clips repeat their last frame
            picked = np.concatenate([picked, np.repeat(picked[-1:], self.frames - len(picked), 0)])
        clip = np.stack([_resize(f, self.size) for f in picked]).astype(np.float32)  # (F, H, W, 3)
        tensor = torch.from_numpy(clip).permute(3, 0, 1, 2) / 127.5 - 1.0  # (3, F, H, W)
        return {"clip": tensor, "caption": caption}
