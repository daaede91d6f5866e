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
from .errors import EveditError

app = typer.Typer(
    name="evedit",
    help="Instruction-based video editing by Factorized Diffusion Distillation (EVE).",
    rich_markup_mode="rich",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
world_app = typer.Typer(help="ShapeWorld, the embedded synthetic world with ground-truth edits.",
                        no_args_is_help=True)
app.add_typer(world_app, name="world")
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
    seed: int = typer.Option(7, help="ShapeWorld seed of the bundled clip."),
    task: str = typer.Option("color", help="ShapeWorld edit task to show."),
) -> None:
    """Run the main job on the embedded default and say where the results are."""
    from .demo import run_demo

    written = run_demo(out, seed=seed, task=task)
    for label, path in written.items():
        print(f"{label}: {path}")


@world_app.command("render")
def world_render(
    seed: int = typer.Option(..., "--seed", "-s", help="Scene seed (same seed, same clip)."),
    task: Optional[str] = typer.Option(None, "--task", "-t",
                                       help="Edit task name (see `evedit world tasks`); default: drawn from the seed."),
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
    return 0


def _entry() -> None:  # pragma: no cover
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    _entry()
