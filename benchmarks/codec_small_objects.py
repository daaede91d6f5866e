"""The codec on its hardest ShapeWorld content: small dotted and striped objects.

Renders ``--items`` test-split scenes whose objects are all small (14 px) and dotted or striped, and
writes one grid per run: the inputs on top, then each codec's mode reconstruction, one row per
codec, with each codec's PSNR on these frames and on ordinary test frames.

Run: ``python benchmarks/codec_small_objects.py --vae models/shapeworld/vae runs/codec-c16/export/vae``
(writes ``results/codec_small_objects.png`` and ``benchmarks/results/codec_small_objects.md``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def small_textured_frames(n: int, seed: int = 900_000) -> torch.Tensor:
    """(n, 3, 64, 64) in [-1, 1]: scenes of 1-3 small dotted/striped objects (seeds outside training)."""
    from evedit.world import WorldConfig
    from evedit.world.datasets import image_tensor
    from evedit.world.render import render_frame
    from evedit.world.scene import sample_scene

    config, frames = WorldConfig(), []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        scene = sample_scene(rng, config, n_objects=int(rng.integers(1, 4)))
        objects = [dataclasses.replace(o, size="small", texture=("dotted", "striped")[(i + k) % 2])
                   for k, o in enumerate(scene.objects)]
        frames.append(image_tensor(render_frame(dataclasses.replace(scene, objects=tuple(objects)), 0)))
    return torch.stack(frames)


@torch.no_grad()
def reconstruct(vae, x: torch.Tensor) -> torch.Tensor:
    """The codec's deterministic reconstruction (the posterior's mode for AutoencoderKL)."""
    from evedit.models.codec import decode_images, encode_images

    return decode_images(vae, encode_images(vae, x))


def main(argv: list[str] | None = None) -> None:
    from evedit.io import write_image
    from evedit.training.quality import codec_quality
    from evedit.training.stages.common import grid, load_vae, psnr, to_uint8

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vae", nargs="+", type=Path, required=True, help="codec folders to compare")
    parser.add_argument("--items", type=int, default=10)
    parser.add_argument("--test-items", type=int, default=256, help="ordinary test frames for the second PSNR")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    x = small_textured_frames(args.items)
    rows, lines = [list(to_uint8(x))], []
    for folder in args.vae:
        vae = load_vae(folder)
        recon = reconstruct(vae, x)
        rows.append(list(to_uint8(recon)))
        test = codec_quality(SimpleNamespace(vae=vae), args.test_items)["psnr"]  # reads .vae only
        lines.append(f"| `{folder}` | {vae.config.latent_channels} | {float(psnr(recon, x).mean()):.2f} | {test:.2f} |")
    out = ROOT / "results" / "codec_small_objects.png"
    write_image(out, grid(rows))
    md = ["# Codecs on small dotted and striped objects", "",
          f"{date.today()}. {args.items} frames of 1-3 small (14 px) dotted or striped objects, and "
          f"{args.test_items} ordinary test-split frames. Grid: `results/codec_small_objects.png` "
          "(top row the inputs, then one row per codec, in this order).",
          f"Command: `python benchmarks/codec_small_objects.py --vae {' '.join(map(str, args.vae))}`.", "",
          "| codec | latent channels | PSNR small textured (dB) | PSNR test frames (dB) |",
          "|---|---:|---:|---:|", *lines]
    (ROOT / "benchmarks" / "results" / "codec_small_objects.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
