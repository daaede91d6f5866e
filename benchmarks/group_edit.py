"""Stylized and personalized editing (EVE's "Additional Adapter Combinations"): an aligned style or
subject group against attaching the adapters without alignment and against editing first, then
passing the result through the style or subject teacher.

On ``--clips`` examples of the test split (``--split val`` for choosing a recipe), rendered in the
shipped model's world (``--shipped``'s ``spec.world``), ShapeWorld renders the truth exactly; every
method edits from the instruction alone (the task from the task classifier, as ``evedit edit``
does), 8 frames:

- ``--group style`` (the zwx mosaic, :func:`evedit.world.groups.mosaic`): examples of ``--task``;
  PSNR against the edited clip as a mosaic, colour accuracy (colour task: the edited object's mean
  colour over the pixels of its ground-truth mask that show the asked colour in the plain truth,
  grout lines left out, :func:`evedit.eval.accuracy.color_check`) and the style score (how much of
  the mosaic's grout shows, 1 for a true mosaic);
- ``--group subject`` (the sks star, :func:`evedit.world.groups.subject_edit`): "replace the X with
  the sks star"; PSNR against the exact result, edit accuracy (the shape task's checks: nearer the
  truth than the input where they differ, and the input kept outside the edit's footprint,
  :mod:`evedit.eval.accuracy`) and the subject score (the star's ring pattern where it belongs, 1
  for the exact star, :func:`evedit.world.groups.subject_score`).

Methods: ``aligned`` (EVE on the group's aligned model, ``--aligned``), ``student-0`` (the same
model and sampler with its alignment LoRA off, ``lora_scale`` 0: FDD's starting point, the
adapters unaligned as EVE samples them), ``unaligned`` (the teachers
with the LoRA attached and no alignment LoRA, run by the plug-and-play editor: the issue's (a)),
``eve+lora`` (the shipped EVE, aligned for edit + video only, with the LoRA attached), ``two-pass``
(the shipped EVE's edit, then each frame through the LoRA's teacher,
:func:`evedit.models.token_lora.token_pass`: the issue's (b)), and two references that isolate the
parts: ``truth-pass`` (the exact result through the LoRA's teacher: what the second pass keeps of
a perfect edit) and ``codec`` (the exact result through the codec: the ceiling of every method).

Usage: ``python benchmarks/group_edit.py --group subject --aligned runs/align-subject/model
--teachers runs/dc-allt/teachers --lora models/parts/subject-lora-dc --write`` (table in
``benchmarks/results/<group>_edit.md``, grid with ``--grid PNG``).
"""

from __future__ import annotations

import argparse
import platform
from datetime import date
from pathlib import Path

import numpy as np
import torch

from evedit.editing import EditPipeline
from evedit.eval.accuracy import _target_region, closer_check, color_check, locality_check
from evedit.eval.metrics import psnr
from evedit.io import write_image
from evedit.models import load_model, save_model
from evedit.models.codec import decode_video, encode_video
from evedit.models.token_lora import EXAMPLE_TEMPLATES, attach_token_lora, read_token_lora, token_pass
from evedit.training.stages.common import grid
from evedit.world import SPLITS, WorldConfig, make_example
from evedit.world import groups
from evedit.world.groups import TILE, mosaic, style_score, subject_edit, subject_score

METHODS = ("aligned", "student-0", "unaligned", "eve+lora", "two-pass", "truth-pass", "codec")
DEFAULT_RING = groups.RING_WIDTH  # the world's sks star, before --ring-width changes it
RESULTS = {"style": "stylized_edit.md", "subject": "subject_edit.md"}
TITLES = {"style": "# Stylized editing: the aligned style group against its baselines\n\n",
          "subject": "# Editing with a subject: the aligned subject group against its baselines\n\n"}


