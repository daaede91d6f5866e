"""The ``evedit`` command line: parse options, call one function, report.

Every user-facing problem is an :class:`~evedit.errors.EveditError`; :func:`main` prints its one
sentence and exits with status 1, never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from . import __version__
from .errors import EveditError, Terminated

app = typer.Typer(
    name="evedit",
    help="Instruction-based video editing by Factorized Diffusion Distillation (EVE).",
    rich_markup_mode="rich",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
world_app = typer.Typer(help="ShapeWorld, the embedded synthetic world with ground-truth edits.", no_args_is_help=True)
app.add_typer(world_app, name="world")
model_app = typer.Typer(help="Model folders: assemble trained parts, inspect.", no_args_is_help=True)
app.add_typer(model_app, name="model")
data_app = typer.Typer(help="Training data: encode items once into a store the stages read.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        print(f"evedit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """evedit: edit videos by instruction; train, align and evaluate EVE models."""


@app.command()
def demo(
    out: Path = typer.Option(Path("outputs/demo"), "--out", "-o", help="Folder for the results."),
    seed: int = typer.Option(7, help="ShapeWorld seed (7: the bundled clip; others are rendered)."),
    task: str = typer.Option("color", help="ShapeWorld edit task to show (color: the bundled clip's)."),
    model: str = typer.Option("shapeworld", "--model", "-m", help="ShapeWorld model folder or preset (its world renders the clip)."),
) -> None:
    """Edit the bundled ShapeWorld clip with the shipped model; say where the edit and comparison are."""
    from .demo import run_demo
    from .editing.command import warnings_as_lines

    with warnings_as_lines():
        written = run_demo(out, seed=seed, task=task, model=model)
    for label, path in written.items():
        print(f"{label}: {path}")


@app.command("edit")
def edit_command(
    input: Optional[str] = typer.Argument(None, help="Video file, image, or folder of numbered frames."),
    instruction: Optional[str] = typer.Argument(None, help="What to change, e.g. \"make the circle red\"."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Output .mp4/.webm/.mkv/.gif, .png/.jpg "
                                         "(one frame), or a folder ending in '/'; the extension picks the format."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model folder or preset (default: the shipped ShapeWorld model)."),
    editor: str = typer.Option("eve", "--editor", "-e", help="eve, plug-and-play, per-frame or sdedit."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Sampling steps (EVE: k, default 3; teachers: DDIM, default 50)."),
    guidance: Optional[float] = typer.Option(None, "--guidance", help="Text guidance scale (EVE: the model's student_guidance by default, 1 = none)."),
    seed: int = typer.Option(0, "--seed", help="Noise seed; the same seed gives the same frames."),
    task: str = typer.Option("auto", "--task", "-t", help="Edit task label, or auto (the model's task classifier)."),
    caption: Optional[str] = typer.Option(None, "--caption", help="Caption of the edited video for the backbone (default: none; the model edits from the instruction alone)."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", help="Edit only the first N input frames."),
    stride: int = typer.Option(1, "--stride", help="Edit every N-th frame (the output's fps is divided by N)."),
    window: Optional[int] = typer.Option(None, "--window", help="Frames per window (default: the model's, 8)."),
    overlap: Optional[int] = typer.Option(None, "--overlap", help="Frames shared by consecutive windows (default 1)."),
    first_frame_steps: Optional[int] = typer.Option(None, "--first-frame-steps", help="DDIM steps of the first-frame edit (default 4; the alignment used 10, no better measured)."),
    lora_scale: Optional[float] = typer.Option(None, "--lora-scale", help="EVE: strength of the alignment LoRA, 0 (unaligned student) to 4 (default: the model's lora_scale, 1 unless its manifest sets another)."),
    noise_share: Optional[float] = typer.Option(None, "--noise-share", help="Share of each frame's starting noise drawn once for the whole clip, 0 (each frame its own) to 1 (the same for all; default: the model's)."),
    fit: str = typer.Option("crop", "--fit", help="crop: edit the centre square; stretch: the whole frame, squashed."),
    region: Optional[str] = typer.Option(None, "--region", help="auto: change only where the edit adapter finds the instruction acts (not in the paper); full: whole frames (default: the model's, auto for its region_tasks)."),
    compare: Optional[str] = typer.Option(None, "--compare", help="Also write input and output side by side (.gif or .mp4)."),
    start: Optional[str] = typer.Option(None, "--start", help="Edit from here: seconds (1.5 or 1.5s) or a 0-based frame number (12f)."),
    end: Optional[str] = typer.Option(None, "--end", help="Edit up to here, exclusive: seconds (3 or 3s) or a frame number (24f)."),
    keep_rest: bool = typer.Option(False, "--keep-rest", help="Copy the frames outside --start/--end around the edit (the output keeps the input's length)."),
    mask: Optional[str] = typer.Option(None, "--mask", help="Edit only where this mask is white: one image for every frame, or a mask video or folder (frame i for input frame i); outside it the output equals the input."),
    no_audio: bool = typer.Option(False, "--no-audio", help="Drop the input's sound (kept by default in .mp4/.webm/.mkv, cut to the edited range)."),
    jobs: Optional[Path] = typer.Option(None, "--jobs", help="Run many edits with one loaded model: a JSON Lines file, one {\"input\", \"instruction\", options...} per line (needs --out-dir)."),
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="With --jobs: folder for the outputs (default name NNN-<input stem>.mp4)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="With --jobs: redo jobs whose output exists (default: skip them)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or timings."),
) -> None:
    """Edit a video by an instruction with EVE (or a baseline editor, for comparison).

    The output keeps the input's sound, frame rate, size and orientation. With --jobs, options
    given here are every job's defaults. Ctrl-C or SIGTERM stops it and removes what it was
    writing (SIGTERM: exit status 143).
    """
    import signal

    from .editing.command import run_edit
    from .editing.jobs import check_edit_mode, run_jobs
    from .errors import raise_terminated

    check_edit_mode(input, instruction, output, jobs, out_dir, compare)
    values = dict(editor=editor, steps=steps, guidance=guidance, seed=seed, task=task, caption=caption,
                  max_frames=max_frames, stride=stride, window=window, overlap=overlap,
                  first_frame_steps=first_frame_steps, lora_scale=lora_scale, noise_share=noise_share, fit=fit,
                  region=region, start=start, end=end, keep_rest=keep_rest, mask=mask, audio=not no_audio)
    try:
        previous = signal.signal(signal.SIGTERM, raise_terminated)
    except ValueError:  # not the main thread (called from a program): leave signals alone
        previous = None
    try:
        if jobs is not None:
            run_jobs(jobs, out_dir, model=model, device=device, quiet=quiet, overwrite=overwrite, defaults=values)
        else:
            run_edit(input, instruction, output, model=model, compare=compare, device=device, quiet=quiet,
                     **values)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


@app.command("ui")
def ui_command(
    model: str = typer.Option("shapeworld", "--model", "-m", help="Model folder or preset to open on (default: the shipped ShapeWorld model)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to serve on (127.0.0.1: this machine only)."),
    port: int = typer.Option(7860, "--port", "-p", min=1, max=65535, help="Port to serve on."),
) -> None:
    """Serve the web app (Gradio): upload a clip or pick an example, type an instruction, press Edit.
    Uploads and outputs live in one temporary folder, deleted when the app stops (Ctrl-C)."""
    import signal

    from .ui import launch

    def stop(signum, frame):  # SIGTERM stops like Ctrl-C, so the temporary folder is removed
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    print(f"evedit ui: loading {model} ...", flush=True)
    server = launch(model, host, port, prevent_thread_lock=True)
    print(f"evedit ui: open {server.url} (Ctrl-C stops it)", flush=True)
    try:
        server.blocks.block_thread()
    finally:
        server.close()


@world_app.command("render")
def world_render(
    seed: int = typer.Option(..., "--seed", "-s", help="Scene seed (same seed, same clip)."),
    task: Optional[str] = typer.Option(None, "--task", "-t", help="Edit task name (see `evedit world tasks`); default: drawn from the seed."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    frames: int = typer.Option(8, min=1, max=256, help="Frames per clip."),
    size: int = typer.Option(64, min=16, max=1024, help="Frame size in pixels."),
    fps: float = typer.Option(8.0, min=0.5, max=60.0, help="Frame rate of the written videos."),
) -> None:
    """Write an input clip, its instruction and the ground-truth edited clip (mp4, gif, json)."""
    from .demo import render_example_dir

    paths = render_example_dir(seed, task, out, frames=frames, size=size, fps=fps)
    print(f"instruction: {paths['instruction']}")
    print(f"wrote {len(paths) - 1} files to {out}")


@world_app.command("tasks")
def world_tasks() -> None:
    """List the ShapeWorld edit tasks with their labels and categories."""
    from .world import TASK_CATEGORIES, TASKS

    for label, name in enumerate(TASKS):
        print(f"{label:2d}  {name:12s} {TASK_CATEGORIES[name]}")


@app.command("train")
def train_command(
    stage: str = typer.Argument(..., help="Stage to train: [bold]codec[/], [bold]t2i[/], [bold]edit-adapter[/], "
                                "[bold]video-adapter[/], [bold]clip[/], [bold]task-classifier[/], [bold]style-lora[/] or "
                                "[bold]subject-lora[/]."),
    config: Path = typer.Option(..., "--config", "-c",
                                help="Recipe YAML with [bold]train:[/] and [bold]stage:[/] sections, e.g. configs/codec.yaml."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="Override the recipe's train.max_steps."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Override the recipe's run folder (train.out)."),
    resume: bool = typer.Option(False, "--resume", help="Continue exactly from the newest checkpoint in the run folder."),
    max_minutes: Optional[float] = typer.Option(None, "--max-minutes", min=0.1, help="Stop (evaluate, export) after this much training time: equal-time comparisons."),
) -> None:
    """Train one stage: checkpoints, samples, TensorBoard logs and the export under the run folder.

    Ctrl-C or SIGTERM saves a checkpoint and stops; run again with [bold]--resume[/] to continue
    (it verifies the checkpoint and falls back past a damaged one to the newest intact one).
    """
    from .training import run_training

    from .training.distributed import is_main_launch_process

    export = run_training(stage, config, max_steps=max_steps, out=out, resume=resume, max_minutes=max_minutes)
    if is_main_launch_process():
        print(f"export: {export}")


@data_app.command("build")
def data_build(
    kind: str = typer.Argument(..., help="[bold]image[/] (t2i), [bold]edit[/] (edit-adapter), "
                               "[bold]video[/] (video-adapter) or [bold]align[/] (evedit align)."),
    out: Path = typer.Option(..., "--out", "-o", help="Store folder to write (resumed if unfinished)."),
    items: Optional[int] = typer.Option(None, "--items", "-n", min=1, help="Train items to encode (ShapeWorld: required; your data: default all)."),
    source: str = typer.Option("shapeworld", "--source", "-s", help="shapeworld, or your data in the stage's format (image/video folder, ip2p .jsonl, alignment manifest)."),
    vae: Path = typer.Option(Path("runs/codec/export/vae"), "--vae", help="The frozen codec: a VAE folder, or a model folder holding vae/."),
    frames: int = typer.Option(8, "--frames", min=1, max=64, help="Frames per clip (video, align)."),
    shard_items: int = typer.Option(1024, "--shard-items", min=1, help="Items per shard file."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Items encoded per forward pass (memory, not results)."),
    workers: int = typer.Option(0, "--workers", "-j", min=0, help="Processes rendering (or reading) items while the codec encodes; the store is the same for any number."),
    tasks: Optional[str] = typer.Option(None, "--tasks", help="ShapeWorld: only these tasks' examples, comma-separated (e.g. color,remove)."),
    object_px: Optional[str] = typer.Option(None, "--object-px", help="ShapeWorld: small and large object diameters in px at 64 px, e.g. 20,24 (default: the world of a --vae model folder, else 14,24)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Render (or read) train items once, encode them with the frozen codec and MiniLM, write shards.

    A stage reads the store with [bold]data: {kind: store, path: OUT}[/] and refuses one made by another codec or text encoder. An interrupted build continues when run again.
    """
    from .training.store_build import build_command

    m = build_command(kind, out, items=items, source=source, vae=vae, frames=frames, shard_items=shard_items,
                      batch_size=batch_size, progress=not quiet, workers=workers,
                      tasks=tuple(t.strip() for t in tasks.split(",") if t.strip()) if tasks is not None else None,
                      object_px=object_px)
    print(f"store: {out} ({m['items']} {kind} items, {len(m['shards'])} shards, {m['bytes'] / 2**20:.1f} MiB, "
          f"{m['build_seconds_last_run']:.0f} s)")


