"""The style teacher as a stylizer: SDEdit strength and CFG against content kept and mosaic made.

The true edits of ``--frames`` test-split colour examples (first frames) are encoded, stylized by
:func:`evedit.models.token_lora.token_pass` at each strength and CFG, on the trigger phrase alone (what an
edit from the instruction alone gives) and on the output caption with the trigger, and decoded.
Scored by PSNR against the exact zwx mosaic of the frame, PSNR against the plain frame (content
kept) and the style score (grout, 1 for a true mosaic). ``codec only``: no stylizing.

Usage: ``python benchmarks/stylize_sweep.py --model runs/group_edit/style/eve-lora`` (a model folder
with a style LoRA, e.g. the shipped model with ``models/parts/style-lora-dc`` attached).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from evedit.eval.metrics import psnr
from evedit.models import load_model
from evedit.models.codec import decode_video, encode_video
from evedit.models.token_lora import token_pass
from evedit.world import SPLITS, make_example
from evedit.world.groups import mosaic, style_score


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--strengths", type=float, nargs="+", default=[0.2, 0.3, 0.4, 0.5, 0.6])
    ap.add_argument("--scales", type=float, nargs="+", default=[1.0, 1.5, 2.5, 4.0])
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    m = load_model(args.model)
    exs = [make_example(SPLITS["test"][0] + i, "color") for i in range(args.frames)]
    truth = np.stack([e.edited_clip[0] for e in exs])
    # frames as the batch: (N, C, 1, h, w), one caption each
    lat = encode_video(m.vae, torch.from_numpy(truth).float().div(127.5).sub(1).permute(0, 3, 1, 2)[:, :, None])
    null = m.text_encoder([""]).hidden_states
    noise = torch.randn(lat.shape, generator=torch.Generator().manual_seed(0))

    def pixels(latents):
        return ((decode_video(m.vae, latents)[:, :, 0].permute(0, 2, 3, 1) + 1) * 127.5).round().byte().numpy()

    target = mosaic(truth)
    print("| caption | strength | CFG | PSNR vs mosaic | PSNR vs plain | style score |\n|---|---:|---:|---:|---:|---:|")
    base = pixels(lat)
    print(f"| codec only | - | - | {psnr(base, target):.2f} | {psnr(base, truth):.2f} | {style_score(base):.3f} |")
    captions = {"trigger alone": [m.token_lora.caption("")] * len(exs),
                "output caption + trigger": [m.token_lora.caption(e.edit.output_caption) for e in exs]}
    for name, texts in captions.items():
        text = m.text_encoder(texts).hidden_states
        for strength in args.strengths:
            for scale in args.scales:
                out = pixels(token_pass(m, lat, text, null, noise, scale=scale, strength=strength))
                print(f"| {name} | {strength} | {scale} | {psnr(out, target):.2f} | {psnr(out, truth):.2f} "
                      f"| {style_score(out):.3f} |", flush=True)


if __name__ == "__main__":
    main()
