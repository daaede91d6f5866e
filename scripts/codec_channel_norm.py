#!/usr/bin/env python
"""Normalise a trained codec's latents per channel: fit ``latents_mean`` and ``latents_std`` on
ShapeWorld training frames and write them (with ``scaling_factor`` 1) into a copy of the folder.

The weights are unchanged; the latent space the diffusion parts see is not, so every diffusion part
and store is made anew on the result (``evedit.models.codec``, ``benchmarks/results/latent_norm.md``).

Run: ``python scripts/codec_channel_norm.py models/parts/codec-dc/vae OUT [--items 1024]``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch
from torch.utils.data import default_collate

from evedit.models.codec import fit_channel_norm, raw_latents
from evedit.training.stages.common import load_vae
from evedit.world import ImageCaptionDataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("vae", type=Path, help="a codec folder (config.json + safetensors)")
    parser.add_argument("out", type=Path, help="the new codec folder (must not exist)")
    parser.add_argument("--items", type=int, default=1024, help="training frames to fit on")
    args = parser.parse_args(argv)
    if args.out.exists():
        sys.exit(f"'{args.out}' exists; give a new folder.")
    vae = load_vae(args.vae)
    data = ImageCaptionDataset("train", args.items)
    images = default_collate([data[i] for i in range(len(data))])["image"]
    with torch.no_grad():
        raw = torch.cat([raw_latents(vae, chunk.to(vae.dtype)) for chunk in images.split(64)])
    norm = fit_channel_norm(raw)
    tmp = args.out.with_name(args.out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    vae.register_to_config(**norm)
    vae.to(torch.float16).save_pretrained(tmp, safe_serialization=True)  # parts ship in fp16
    tmp.rename(args.out)
    print(f"{args.out}: latents_std per channel {[round(v, 3) for v in norm['latents_std']]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
