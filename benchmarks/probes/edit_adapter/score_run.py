"""Score a trained edit-adapter run on test frames as `benchmarks/proxy.py` scores its variants.

The shipped model folder with the run's ControlNet and the backbone its recipe names (``unet_path``),
on ``--per-task`` test frames of each local task of its store's world, DDIM 25, instruction alone,
whole frames: keep / edit PSNR and edit accuracy per task (``proxy.edit_figures``). Writes
``figures.json`` and ``grid.png`` (input | edit | truth) into ``--out``.
Run: ``python benchmarks/probes/edit_adapter/score_run.py RECIPE RUN_OR_PART --out FOLDER [--per-task 32]``,
e.g. ``configs/edit-adapter-dc-obj20-wide-allt.yaml models/parts/edit-adapter-dc-obj20-wide-allt``
(a run folder with ``export/``, or a part folder with ``controlnet/`` and ``train_summary.json``).
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/
import proxy  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", type=Path)
    parser.add_argument("run", type=Path, help="a run folder (with export/) or a part folder (with controlnet/)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--per-task", type=int, default=32)
    args = parser.parse_args()
    export = args.run / "export" if (args.run / "export").is_dir() else args.run
    summary = json.loads((export / "train_summary.json").read_text())
    row = {"steps": summary["steps"], "train_min": summary["train_time_s"] / 60, **summary["final_eval"],
           **proxy.edit_figures(export, args.per_task, proxy.ROOT / "models" / "shapeworld", args.recipe,
                                args.out / "grid.png")}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "figures.json").write_text(json.dumps(row, indent=1))
    print(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
