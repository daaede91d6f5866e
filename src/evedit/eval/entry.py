"""``evedit eval``: build a benchmark, its editors and its scorer from options; run; write the reports.

Everything a run writes goes under ``out`` (default ``outputs/eval/<benchmark>``): ``run.json``,
``items.jsonl``, ``videos/``, ``summary.json``, ``summary.md``, ``plots/<metric>.png`` and
``samples/<key>.png/.gif``; ``json_path`` gets a copy of the summary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..editing.options import check_noise_share, check_region
from ..errors import EveditError
from . import report
from .editors import PIPELINE_EDITORS, FolderEditor, canonical, resolve_editors
from .items import Item, find_output, read_output, safe_name
from .plots import metric_charts, sample_grid
from .runner import aggregate, check_settings, run

BENCHMARKS: tuple[str, ...] = ("shapeworld", "tgve", "tgve-plus")


@dataclass
class EvalOptions:
    """Options of one evaluation (the CLI's flags)."""

    benchmark: str = "shapeworld"
    editors: Sequence[str] | None = None  # None: the four pipeline editors (or the --outputs folders' names)
    limit: int | None = None
    seed: int = 0
    data: Path | None = None
    out: Path | None = None
    json_path: Path | None = None
    model: str = "shapeworld"
    outputs: Sequence[Path] = ()
    shapeclip: Path | None = None
    clip: str = "openai/clip-vit-large-patch14"
    pickscore: str = "yuvalkirstain/PickScore_v1"
    pickscore_processor: str = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
    viclip: Path | None = None
    metrics: Sequence[str] | None = None  # TGVE model groups: clip, pickscore, viclip
    samples: int = 6
    workers: int = 1  # editing processes (one torch thread each)
    baseline_steps: int | None = None  # sampling steps of pnp / per-frame / sdedit (None: the pipeline's)
    with_caption: bool = False  # also give the editors the ground-truth output caption (default: instruction alone)
    region: str | None = None  # the pipeline editors' --region: "auto", "full" or None (the model's region_tasks)
    noise_share: float | None = None  # the pipeline editors' --noise-share (None: the model's)
    device: str | None = None
    progress: bool = True
    save_videos: bool = True
    extra_settings: dict = field(default_factory=dict)

    @property
    def out_dir(self) -> Path:
        return Path(self.out) if self.out is not None else Path("outputs/eval") / self.benchmark


def device_of(opts: EvalOptions) -> str:
    return opts.device or ("cuda" if torch.cuda.is_available() else "cpu")


def load_items(opts: EvalOptions) -> list[Item]:
    """The benchmark's items, the first ``limit`` of them."""
    if opts.benchmark not in BENCHMARKS:
        raise EveditError(f"Unknown benchmark {opts.benchmark!r}; benchmarks are {', '.join(BENCHMARKS)}.")
    if opts.limit is not None and opts.limit < 1:
        raise EveditError(f"--limit must be at least 1, got {opts.limit}.")
    if opts.benchmark == "shapeworld":
        from .shapeworld import ShapeWorldBenchmark, model_world

        return ShapeWorldBenchmark(config=model_world(opts.model)).items(opts.limit)
    from .tgve import DEFAULT_DATA, tgve_items, tgve_plus_items

    data = Path(opts.data) if opts.data is not None else DEFAULT_DATA
    items = tgve_items(data) if opts.benchmark == "tgve" else tgve_plus_items(data)
    return items[: opts.limit] if opts.limit else items


def load_scorer(opts: EvalOptions):
    """The benchmark's scorer; missing weights are one-sentence errors before anything is edited."""
    if opts.benchmark == "shapeworld":
        from .shapeworld import ShapeWorldScorer

        scorer = ShapeWorldScorer.from_pretrained(opts.model, opts.shapeclip)
        scorer.clip.to(device_of(opts))
        return scorer
    from .clipscores import load_tgve_scorer

    return load_tgve_scorer(tuple(opts.metrics) if opts.metrics else None, clip=opts.clip, pickscore=opts.pickscore,
                            pickscore_processor=opts.pickscore_processor, viclip=opts.viclip,
                            device=device_of(opts))


def load_editors(opts: EvalOptions) -> dict[str, object]:
    """Named editors, or one :class:`FolderEditor` per ``--outputs`` folder (named by ``--editor`` or the folder)."""
    check_region(opts.region)
    check_noise_share(opts.noise_share, "--noise-share", optional=True)
    if not opts.outputs:
        return resolve_editors(opts.editors or PIPELINE_EDITORS, opts.model, opts.baseline_steps, opts.with_caption,
                               opts.region, opts.noise_share)
    names = [canonical(n) for n in opts.editors or ()]
    if names and len(names) != len(opts.outputs):
        raise EveditError(f"Give one --editor name per --outputs folder ({len(opts.outputs)}), or none.")
    names = names or [Path(p).name for p in opts.outputs]
    if len(set(names)) != len(names):
        raise EveditError("Two --outputs folders share a name; name them with --editor NAME,NAME.")
    return {name: FolderEditor(path) for name, path in zip(names, opts.outputs)}


def evaluate(opts: EvalOptions, items: list[Item], editors: dict[str, object], scorer) -> dict:
    """Run, aggregate and write every report; returns the summary document."""
    out = opts.out_dir
    # The model names the editors and, for ShapeWorld, the ShapeCLIP that scores (unless --shapeclip):
    # a run scoring saved videos records it too, and which folders it scored.
    settings = {"benchmark": opts.benchmark, "seed": opts.seed, "metrics": list(scorer.metrics),
                "model": str(opts.model), **({"shapeclip": str(opts.shapeclip)} if opts.shapeclip else {}),
                **({"baseline_steps": opts.baseline_steps,
                    "caption": "output caption given" if opts.with_caption else "instruction alone"}
                   if not opts.outputs else {"outputs": {name: str(e.root) for name, e in editors.items()}}),
                **(eve_defaults(opts.model) if "eve" in editors and not opts.outputs else {}),
                **(region_settings(opts.model, opts.region, opts.noise_share) if not opts.outputs else {}),
                **opts.extra_settings}
    check_settings(out, settings)
    sample_keys = [it.key for it in items[: opts.samples]]
    result = run(items, editors, scorer, out, seed=opts.seed, save_videos=opts.save_videos,
                 video_ext=".png" if opts.benchmark == "shapeworld" else ".jpg", keep=sample_keys,
                 workers=opts.workers, progress=opts.progress)
    doc = report.summary(opts.benchmark, aggregate(result.records, scorer.metrics, list(editors)),
                         scorer.metrics, settings, n_items=len(items))
    report.write_json(out / "summary.json", doc)
    if opts.json_path is not None:
        report.write_json(opts.json_path, doc)
    (out / "summary.md").write_text(report.markdown(doc))
    metric_charts(doc, out / "plots")
    write_samples(items[: opts.samples], editors, result.outputs, out)
    return doc


def eve_defaults(model: str | Path) -> dict[str, float]:
    """The strength EVE applies its alignment LoRA at and its guidance by default (the folder's
    ``spec.lora_scale`` and ``spec.student_guidance``): recorded with the run, since EVE's figures
    depend on them and a resumed run must not mix two."""
    spec = _model_spec(model)
    return {"eve_lora_scale": spec.lora_scale, "eve_guidance": spec.student_guidance}


def region_settings(model: str | Path, region: str | None, noise_share: float | None = None) -> dict:
    """Where the pipeline editors edit (``--region`` as asked, or the model's ``spec.region_tasks``)
    and the share of their noise drawn once per clip (``--noise-share``, or ``spec.noise_share``): recorded with the
    run, since the figures depend on them and a resumed run must not mix two."""
    spec = _model_spec(model)
    share = {"noise_share": spec.noise_share if noise_share is None else float(noise_share)}
    if region is not None:
        return {"region": region, **share}
    return {"region": "model's", "region_tasks": list(spec.region_tasks), **share}


def _model_spec(model: str | Path):
    """The manifest's spec of the model folder (the shipped one for the ``shapeworld`` preset)."""
    from ..models import folder_spec, shipped_shapeworld_folder

    return folder_spec(shipped_shapeworld_folder() if str(model) == "shapeworld" else model)


def _output_of(name: str, editor, item: Item, kept: dict, out: Path) -> np.ndarray | None:
    if (name, item.key) in kept:
        return kept[(name, item.key)]
    root = editor.root if isinstance(editor, FolderEditor) else out / "videos" / name
    return read_output(root, item.key) if find_output(root, item.key) is not None else None


def write_samples(items: list[Item], editors: dict[str, object], kept: dict, out: Path) -> list[Path]:
    """Grids input | editors | ground truth for the sample items (PNG and GIF)."""
    paths = []
    for item in items:
        columns = {"input": item.load()}
        for name, editor in editors.items():
            frames = _output_of(name, editor, item, kept, out)
            if frames is not None:
                columns[report.editor_label(name)] = frames
        if item.target is not None:
            columns["ground truth"] = item.target
        cell = 96 if columns["input"].shape[1] <= 96 else 128
        paths += sample_grid(columns, out / "samples" / safe_name(item.key), title=item.instruction, cell=cell)
    return paths


def run_eval(opts: EvalOptions) -> dict:
    """The whole ``evedit eval``: items, editors, scorer (weights checked before any edit), run, reports."""
    items = load_items(opts)
    if not items:
        raise EveditError(f"The {opts.benchmark} benchmark has no items to score.")
    editors = load_editors(opts)  # cheap (pipelines load at the first edit): bad names fail first
    return evaluate(opts, items, editors, load_scorer(opts))


def print_summary(doc: dict) -> str:
    """The Table 1 analogue as printed by the CLI."""
    return report.table1(doc)
