"""Scratch probe: the flicker of the exact edit passed through the shipped codec (the lowest flicker
an editor on this codec can expect), on the benchmark's first 56 clips, beside the benchmark's rows.
usage: python benchmarks/probes/first_frame/codec_flicker.py [LIMIT]"""
import sys
import numpy as np
import torch
from evedit.eval.metrics import flicker, psnr
from evedit.eval.shapeworld import ShapeWorldBenchmark, model_world
from evedit.models.codec import decode_video, encode_video
from evedit.training.stages.common import load_vae

limit = int(sys.argv[1]) if len(sys.argv) > 1 else 56
vae = load_vae("models/shapeworld/vae")
items = ShapeWorldBenchmark(config=model_world("models/shapeworld")).items(limit)
fl, ps = [], []
with torch.no_grad():
    for it in items:
        x = torch.from_numpy(it.target).float().div(127.5).sub(1).permute(3, 0, 1, 2)[None]  # (1, 3, F, H, W)
        y = decode_video(vae, encode_video(vae, x))[0].permute(1, 2, 3, 0).add(1).mul(127.5).round().clamp(0, 255)
        y = y.byte().numpy()
        fl.append(flicker(y, it.target)); ps.append(psnr(y, it.target))
print(f"{len(items)} clips: exact edit through the codec: flicker {np.mean(fl):.4f}, PSNR {np.mean(ps):.2f} dB")
