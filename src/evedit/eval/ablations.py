"""``evedit eval --ablations RUNS_DIR``: EVE's Table 2 analogue on our metrics.

Each ``RUNS_DIR/<ablation>/model`` (written by ``evedit align --ablation <ablation> --out
RUNS_DIR/<ablation>``) is evaluated as the editor ``eve[<ablation>]``; plug-and-play (the same
adapters without alignment) of ``--model`` is the reference row, as in the paper's table.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..errors import EveditError
from ..models import MANIFEST
from .editors import PipelineEditor
from .entry import EvalOptions, evaluate, load_items, load_scorer
from .report import ABLATION_NAMES, table2

#: Table 2 row order.
ORDER: tuple[str, ...] = ("random-init", "pnp", "no-sds", "no-adv", "no-kbin", "none")


def find_ablations(runs_dir: str | Path) -> dict[str, Path]:
    """``{ablation: model folder}`` for every ``runs_dir/<ablation>/model`` holding a model, in table order."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise EveditError(f"Ablation runs folder '{runs_dir}' does not exist.")
    found = {p.parent.parent.name: p.parent for p in runs_dir.glob(f"*/model/{MANIFEST}")}
    if not found:
        raise EveditError(f"No ablation models in '{runs_dir}': expected '<ablation>/model' folders made by "
                          f"`evedit align --ablation X --out {runs_dir}/X`.")
    rank = {name: i for i, name in enumerate(ORDER)}
    return dict(sorted(found.items(), key=lambda kv: (rank.get(kv[0], len(ORDER)), kv[0])))


def ablation_editors(variants: dict[str, Path], reference_model: str) -> tuple[dict, dict[str, str]]:
    """Editors ``eve[<ablation>]`` plus the plug-and-play reference; and editor -> ablation names."""
    editors: dict[str, object] = {"pnp": PipelineEditor("pnp", reference_model)}
    names = {"pnp": "pnp"}
    for ablation, folder in variants.items():
        editors[f"eve[{ablation}]"] = PipelineEditor("eve", folder)
        names[f"eve[{ablation}]"] = ablation
    order = {a: i for i, a in enumerate(ORDER)}
    ranked = sorted(names, key=lambda e: order.get(names[e], len(ORDER)))
    return {e: editors[e] for e in ranked}, {e: names[e] for e in ranked}


def run_ablations(opts: EvalOptions, runs_dir: str | Path) -> tuple[dict, str, Path]:
    """Score every ablation model; returns the summary, the Table 2 Markdown (also in ``ablations.md``), the run folder."""
    variants = find_ablations(runs_dir)
    if opts.out is None:
        opts = replace(opts, out=Path("outputs/eval") / f"ablations-{opts.benchmark}")
    opts = replace(opts, extra_settings={**opts.extra_settings, "ablations": str(runs_dir)})
    items, scorer = load_items(opts), load_scorer(opts)
    editors, names = ablation_editors(variants, opts.model)
    doc = evaluate(opts, items, editors, scorer)
    table = table2(doc, names)
    known = ", ".join(f"{k} = {v}" for k, v in ABLATION_NAMES.items() if k in names.values())
    (opts.out_dir / "ablations.md").write_text(f"# Ablations ({doc['benchmark']}, {doc['n_items']} items)\n\n"
                                               f"{known}\n\n{table}\n")
    return doc, table, opts.out_dir
