"""Torch map-style views of ShapeWorld, one per training stage.

Item ``i`` of a view is the example of seed ``start + i`` of its split (:data:`SPLITS`), so
every item is deterministic and views of different splits never share a seed. Images are
float32 ``(3, H, W)`` in [-1, 1]; clips are float32 ``(3, F, H, W)`` in [-1, 1], so a batch is
``(B, C, F, H, W)``, the project's video layout.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from evedit.errors import EveditError
from evedit.world.config import WorldConfig
from evedit.world.edits import NON_VISION_TASKS, TASKS, task_label
from evedit.world.examples import SPLITS, Example, edit_footprint, make_example
from evedit.world.render import visible_masks

#: Items per view when ``length`` is not given.
DEFAULT_LENGTHS: dict[str, int] = {"train": 100_000, "val": 1_000, "test": 500, "heldout": 500}
_PICK_STREAM = 2  # generator stream of a view's own choices (task, frame, side), apart from the scene's


def image_tensor(frame: np.ndarray) -> torch.Tensor:
    """uint8 ``(H, W, 3)`` -> float32 ``(3, H, W)`` in [-1, 1]."""
    return torch.from_numpy(frame).permute(2, 0, 1).float().div_(127.5).sub_(1.0)  # (3, H, W)


def clip_tensor(clip: np.ndarray) -> torch.Tensor:
    """uint8 ``(F, H, W, 3)`` -> float32 ``(3, F, H, W)`` in [-1, 1]."""
    return torch.from_numpy(clip).permute(3, 0, 1, 2).float().div_(127.5).sub_(1.0)  # (3, F, H, W)


class WorldDataset(Dataset):
    """Base view: item ``i`` is seed ``start + i`` of ``split``, its task drawn from ``tasks``."""

    default_tasks: tuple[str, ...] = TASKS

    def __init__(
        self,
        split: str = "train",
        length: int | None = None,
        config: WorldConfig | None = None,
        tasks: tuple[str, ...] | list[str] | None = None,
    ) -> None:
        """Check the split, length and tasks; nothing is rendered until an item is asked for."""
        if split not in SPLITS:
            raise EveditError(f"Unknown ShapeWorld split {split!r}; splits are {', '.join(SPLITS)}.")
        start, stop = SPLITS[split]
        length = DEFAULT_LENGTHS[split] if length is None else int(length)
        if not 1 <= length <= stop - start:
            raise EveditError(f"A {split} view holds 1 to {stop - start} items, got length={length}.")
        self.tasks = tuple(self.default_tasks if tasks is None else tasks)
        if not self.tasks:
            raise EveditError("A ShapeWorld view needs at least one task.")
        for task in self.tasks:
            task_label(task)
        self.split, self.start, self.length = split, start, length
        self.config = config or WorldConfig()

    def __len__(self) -> int:
        """Number of items."""
        return self.length

    def seed_of(self, index: int) -> int:
        """Seed of item ``index`` (negative indices count from the end)."""
        if index < 0:
            index += self.length
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for a view of {self.length} items")
        return self.start + index

    def draw(self, index: int) -> tuple[Example, np.random.Generator]:
        """Item ``index``'s example, and the generator for the view's further choices."""
        seed = self.seed_of(index)
        rng = np.random.default_rng([seed, _PICK_STREAM])
        task = self.tasks[int(rng.integers(len(self.tasks)))]
        return make_example(seed, task, self.config), rng

    def example(self, index: int) -> Example:
        """Item ``index``'s full example (scenes, edit, both clips)."""
        return self.draw(index)[0]


