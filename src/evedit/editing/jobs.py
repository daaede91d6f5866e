"""``evedit edit --jobs FILE --out-dir DIR``: many edits with one loaded model.

The jobs file is JSON Lines: one object per line (blank lines and lines starting with ``#`` are
skipped), with ``input`` and ``instruction`` and any per-job option: ``output`` (a name in DIR;
default ``NNN-<input stem>.mp4``, NNN the job's number from 1), ``compare``, ``mask``, ``start``,
``end``, ``keep_rest``, ``audio`` (false drops the sound), and the :class:`EditOptions` fields
(``editor``, ``steps``, ``guidance``, ``seed``, ``task``, ``caption``, ``max_frames``, ``stride``,
``window``, ``overlap``, ``first_frame_steps``, ``lora_scale``, ``noise_share``, ``fit``, ``region``); dashes may stand for underscores.
Relative input and mask paths are read from the jobs file's folder. Options given on the command
line are every job's defaults; a job's own keys win.

Every job is checked first (as ``evedit edit`` checks one); then the model is loaded once and the
jobs run in order under one progress bar. A job that fails (bad line, missing input, unknown key,
an error while editing) is reported and skipped; the others run. A job whose output exists is
skipped unless ``overwrite``. A table of every job ends the run; if any failed the command then
exits with status 1.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, fields
from pathlib import Path

from ..errors import EveditError
from .options import EditOptions

PLAN_KEYS = {"output", "compare", "mask", "start", "end", "keep_rest", "audio"}
OPTION_KEYS = {f.name for f in fields(EditOptions)} - {"min_task_probability"}


@dataclass
class Job:
    number: int  # from 1, in file order
    input: str = ""
    instruction: str = ""
    output: Path | None = None
    values: dict | None = None  # prepare_edit keywords
    status: str = "pending"  # pending, done, skipped, failed
    detail: str = ""
    seconds: float = 0.0


def check_edit_mode(input, instruction, output, jobs, out_dir, compare) -> None:
    """One edit (INPUT INSTRUCTION -o OUTPUT) or a batch (--jobs FILE --out-dir DIR), not a mix."""
    if jobs is None:
        if input is None or instruction is None or output is None:
            raise EveditError("evedit edit needs INPUT, INSTRUCTION and -o OUTPUT (or --jobs FILE --out-dir DIR).")
        if out_dir is not None:
            raise EveditError("--out-dir goes with --jobs; for one edit give -o OUTPUT.")
        return
    if input is not None or instruction is not None or output is not None or compare is not None:
        raise EveditError("With --jobs, inputs, instructions and outputs come from the jobs file; "
                          "leave out INPUT, INSTRUCTION, -o and --compare.")
    if out_dir is None:
        raise EveditError("--jobs needs --out-dir DIR, the folder for the outputs.")


def read_jobs(path: str | Path, out_dir: str | Path, defaults: dict) -> list[Job]:
    """Parse the jobs file; a bad line becomes a failed job (the file itself must be readable)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EveditError(f"Cannot read the jobs file '{path}': {getattr(exc, 'strerror', None) or exc}.") from exc
    jobs: list[Job] = []
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        job = Job(len(jobs) + 1)
        jobs.append(job)
        try:
            _fill(job, line, path.parent, Path(out_dir), defaults)
        except EveditError as exc:
            job.status, job.detail = "failed", str(exc)
    if not jobs:
        raise EveditError(f"The jobs file '{path}' holds no jobs (one JSON object per line).")
    return jobs


def _fill(job: Job, line: str, base: Path, out_dir: Path, defaults: dict) -> None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise EveditError(f"line is not valid JSON ({exc.msg} at column {exc.colno})") from exc
    if not isinstance(record, dict):
        raise EveditError("line is not a JSON object")
    record = {str(k).replace("-", "_"): v for k, v in record.items()}
    unknown = sorted(set(record) - PLAN_KEYS - OPTION_KEYS - {"input", "instruction"})
    if unknown:
        raise EveditError(f"unknown key {unknown[0]!r}")
    for key in ("input", "instruction"):
        if not isinstance(record.get(key), str) or not record[key].strip():
            raise EveditError(f"no {key!r} given")
    job.input, job.instruction = record.pop("input"), record.pop("instruction")
    source = Path(os.path.expanduser(job.input))
    source = source if source.is_absolute() else base / source
    name = record.pop("output", None) or f"{job.number:03d}-{source.stem or 'frames'}.mp4"
    job.output = out_dir / str(name)
    if isinstance(record.get("mask"), str) and not Path(os.path.expanduser(record["mask"])).is_absolute():
        record["mask"] = str(base / record["mask"])
    if isinstance(record.get("compare"), str):
        record["compare"] = str(out_dir / record["compare"])
    values = {**defaults, **record}
    job.values = dict(values, input=str(source))


