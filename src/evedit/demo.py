"""The main job on the embedded default, and ShapeWorld examples written to disk.

Until the trained ShapeWorld editor ships (pretraining and alignment issues), ``evedit demo``
renders a ShapeWorld clip and its edit's ground truth side by side; it becomes a real edit of a
bundled clip once the editing pipeline and weights land.
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


def _make(seed: int, task: str | None, frames: int, size: int):
    from .world import WorldConfig, make_example

    if seed < 0:
        raise EveditError(f"The seed must be a non-negative integer, got {seed}.")
    try:
        config = WorldConfig(size=size, frames=frames)
    except ValueError as exc:
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


def run_demo(out: str | Path, seed: int = 7, task: str = "color") -> dict[str, str]:
    """Render a ShapeWorld clip and its edit's ground truth side by side; return what was written."""
    out = Path(out)
    _check_out_dir(out)
    example = _make(seed, task, 8, 64)
    both = side_by_side(example.clip, example.edited_clip)
    # upscale 4x (nearest) so the 64x64 world is visible in a viewer
    big = both.repeat(4, axis=1).repeat(4, axis=2)  # (F, 4H, 4W', 3)
    out.mkdir(parents=True, exist_ok=True)
    return {
        "instruction": example.edit.instruction,
        "input | ground truth (gif)": str(write_video(out / "comparison.gif", big, 8.0)),
        "input | ground truth (mp4)": str(write_video(out / "comparison.mp4", big, 8.0)),
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
