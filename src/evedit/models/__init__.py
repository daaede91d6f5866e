"""The factorized model: backbone, edit adapter, video adapter, alignment LoRA; presets and folders."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from .build import assemble, build_shapeworld, shapeworld_spec
from .compose import Conditioning, Denoiser, EVEModel
from .folder import MANIFEST, folder_spec, load_model, refuse_pickles, save_model
from .presets import PRESETS, ModelSpec, SD15Sources

# The trained ShapeWorld parts are committed at <repo>/models/shapeworld.
SHIPPED_SHAPEWORLD = Path(__file__).resolve().parents[3] / "models" / "shapeworld"


def shipped_shapeworld_folder() -> Path:
    return Path(os.environ.get("EVEDIT_SHAPEWORLD_MODEL", SHIPPED_SHAPEWORLD))


def load_pretrained(name_or_path: str | Path = "shapeworld") -> EVEModel:
    """A preset name (``shapeworld``, ``sd15``) or a model folder -> frozen :class:`EVEModel`."""
    if str(name_or_path) == "shapeworld":
        folder = shipped_shapeworld_folder()
        if (folder / MANIFEST).is_file():
            return load_model(folder)
        warnings.warn(
            f"No trained ShapeWorld model at '{folder}'; using randomly initialised parts.",
            stacklevel=2,
        )
        return build_shapeworld()
    if str(name_or_path) == "sd15":
        from .sd15 import load_sd15

        return load_sd15()
    return load_model(name_or_path)


__all__ = [
    "Conditioning", "Denoiser", "EVEModel", "ModelSpec", "SD15Sources", "PRESETS", "assemble",
    "build_shapeworld", "shapeworld_spec", "load_model", "save_model", "load_pretrained",
    "refuse_pickles", "folder_spec",
]
