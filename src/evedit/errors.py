"""User-facing errors.

Every problem a user can cause (bad file, bad option, missing weights) is raised as an
:class:`EveditError` whose message is one clear sentence. The CLI prints that sentence and
exits non-zero, never a traceback.
"""


class EveditError(Exception):
    """A problem with the user's input or environment, described in one sentence."""
