"""Editors as the benchmarks see them.

An :class:`Editor` is any callable
``editor(frames, instruction, task, output_caption, seed) -> frames`` on uint8 ``(F, H, W, 3)``
videos. Two more kinds see the whole :class:`~evedit.eval.items.Item` (``edit_item``): the
ground-truth oracle (ShapeWorld's exact edited clip) and :class:`FolderEditor`, which reads
videos another system wrote in the outputs layout.

:class:`PipelineEditor` wraps ``evedit.editing.EditPipeline`` lazily (imported on the first
edit), so this module works, and its benchmarks run with the trivial editors, without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from ..errors import EveditError
from ..world import TASKS
from .items import Item, read_output

#: The four editors of the paper's comparison, by the pipeline's names.
PIPELINE_EDITORS: tuple[str, ...] = ("eve", "pnp", "per-frame", "sdedit")
#: Other accepted spellings.
ALIASES: dict[str, str] = {"plug-and-play": "pnp", "perframe": "per-frame", "oracle": "ground-truth",
                           "gt": "ground-truth"}
TRIVIAL_EDITORS: tuple[str, ...] = ("identity", "ground-truth")


@runtime_checkable
class Editor(Protocol):
    def __call__(self, frames: np.ndarray, instruction: str, task: str | None, output_caption: str,
                 seed: int) -> np.ndarray: ...


class ItemEditor:
    """Base of editors that need the whole item (ground truth, stored outputs)."""

    def edit_item(self, item: Item, frames: np.ndarray, seed: int) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError


class IdentityEditor:
    """Returns the input unchanged: the "no edit" reference (best structure, zero CLIP_dir)."""

    def __call__(self, frames, instruction, task, output_caption, seed):
        return np.array(frames, copy=True)


class GroundTruthEditor(ItemEditor):
    """Returns the item's exact edited clip (ShapeWorld): the upper reference of every metric."""

    def edit_item(self, item: Item, frames: np.ndarray, seed: int) -> np.ndarray:
        if item.target is None:
            raise EveditError("The ground-truth editor needs a benchmark with ground truth (ShapeWorld).")
        return np.array(item.target, copy=True)