@model_app.command("assemble")
def model_assemble(
    runs: Path = typer.Option(Path("runs"), "--runs", help="Folder holding <stage>/export of each training stage."),
    out: Path = typer.Option(Path("models/shapeworld"), "--out", "-o", help="Model folder to write (fp16)."),
    aligned: Optional[Path] = typer.Option(None, "--aligned", help="An `evedit align` model folder (or a models/parts/align-* folder) whose LoRA to include."),
) -> None:
    """Assemble the trained ShapeWorld parts into one model folder with a model card."""
    from .training.ship import assemble_shapeworld

    print(f"model folder: {assemble_shapeworld(runs, out, aligned)}")


@model_app.command("report")
def model_report(
    model: Path = typer.Option(Path("models/shapeworld"), "--model", "-m", help="ShapeWorld model folder to measure."),
    size: str = typer.Option("full", "--size", help="full (the reported figures, ~10 min) or quick (a smoke run)."),
    card: bool = typer.Option(True, "--card/--no-card", help="Add the figures to the folder's README.md."),
) -> None:
    """Measure every pretrained part on the held-out test split; write quality.json (and the card)."""
    from .training.quality import SIZES, quality_report
    from .training.quality_card import quality_markdown, write_report

    if size not in SIZES:
        raise EveditError(f"Unknown --size {size!r}; choose from {', '.join(SIZES)}.")
    if not (model / "evedit_model.json").is_file():
        raise EveditError(f"'{model}' is not a model folder (no evedit_model.json); run `evedit model assemble` first.")
    report = quality_report(model, size)
    path = write_report(model, report, card=card)
    print(quality_markdown(report))
    print(f"report: {path}")