class Item:
    """One clip of the benchmark: input, instruction, exact truth, and how an output is scored."""

    def __init__(self, group: str, seed: int, task: str, world: WorldConfig | None = None):
        self.group = group
        if group == "style":
            self.ex = make_example(seed, task, world)
            self.clip, self.instruction, self.truth = self.ex.clip, self.ex.edit.instruction, mosaic(self.ex.edited_clip)
        else:
            self.edit = subject_edit(seed, world)
            self.clip, self.instruction, self.truth = self.edit.example.clip, self.edit.instruction, self.edit.edited_clip

    def score(self, out: np.ndarray) -> dict[str, float]:
        row = {"psnr": psnr(out, self.truth)}
        if self.group == "subject":
            e = self.edit
            ok = closer_check(out, self.clip, self.truth) and locality_check(out, self.clip, e.footprint)
            return {**row, "acc": float(bool(ok)), "token": subject_score(out, e.subject)}
        row["token"] = style_score(out)
        if self.ex.task == "color":
            color = self.ex.edit.edited_scene.objects[self.ex.edit.target].color
            interior = np.ones(out.shape[:3], dtype=bool)  # the tiles' colour pixels, not the grout
            interior[:, TILE - 1::TILE] = interior[:, :, TILE - 1::TILE] = False
            hit = color_check(out, self.ex.edited_clip, _target_region(self.ex, np.arange(len(out))) & interior, color)
            row["acc"] = float(bool(hit)) if hit is not None else float("nan")
        return row


def with_lora(base: str, lora: str, group: str, out: Path) -> Path:
    """``base`` with the style or subject LoRA attached, saved to ``out`` (once)."""
    if not (out / "evedit_model.json").is_file():
        model = load_model(base)
        attach_token_lora(model, read_token_lora(lora, EXAMPLE_TEMPLATES[group]))
        save_model(model, out)
    return out


def _key(lora: str) -> str:
    """The cached model folders' name for ``lora``: its folder and parent (``runs/x/export`` -> ``x-export``)."""
    return "-".join(Path(lora).resolve().parts[-2:])


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return ((x[0].permute(1, 2, 3, 0).clamp(-1, 1) + 1) * 127.5).round().byte().numpy()


def as_latents(model, frames) -> torch.Tensor:
    x = torch.from_numpy(np.stack(frames)).float().div(127.5).sub(1).permute(3, 0, 1, 2)[None]
    return encode_video(model.vae, x)


def two_pass(plain: EditPipeline, lora: EditPipeline, frames, instruction, seed) -> np.ndarray:
    """The shipped EVE (``plain``, no LoRA) edits; ``lora``'s teacher passes over the result."""
    return lora_pass(lora, plain(frames, instruction, editor="eve", seed=seed, progress=False).frames, seed)


def lora_pass(lora: EditPipeline, edited, seed: int) -> np.ndarray:
    """Each frame of ``edited`` through ``lora``'s style or subject teacher (SDEdit on the trigger alone)."""
    model = lora.model
    with torch.no_grad():
        latents = as_latents(model, edited)
        text = model.text_encoder([model.token_lora.caption("")]).hidden_states
        null = model.text_encoder([""]).hidden_states
        noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(seed))
        return to_uint8(decode_video(model.vae, token_pass(model, latents, text, null, noise)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--group", choices=("style", "subject"), default="style")
    ap.add_argument("--aligned", help="the group's aligned model folder (method aligned)")
    ap.add_argument("--teachers", required=True, help="the teachers' model folder (unaligned parts)")
    ap.add_argument("--shipped", default="models/shapeworld", help="the shipped EVE model")
    ap.add_argument("--lora", required=True, help="the style or subject LoRA (a style-lora or subject-lora export)")
    ap.add_argument("--task", default="color", help="style group: the edit task of the examples")
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--split", choices=("test", "val"), default="test",
                    help="where the clips come from: choose recipes on val, report on test")
    ap.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(METHODS)}")
    ap.add_argument("--ring-width", type=int, default=groups.RING_WIDTH,
                    help="subject group: the sks star's ring width in px (a world-parameter probe; the "
                    "LoRA must have been trained on the same)")
    ap.add_argument("--work", default="runs/group_edit", help="where the model folders with the LoRA go")
    ap.add_argument("--grid", type=Path, help="sample grid PNG: for the first 3 clips, rows input, truth and "
                    "each method, 4 frames each")
    ap.add_argument("--write", action="store_true", help="append the table to benchmarks/results/<group>_edit.md")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    groups.RING_WIDTH = args.ring_width
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if set(methods) - set(METHODS):
        ap.error(f"unknown methods {sorted(set(methods) - set(METHODS))}; choose from {', '.join(METHODS)}")
    use_aligned = bool({"aligned", "student-0"} & set(methods))
    if use_aligned and not args.aligned:
        ap.error("the aligned and student-0 methods need --aligned")
    work = Path(args.work) / args.group
    pipes = {"aligned": EditPipeline.from_pretrained(args.aligned) if use_aligned else None,
             "unaligned": EditPipeline.from_pretrained(with_lora(args.teachers, args.lora, args.group, work / f"unaligned-{_key(args.lora)}"))
             if "unaligned" in methods else None,
             "eve+lora": EditPipeline.from_pretrained(with_lora(args.shipped, args.lora, args.group,
                                                               work / f"eve-lora-{_key(args.lora)}"))}
    plain = EditPipeline.from_pretrained(args.shipped)
    world = plain.model.spec.world_config()  # the shipped model's world: the clips it edits
    rows: dict[str, list[dict]] = {m: [] for m in methods}
    samples = []
    for i in range(args.clips):
        item, seed = Item(args.group, SPLITS[args.split][0] + i, args.task, world), i
        outs = run_methods(methods, pipes, plain, item, seed)
        for name in rows:
            rows[name].append(item.score(np.asarray(outs[name])))
        if len(samples) < 3:
            samples.append([item.clip[:4], item.truth[:4], *(np.asarray(outs[m])[:4] for m in rows)])
        print(i, {m: {k: round(v, 2) for k, v in r[-1].items()} for m, r in rows.items()}, flush=True)
    table = report(rows, args)
    print("\n".join(table))
    if args.grid:
        write_image(args.grid, grid([list(part) for s in samples for part in s]))  # rows: input, truth, methods
    if args.write:
        path = Path(__file__).resolve().parent / "results" / RESULTS[args.group]
        old = path.read_text() if path.exists() else TITLES[args.group]
        path.write_text(old + "\n".join(table) + "\n\n")


