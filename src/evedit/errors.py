"""User-facing errors.

Every problem a user can cause (bad file, bad option, missing weights) is raised as an
:class:`EveditError` whose message is one clear sentence. The CLI prints that sentence and
exits non-zero, never a traceback.
"""


class EveditError(Exception):
    """A problem with the user's input or environment, described in one sentence."""


class Terminated(BaseException):
    """SIGTERM arrived: raised from the signal handler so that ``finally`` blocks and atomic writes
    clean up exactly as for Ctrl-C; the CLI then exits with status 143 (128 + SIGTERM).

    A ``BaseException`` (not a ``KeyboardInterrupt``) so that click does not turn it into
    "Aborted!" with status 1, and ``except Exception`` blocks do not swallow it."""


def raise_terminated(signum, frame) -> None:  # a signal handler
    raise Terminated()