@app.command("align")
def align_command(
    config: Optional[Path] = typer.Option(None, "--config", "-c",
                                          help="Alignment recipe YAML (FDD settings), e.g. configs/align.yaml."),
    model: Optional[str] = typer.Option(None, "--model", "-m",
                                        help="Pretrained model folder or preset holding the teachers."),
    ablation: Optional[str] = typer.Option(
        None, "--ablation", help="EVE Table 2 variant: none, no-sds, no-adv, no-kbin, random-init."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1,
                                            help="Total iterations (the SDS-only share is kept)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder (checkpoints, samples, logs, model/)."),
    resume: bool = typer.Option(False, "--resume", help="Continue exactly from the newest checkpoint."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Align the adapters by Factorized Diffusion Distillation: only a LoRA (and the
    discriminator heads) train; the student learns from the frozen edit and video teachers."""
    from .training.distributed import is_main_launch_process
    from .training.fdd.entry import run_alignment

    folder = run_alignment(config, model=model, ablation=ablation, max_steps=max_steps, out=out,
                           resume=resume, progress=not quiet)
    if is_main_launch_process():
        print(f"aligned model: {folder}")


convert_app = typer.Typer(help="Convert third-party checkpoints to safetensors (never loading pickles otherwise).",
                          no_args_is_help=True)
app.add_typer(convert_app, name="convert")


def _split(values: Optional[list[str]]) -> Optional[list[str]]:
    """Repeated and comma-separated values as one list (None when not given)."""
    if not values:
        return None
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


@app.command("eval")
def eval_command(
    benchmark: str = typer.Option("shapeworld", "--benchmark", "-b", help="shapeworld, tgve or tgve-plus."),
    editor: Optional[list[str]] = typer.Option(
        None, "--editor", "-e", help="Editors, comma-separated: eve, pnp, per-frame, sdedit, identity, ground-truth "
        "(default: the first four); with --outputs, the names of those folders' systems."),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", help="Score only the first N items."),
    seed: int = typer.Option(0, "--seed", min=0, help="Editing seed (item i is edited with seed + i)."),
    data: Optional[Path] = typer.Option(None, "--data", help="TGVE folder (default data/loveu-tgve-2023); for "
                                        "tgve-plus it also holds the exported TGVE+ rows."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder (default outputs/eval/<benchmark>); "
                                       "scored items found there are skipped."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the summary JSON here."),
    model: str = typer.Option("shapeworld", "--model", "-m", help="Model folder or preset the editors use."),
    outputs: Optional[list[Path]] = typer.Option(
        None, "--outputs", help="Score videos another system wrote in the TGVE submission layout "
        "(<subset>/<video>/<task>/00000.jpg; ShapeWorld: <split>/<seed>_<task>/); repeatable."),
    ablations: Optional[Path] = typer.Option(None, "--ablations", help="Score RUNS_DIR/<ablation>/model of each "
                                             "`evedit align --ablation` run and print the Table 2 analogue."),
    shapeclip: Optional[Path] = typer.Option(None, "--shapeclip", help="ShapeCLIP folder (default: the model's)."),
    clip: str = typer.Option("openai/clip-vit-large-patch14", "--clip", help="CLIP ViT-L/14 folder or cached hub id."),
    pickscore: str = typer.Option("yuvalkirstain/PickScore_v1", "--pickscore", help="PickScore folder or hub id."),
    pickscore_processor: str = typer.Option("laion/CLIP-ViT-H-14-laion2B-s32B-b79K", "--pickscore-processor",
                                            help="PickScore's processor folder or hub id."),
    viclip: Optional[Path] = typer.Option(None, "--viclip", help="Converted ViCLIP folder (evedit convert viclip)."),
    metrics: Optional[list[str]] = typer.Option(None, "--metrics", help="TGVE model groups: clip, pickscore, viclip."),
    samples: int = typer.Option(6, "--samples", min=0, help="Sample grids to draw."),
    workers: int = typer.Option(1, "--workers", "-j", min=1, help="Editing processes, one torch thread each."),
    baseline_steps: Optional[int] = typer.Option(None, "--baseline-steps", min=1,
                                                 help="Sampling steps of pnp / per-frame / sdedit (default: the pipeline's)."),
    with_caption: bool = typer.Option(False, "--with-caption", help="Also give the editors each item's ground-truth "
                                      "output caption (default: the instruction alone, as a user edits)."),
    region: Optional[str] = typer.Option(None, "--region", help="The editors' --region: auto or full (default: the "
                                         "model's, auto for its region_tasks)."),
    noise_share: Optional[float] = typer.Option(None, "--noise-share", help="The editors' --noise-share, 0 to 1 (default: the model's)."),
    device: Optional[str] = typer.Option(None, "--device", help="Metric models' device (default: cuda if present)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Edit and score a benchmark (resumable); write per-item JSONL, summary JSON, Table 1 Markdown, plots, samples."""
    from .eval.entry import EvalOptions, print_summary, run_eval

    opts = EvalOptions(benchmark=benchmark, editors=_split(editor), limit=limit, seed=seed, data=data, out=out,
                       json_path=json_path, model=model, outputs=tuple(outputs or ()), shapeclip=shapeclip,
                       clip=clip, pickscore=pickscore, pickscore_processor=pickscore_processor, viclip=viclip,
                       metrics=_split(metrics), samples=samples, workers=workers, baseline_steps=baseline_steps,
                       with_caption=with_caption, region=region, noise_share=noise_share, device=device, progress=not quiet)
    if ablations is not None:
        from .eval.ablations import run_ablations

        _, table, where = run_ablations(opts, ablations)
        print(table)
    else:
        print(print_summary(run_eval(opts)))
        where = opts.out_dir
    print(f"reports: {where}")


@convert_app.command("viclip")
def convert_viclip_command(
    src: Path = typer.Argument(..., help="The official ViClip-InternVid-10M-FLT.pth."),
    out: Path = typer.Argument(..., help="Folder to write (config.json, model.safetensors, tokenizer)."),
    tokenizer: str = typer.Option("openai/clip-vit-large-patch14", "--tokenizer",
                                  help="CLIP tokenizer folder or cached hub id to copy in."),
) -> None:
    """Convert ViCLIP's pickle checkpoint (read with torch.load(weights_only=True)) to safetensors."""
    from .eval.convert import convert_viclip

    print(f"converted ViCLIP: {convert_viclip(src, out, tokenizer)}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app; user errors become one sentence and exit status 1.

    Usage errors are reported by typer itself (exit status 2); ``--help`` exits 0.
    """
    try:
        app(args=argv, prog_name="evedit")
    except EveditError as exc:
        console.print(f"[bold red]Error:[/] {exc}", highlight=False, soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        console.print("Interrupted.")
        return 130
    except Terminated:
        console.print("Terminated.")
        return 143
    except SystemExit as exc:  # typer's standalone mode ends every run with sys.exit
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def _entry() -> None:  # pragma: no cover
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    _entry()
