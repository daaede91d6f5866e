"""Evaluation: benchmarks (ShapeWorld, TGVE, TGVE+), metrics, editors, runs, reports and plots.

Modules (imported on use, so that ``evedit.eval.captions`` stays cheap for the training stages):

- :mod:`.metrics`      metric formulas (PSNR, flicker, structure PSNR, CLIPFrame, CLIP_out/_dir)
- :mod:`.accuracy`     ShapeWorld edit accuracy: did the asked change happen (scene graphs and masks)
- :mod:`.items`        benchmark items and the outputs layout (TGVE submission layout)
- :mod:`.editors`      the Editor protocol, identity / ground-truth / folder editors, the pipeline adapter
- :mod:`.shapeworld`   the ShapeWorld benchmark and its ShapeCLIP scorer
- :mod:`.tgve`         TGVE and TGVE+ loaders
- :mod:`.clipscores`   CLIP, PickScore and ViCLIP scores for TGVE
- :mod:`.viclip`       ViCLIP re-implemented; :mod:`.convert` its .pth -> safetensors conversion
- :mod:`.runner`       resumable runs (per-item JSONL) and aggregation
- :mod:`.report`, :mod:`.plots`   summary JSON, Table 1 / Table 2 Markdown, bar charts, sample grids
- :mod:`.entry`, :mod:`.ablations`   what ``evedit eval`` calls
- :mod:`.captions`     one-attribute-off captions (ShapeCLIP's hard negatives)
"""

from __future__ import annotations

from importlib import import_module

_EXPORTS = {
    "psnr": "metrics", "flicker": "metrics", "structure_psnr": "metrics", "frame_consistency": "metrics",
    "mean_cosine": "metrics", "directional": "metrics", "PSNR_CAP": "metrics",
    "edit_accuracy": "accuracy", "accuracy_checks": "accuracy",
    "Item": "items", "Editor": "editors", "IdentityEditor": "editors", "GroundTruthEditor": "editors",
    "FolderEditor": "editors", "PipelineEditor": "editors", "resolve_editors": "editors",
    "ShapeWorldBenchmark": "shapeworld", "ShapeWorldScorer": "shapeworld",
    "tgve_items": "tgve", "tgve_plus_items": "tgve", "TGVEScorer": "clipscores", "CLIPScorer": "clipscores",
    "ViCLIP": "viclip", "load_viclip": "viclip", "convert_viclip": "convert",
    "EvalOptions": "entry", "run_eval": "entry", "run_ablations": "ablations", "run": "runner",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
