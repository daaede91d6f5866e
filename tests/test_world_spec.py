"""A model folder records the ShapeWorld its parts were trained in, and what reads it renders that world."""

import json

import yaml

from evedit.cli import main
from evedit.models import ModelSpec
from evedit.models import folder_spec
from evedit.training.store_build import build_store, source_dataset
from evedit.world import WorldConfig
from test_store import parts, vae  # noqa: F401  (module fixtures)

WORLD = {"small_px": 20.0, "large_px": 24.0}


def test_model_spec_round_trips_its_world_and_old_manifests_mean_the_preset():
    spec = ModelSpec.from_dict(json.loads(json.dumps(ModelSpec(world=WORLD).to_dict())))
    assert spec.world == WORLD
    config = spec.world_config(frames=2)
    assert (config.small_px, config.large_px, config.frames) == (20.0, 24.0, 2)
    old = {k: v for k, v in ModelSpec().to_dict().items() if k != "world"}  # a manifest from before
    assert ModelSpec.from_dict(old).world == {} and ModelSpec.from_dict(old).world_config() == WorldConfig()


def test_benchmark_items_and_store_builds_follow_the_model_folders_world(tmp_path):
    from evedit.eval.shapeworld import ShapeWorldBenchmark, model_world

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "evedit_model.json").write_text(json.dumps({"spec": ModelSpec(world=WORLD).to_dict()}))
    assert model_world(folder) == WorldConfig(**WORLD) and folder_spec(folder).world == WORLD
    assert model_world(tmp_path) == WorldConfig() and folder_spec(tmp_path).world == {}
    item = ShapeWorldBenchmark(per_split=1, config=model_world(folder)).items(1)[0]
    assert item.meta["config"].small_px == 20.0


def test_a_stage_trained_from_a_store_records_its_world_and_validates_in_it(parts, vae, minilm, tmp_path):  # noqa: F811
    from evedit.training.stages.edit_adapter import EditAdapterStage

    data = source_dataset("edit", "shapeworld", 4, frames=2, settings=WORLD)
    build_store("edit", data, vae, minilm, tmp_path / "store", shard_items=3, batch_size=2, progress=False,
                world=WORLD)
    recipe = yaml.safe_load(open("configs/tiny/edit-adapter.yaml"))
    recipe["stage"].update(parts)
    recipe["stage"]["data"] = {"kind": "store", "path": str(tmp_path / "store")}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["train", "edit-adapter", "--config", str(path), "--out", str(tmp_path / "run")]) == 0
    summary = json.loads((tmp_path / "run" / "export" / "train_summary.json").read_text())
    assert summary["world"] == WORLD
    stage = EditAdapterStage.__new__(EditAdapterStage)  # only its data choice: no parts loaded
    stage.config = type("C", (), {"data": recipe["stage"]["data"], "train_length": 4, "eval_items": 1})()
    val = stage.dataset("val")
    assert val.config.small_px == 20.0 and stage.world_settings == WORLD


def test_alignment_renders_the_teachers_world():
    from types import SimpleNamespace

    from evedit.training.fdd import FDDConfig
    from evedit.training.fdd.run import alignment_data
    from test_fdd import TINY

    cfg = FDDConfig(**TINY)
    data = alignment_data(cfg, SimpleNamespace(spec=ModelSpec(world=WORLD)))
    assert (data.config.small_px, data.config.frames) == (20.0, 2)
    assert alignment_data(cfg, None).config == WorldConfig(frames=2)
