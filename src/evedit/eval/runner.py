"""Run editors over a benchmark's items, score every output, and keep going where a run stopped.

The out folder holds ``run.json`` (the settings; a folder is resumed only with the same ones),
``items.jsonl`` (one record per scored (editor, item), appended and flushed as soon as it is
scored, so an interrupted run loses at most the item in flight) and ``videos/<editor>/<key>``
(each edited video, in the outputs layout of :mod:`.items`, so another run can rescore it with
``--outputs``). Items already in ``items.jsonl`` are skipped.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..errors import EveditError
from .editors import FolderEditor, run_editor
from .items import Item, save_output

RECORDS = "items.jsonl"
SETTINGS = "run.json"


@dataclass
class RunResult:
    """What a run produced: all records of the requested (editor, item) pairs, and the outputs kept in memory."""

    records: list[dict]
    outputs: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)


def read_records(path: Path) -> list[dict]:
    """Records of a JSONL file; a torn last line (a run killed mid-write) is ignored."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def check_settings(out: Path, settings: dict) -> None:
    """Write ``run.json``, or check that a resumed folder was made with the same settings."""
    path = out / SETTINGS
    if path.is_file():
        old = json.loads(path.read_text())
        changed = [k for k in settings if k in old and old[k] != settings[k]]
        if changed:
            raise EveditError(f"'{out}' holds a run with another {changed[0]} ({old[changed[0]]!r}, now "
                              f"{settings[changed[0]]!r}); use a new --out folder.")
        settings = {**old, **settings}
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=2) + "\n")


def _clean(value):
    """JSON-safe: NaN / inf and numpy scalars become None / floats."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def run(items: Sequence[Item], editors: dict[str, object], scorer, out: str | Path, *, seed: int = 0,
        save_videos: bool = True, video_ext: str = ".png", keep: Iterable[str] = (), workers: int = 1,
        progress: bool = True) -> RunResult:
    """Edit and score every (editor, item) not yet in ``out/items.jsonl``.

    ``keep``: keys whose outputs stay in memory (for sample grids). Editing seed: ``seed + item.index``.
    ``workers`` > 1 edits in that many spawned processes, one torch thread each (on a busy 2-core
    machine two threads in one process can run several times slower than one:
    benchmarks/results/train.md); scoring and writing stay here, in item order.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / RECORDS
    keys = {it.key for it in items}
    done = {(r["editor"], r["key"]) for r in read_records(path) if r.get("key") in keys}
    todo = [(it, name) for it in items for name in editors if (name, it.key) not in done]
    keep = set(keep)
    result = RunResult([])
    bar = tqdm(total=len(items) * len(editors), initial=len(items) * len(editors) - len(todo), unit="edit",
               desc="eval", disable=not progress, dynamic_ncols=True)
    edits = _parallel_edits(todo, editors, seed, workers) if workers > 1 and todo else _edits(todo, editors, seed)
    with open(path, "a", encoding="utf-8") as fh:
        for item, name, frames, edit_s in edits:
            bar.set_postfix_str(f"{name} {item.key}", refresh=False)
            record = _record(item, name, frames, edit_s, scorer, seed)
            if save_videos and not isinstance(editors[name], FolderEditor):  # the video first: a record
                save_output(out / "videos" / name, item.key, frames, video_ext)  # always has its video
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            if item.key in keep:
                result.outputs[(name, item.key)] = frames
            bar.update(1)
    bar.close()
    wanted = set(editors)
    result.records = [r for r in read_records(path) if r.get("key") in keys and r.get("editor") in wanted]
    return result


def _edit(item: Item, name: str, editor, seed: int) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    frames = run_editor(editor, item, item.load(), seed + item.index)
    return frames, time.perf_counter() - t0


def _edits(todo, editors, seed: int):
    """(item, editor name, frames, seconds) in order, edited here."""
    for item, name in todo:
        yield (item, name, *_edit(item, name, editors[name], seed))


_WORKER_EDITORS: dict[str, object] = {}


def _init_worker(editors: dict[str, object]) -> None:
    import torch

    torch.set_num_threads(1)
    _WORKER_EDITORS.update(editors)


def _worker_edit(item: Item, name: str, seed: int) -> tuple[np.ndarray, float]:
    return _edit(item, name, _WORKER_EDITORS[name], seed)


def _parallel_edits(todo, editors, seed: int, workers: int):
    """As :func:`_edits`, edited by ``workers`` spawned processes; results in submission order."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"), initializer=_init_worker,
                               initargs=(editors,))
    try:
        futures = [(item, name, pool.submit(_worker_edit, item, name, seed)) for item, name in todo]
        for item, name, fut in futures:
            yield (item, name, *fut.result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _record(item: Item, name: str, frames: np.ndarray, edit_s: float, scorer, seed: int) -> dict:
    """Score one edited item; its JSONL record."""
    t0 = time.perf_counter()
    scores = scorer.score(item, item.load(), frames)
    return {"editor": name, "key": item.key, "task": item.task, "group": item.group,
            "instruction": item.instruction, "output_caption": item.output_caption,
            "seed": seed + item.index, **{k: _clean(v) for k, v in scores.items()},
            "edit_s": round(edit_s, 4), "score_s": round(time.perf_counter() - t0, 4)}


def _mean(values: list) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def aggregate(records: list[dict], metrics: Sequence[str], editors: Sequence[str]) -> dict:
    """Per editor: the mean of each metric over items, per task, per group, and the item count."""
    out = {}
    for name in editors:
        rows = [r for r in records if r["editor"] == name]
        entry = {"n": len(rows), "metrics": {m: _mean([r.get(m) for r in rows]) for m in metrics}}
        for by, field_ in (("per_task", "task"), ("per_group", "group")):
            groups: dict[str, list[dict]] = {}
            for r in rows:
                groups.setdefault(r.get(field_) or "", []).append(r)
            entry[by] = {g: {m: _mean([r.get(m) for r in rs]) for m in metrics} for g, rs in groups.items()}
        entry["edit_s"] = _mean([r.get("edit_s") for r in rows])
        entry["score_s"] = _mean([r.get("score_s") for r in rows])
        out[name] = entry
    return out