class FolderEditor(ItemEditor):
    """Reads the edited video of each item from ``root`` (the outputs layout, see :mod:`.items`)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise EveditError(f"Outputs folder '{self.root}' does not exist.")

    def edit_item(self, item: Item, frames: np.ndarray, seed: int) -> np.ndarray:
        return read_output(self.root, item.key)


_PIPELINES: dict[str, object] = {}


def _pipeline(model: str):
    """``EditPipeline.from_pretrained(model)``, loaded once per model and shared by its editors."""
    if model not in _PIPELINES:
        try:
            from ..editing import EditPipeline  # lazy: the pipeline lives in its own package
        except ImportError as exc:
            raise EveditError(
                "The editing pipeline (evedit.editing.EditPipeline) is not available in this install; "
                "use the identity or ground-truth editors, or score saved videos with --outputs."
            ) from exc
        _PIPELINES[model] = EditPipeline.from_pretrained(model)
    return _PIPELINES[model]


class PipelineEditor:
    """One of the pipeline's editors (``eve``, ``pnp``, ``per-frame``, ``sdedit``) of one model.

    ShapeWorld items pass their task label (the oracle task, so the metrics measure editing, not
    task classification); other benchmarks pass ``task="auto"`` (the pipeline's classifier).
    The editor gets the instruction alone, as a user gives it; ``with_caption`` also hands the
    backbone the item's ground-truth output caption (figures labelled "caption given").
    ``call_kwargs`` go to the pipeline as edit options (e.g. ``steps``).
    """

    def __init__(self, name: str = "eve", model: str | Path = "shapeworld", with_caption: bool = False,
                 **call_kwargs):
        self.name, self.model, self.call_kwargs = name, str(model), call_kwargs
        self.with_caption = with_caption

    def __call__(self, frames, instruction, task, output_caption, seed):
        pipe = _pipeline(self.model)
        known = task if task in TASKS else "auto"  # other benchmarks' task names are no labels: classify
        caption = output_caption if self.with_caption else None
        result = pipe(frames, instruction, editor=self.name, task=known, caption=caption, seed=seed,
                      progress=False, **self.call_kwargs)
        return as_uint8_frames(result)  # an EditResult: its .frames


def as_uint8_frames(result) -> np.ndarray:
    """Whatever an editor returned -> uint8 ``(F, H, W, 3)``.

    Accepts arrays or tensors in ``(F, H, W, 3)``, ``(3, F, H, W)`` or with a leading batch of 1;
    uint8, floats in [0, 1], or (when negative values occur) floats in [-1, 1]; and objects with a
    ``frames`` or ``videos`` attribute (a :class:`~evedit.io.Video`, a pipeline output).
    """
    for attr in ("frames", "videos"):
        if hasattr(result, attr) and not isinstance(result, (np.ndarray, torch.Tensor)):
            result = getattr(result, attr)
            break
    if isinstance(result, (list, tuple)):
        result = np.stack([np.asarray(r) for r in result])
    x = result.detach().cpu().float().numpy() if isinstance(result, torch.Tensor) else np.asarray(result)
    if x.ndim == 5 and x.shape[0] == 1:
        x = x[0]
    if x.ndim == 4 and x.shape[-1] != 3 and x.shape[0] == 3:
        x = np.moveaxis(x, 0, -1)  # (3, F, H, W) -> (F, H, W, 3)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise EveditError(f"An editor returned frames shaped {x.shape}; expected (F, H, W, 3).")
    if x.dtype == np.uint8:
        return x
    x = x.astype(np.float32)
    if x.min() < 0:
        x = (x + 1.0) / 2.0
    if x.max() > 1.0 + 1e-3:  # already 0..255
        x = x / 255.0
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def canonical(name: str) -> str:
    """An editor name in its canonical spelling."""
    name = name.strip().lower()
    return ALIASES.get(name, name)


def resolve_editors(names: Sequence[str], model: str | Path = "shapeworld",
                    baseline_steps: int | None = None, with_caption: bool = False,
                    region: str | None = None, noise_share: float | None = None) -> dict[str, object]:
    """Editor names -> editors; unknown names are one-sentence errors.

    ``baseline_steps``: sampling steps of the teacher-based editors (pnp, per-frame, sdedit); None
    keeps the pipeline's defaults. EVE always samples with its own (distilled) step count.
    ``with_caption``: the pipeline editors also get the ground-truth output caption. ``region``:
    their ``--region`` ("auto", "full"; None: the model's default for each task); ``noise_share``
    their ``--noise-share`` (None: the model's).
    """
    editors: dict[str, object] = {}
    for raw in names:
        name = canonical(raw)
        if name == "identity":
            editors[name] = IdentityEditor()
        elif name == "ground-truth":
            editors[name] = GroundTruthEditor()
        elif name in PIPELINE_EDITORS:
            steps = {"steps": baseline_steps} if baseline_steps and name != "eve" else {}
            options = {k: v for k, v in (("region", region), ("noise_share", noise_share)) if v is not None}
            editors[name] = PipelineEditor(name, model, with_caption=with_caption, **steps, **options)
        else:
            known = ", ".join(PIPELINE_EDITORS + TRIVIAL_EDITORS)
            raise EveditError(f"Unknown editor {raw!r}; editors are {known}.")
    if not editors:
        raise EveditError("Name at least one editor with --editor.")
    return editors


def run_editor(editor, item: Item, frames: np.ndarray, seed: int) -> np.ndarray:
    """Edit one item with either kind of editor; the result as uint8 frames."""
    if isinstance(editor, ItemEditor):
        return as_uint8_frames(editor.edit_item(item, frames, seed))
    return as_uint8_frames(editor(frames, item.instruction, item.task, item.output_caption, seed))
