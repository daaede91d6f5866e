"""Every recipe in configs/ resolves into its stage's typed config: a typo or a removed option fails
here, not after the recipe's first minutes of loading parts and stores."""

from pathlib import Path

import pytest
import yaml

from evedit.training.config import load_config, structured
from evedit.training.fdd.entry import load_fdd_config
from evedit.training.stages import (
    STAGES, ClipStageConfig, CodecConfig, EditAdapterConfig, LoRAStageConfig, T2IConfig,
    TaskClassifierStageConfig, VideoAdapterConfig,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
STAGE_CONFIGS = {"codec": CodecConfig, "t2i": T2IConfig, "edit-adapter": EditAdapterConfig,
                 "video-adapter": VideoAdapterConfig, "clip": ClipStageConfig,
                 "task-classifier": TaskClassifierStageConfig, "style-lora": LoRAStageConfig,
                 "subject-lora": LoRAStageConfig}
RECIPES = sorted(CONFIGS.glob("*.yaml")) + sorted((CONFIGS / "tiny").glob("*.yaml"))


def test_every_stage_has_a_config_class_here():
    assert set(STAGE_CONFIGS) == set(STAGES)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_the_recipe_resolves(path):
    name = yaml.safe_load(path.read_text()).get("stage_name")
    if name is None:  # an FDD recipe (flat FDDConfig fields)
        assert path.stem.startswith("align"), f"{path.name} names no stage"
        load_fdd_config(path)
        return
    _, stage = load_config(path, name)
    structured(STAGE_CONFIGS[name], stage, f"stage section of {path.name}")
