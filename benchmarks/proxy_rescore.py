"""Score an edit-adapter proxy variant's export again, on more frames of chosen tasks.

``python benchmarks/proxy_rescore.py PROXY VARIANT PER_TASK TASKS [SPLIT]`` scores
``runs/proxy/PROXY/VARIANT/run/export`` as ``benchmarks/proxy.py`` does (``edit_figures``: the shipped
model's parts around the variant's adapter, keep / edit PSNR and edit accuracy per task) on PER_TASK
frames of each of TASKS (comma-separated) of SPLIT (default val), without training or rewriting the
proxy's table; the figures go to ``runs/proxy/PROXY/VARIANT/rescore.json``. Example::

    python benchmarks/proxy_rescore.py edit_adapter_weight_tasks local-only 64 color,texture,shape,remove,background
"""

from __future__ import annotations

import json
import sys

from proxy import ROOT, edit_figures


def main(argv: list[str]) -> None:
    proxy, variant, per_task, tasks = argv[0], argv[1], int(argv[2]), tuple(argv[3].split(","))
    split = argv[4] if len(argv) > 4 else "val"
    base = ROOT / "runs" / "proxy" / proxy / variant
    row = edit_figures(base / "run" / "export", per_task, ROOT / "models" / "shapeworld", base / "recipe.yaml",
                       base / "rescore.png", tasks, split)
    (base / "rescore.json").write_text(json.dumps(row, indent=1) + "\n")
    print(json.dumps(row))


if __name__ == "__main__":
    main(sys.argv[1:])