class ImageCaptionDataset(WorldDataset):
    """``{"image", "caption"}``: one frame of the input or (with ``edited_prob``) the edited clip."""

    def __init__(self, split: str = "train", length: int | None = None, config: WorldConfig | None = None,
                 tasks: tuple[str, ...] | list[str] | None = None, edited_prob: float = 0.5) -> None:
        """``edited_prob``: share of items showing an edit's result, so the T2I knows those looks too."""
        super().__init__(split, length, config, tasks)
        self.edited_prob = edited_prob

    def example_frame(self, index: int) -> tuple[Example, int, bool]:
        """Item ``index``'s example, the frame it shows and whether that is the edit's result (for
        the scene graph and masks behind an item)."""
        ex, rng = self.draw(index)
        f = int(rng.integers(self.config.frames))
        return ex, f, bool(rng.random() < self.edited_prob)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """A random frame of item ``index`` with its caption, and ``objects``: where the frame's
        objects are, (1, H, W) in {0, 1} (an encoded store keeps it for object-weighted losses)."""
        ex, f, edited = self.example_frame(index)
        scene = ex.edit.edited_scene if edited else ex.scene
        cover = visible_masks(scene, self.config.frames, self.config.size)[f].any(0)
        objects = torch.from_numpy(cover).float()[None]
        if edited:
            return {"image": image_tensor(ex.edited_clip[f]), "caption": ex.edit.output_caption, "objects": objects}
        return {"image": image_tensor(ex.clip[f]), "caption": ex.edit.input_caption, "objects": objects}


class EditTripletDataset(WorldDataset):
    """``{"input_image", "instruction", "task", "output_image", "input_caption", "output_caption"}``.

    One frame before and after an edit; the captions let the backbone take the output caption
    (EVE's prompt routing) while the edit adapter takes the instruction.
    """

    def example_frame(self, index: int) -> tuple[Example, int]:
        """Item ``index``'s example and the frame of it the item shows (for masks, accuracy)."""
        ex, rng = self.draw(index)
        return ex, int(rng.integers(self.config.frames))

    def __getitem__(self, index: int) -> dict[str, Any]:
        """A random frame of item ``index``, its instruction, task label and edited frame."""
        ex, f = self.example_frame(index)
        return {
            "input_image": image_tensor(ex.clip[f]), "instruction": ex.edit.instruction,
            "task": ex.edit.label, "output_image": image_tensor(ex.edited_clip[f]),
            "input_caption": ex.edit.input_caption, "output_caption": ex.edit.output_caption,
        }


class ClipCaptionDataset(WorldDataset):
    """``{"clip", "caption"}``: the input or (with ``edited_prob``) the edited clip."""

    def __init__(self, split: str = "train", length: int | None = None, config: WorldConfig | None = None,
                 tasks: tuple[str, ...] | list[str] | None = None, edited_prob: float = 0.5) -> None:
        """``edited_prob``: share of items showing an edit's result, so the video prior knows them too."""
        super().__init__(split, length, config, tasks)
        self.edited_prob = edited_prob

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Item ``index``'s clip and caption."""
        ex, rng = self.draw(index)
        if rng.random() < self.edited_prob:
            return {"clip": clip_tensor(ex.edited_clip), "caption": ex.edit.output_caption}
        return {"clip": clip_tensor(ex.clip), "caption": ex.edit.input_caption}


class AlignmentDataset(WorldDataset):
    """``{"clip", "instruction", "task", "input_caption", "output_caption"}``: no target, as in FDD."""

    default_tasks = NON_VISION_TASKS

    def fields(self, ex: Example) -> dict[str, Any]:
        """The alignment fields of an example."""
        return {
            "clip": clip_tensor(ex.clip), "instruction": ex.edit.instruction, "task": ex.edit.label,
            "input_caption": ex.edit.input_caption, "output_caption": ex.edit.output_caption,
        }

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Item ``index``'s input clip and edit description."""
        return self.fields(self.draw(index)[0])


class EvalDataset(AlignmentDataset):
    """Alignment fields plus ``"target_clip"`` (ground truth), ``"seed"`` and ``"footprint"``.

    ``footprint`` is bool ``(F, H, W)``: the pixels the edit may change (see
    :func:`edit_footprint`); structure metrics are taken outside it.
    """

    def __init__(self, split: str = "test", length: int | None = None, config: WorldConfig | None = None,
                 tasks: tuple[str, ...] | list[str] | None = None) -> None:
        """An evaluation view, usually of the "test" or "heldout" split."""
        super().__init__(split, length, config, tasks)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Item ``index`` with its exact ground truth."""
        ex = self.draw(index)[0]
        return {
            **self.fields(ex), "target_clip": clip_tensor(ex.edited_clip), "seed": ex.seed,
            "footprint": torch.from_numpy(edit_footprint(ex)),
        }
