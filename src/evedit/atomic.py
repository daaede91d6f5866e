"""Atomic folder writes: build a folder beside its destination, then rename it into place."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable


def replace_folder(target: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a fresh sibling folder, then swap it in for ``target``.

    On any failure (Ctrl-C included) the temporary folder is removed and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        write(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
