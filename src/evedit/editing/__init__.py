"""Instruction-based video editing: the pipeline, the editors and long-video windows.

``EditPipeline.from_pretrained(folder_or_preset)(video, instruction, ...) -> EditResult``; the
``evedit edit`` command is a thin layer over it (:mod:`evedit.editing.command`).
"""

from .editors import EDITOR_FUNCTIONS, edit_first_frame, eve, per_frame, plug_and_play, sdedit
from .options import DEFAULT_GUIDANCE, DEFAULT_STEPS, EDITORS, EditOptions
from .pipeline import EditPipeline, EditResult
from .windows import Span, plan_windows

__all__ = [
    "EditPipeline", "EditResult", "EditOptions", "EDITORS", "DEFAULT_STEPS", "DEFAULT_GUIDANCE",
    "EDITOR_FUNCTIONS", "eve", "plug_and_play", "per_frame", "sdedit", "edit_first_frame",
    "plan_windows", "Span",
]
