"""FSDP (``train.shard: fsdp``) on CPU processes over gloo: the trained modules' blocks sharded, the
same weights as one process at the same global batch, whole tensors in checkpoints and the export.

Started as the README says: ``accelerate launch --cpu --num_processes 2 $(which evedit) train t2i``
with a recipe asking for ``shard: fsdp`` (accelerate's FSDP configs need GPUs).
"""

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from test_multiprocess import TINY, assert_close, audited_launch, cli, records, t2i_recipe, weights

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread


def sharded_recipe(folder: Path, vae: Path) -> Path:
    path = folder / "t2i-fsdp.yaml"
    path.write_text(t2i_recipe(folder, vae, 1).read_text().replace("  grad_accum: 1", "  grad_accum: 1\n  shard: fsdp"))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("fsdp")
    assert cli("codec", "--config", Path(__file__).resolve().parents[1] / "configs" / "tiny" / "codec.yaml",
               "--out", root / "codec") == 0
    vae = root / "codec" / "export" / "vae"
    out2, audit = root / "two", root / "audit"
    done = audited_launch(root, ["train", "t2i", "--config", sharded_recipe(root, vae)], out2, audit)
    out1 = root / "one"
    assert cli("t2i", "--config", t2i_recipe(root, vae, 2), "--out", out1) == 0
    return {"root": root, "vae": vae, "two": out2, "one": out1, "audit": audit, "stderr": done.stderr}


def test_a_sharded_run_trains_as_one_process_at_the_same_global_batch(runs):
    two, one = runs["two"], runs["one"]
    assert "FSDP: 18 blocks sharded (BasicTransformerBlock, ResnetBlock2D)." in runs["stderr"]
    for step in (1, 2, 3):
        for key in ("loss", "grad_norm"):
            assert records(two)[step][key] == pytest.approx(records(one)[step][key], rel=1e-5, abs=1e-7), key
    for step in (2, 3):  # whole tensors, under the same keys as an unsharded run's
        for name in ("trainable", "ema", "optimizer"):
            assert_close(weights(two, step, name), weights(one, step, name))
    assert not torch.equal(weights(two, 3)["unet.down_blocks.0.resnets.0.conv1.weight"],
                           weights(two, 2)["unet.down_blocks.0.resnets.0.conv1.weight"])
    exported = [load_file(str(run / "export" / "unet" / "diffusion_pytorch_model.safetensors")) for run in (two, one)]
    assert_close(*exported)


def test_only_the_main_process_writes_files_when_sharded(runs):
    reports = [json.loads(p.read_text()) for p in runs["audit"].glob("*.json")]
    assert {"0", "1"} <= {r["rank"] for r in reports}
    assert {r["rank"] for r in reports if r["events"]} == {"0"}
    written = {Path(p).name for r in reports for _, p in r["events"]}
    assert {"metrics.jsonl", "manifest.json", "train_summary.json"} <= written


def test_a_sharded_checkpoint_resumes_in_one_unsharded_process(runs):
    resumed = runs["root"] / "resumed"
    shutil.copytree(runs["two"], resumed)
    shutil.rmtree(resumed / "checkpoints" / "step_000003")
    shutil.rmtree(resumed / "export")
    assert cli("t2i", "--config", t2i_recipe(runs["root"], runs["vae"], 2), "--out", resumed, "--resume") == 0
    assert records(resumed)[3]["loss"] == pytest.approx(records(runs["two"])[3]["loss"], rel=1e-5, abs=1e-7)
    assert_close(weights(resumed, 3), weights(runs["two"], 3))


def test_shard_settings_come_from_accelerates_fsdp_plugin_or_the_recipe(monkeypatch):
    from accelerate import FullyShardedDataParallelPlugin
    from accelerate.utils import DistributedType

    from evedit.training.sharding import BLOCKS, shard_settings

    monkeypatch.setenv("FSDP_TRANSFORMER_CLS_TO_WRAP", "BasicTransformerBlock,ResnetBlock2D")
    monkeypatch.setenv("FSDP_RESHARD_AFTER_FORWARD", "false")
    monkeypatch.setenv("FSDP_AUTO_WRAP_POLICY", "TRANSFORMER_BASED_WRAP")
    plugin = FullyShardedDataParallelPlugin(fsdp_version=2)
    acc = SimpleNamespace(num_processes=8, distributed_type=DistributedType.FSDP, state=SimpleNamespace(fsdp_plugin=plugin))
    settings = shard_settings(acc, "none")
    assert settings.blocks == ("BasicTransformerBlock", "ResnetBlock2D") and settings.reshard_after_forward is False
    ddp = SimpleNamespace(num_processes=2, distributed_type=DistributedType.MULTI_CPU)
    assert shard_settings(ddp, "none") is None and shard_settings(ddp, "fsdp").blocks == BLOCKS
    assert shard_settings(SimpleNamespace(num_processes=1, distributed_type=DistributedType.NO), "fsdp") is None


def test_a_bad_shard_setting_is_one_sentence(tmp_path):
    from evedit.errors import EveditError
    from evedit.training.config import TrainConfig, check_train_config

    with pytest.raises(EveditError, match="shard must be one of none, fsdp, got 'zero3'"):
        check_train_config(TrainConfig(shard="zero3"))


def test_a_sharded_controlnet_beside_a_frozen_unet_trains_as_one_process(runs):
    """The edit adapter: its ControlNet's blocks sharded, the backbone whole and frozen on each process."""
    root, text = runs["root"], (TINY / "edit-adapter.yaml").read_text()
    text = text.replace("runs/codec/export/vae", str(runs["vae"])).replace(
        "runs/t2i/export/unet", str(runs["one"] / "export" / "unet"))
    recipes = {}
    for name, extra in (("ea-two", "  shard: fsdp"), ("ea-one", "  grad_accum: 2")):
        recipes[name] = root / f"{name}.yaml"
        recipes[name].write_text(text.replace("train:\n", f"train:\n{extra}\n", 1))
    done = audited_launch(root, ["train", "edit-adapter", "--config", recipes["ea-two"]], root / "ea-two",
                          root / "ea-audit")
    assert "FSDP: 8 blocks sharded (BasicTransformerBlock, ResnetBlock2D)." in done.stderr
    assert cli("edit-adapter", "--config", recipes["ea-one"], "--out", root / "ea-one") == 0
    two, one = weights(root / "ea-two", 2), weights(root / "ea-one", 2)
    assert_close(two, one)
    assert not torch.equal(two["controlnet.down_blocks.0.resnets.0.conv1.weight"],
                           weights(root / "ea-two", 0)["controlnet.down_blocks.0.resnets.0.conv1.weight"])
