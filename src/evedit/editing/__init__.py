"""Instruction-based video editing: the pipeline, the editors and long-video windows.

``EditPipeline.from_pretrained(folder_or_preset)(video, instruction, ...) -> EditResult``; the
``evedit edit`` command is a thin layer over it (:mod:`evedit.editing.command`).

Names are imported on first use, so ``evedit edit`` can check its options and paths before torch
and the models are imported.
"""

from importlib import import_module

_WHERE = {
    "EditPipeline": "pipeline", "EditResult": "pipeline", "EditOptions": "options", "EDITORS": "options",
    "DEFAULT_STEPS": "options", "DEFAULT_GUIDANCE": "options", "EDITOR_FUNCTIONS": "editors",
    "eve": "editors", "plug_and_play": "editors", "per_frame": "editors", "sdedit": "editors",
    "edit_first_frame": "editors", "plan_windows": "windows", "Span": "windows",
}

__all__ = list(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value
