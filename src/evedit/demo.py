"""The main job on the embedded default, and ShapeWorld examples written to disk.

``evedit demo`` edits the bundled ShapeWorld clip (``examples/shapeworld_clip.mp4``, seed 7, with
its instruction in ``examples/shapeworld_clip.json``) with the shipped EVE model, and writes the
edit and a comparison (input | EVE edit | ground truth, the world's exact rendering of the edit).
Other ``--seed``/``--task`` values render that ShapeWorld clip on the fly instead. Until trained
weights are at ``models/shapeworld`` the model is randomly initialised (with a warning).

Clips are rendered in the model's world (``ModelSpec.world``, e.g. its object sizes); the bundled
clip records the world it was rendered in (``world`` in its json) and is used only for a model of
that world, so another model's demo renders the same seed in its own world.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from .errors import EveditError
from .io import write_video


def side_by_side(*clips: np.ndarray, gap: int = 2) -> np.ndarray:
    """Clips (F, H, W, 3) of equal F and H placed left to right with a white gap."""
    frames = {c.shape[0] for c in clips}
    heights = {c.shape[1] for c in clips}
    if len(frames) != 1 or len(heights) != 1:
        raise ValueError("side_by_side needs clips with the same frame count and height")
    f, h = frames.pop(), heights.pop()
    spacer = np.full((f, h, gap, 3), 255, np.uint8)  # (F, H, gap, 3)
    parts = [p for c in clips for p in (c, spacer)][:-1]
    return np.concatenate(parts, axis=2)


def _make(seed: int, task: str | None, frames: int, size: int, world: dict | None = None):
    """ShapeWorld example ``seed`` in the world ``world`` (WorldConfig settings; None: the preset's)."""
    from .world import WorldConfig, make_example

    if seed < 0:
        raise EveditError(f"The seed must be a non-negative integer, got {seed}.")
    try:
        config = WorldConfig(**{**(world or {}), "size": size, "frames": frames})
    except (TypeError, ValueError) as exc:
        raise EveditError(f"Invalid ShapeWorld settings: {exc}") from exc
    return make_example(seed, task, config)


def _check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise EveditError(f"The output path '{out}' exists and is not a folder.")


def render_example_dir(seed: int, task: str | None, out: str | Path, *, frames: int = 8,
                       size: int = 64, fps: float = 8.0) -> dict[str, str]:
    """Write input and ground-truth clips (mp4 + gif), the instruction and a json to ``out``."""
    out = Path(out)
    _check_out_dir(out)
    example = _make(seed, task, frames, size)
    files = {
        "input.mp4": example.clip, "input.gif": example.clip,
        "ground_truth.mp4": example.edited_clip, "ground_truth.gif": example.edited_clip,
    }
    description = example.to_dict()
    description["files"] = {"input": ["input.mp4", "input.gif"],
                            "ground_truth": ["ground_truth.mp4", "ground_truth.gif"]}
    description["fps"] = fps
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, clip in files.items():
        written[name] = str(write_video(out / name, clip, fps))
    written["example.json"] = _write_text(out / "example.json", json.dumps(description, indent=2))
    written["instruction.txt"] = _write_text(out / "instruction.txt", example.edit.instruction + "\n")
    return {"instruction": example.edit.instruction, **written}


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BUNDLED_CLIP, BUNDLED_INFO = EXAMPLES / "shapeworld_clip.mp4", EXAMPLES / "shapeworld_clip.json"
BUNDLED_SEED, BUNDLED_TASK = 7, "color"


def write_bundled_clip(folder: str | Path = EXAMPLES, world: dict | None = None) -> dict[str, str]:
    """Render the bundled demo clip (lossless mp4, exact pixels) in ``world`` (WorldConfig settings,
    e.g. the shipped model's ``spec.world``) and its instruction and world (json)."""
    folder = Path(folder)
    example = _make(BUNDLED_SEED, BUNDLED_TASK, 8, 64, world)
    folder.mkdir(parents=True, exist_ok=True)
    info = {"seed": BUNDLED_SEED, "task": example.edit.task, "instruction": example.edit.instruction,
            "output_caption": example.edit.output_caption, "input_caption": example.edit.input_caption,
            "fps": 8.0, "world": dict(world or {}),
            "made_by": "evedit.demo.write_bundled_clip(world=...)"}
    clip = write_video(folder / BUNDLED_CLIP.name, example.clip, 8.0, lossless=True)
    return {"clip": str(clip),
            "info": _write_text(folder / BUNDLED_INFO.name, json.dumps(info, indent=2) + "\n")}


def bundled_world() -> dict:
    """The world settings the bundled clip was rendered in ({}: the preset world, or no clip)."""
    if not BUNDLED_INFO.is_file():
        return {}
    return json.loads(BUNDLED_INFO.read_text()).get("world") or {}


def same_world(a: dict | None, b: dict | None) -> bool:
    """Whether two sets of WorldConfig settings describe the same world (20 == 20.0)."""
    from .world import WorldConfig

    return WorldConfig(**(a or {})) == WorldConfig(**(b or {}))


def _demo_input(seed: int, task: str, world: dict | None = None):
    """(input: a path or frames, its description, ground-truth frames) for a demo run in ``world``."""
    example = _make(seed, task, 8, 64, world)
    if (seed, task) == (BUNDLED_SEED, BUNDLED_TASK) and BUNDLED_CLIP.is_file() and BUNDLED_INFO.is_file():
        bundled = json.loads(BUNDLED_INFO.read_text())
        if same_world(bundled.get("world"), world):
            return str(BUNDLED_CLIP), bundled, example.edited_clip
    info = {"task": example.edit.task, "instruction": example.edit.instruction,
            "output_caption": example.edit.output_caption}
    return example.clip, info, example.edited_clip


def run_demo(out: str | Path, seed: int = BUNDLED_SEED, task: str = BUNDLED_TASK, *,
             model: str = "shapeworld", editor: str = "eve", progress: bool = True) -> dict[str, str]:
    """Edit the bundled ShapeWorld clip with the shipped model; return what was written.

    The model gets what a user gives: the clip, the instruction and the task label (the example's,
    as ``--task`` would name it); no caption. The clip is rendered in the model's world.
    """
    from .editing import EditPipeline

    out = Path(out)
    _check_out_dir(out)
    pipe = EditPipeline.from_pretrained(model)
    source, info, truth = _demo_input(seed, task, pipe.model.spec.world)
    result = pipe(source, info["instruction"], task=info["task"], editor=editor, progress=progress)
    panels = side_by_side(result.source_frames, result.frames, truth)
    big = panels.repeat(4, axis=1).repeat(4, axis=2)  # (F, 4H, 4W', 3), nearest: the 64 px world visible
    out.mkdir(parents=True, exist_ok=True)
    return {
        "input": source if isinstance(source, str) else f"ShapeWorld seed {seed}",
        "instruction": info["instruction"],
        "task": result.task,
        "region": "where the edit adapter finds the instruction acts" if result.options.region == "auto"
                  else "whole frames",
        "edit (mp4)": str(write_video(out / "edit.mp4", result.frames, result.fps)),
        f"input | {editor} edit | ground truth (gif)": str(write_video(out / "comparison.gif", big, result.fps)),
        f"input | {editor} edit | ground truth (mp4)": str(write_video(out / "comparison.mp4", big, result.fps)),
    }


def _write_text(path: Path, text: str) -> str:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return str(path)
