"""Data for the loop: image-caption sources for the codec and T2I stages, and a resumable order.

Sources (a stage's ``data:`` section, :class:`DataConfig`):

- ``kind: shapeworld``: ShapeWorld's :class:`~evedit.world.ImageCaptionDataset` (rendered on the
  fly, deterministic by index; train and val splits never share a seed);
- ``kind: folder``: your own images, :class:`ImageCaptionFolder`: a folder of images plus a captions
  table (CSV or JSONL) with ``file_name`` and ``text`` columns, the Hugging Face imagefolder
  convention (``metadata.jsonl``/``metadata.csv`` are found by default). The last ``val_items``
  rows (at most a tenth) are held out for evaluation and never trained on.

Order: :class:`StepSampler` is a function of (seed, position) only: item ``pos`` of the stream is
``perm_e[pos mod n]`` with ``perm_e`` a permutation seeded by (seed, epoch ``e = pos // n``). The
loop stores the number of samples seen, so resume continues the exact stream with no loader state.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from ..errors import EveditError
from ..io import read_image
from ..io.images import list_folder_images
from ..world.datasets import image_tensor
from .video_data import FILE_KEYS, TEXT_KEYS, _pick, _resize, _rows

DEFAULT_TABLES = ("metadata.jsonl", "metadata.csv", "captions.jsonl", "captions.csv")
DATA_KINDS = ("shapeworld", "folder", "store")


@dataclass
class DataConfig:
    kind: str = "shapeworld"  # "shapeworld" (on the fly), "folder" (your images), "store" (encoded)
    path: Optional[str] = None  # folder of images (kind: folder) or an encoded store (kind: store)
    captions: Optional[str] = None  # CSV/JSONL table; default: metadata.jsonl/.csv in the folder
    size: int = 64  # folder images are resized (shorter side) and centre-cropped to this
    train_items: int = 100_000  # ShapeWorld train view length (seeds 0..n-1 of the train split)
    val_items: int = 256  # ShapeWorld val view length; items held out of a folder (<= 1/10)


class ImageCaptionFolder(Dataset):
    """``{"image": float32 (3, size, size) in [-1, 1], "caption": str}`` from a folder of images."""

    def __init__(self, folder: str | Path, captions: str | Path | None = None, size: int = 64):
        self.folder, self.size = Path(folder), int(size)
        if not self.folder.is_dir():
            raise EveditError(f"The image folder '{self.folder}' does not exist.")
        table = Path(captions) if captions else _default_table(self.folder)
        if table is None:  # no captions: every image, captioned "" (enough for the codec)
            where = f"Cannot list images in '{self.folder}'"
            self.items = [(p.name, "") for p in list_folder_images(self.folder, where)]
        else:
            self.items = [(_pick(r, FILE_KEYS, table), _pick(r, TEXT_KEYS, table)) for r in _rows(table)]
        if not self.items:
            raise EveditError(f"The image folder '{self.folder}' holds no images.")
        missing = [name for name, _ in self.items if not (self.folder / name).is_file()]
        if missing:
            raise EveditError(
                f"{len(missing)} file(s) listed for '{self.folder}' do not exist, e.g. '{missing[0]}'."
            )

    @property
    def has_captions(self) -> bool:
        return any(text for _, text in self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        name, text = self.items[index]
        pixels = _resize(read_image(self.folder / name), self.size)  # (size, size, 3) uint8
        return {"image": image_tensor(np.array(pixels)), "caption": text}  # writable copy


def _default_table(folder: Path) -> Path | None:
    return next((folder / n for n in DEFAULT_TABLES if (folder / n).is_file()), None)


def image_caption_dataset(cfg: DataConfig, split: str, world: dict | None = None) -> Dataset:
    """The ``split`` ("train" or "val") view of a :class:`DataConfig` source; ShapeWorld items are
    rendered in ``world`` (WorldConfig settings; None: the preset world)."""
    if cfg.kind not in DATA_KINDS:
        raise EveditError(f"Unknown data kind '{cfg.kind}'; choose one of {', '.join(DATA_KINDS)}.")
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    if cfg.kind == "store":
        raise EveditError("Data of kind 'store' holds encoded latents, which only the diffusion stages "
                          "(t2i, edit-adapter, video-adapter, align) read; this stage needs images.")
    if cfg.kind == "shapeworld":
        from ..world import ImageCaptionDataset, WorldConfig

        return ImageCaptionDataset(split, length=cfg.train_items if split == "train" else cfg.val_items,
                                   config=WorldConfig(**(world or {})))
    if not cfg.path:
        raise EveditError("Data of kind 'folder' needs a 'path' to a folder of images.")
    full = ImageCaptionFolder(cfg.path, cfg.captions, cfg.size)
    n = len(full)
    if n < 2:
        raise EveditError(f"The image folder '{cfg.path}' needs at least 2 images (train and val).")
    n_val = max(1, min(cfg.val_items, n // 10))
    indices = range(n - n_val, n) if split == "val" else range(n - n_val)
    return Subset(full, list(indices))


def stream_seed(*parts: int) -> int:
    """A 63-bit seed from integers (seed, stream, position...), well mixed by numpy's SeedSequence."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> 1)


class StepSampler(torch.utils.data.Sampler):
    """Endless batches of indices; a pure function of (seed, samples already seen).

    Each global batch holds ``batch_size * world`` consecutive stream items; process ``rank``
    takes its ``batch_size`` slice, so processes never share an item of one batch.
    """

    def __init__(self, n: int, batch_size: int, seed: int, start: int = 0, rank: int = 0, world: int = 1):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.start, self.rank, self.world = start, rank, world
        self._epoch, self._perm = -1, None

    def item(self, pos: int) -> int:
        epoch, offset = divmod(pos, self.n)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(stream_seed(self.seed, 1, epoch))
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=g)
        return int(self._perm[offset])

    def __iter__(self) -> Iterator[list[int]]:
        pos = self.start
        while True:
            first = pos + self.rank * self.batch_size
            yield [self.item(first + i) for i in range(self.batch_size)]
            pos += self.batch_size * self.world

    def __len__(self) -> int:  # endless; DataLoader only needs it for len()
        return 2**62


class WeightedStepSampler(torch.utils.data.Sampler):
    """Endless batches drawn with replacement by per-item weights; a pure function of (seed, step).

    Step ``s`` draws its global batch (``batch * accum * world`` items) from a generator seeded by
    ``(seed, s)``; micro-batch ``k`` of process ``rank`` is slot ``k * world + rank`` of it, so a
    resume at step ``s`` continues the same stream with any process count. Used where a stage
    samples some items more often than others (the edit adapter's ``task_weights``).
    """

    def __init__(self, weights: torch.Tensor, seed: int, start: int, rank: int = 0, world: int = 1,
                 accum: int = 1, batch: int = 1):
        self.weights = weights.double() / weights.double().sum()
        self.seed, self.start, self.rank, self.world, self.accum, self.batch = seed, start, rank, world, accum, batch

    def __iter__(self) -> Iterator[list[int]]:
        step, b = self.start, self.batch
        while True:
            g = torch.Generator().manual_seed(stream_seed(self.seed, 3, step))
            items = torch.multinomial(self.weights, b * self.accum * self.world, replacement=True, generator=g)
            for k in range(self.accum):
                slot = k * self.world + self.rank
                yield [int(i) for i in items[slot * b:(slot + 1) * b]]
            step += 1

    def __len__(self) -> int:  # endless; DataLoader only needs it for len()
        return 2**62
