"""How a codec's decoder renders slightly-off latents: Gaussian noise added to true latents.

A diffusion model never hands the decoder an exact latent. This measures, for each codec folder,
the PSNR of ``decode(z + sigma * eps)`` against the frame, with ``z`` the frame's latent in the
diffusion parts' units (unit variance overall) and ``eps`` standard normal, split into the edited
object's footprint (:func:`evedit.world.edit_footprint`, the objects the backbone draws badly) and
the rest; and writes a grid (rows: frames; columns: each codec at each sigma).
Run: ``python benchmarks/codec_latent_noise.py --vae models/shapeworld/vae models/parts/codec-dc/vae``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import default_collate

from evedit.models.codec import codec_class, decode_images, encode_images
from evedit.world import EditTripletDataset, edit_footprint


def masked_psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    """PSNR (dB) of images in [-1, 1] (N, 3, H, W) over the pixels where ``mask`` (N, H, W) is True."""
    err = ((a.clamp(-1, 1) - b) / 2).pow(2).mean(1)[mask].mean()
    return float(10 * torch.log10(1 / err.clamp(min=1e-10)))


@torch.no_grad()
def noisy_decodes(vae, frames: torch.Tensor, sigmas: list[float], seed: int = 0) -> list[torch.Tensor]:
    """The frames decoded from their latents plus ``sigma`` Gaussian noise, one batch per sigma."""
    z = encode_images(vae, frames)
    gen = torch.Generator().manual_seed(seed)
    eps = torch.randn(z.shape, generator=gen)
    return [decode_images(vae, z + s * eps) for s in sigmas]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vae", nargs="+", required=True, help="codec folders (AutoencoderKL or AutoencoderDC)")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.3, 0.5])
    parser.add_argument("--grid", default="results/proxy/codec_latent_noise.png")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = EditTripletDataset("test", args.frames, tasks=("color", "texture", "shape", "remove", "add"))
    items = [data[i] for i in range(args.frames)]
    frames = default_collate(items)["input_image"]
    inside = torch.from_numpy(np.stack([edit_footprint(data.example_frame(i)[0])[data.example_frame(i)[1]]
                                        for i in range(args.frames)]))
    print(f"{args.frames} test frames; cells: PSNR dB inside the edited object's footprint / outside it")
    print("| codec | " + " | ".join(f"sigma {s:g}" for s in args.sigmas) + " |")
    print("|---|" + "---:|" * len(args.sigmas))
    columns = [frames[:8]]
    for folder in args.vae:
        vae = codec_class(folder).from_pretrained(folder, local_files_only=True, torch_dtype=torch.float32).eval()
        outs = noisy_decodes(vae, frames, args.sigmas)
        cells = [f"{masked_psnr(o, frames, inside):.2f} / {masked_psnr(o, frames, ~inside):.2f}" for o in outs]
        print(f"| {folder} | " + " | ".join(cells) + " |", flush=True)
        columns += [o[:8] for o in outs]
    grid = torch.cat([torch.cat(list(c), dim=1) for c in columns], dim=2)  # rows frames, columns variants
    pixels = ((grid.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    Path(args.grid).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(args.grid)
    print(f"grid: {args.grid} (columns: input, then each codec at sigma {', '.join(map(str, args.sigmas))})")


if __name__ == "__main__":
    main()