def run_jobs(jobs_file, out_dir, *, model: str | None, device: str | None, quiet: bool,
             overwrite: bool, defaults: dict, echo=print) -> list[Job]:
    """Check every job, load the model once, run the jobs, print the table (see module notes)."""
    from tqdm.auto import tqdm

    from .command import prepare_edit, warnings_as_lines
    from .options import check_device

    jobs = read_jobs(jobs_file, out_dir, defaults)
    plans, taken = {}, {}
    for job in jobs:
        if job.status != "pending":
            continue
        key = os.path.normcase(os.path.abspath(job.output))
        if key in taken:
            job.status, job.detail = "failed", f"its output {job.output.name} is also job {taken[key]}'s"
            continue
        taken[key] = job.number
        if job.output.exists() and not overwrite:
            job.status, job.detail = "skipped", "output exists (--overwrite redoes it)"
            continue
        try:
            values = dict(job.values)
            plans[job.number] = prepare_edit(values.pop("input"), job.instruction, str(job.output), **values)
        except EveditError as exc:
            job.status, job.detail = "failed", str(exc)
        except TypeError as exc:  # an option of the wrong kind that EditOptions cannot take
            job.status, job.detail = "failed", f"bad option ({exc})"
    if plans:
        clock = time.perf_counter()  # the load a separate run pays: torch, the models' code, weights
        torch_device = check_device(device)
        from .pipeline import EditPipeline

        with warnings_as_lines():
            pipe = EditPipeline.from_pretrained(model or "shapeworld", torch_device)
        echo(f"model: {model or 'shapeworld'} loaded in {time.perf_counter() - clock:.2f} s (imports included)")
        _run(pipe, jobs, plans, quiet, tqdm)
    echo(summary_table(jobs))
    failed = [job for job in jobs if job.status == "failed"]
    if failed:
        names = ", ".join(str(job.number) for job in failed)
        raise EveditError(f"{len(failed)} of {len(jobs)} jobs failed (job {names}; see the table above).")
    return jobs


def _run(pipe, jobs: list[Job], plans: dict, quiet: bool, tqdm) -> None:
    from .command import execute, warnings_as_lines

    with tqdm(total=len(plans), disable=quiet, unit="job", desc="jobs") as bar:
        for job in jobs:
            plan = plans.pop(job.number, None)
            if plan is None:
                continue
            clock, lines = time.perf_counter(), []
            try:
                with warnings_as_lines():
                    summary = execute(pipe, plan, quiet=True, echo=lines.append)
                job.status = "done"
                job.detail = f"{summary['frames']} frames" + (f", sound {summary['sound']}" if summary["sound"] else "")
            except EveditError as exc:
                job.status, job.detail = "failed", str(exc)
            except Exception as exc:  # noqa: BLE001 - one job's failure must not stop the others
                job.status, job.detail = "failed", f"{type(exc).__name__}: {exc}"
            job.seconds = time.perf_counter() - clock
            bar.update(1)


def summary_table(jobs: list[Job]) -> str:
    """One row per job: number, status, seconds, input, output, detail."""
    rows = [("job", "status", "time", "input", "output", "detail")]
    for job in jobs:
        rows.append((str(job.number), job.status, f"{job.seconds:.1f} s" if job.seconds else "-",
                     job.input or "-", job.output.name if job.output else "-", job.detail))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row[:5], widths)) + "  " + row[5]
             for row in rows]
    counts = {s: sum(job.status == s for job in jobs) for s in ("done", "skipped", "failed")}
    lines.append(f"jobs: {counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed")
    return "\n".join(line.rstrip() for line in lines)