def run_methods(methods: list[str], pipes: dict, plain: EditPipeline, item: Item, seed: int) -> dict:
    """Each method's 8 frames (uint8) for ``item``."""
    outs = {name: pipes[name](item.clip, item.instruction, editor="eve", seed=seed, progress=False).frames
            for name in ("aligned", "eve+lora") if name in methods}
    if "student-0" in methods:
        outs["student-0"] = pipes["aligned"](item.clip, item.instruction, editor="eve", seed=seed, lora_scale=0.0,
                                             progress=False).frames
    if "unaligned" in methods:
        outs["unaligned"] = pipes["unaligned"](item.clip, item.instruction, editor="plug-and-play", seed=seed,
                                               steps=20, progress=False).frames
    if "two-pass" in methods:
        outs["two-pass"] = two_pass(plain, pipes["eve+lora"], item.clip, item.instruction, seed)
    if "truth-pass" in methods:
        outs["truth-pass"] = lora_pass(pipes["eve+lora"], list(item.truth), seed)
    if "codec" in methods:
        with torch.no_grad():
            outs["codec"] = to_uint8(decode_video(plain.model.vae, as_latents(plain.model, list(item.truth))))
    return outs


def report(rows: dict[str, list[dict]], args) -> list[str]:
    what = f"the {args.task} task" if args.group == "style" else "the subject edit"
    truth, acc, token = (("the mosaic truth", "colour accuracy", "style score") if args.group == "style"
                         else ("the exact result", "edit accuracy", "subject score"))
    lines = [f"## {date.today()}, {platform.machine()}: {args.clips} {args.split} clips of {what}", "",
             f"Command: `python benchmarks/group_edit.py --group {args.group} "
             + (f"--aligned {args.aligned} " if {"aligned", "student-0"} & set(rows) else "") +
             f"--teachers {args.teachers} --lora {args.lora}"
             + (f" --task {args.task}" if args.group == "style" else "") + f" --clips {args.clips}" + (f" --split {args.split}" if args.split != "test" else "")
             + (f" --methods {','.join(rows)}" if list(rows) != list(METHODS) else "")
             + (f" --ring-width {args.ring_width}" if args.group == "subject" and args.ring_width != DEFAULT_RING else "") + "`", "",
             f"| method | PSNR vs {truth} (dB) | {acc} | {token} |", "|---|---:|---:|---:|"]
    for name, rs in rows.items():
        a = np.nanmean([r.get("acc", np.nan) for r in rs]) if rs and "acc" in rs[0] else float("nan")
        lines.append(f"| {name} | {np.mean([r['psnr'] for r in rs]):.2f} | {a:.0%} | "
                     f"{np.mean([r['token'] for r in rs]):.3f} |")
    return lines


if __name__ == "__main__":
    main()
