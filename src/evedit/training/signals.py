"""Ctrl-C handling of the training loop: the first one asks to stop after the step, the second stops.

Data-loader workers ignore SIGINT (:func:`ignore_sigint`, their ``worker_init_fn``): Ctrl-C is the
main process's to handle, so a worker never dies mid-batch with a traceback.
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager


def ignore_sigint(_worker_id: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def sigint_to_flag(trainer):
    """First Ctrl-C sets ``trainer.stop_requested`` (finish the step, save, stop); a second one
    raises KeyboardInterrupt at once (the trainer still saves). Outside the main thread, a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if trainer.stop_requested:
            raise KeyboardInterrupt
        trainer.stop_requested = True
        trainer.bar.write("Stopping after this step (Ctrl-C again to stop at once)...", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
