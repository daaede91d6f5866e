"""A what-if ShapeWorld with other object diameters: the isolating runs on the smallest object size.

ShapeWorld's two size words map to fixed canvas fractions (``evedit.world.config.SIZE_FRACTIONS``:
14 and 24 px across at 64 px, 3.5 and 6 cells of the DC codec's 16x16 latent grid). This script
sets other diameters **in its own process only** and then runs one evedit command there, so that a
store built by it, or a benchmark run through it, renders the what-if world; captions, scenes'
seeds and everything else stay as they are (a "small" object is still called small). Nothing is
changed on disk except what the command writes; the product's world is untouched.

Usage::

    python benchmarks/object_sizes.py 20 28 data build image -o stores/image-dc-obj20 -n 20000 \\
        --vae models/parts/codec-dc/vae
    python benchmarks/object_sizes.py 20 28 --script benchmarks/t2i_overfit.py --unet ... --by-size

(``--script`` runs a benchmark file with the remaining arguments instead of the ``evedit`` CLI.)
A store built here says nothing of the sizes in its manifest: name it for them (``-obj20``).

The product now sets the sizes itself: ``evedit data build ... --object-px 20,24`` renders a store
in that world and records it in the store's manifest (``WorldConfig(small_px=..., large_px=...)``,
each sampled object keeps its diameter), and ``benchmarks/t2i_overfit.py --object-px 20,24``
measures in it. This script stays for the runs recorded with it; new runs use those.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

from evedit.world import config as world_config

CANVAS = 64  # the diameters are given in pixels at the default canvas, as DESIGN.md states them


def set_object_sizes(small_px: float, large_px: float) -> None:
    """Make "small" and "large" objects ``small_px`` and ``large_px`` across at a 64 px canvas,
    for every renderer and sampler in this process (the shared dict is updated in place)."""
    if not 3 <= small_px <= large_px <= CANVAS // 2:
        raise SystemExit(f"object sizes need 3 <= small <= large <= {CANVAS // 2} px, got {small_px:g} and {large_px:g}.")
    world_config.SIZE_FRACTIONS.update(small=small_px / CANVAS, large=large_px / CANVAS)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    try:
        small, large = float(argv[0]), float(argv[1])
    except ValueError:
        raise SystemExit(f"the first two arguments are the small and large diameters in px, got {argv[0]!r} {argv[1]!r}.")
    set_object_sizes(small, large)
    rest = argv[2:]
    if rest[0] == "--script":
        if len(rest) < 2:
            raise SystemExit("--script needs a benchmark file.")
        sys.argv = rest[1:]
        sys.path.insert(0, str(Path(rest[1]).resolve().parent))  # its sibling benchmarks import
        runpy.run_path(rest[1], run_name="__main__")
        return 0
    from evedit.cli import main as evedit_main

    return evedit_main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
