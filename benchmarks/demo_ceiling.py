"""What the demo test's figures can reach on each codec: the exact edit, encoded and decoded.

`tests/test_demo_edit.py` asks the shipped model's EVE edit of the bundled clip ("make the blue
circle red") for at least 25 dB PSNR against ShapeWorld's exact edit outside the edit's footprint.
No editor on a codec keeps more there than the exact edit itself through that codec, so this
measures that ceiling (outside the footprint, inside the circle, whole frames) and whether the
circle's colour survives the codec (the test's colour rule).

Run: ``python benchmarks/demo_ceiling.py [--codec NAME=VAE_FOLDER ...]``; writes
``benchmarks/results/demo_ceiling.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
from datetime import date
from pathlib import Path

import torch

from evedit.demo import BUNDLED_INFO
from evedit.eval.accuracy import color_check
from evedit.eval.metrics import psnr
from evedit.models.codec import decode_video, encode_video
from evedit.training.stages.common import load_vae, to_uint8
from evedit.world import WorldConfig, edit_footprint, make_example, visible_masks

ROOT = Path(__file__).resolve().parents[1]
CODECS = {"shipped (0.4.0): 16-channel DC, noise-trained decoder (models/shapeworld/vae)": "models/shapeworld/vae",
          "16-channel DC, its own decoder (models/parts/codec-dc/vae)": "models/parts/codec-dc/vae"}


@torch.no_grad()
def through_codec(vae, clip) -> torch.Tensor:
    """uint8 (F, H, W, 3) -> the same frames encoded and decoded, uint8."""
    x = torch.as_tensor(clip).float().permute(3, 0, 1, 2)[None] / 127.5 - 1  # (1, 3, F, H, W)
    y = decode_video(vae, encode_video(vae, x))[0].movedim(1, 0)  # (F, 3, H, W)
    return torch.as_tensor(to_uint8(y))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codec", action="append", metavar="NAME=FOLDER",
                        help="a codec to measure (default: the shipped one and codec-dc)")
    args = parser.parse_args(argv)
    codecs = dict(c.split("=", 1) for c in args.codec) if args.codec else CODECS
    torch.set_num_threads(1)
    info = json.loads(BUNDLED_INFO.read_text())
    example = make_example(info["seed"], info["task"], WorldConfig(frames=8, size=64))
    truth = example.edited_clip
    outside = ~edit_footprint(example)
    circle = visible_masks(example.edit.edited_scene, 8, 64)[:, example.edit.target]
    lines = ["# The demo test's ceiling on each codec", "",
             f"{date.today()}, {platform.machine()}. The bundled clip's exact edit (\"{info['instruction']}\", "
             "8 frames, 64x64) encoded and decoded by each codec, against the exact edit; the demo test "
             "asks for at least 25 dB outside the footprint.",
             "Command: `python benchmarks/demo_ceiling.py" + "".join(f' --codec "{c}"' for c in args.codec or []) + "`.", "",
             "| codec | outside footprint dB | inside circle dB | whole frames dB | circle still red |",
             "|---|---:|---:|---:|---|"]
    for name, folder in codecs.items():
        out = through_codec(load_vae(ROOT / folder), truth).numpy()
        red = color_check(out, truth, circle, "red")
        lines.append(f"| {name} | {psnr(out, truth, mask=outside):.2f} | {psnr(out, truth, mask=circle):.2f} "
                     f"| {psnr(out, truth):.2f} | {'yes' if red else 'no'} |")
    path = ROOT / "benchmarks" / "results" / "demo_ceiling.md"
    path.write_text("\n".join(lines) + "\n")
    print(path.read_text())


if __name__ == "__main__":
    main()
