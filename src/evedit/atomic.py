"""Atomic writes: build a file or folder beside its destination, then rename it into place.

Temporary names are recognisable: ``.<name>.<pid>.<12 hex>.tmp<suffix>`` beside the target
(``<suffix>`` is the target's extension, or ``.old`` for a folder moved aside). A run killed
with SIGKILL (or a power cut) can leave one behind; :func:`remove_stale_temps` deletes those of
the same target whose process is gone, and every atomic write calls it first, so the next run that
writes to the same place cleans up. Temporary names of live processes are never touched (two runs
writing the same path do not delete each other's work), and a moved-aside ``.old`` folder is kept
while the target is missing (it then holds the only copy of the previous output).
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Callable

_TEMP = r"\.(?:(?P<pid>\d+)\.)?[0-9a-f]{12}\.tmp(?P<suffix>\.[A-Za-z0-9]+)?"


def temp_sibling(target: str | Path, suffix: str = "") -> Path:
    """An unused hidden name beside ``target``: ``.<name>.<pid>.<12 hex>.tmp<suffix>``."""
    target = Path(target)
    return target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp{suffix}")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # exists (another user's) or cannot tell: keep it
    return True


def stale_temps(target: str | Path) -> list[Path]:
    """Temporary siblings of ``target`` left by dead processes (or by versions without a pid)."""
    target = Path(target)
    pattern = re.compile(re.escape("." + target.name) + _TEMP + r"\Z")
    try:
        names = os.listdir(target.parent)
    except OSError:
        return []
    stale = []
    for name in names:
        match = pattern.match(name)
        if match is None or (match.group("pid") and _alive(int(match.group("pid")))):
            continue
        if match.group("suffix") == ".old" and not os.path.lexists(target):
            continue  # a moved-aside previous output whose replacement never arrived: keep it
        stale.append(target.parent / name)
    return stale


def remove_stale_temps(target: str | Path) -> list[Path]:
    """Delete :func:`stale_temps` of ``target``; returns what was removed (errors are ignored)."""
    removed = []
    for path in stale_temps(target):
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
        except OSError:
            pass
    return removed


def replace_folder(target: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a fresh sibling folder, then swap it in for ``target``.

    On any failure (Ctrl-C and SIGTERM included) the temporary folder is removed and ``target`` is
    untouched; stale temporary folders of killed runs for the same target are removed first.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    tmp = temp_sibling(target)
    os.mkdir(tmp)
    try:
        write(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
