"""Ctrl-C and SIGTERM handling of the training loops (``evedit train`` and ``evedit align``).

The first SIGINT (Ctrl-C) or SIGTERM asks to stop after the current step: the loop finishes the
step, saves a checkpoint and stops; a second one stops at once (``KeyboardInterrupt``). Exit status
(``evedit train`` and ``evedit align`` share the loop): after Ctrl-C 130; after SIGTERM
:class:`~evedit.errors.Terminated` is raised once the checkpoint is saved, so the CLI exits 143
(128 + SIGTERM), as ``evedit edit`` does.

Data-loader workers ignore both signals (:func:`ignore_sigint`, their ``worker_init_fn``): stopping
is the main process's to handle, so a worker never dies mid-batch with a traceback.
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from typing import Callable

from ..errors import Terminated

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def ignore_sigint(_worker_id: int) -> None:
    """A data-loader worker's ``worker_init_fn``: Ctrl-C and SIGTERM are the main process's."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextmanager
def stop_on_signals(owner, say: Callable[[str], None] | None = None):
    """The first SIGINT/SIGTERM sets ``owner.stop_requested`` (finish the step, save, stop); a
    second one raises KeyboardInterrupt at once. Outside the main thread, a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    say = say or _say

    def handler(signum, frame):
        owner.stop_signal = signum
        if owner.stop_requested:
            raise KeyboardInterrupt
        owner.stop_requested = True
        what = "SIGTERM received" if signum == signal.SIGTERM else "Ctrl-C"
        say(f"{what}: stopping after this step (Ctrl-C again to stop at once)...")

    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old if old is not None else signal.SIG_DFL)


def terminated(owner) -> bool:
    """The last stop signal ``owner`` received was SIGTERM (the caller then raises :class:`Terminated`)."""
    return getattr(owner, "stop_signal", None) == signal.SIGTERM


def raise_stop(owner) -> None:
    """Leave the loop after a stop signal: :class:`Terminated` for SIGTERM, else KeyboardInterrupt."""
    if terminated(owner):
        raise Terminated()
    raise KeyboardInterrupt


@contextmanager
def sigint_to_flag(trainer):
    """:func:`stop_on_signals` for the :class:`~evedit.training.loop.Trainer` (messages above its bar)."""
    with stop_on_signals(trainer, lambda text: trainer.bar.write(text, file=sys.stderr)):
        yield
