"""The web app's work: session folders, loaded models, cancellable edits through the real pipeline.

- :class:`Sessions`: one temporary folder per session under the app's root folder (uploads are
  unpacked and outputs written there), removed when the session ends and, with the root, when the
  app closes; a request that fails removes its own folder at once.
- :class:`Models`: :class:`~evedit.editing.EditPipeline` objects loaded once per model name.
- Cancelling: the pipeline counts its denoiser steps on a ``tqdm`` bar (which ``gr.Progress``
  tracks for the page's progress bar); :func:`install_cancel_hook` makes that bar's ``update``
  raise :class:`EditCancelled` when the running edit's cancel flag is set, so an edit stops
  between two steps. Only bars created inside :func:`cancellable` look at a flag.
"""

from __future__ import annotations

import contextvars
import shutil
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

import tqdm.std

from ..errors import EveditError

_CANCEL: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar("evedit_ui_cancel", default=None)
_HOOK_LOCK = threading.Lock()


class EditCancelled(EveditError):
    """The user pressed Cancel; the edit stopped between two steps."""


def install_cancel_hook() -> None:
    """Wrap ``tqdm``'s ``update`` (once) with a check of the running edit's cancel flag.

    Gradio's ``track_tqdm`` keeps the original ``update`` as ``__update__orig__`` and calls it
    from its own patch (re-applied for every event), so the check wraps that original when it
    exists; otherwise it wraps ``update`` and gradio later keeps the wrapped one as the original.
    """
    cls = tqdm.std.tqdm
    with _HOOK_LOCK:
        name = "__update__orig__" if hasattr(cls, "__update__orig__") else "update"
        original = getattr(cls, name)
        if getattr(original, "_evedit_cancel_hook", False):
            return

        def update(self, n=1):
            flag = _CANCEL.get()
            if flag is not None and flag.is_set():
                raise EditCancelled("The edit was cancelled.")
            return original(self, n)

        update._evedit_cancel_hook = True
        setattr(cls, name, update)


@contextmanager
def cancellable(flag: threading.Event):
    """Run the body with ``flag`` as the cancel flag that step updates check."""
    install_cancel_hook()
    token = _CANCEL.set(flag)
    try:
        yield
    finally:
        _CANCEL.reset(token)


def check_cancelled(flag: threading.Event) -> None:
    """Raise :class:`EditCancelled` between stages when ``flag`` is set."""
    if flag.is_set():
        raise EditCancelled("The edit was cancelled.")


class Sessions:
    """Per-session temporary folders and cancel flags under one root folder."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._lock = threading.Lock()
        self._flags: dict[str, threading.Event] = {}
        self._last: dict[str, Path] = {}

    def folder(self, session: str) -> Path:
        """The session's folder (created on first use)."""
        safe = "".join(c for c in str(session) if c.isalnum() or c in "-_")[:64] or "anonymous"
        path = self.root / "sessions" / safe
        path.mkdir(parents=True, exist_ok=True)
        return path

    def new_request(self, session: str) -> Path:
        """A fresh folder for one request; the session's previous request folder is removed."""
        with self._lock:
            previous = self._last.pop(session, None)
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)
        path = Path(tempfile.mkdtemp(prefix="edit-", dir=self.folder(session)))
        with self._lock:
            self._last[session] = path
        return path

    def drop_request(self, session: str, path: Path) -> None:
        """Remove a failed request's folder."""
        shutil.rmtree(path, ignore_errors=True)
        with self._lock:
            if self._last.get(session) == path:
                self._last.pop(session)

    def flag(self, session: str) -> threading.Event:
        """The session's cancel flag."""
        with self._lock:
            return self._flags.setdefault(session, threading.Event())

    def end(self, session: str) -> None:
        """The session is over: remove its folder and forget it."""
        with self._lock:
            self._flags.pop(session, None)
            self._last.pop(session, None)
        shutil.rmtree(self.root / "sessions" / str(session), ignore_errors=True)

    def close(self) -> None:
        """Remove the root folder and everything in it."""
        shutil.rmtree(self.root, ignore_errors=True)


class Models:
    """Edit pipelines, loaded once per model name (a folder or a preset) and kept."""

    def __init__(self, device: str = "auto", keep: int = 2):
        self.device, self.keep = device, keep
        self._lock = threading.Lock()
        self._pipes: dict[str, object] = {}

    def get(self, name: str):
        """The :class:`~evedit.editing.EditPipeline` of ``name``; a model that does not load is an error."""
        from ..editing import EditPipeline

        name = (name or "shapeworld").strip() or "shapeworld"
        with self._lock:
            if name in self._pipes:
                return self._pipes[name]
            try:
                pipe = EditPipeline.from_pretrained(name, self.device)
            except EveditError:
                raise
            except Exception as exc:  # a folder that is not a model: one sentence, not a traceback
                raise EveditError(f"The model '{name}' does not load ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0] if str(exc) else 'no details'}).") from exc
            while len(self._pipes) >= self.keep:
                self._pipes.pop(next(iter(self._pipes)))
            self._pipes[name] = pipe
            return pipe
