"""The ShapeWorld benchmark: held-out test clips and held-out compositions, with exact ground truth.

Items: ``per_split`` clips from each of the ``test`` and ``heldout`` splits, item ``i`` of a split
being :class:`~evedit.world.EvalDataset` index ``i`` with task ``TASKS[i % 14]``, so every task
(the vision ones too, which the aligned model never trained on: measured zero-shot) appears equally
often; the two splits are interleaved, so any ``--limit`` of 28 or more still covers every task in
both. Default 56 per split: 112 clips.

Metrics (:data:`SHAPEWORLD_METRICS`): against the ground truth ``psnr`` and ``flicker``; against the
input outside the edit's footprint ``structure_psnr`` (tasks whose footprint leaves pixels out:
the local ones, add/remove, background, detect); and the paper's CLIP-style scores computed with
ShapeCLIP (the image tower per frame, its video tower for the ``video_`` ones, MiniLM text); and
``edit_accuracy``, 1 when the asked change happened and 0 when not, judged from the scene graphs and
masks (:mod:`.accuracy`), so its mean is the share of edits made.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..errors import EveditError
from ..world import TASKS, EvalDataset, WorldConfig, clip_tensor, edit_footprint
from . import metrics as M
from .items import Item

SPLITS: tuple[str, ...] = ("test", "heldout")
DEFAULT_PER_SPLIT = 4 * len(TASKS)  # 56 per split, 112 clips
SHAPEWORLD_METRICS: tuple[str, ...] = (
    "psnr", "edit_accuracy", "flicker", "structure_psnr", "clip_frame", "clip_out", "clip_dir", "video_clip_out",
    "video_clip_dir",
)


class ShapeWorldBenchmark:
    """Items of the ShapeWorld benchmark (see the module docstring)."""

    name = "shapeworld"
    has_ground_truth = True

    def __init__(self, per_split: int = DEFAULT_PER_SPLIT, splits: tuple[str, ...] = SPLITS,
                 tasks: tuple[str, ...] = TASKS, config: WorldConfig | None = None):
        if per_split < 1:
            raise EveditError(f"A ShapeWorld benchmark needs at least one clip per split, got {per_split}.")
        self.per_split, self.splits, self.tasks = per_split, tuple(splits), tuple(tasks)
        self.config = config or WorldConfig()

    def items(self, limit: int | None = None) -> list[Item]:
        """The first ``limit`` items (all when None), interleaved across splits."""
        total = self.per_split * len(self.splits)
        n = total if limit is None else max(0, min(limit, total))
        views: dict[tuple[str, str], EvalDataset] = {}
        out = []
        for index in range(n):
            i, split = divmod(index, len(self.splits))
            split = self.splits[split]
            task = self.tasks[i % len(self.tasks)]
            view = views.setdefault((split, task), EvalDataset(split, self.per_split, self.config, (task,)))
            ex = view.example(i)
            out.append(Item(
                key=f"{split}/{ex.seed}_{task}", task=task, instruction=ex.edit.instruction,
                input_caption=ex.edit.input_caption, output_caption=ex.edit.output_caption,
                frames=ex.clip, target=ex.edited_clip, footprint=edit_footprint(ex), group=split, index=index,
                meta={"seed": ex.seed, "config": self.config},
            ))
        return out


def model_world(model: str | Path = "shapeworld") -> WorldConfig:
    """The ShapeWorld the model folder (or the shipped model, for "shapeworld") was trained on, as
    its manifest records it (``spec.world``); the preset world for folders without one."""
    from ..models import folder_spec, shipped_shapeworld_folder

    return folder_spec(shipped_shapeworld_folder() if str(model) == "shapeworld" else model).world_config()


def shapeclip_folder(model: str | Path = "shapeworld", shapeclip: str | Path | None = None) -> Path:
    """Where the trained ShapeCLIP is: ``shapeclip`` if given, else the model folder's extra."""
    if shapeclip is not None:
        return Path(shapeclip)
    from ..models import MANIFEST, shipped_shapeworld_folder

    folder = shipped_shapeworld_folder() if str(model) == "shapeworld" else Path(model)
    manifest = folder / MANIFEST
    extras = json.loads(manifest.read_text()).get("extras", {}) if manifest.is_file() else {}
    if "shapeclip" not in extras:
        raise EveditError(
            f"No trained ShapeCLIP for the ShapeWorld metrics: the model folder '{folder}' has no 'shapeclip' "
            "extra; train it (`evedit train clip --config configs/clip.yaml`, then `evedit model assemble`) "
            "or pass --shapeclip DIR (e.g. runs/clip/export/shapeclip)."
        )
    return folder / extras["shapeclip"]


