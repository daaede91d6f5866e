"""Codec decoders on the same encoder, side by side: reconstructions and decoded teacher edits.

The decoder fine-tune (``configs/codec-decoder.yaml``) trains only the codec's decoder on its frozen
encoder, so the latent space, and every diffusion part trained on it, is unchanged. This measures
what that buys, in one run with one seeded set of draws:

- codec: PSNR of mode reconstructions of ``--codec-items`` **test** frames, with each decoder;
- edit teacher: per-frame edits (DDIM, the teacher's FDD guidance) of ``--per-task`` test frames of
  every task, each latent decoded by every decoder, PSNR against the true edit per task.

The model's VAE is swapped between the folders; the encoders must be identical (checked), so
the sampled latents are the same and only decoding differs. Writes
``benchmarks/results/codec_decoder.md``.

Run: ``python benchmarks/codec_decoder.py --model models/shapeworld --vae shipped=models/shapeworld/vae
--vae tuned=runs/codec-decoder/export/vae``
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def same_encoder(a, b) -> bool:
    import torch

    sa, sb = a.state_dict(), b.state_dict()
    keys = [k for k in sa if k.startswith(("encoder.", "quant_conv."))]
    return all(torch.equal(sa[k].half(), sb[k].half()) for k in keys) and \
        a.config.scaling_factor == b.config.scaling_factor


def measure(model_path: str, vaes: dict[str, str], codec_items: int, per_task: int, steps: int) -> dict:
    import torch

    from evedit.models import load_model
    from evedit.training.quality import codec_quality, edit_teacher_quality
    from evedit.training.stages.common import load_vae  # frozen, safetensors only, pickles refused

    torch.set_num_threads(1)
    model = load_model(model_path)
    loaded = {name: load_vae(path).to(model.vae.dtype) for name, path in vaes.items()}
    first, *rest = loaded.values()
    if not all(same_encoder(first, other) for other in rest):
        raise SystemExit("The VAEs differ in their encoders; this compares decoders on one latent space.")
    out = {}
    for name, vae in loaded.items():
        model.vae = vae
        start = time.perf_counter()
        out[name] = {"codec": codec_quality(model, codec_items),
                     "edit": edit_teacher_quality(model, per_task=per_task, steps=steps, progress=False)}
        out[name]["seconds"] = time.perf_counter() - start
        print(f"{name}: codec {out[name]['codec']['psnr']:.2f} dB, edit teacher "
              f"{out[name]['edit']['psnr_mean']:.2f} dB ({out[name]['seconds']:.0f} s)", flush=True)
    return out


def markdown(out: dict, vaes: dict[str, str], args) -> str:
    names = list(out)
    tasks = list(out[names[0]]["edit"]["psnr_per_task"])
    lines = ["# Codec decoders side by side (test split)", "",
             f"`python benchmarks/codec_decoder.py --model {args.model} "
             + " ".join(f"--vae {k}={v}" for k, v in vaes.items())
             + f" --codec-items {args.codec_items} --per-task {args.per_task} --steps {args.steps}`", "",
             "Same encoder (checked), same seeded draws: the edit teacher's latents are identical and",
             "only the decoder differs. One torch thread.", "",
             "| figure | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names),
             f"| codec PSNR, {args.codec_items} test frames (dB) | "
             + " | ".join(f"{out[n]['codec']['psnr']:.2f}" for n in names) + " |",
             f"| edit teacher PSNR, mean of {len(tasks)} tasks (dB) | "
             + " | ".join(f"{out[n]['edit']['psnr_mean']:.2f}" for n in names) + " |"]
    lines += [f"| &nbsp; {t} | " + " | ".join(f"{out[n]['edit']['psnr_per_task'][t]:.2f}" for n in names) + " |"
              for t in tasks]
    lines += ["| seconds | " + " | ".join(f"{out[n]['seconds']:.0f}" for n in names) + " |", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/shapeworld", help="model folder (its VAE is swapped)")
    parser.add_argument("--vae", action="append", required=True, metavar="NAME=FOLDER",
                        help="a VAE folder to compare, named (repeat; all must share one encoder)")
    parser.add_argument("--codec-items", type=int, default=256)
    parser.add_argument("--per-task", type=int, default=8)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "codec_decoder.md"))
    args = parser.parse_args()
    if any("=" not in v for v in args.vae):
        parser.error("--vae takes NAME=FOLDER, e.g. --vae shipped=models/shapeworld/vae")
    vaes = dict(v.split("=", 1) for v in args.vae)
    out = measure(args.model, vaes, args.codec_items, args.per_task, args.steps)
    Path(args.out).write_text(markdown(out, vaes, args))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
