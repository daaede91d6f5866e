"""What resuming relies on, shared by ``evedit train`` and ``evedit align``.

Every checkpoint folder ends with ``manifest.json``: the size and sha256 of each of its files,
written last (atomically) just before the folder is renamed into place. :func:`load_newest_intact`
verifies the newest checkpoint against it and, when a file is missing, truncated or changed, falls
back to the newest intact one, saying so in one sentence per damaged checkpoint; with none left it
raises one :class:`~evedit.errors.EveditError` sentence (never a traceback). Checkpoints made before manifests
existed (no ``format`` in their ``state.json``) are resumed unverified, and any error while loading
one also falls back. A checkpoint whose ``state.json`` records the format but has no manifest was
never finished, and counts as damaged.

:func:`trim_metrics` drops the lines a resumed run is about to log again, so ``metrics.jsonl``
never holds a step twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Callable, TypeVar

from ..errors import EveditError
from .checkpoint import FORMAT, CheckpointMismatch, list_checkpoints

MANIFEST = "manifest.json"
T = TypeVar("T")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path) -> Path:
    """Record the size and sha256 of every file in ``folder`` (sub-folders included), atomically."""
    folder = Path(folder)
    files = {p.relative_to(folder).as_posix(): {"size": p.stat().st_size, "sha256": sha256(p)}
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}
    part = folder / f".{MANIFEST}.part"
    with open(part, "w", encoding="utf-8") as handle:
        json.dump({"format": FORMAT, "files": files}, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(part, folder / MANIFEST)
    return folder / MANIFEST


def _state_format(folder: Path) -> int | None:
    """``state.json``'s format (None for checkpoints made before manifests, or unreadable)."""
    try:
        return int(json.loads((folder / "state.json").read_text(encoding="utf-8")).get("format", 1))
    except (OSError, ValueError, AttributeError, TypeError):
        return None


def verify(folder: Path) -> str | None:
    """What is wrong with checkpoint ``folder`` (a clause naming the bad file), or None if intact.

    A checkpoint without a manifest made before manifests existed is not verified (None)."""
    folder = Path(folder)
    manifest = folder / MANIFEST
    if not manifest.is_file():
        if not (folder / "state.json").is_file():
            return "its 'state.json' is missing"
        fmt = _state_format(folder)
        if fmt is None:
            return "its 'state.json' is unreadable"
        return f"its '{MANIFEST}' is missing (the checkpoint was never finished)" if fmt >= FORMAT else None
    try:
        entries = json.loads(manifest.read_text(encoding="utf-8"))["files"]
        expected = {str(name): (int(e["size"]), str(e["sha256"])) for name, e in entries.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return f"its '{MANIFEST}' is unreadable"
    for name, (size, digest) in expected.items():
        path = folder / name
        if not path.is_file():
            return f"its file '{name}' is missing"
        actual = path.stat().st_size
        if actual != size:
            how = "truncated" if actual < size else "longer than recorded"
            return f"its file '{name}' is {how} ({actual} of {size} bytes)"
        if sha256(path) != digest:
            return f"its file '{name}' does not match its recorded sha256 (bytes were changed)"
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    line = line if len(line) <= 160 else line[:157] + "..."
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


def warn(message: str) -> None:
    print(f"Warning: {message}", file=sys.stderr, flush=True)


def load_newest_intact(root: Path, load: Callable[[Path], T],
                       say: Callable[[str], None] | None = warn) -> tuple[Path, T]:
    """Verify, then ``load`` the newest checkpoint under ``root``; fall back past damaged ones.

    Once one loads, each damaged newer one is reported by ``say`` in one sentence naming it and its
    bad file. :class:`CheckpointMismatch` (a checkpoint of another run) propagates; any other error
    while loading counts as damage. With none intact, raises one :class:`EveditError` sentence."""
    found = list_checkpoints(root)
    if not found:
        raise EveditError(f"Nothing to resume: '{root}' holds no checkpoint.")
    damaged: list[tuple[Path, str]] = []
    for folder in reversed(found):
        problem = verify(folder)
        if problem is None:
            try:
                loaded = load(folder)
            except CheckpointMismatch:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure to load is damage: fall back
                problem = f"it cannot be loaded ({_first_line(exc)})"
            else:
                for bad, why in damaged if say is not None else ():
                    say(f"Checkpoint '{bad}' is damaged ({why}), so training resumes from '{folder}'.")
                return folder, loaded
        damaged.append((folder, problem))
    newest, why = damaged[0]
    raise EveditError(f"No intact checkpoint to resume in '{root}': the newest, '{newest}', is damaged ({why})"
                      + (f" and so are the {len(damaged) - 1} older ones." if len(damaged) > 1 else "."))


def trim_metrics(path: Path, step: int) -> None:
    """Drop the records of ``metrics.jsonl`` logged after ``step`` (a resume re-logs them)."""
    path = Path(path)
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record_step = json.loads(line).get("step")
        except (ValueError, AttributeError):
            continue  # a line cut by a killed run
        if not isinstance(record_step, (int, float)) or record_step <= step:
            kept.append(line)
    part = path.with_name(f".{path.name}.part")
    part.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
    os.replace(part, path)
