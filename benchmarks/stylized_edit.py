"""Stylized editing (EVE's "Additional Adapter Combinations"): the aligned style group against
attaching the adapters without alignment and against editing first, then stylizing.

On ``--clips`` test-split examples of ``--task`` (ShapeWorld renders the truth exactly: the edited
clip as a zwx mosaic, :func:`evedit.world.groups.mosaic`), from the instruction alone, each method's
8-frame edit is scored by PSNR against that truth, colour accuracy (the edited object's mean colour
over the pixels of its ground-truth mask that show the asked colour in the plain truth, grout lines
left out, :func:`evedit.eval.accuracy.color_check`; colour task only) and the style score (how much of the mosaic's grout shows, 1 for a true mosaic). Methods:

- ``aligned``: EVE on the style group's aligned model (``--aligned``, ``evedit align`` with the style
  teacher, e.g. ``configs/align-style.yaml``);
- ``unaligned``: the same teachers with the style LoRA attached and no alignment LoRA, run by the
  plug-and-play editor (every adapter, none aligned; 20 steps, ip2p guidance) -- the issue's (a);
- ``eve+style``: the shipped EVE (aligned for edit + video only) with the style LoRA attached;
- ``two-pass``: the shipped EVE's edit, then each frame stylized by the style teacher
  (:func:`evedit.models.style.stylize`) -- the issue's (b).

Usage: ``python benchmarks/stylized_edit.py --aligned runs/align-style/model --teachers
runs/dc-allt/teachers --style models/parts/style-lora-dc --write`` (table in
``benchmarks/results/stylized_edit.md``, grid with ``--grid PNG``).
"""

from __future__ import annotations

import argparse
import platform
from datetime import date
from pathlib import Path

import numpy as np
import torch

from evedit.editing import EditPipeline
from evedit.eval.accuracy import _target_region, color_check
from evedit.eval.metrics import psnr
from evedit.io import write_image
from evedit.models import load_model, save_model
from evedit.models.codec import decode_video, encode_video
from evedit.models.style import attach_style, read_style, stylize
from evedit.training.stages.common import grid
from evedit.world import SPLITS, make_example
from evedit.world.groups import TILE, mosaic, style_caption, style_score

TEMPLATE = style_caption("{caption}")


def styled_folder(base: str, style: str, out: Path) -> Path:
    """``base`` with the style LoRA attached, saved to ``out`` (once)."""
    if not (out / "evedit_model.json").is_file():
        model = load_model(base)
        attach_style(model, read_style(style, TEMPLATE))
        save_model(model, out)
    return out


