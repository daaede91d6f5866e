"""The training stages, by name: ``evedit train STAGE`` looks them up in :data:`STAGES`.

Each entry is a class implementing :class:`~evedit.training.stage.Stage` with a classmethod
``from_config(dict)`` building it from the recipe's ``stage:`` section, and (for the resolved
config saved with checkpoints) a ``config`` attribute holding its dataclass config.
"""

from __future__ import annotations

from ...errors import EveditError
from .codec import CodecConfig, CodecStage
from .edit_adapter import EditAdapterConfig, EditAdapterStage
from .lora import LoRAStageConfig, StyleLoRAStage, SubjectLoRAStage
from .t2i import T2IConfig, T2IStage
from .video_adapter import VideoAdapterConfig, VideoAdapterStage
from .clip import ClipStage, ClipStageConfig
from .task_classifier import TaskClassifierStage, TaskClassifierStageConfig

STAGES: dict[str, type] = {
    "codec": CodecStage,
    "t2i": T2IStage,
    "edit-adapter": EditAdapterStage,
    "video-adapter": VideoAdapterStage,
    "clip": ClipStage,
    "task-classifier": TaskClassifierStage,
    "style-lora": StyleLoRAStage,
    "subject-lora": SubjectLoRAStage,
}


def check_stage_name(name: str) -> None:
    if name not in STAGES:
        raise EveditError(f"Unknown stage '{name}'; the stages are {', '.join(STAGES)}.")


def build_stage(name: str, stage_cfg: dict | None = None):
    """The stage ``name`` built from its config section (a plain dict; defaults fill the rest)."""
    check_stage_name(name)
    return STAGES[name].from_config(dict(stage_cfg or {}))


__all__ = ["LoRAStageConfig", "StyleLoRAStage", "SubjectLoRAStage", "STAGES", "build_stage", "check_stage_name", "CodecConfig", "CodecStage", "T2IConfig", "T2IStage",
           "EditAdapterConfig", "EditAdapterStage", "VideoAdapterConfig", "VideoAdapterStage",
           "ClipStage", "ClipStageConfig", "TaskClassifierStage", "TaskClassifierStageConfig"]
