"""Score t2i backbones from their checkpoints at equal steps: how well each latent channel is
learned, the SDEdit round trip, ShapeCLIP top-1 and a sample grid.

The per-channel figure is the x0 error of the backbone's prediction on training-store latents
noised to t, divided by that channel's variance (1: the channel is not learned at all, 0: exact),
which separates latent spaces where one scalar ``scaling_factor`` leaves some channels at a far
lower signal-to-noise ratio than others. Every figure uses each run's own codec (its recipe's
``vae_path``) and store.

Run: ``python benchmarks/t2i_checkpoints.py --run dc=runs/.../checkpoints/step_006000 --run ...``
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file
from torch.utils.data import default_collate

from evedit.training.stages.t2i import T2IStage
from evedit.training.store import open_store

ROOT = Path(__file__).resolve().parents[1]
NOISE_LEVELS = (200, 500, 800)


def stage_at(checkpoint: Path) -> T2IStage:
    """The t2i stage of a checkpoint's recipe, its backbone holding the checkpoint's EMA weights."""
    recipe = yaml.safe_load((checkpoint / "config.yaml").read_text())
    stage = T2IStage.from_config(recipe["stage"])
    ema = load_file(str(checkpoint / "ema.safetensors"))
    stage.unet.load_state_dict({k.removeprefix("unet."): v for k, v in ema.items()})
    stage.unet.eval()
    return stage


@torch.no_grad()
def channel_errors(stage: T2IStage, items: int = 64, seed: int = 0) -> dict[int, list[float]]:
    """t -> per-channel x0 error / channel variance on the store's last ``items`` latents."""
    store = open_store({"path": stage.config.data.path}, "t2i")
    batch = default_collate([store[i] for i in range(len(store) - items, len(store))])
    z, text = batch["latent"], batch["caption_states"]
    var = z.var(dim=(0, 2, 3))
    g, out = torch.Generator().manual_seed(seed), {}
    for t0 in NOISE_LEVELS:
        t = torch.full((len(z),), t0, dtype=torch.long)
        z_t = stage.schedule.add_noise(z, torch.randn(z.shape, generator=g), t)
        x0 = stage.schedule.split(stage.unet(z_t, t, text).sample, z_t, t)[0]
        out[t0] = (((x0 - z) ** 2).mean(dim=(0, 2, 3)) / var).tolist()
    return out


def main(argv: list[str] | None = None) -> None:
    from proxy import t2i_figures

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, metavar="NAME=CHECKPOINT")
    parser.add_argument("--items", type=int, default=64, help="test captions and frames per figure")
    parser.add_argument("--grids", type=Path, default=ROOT / "results" / "proxy", help="sample grid folder")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for name, path in (r.split("=", 1) for r in args.run):
        stage = stage_at(Path(path))
        errors = channel_errors(stage, args.items)
        with tempfile.TemporaryDirectory() as tmp:
            stage.unet.save_pretrained(Path(tmp) / "unet")
            figs = t2i_figures(Path(tmp), stage.config.vae_path, args.items, args.grids / f"t2i_{name}.png")
        rows.append((name, Path(path).name, figs, errors))
    head = "| run | checkpoint | psnr t300 | psnr t600 | top-1 | " + " | ".join(
        f"x0 err t{t} (mean / worst channel)" for t in NOISE_LEVELS) + " |"
    print(head + "\n|---|---|---:|---:|---:|" + "---:|" * len(NOISE_LEVELS))
    for name, ck, figs, errors in rows:
        cells = [f"{sum(e) / len(e):.2f} / {max(e):.2f}" for e in errors.values()]
        print(f"| {name} | {ck} | {figs['psnr_t300']:.2f} | {figs['psnr_t600']:.2f} | {figs['t2i_top1']:.3f} | "
              + " | ".join(cells) + " |")
    for name, _, _, errors in rows:
        print(f"\n{name} per channel: " + "; ".join(f"t{t}: " + " ".join(f"{v:.2f}" for v in e)
                                                   for t, e in errors.items()))


if __name__ == "__main__":
    main()