def load_shapeclip(folder: str | Path):
    """A ShapeCLIP saved with ``save_pretrained`` (safetensors only), frozen, float32."""
    from ..models import refuse_pickles
    from ..models.shapeclip import ShapeCLIP

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise EveditError(f"'{folder}' is not a ShapeCLIP folder: it has no config.json.")
    refuse_pickles(folder)
    try:
        model = ShapeCLIP.from_pretrained(folder, use_safetensors=True, torch_dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise EveditError(f"Could not load ShapeCLIP from '{folder}': {str(exc).splitlines()[0]}") from exc
    return model.eval().requires_grad_(False)


class ShapeWorldScorer:
    """Every ShapeWorld metric of one (input, output) pair; see the module docstring."""

    metrics = SHAPEWORLD_METRICS

    def __init__(self, shapeclip, text_encoder):
        self.clip = shapeclip.eval().requires_grad_(False)
        self.text_encoder = text_encoder
        self._text: dict[str, torch.Tensor] = {}
        self._inp: tuple[str, tuple[torch.Tensor, torch.Tensor]] | None = None
        self._example: tuple[str, object] | None = None

    @classmethod
    def from_pretrained(cls, model: str | Path = "shapeworld", shapeclip: str | Path | None = None):
        from ..text import MiniLMTextEncoder

        clip = load_shapeclip(shapeclip_folder(model, shapeclip))
        return cls(clip, MiniLMTextEncoder.from_pretrained(max_length=64))

    @torch.no_grad()
    def embed(self, frames: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 ``(F, H, W, 3)`` -> frame embeddings ``(F, D)`` and the video embedding ``(1, D)``."""
        device = next(self.clip.parameters()).device
        clip = clip_tensor(np.ascontiguousarray(frames)).to(device)  # (3, F, H, W) in [-1, 1]
        frames_emb = self.clip.image_features(clip.permute(1, 0, 2, 3))  # (F, D)
        return frames_emb, self.clip.video_features(clip[None])

    @torch.no_grad()
    def text(self, caption: str) -> torch.Tensor:
        """A caption's ShapeCLIP embedding ``(1, D)`` (cached)."""
        if caption not in self._text:
            pooled = self.text_encoder([caption]).pooled
            self._text[caption] = self.clip.text_features(pooled.to(next(self.clip.parameters()).device))
        return self._text[caption]

    def _input(self, item: Item, inp: np.ndarray):
        if self._inp is None or self._inp[0] != item.key:  # editors of one item share the input's embedding
            self._inp = (item.key, self.embed(inp))
        return self._inp[1]

    def accuracy(self, item: Item, out: np.ndarray) -> float | None:
        """1.0 / 0.0: did ``out`` make the item's asked change (:func:`.accuracy.edit_accuracy`); None
        when it cannot be judged or the item names no ShapeWorld seed."""
        from .accuracy import edit_accuracy, item_example

        if item.meta.get("seed") is None or item.target is None:
            return None
        if self._example is None or self._example[0] != item.key:  # editors of one item share the example
            self._example = (item.key, item_example(item.meta["seed"], item.task, item.meta.get("config")))
        ok = edit_accuracy(self._example[1], out)
        return None if ok is None else float(ok)

    def score(self, item: Item, inp: np.ndarray, out: np.ndarray) -> dict[str, float | None]:
        """All metrics of one edited clip; None where a metric does not apply."""
        out = M.match_frames(out, inp)
        res: dict[str, float | None] = {}
        if item.target is not None:
            res["psnr"] = M.psnr(out, item.target)
            res["flicker"] = M.flicker(out, item.target)
        res["edit_accuracy"] = self.accuracy(item, out)
        res["structure_psnr"] = M.structure_psnr(out, inp, item.footprint) if item.footprint is not None else None
        e_in, v_in = self._input(item, inp)
        e_out, v_out = self.embed(out)
        t_in, t_out = self.text(item.input_caption), self.text(item.output_caption)
        res["clip_frame"] = M.frame_consistency(e_out)
        res["clip_out"] = M.mean_cosine(e_out, t_out)
        res["clip_dir"] = M.directional(e_out, e_in, t_out, t_in)
        res["video_clip_out"] = M.mean_cosine(v_out, t_out)
        res["video_clip_dir"] = M.directional(v_out, v_in, t_out, t_in)
        return res