def score(example, out: np.ndarray) -> dict[str, float]:
    truth = mosaic(example.edited_clip)
    row = {"psnr": psnr(out, truth), "style": style_score(out)}
    if example.task == "color":
        color = example.edit.edited_scene.objects[example.edit.target].color
        idx = np.arange(len(out))
        interior = np.ones(out.shape[:3], dtype=bool)  # the tiles' colour pixels, not the grout
        interior[:, TILE - 1::TILE] = interior[:, :, TILE - 1::TILE] = False
        hit = color_check(out, example.edited_clip, _target_region(example, idx) & interior, color)
        row["acc"] = float(bool(hit)) if hit is not None else float("nan")
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--aligned", required=True, help="the style group's aligned model folder")
    ap.add_argument("--teachers", required=True, help="the teachers' model folder (unaligned parts)")
    ap.add_argument("--shipped", default="models/shapeworld", help="the shipped EVE model")
    ap.add_argument("--style", required=True, help="the style LoRA (a style-lora export)")
    ap.add_argument("--task", default="color")
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--work", default="runs/stylized_edit", help="where the styled model folders go")
    ap.add_argument("--grid", type=Path, help="sample grid PNG: for the first 3 clips, rows input, truth and "
                    "each method, 4 frames each")
    ap.add_argument("--write", action="store_true", help="append the table to benchmarks/results/stylized_edit.md")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    work = Path(args.work)
    pipes = {"aligned": EditPipeline.from_pretrained(args.aligned),
             "unaligned": EditPipeline.from_pretrained(styled_folder(args.teachers, args.style, work / "unaligned")),
             "eve+style": EditPipeline.from_pretrained(styled_folder(args.shipped, args.style, work / "eve-style"))}
    plain = EditPipeline.from_pretrained(args.shipped)
    styled = pipes["eve+style"]
    rows: dict[str, list[dict]] = {m: [] for m in ("aligned", "unaligned", "eve+style", "two-pass")}
    samples = []
    for i in range(args.clips):
        ex = make_example(SPLITS["test"][0] + i, args.task)
        instr, seed = ex.edit.instruction, i
        outs = {
            "aligned": pipes["aligned"](ex.clip, instr, editor="eve", task=ex.task, seed=seed, progress=False).frames,
            "unaligned": pipes["unaligned"](ex.clip, instr, editor="plug-and-play", task=ex.task, seed=seed,
                                            steps=20, progress=False).frames,
            "eve+style": styled(ex.clip, instr, editor="eve", task=ex.task, seed=seed, progress=False).frames,
        }
        outs["two-pass"] = two_pass_styled(plain, styled, ex.clip, instr, ex.task, seed)
        for name, out in outs.items():
            rows[name].append(score(ex, np.asarray(out)))
        if len(samples) < 3:
            samples.append([ex.clip[:4], mosaic(ex.edited_clip)[:4], *(np.asarray(outs[m])[:4] for m in rows)])
        print(i, {m: {k: round(v, 2) for k, v in r[-1].items()} for m, r in rows.items()}, flush=True)
    table = report(rows, args)
    print("\n".join(table))
    if args.grid:
        write_image(args.grid, grid([list(part) for s in samples for part in s]))  # rows: input, truth, methods
    if args.write:
        path = Path(__file__).resolve().parent / "results" / "stylized_edit.md"
        old = path.read_text() if path.exists() else "# Stylized editing: the aligned style group against its baselines\n\n"
        path.write_text(old + "\n".join(table) + "\n\n")


def two_pass_styled(plain: EditPipeline, styled: EditPipeline, frames, instruction, task, seed) -> np.ndarray:
    """The shipped EVE (``plain``, no style) edits; ``styled``'s style teacher stylizes the result."""
    edited = plain(frames, instruction, editor="eve", task=task, seed=seed, progress=False).frames
    model = styled.model
    with torch.no_grad():
        x = torch.from_numpy(np.stack(edited)).float().div(127.5).sub(1).permute(3, 0, 1, 2)[None]
        latents = encode_video(model.vae, x)
        text = model.text_encoder([model.style.caption("")]).hidden_states
        null = model.text_encoder([""]).hidden_states
        noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(seed))
        out = decode_video(model.vae, stylize(model, latents, text, null, noise))
    return ((out[0].permute(1, 2, 3, 0).clamp(-1, 1) + 1) * 127.5).round().byte().numpy()


def report(rows: dict[str, list[dict]], args) -> list[str]:
    lines = [f"## {date.today()}, {platform.machine()}: {args.clips} test clips of the {args.task} task",
             "", f"Command: `python benchmarks/stylized_edit.py --aligned {args.aligned} --teachers {args.teachers} "
             f"--style {args.style} --task {args.task} --clips {args.clips}`", "",
             "| method | PSNR vs the mosaic truth (dB) | colour accuracy | style score |", "|---|---:|---:|---:|"]
    for name, rs in rows.items():
        acc = np.nanmean([r.get("acc", np.nan) for r in rs]) if rs and "acc" in rs[0] else float("nan")
        lines.append(f"| {name} | {np.mean([r['psnr'] for r in rs]):.2f} | {acc:.0%} | "
                     f"{np.mean([r['style'] for r in rs]):.3f} |")
    return lines


if __name__ == "__main__":
    main()
