"""Encoded training stores: shards round-trip, foreign encoders are refused, the text cache is
exact, builds resume, and every diffusion stage (and FDD) trains two steps from a tiny store."""

from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import load_file

from evedit.cli import main
from evedit.errors import EveditError
from evedit.models.presets import SHAPEWORLD_UNET, SHAPEWORLD_VAE
from evedit.training.store import EncodedStore, open_store
from evedit.training.store_build import build_store, encode_latents, encode_shard, source_dataset


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("store-parts")
    torch.manual_seed(0)
    AutoencoderKL(**{**SHAPEWORLD_VAE, "scaling_factor": 0.5}).save_pretrained(root / "vae")
    UNet2DConditionModel(**SHAPEWORLD_UNET).save_pretrained(root / "unet")
    return {"vae_path": str(root / "vae"), "unet_path": str(root / "unet")}


@pytest.fixture(scope="module")
def vae(parts):
    from evedit.training.stages.common import load_vae

    return load_vae(parts["vae_path"])


def build(kind, vae, text, out, n=5, **kw):
    data = source_dataset(kind, "shapeworld", n, frames=2)
    return build_store(kind, data, vae, text, out, shard_items=3, batch_size=2, progress=False, **kw)


def test_an_item_read_back_is_what_was_written_and_what_the_encoders_give(vae, minilm, tmp_path):
    manifest = build("edit", vae, minilm, tmp_path / "s")
    assert manifest["items"] == 5 and len(manifest["shards"]) == 2
    store = EncodedStore(tmp_path / "s", kind="edit")
    shard = load_file(str(tmp_path / "s" / manifest["shards"][1]))  # items 3 and 4
    item = store[4]
    assert torch.equal(item["source"], shard["source"][1].float())
    t = int(shard["instruction_index"][1])
    assert torch.equal(item["instruction_states"], shard["text_states"][t].float())
    # ... and those are the frozen encoders' outputs (stored in fp16)
    raw = source_dataset("edit", "shapeworld", 5, frames=2)[4]
    mode, _ = encode_latents(vae, raw["output_image"][None], video=False)
    assert torch.allclose(item["target"], mode[0], atol=2e-3, rtol=1e-3)
    text = minilm([raw["instruction"]])
    assert torch.allclose(item["instruction_states"], text.hidden_states[0], atol=3e-3, rtol=1e-3)
    assert int(item["task"]) == raw["task"]
    assert torch.allclose(store.null_states, minilm([""]).hidden_states, atol=3e-3, rtol=1e-3)


def test_encode_shard_is_deterministic(vae, minilm):
    data = source_dataset("video", "shapeworld", 2, frames=2)
    a, b = (encode_shard("video", data, 0, 2, vae, minilm, batch_size=1) for _ in range(2))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert a["clip"].shape == (2, 4, 2, 16, 16)


def test_workers_render_the_same_store(vae, minilm, tmp_path):
    one, two = build("edit", vae, minilm, tmp_path / "a"), build("edit", vae, minilm, tmp_path / "b", workers=2)
    assert one["shards"] == two["shards"]
    for name in one["shards"]:
        a, b = load_file(str(tmp_path / "a" / name)), load_file(str(tmp_path / "b" / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_store_from_another_codec_is_refused(vae, minilm, tmp_path):
    build("image", vae, minilm, tmp_path / "s", n=2)
    other = AutoencoderKL(**{**SHAPEWORLD_VAE, "scaling_factor": 0.5})
    with pytest.raises(EveditError, match="another codec"):
        open_store({"path": str(tmp_path / "s")}, "t2i", other, minilm)
    with pytest.raises(EveditError, match="needs a 'edit' store"):
        open_store({"path": str(tmp_path / "s")}, "edit-adapter", vae, minilm)
    open_store({"path": str(tmp_path / "s")}, "t2i", vae, minilm)  # its own encoders pass


def test_an_interrupted_build_resumes_and_only_the_same_build(vae, minilm, tmp_path, monkeypatch):
    import evedit.training.store_build as sb

    calls, real = [], sb.encode_shard

    def fail_second(*args, **kw):
        calls.append(args[2])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(sb, "encode_shard", fail_second)
    with pytest.raises(KeyboardInterrupt):
        build("image", vae, minilm, tmp_path / "s")
    with pytest.raises(EveditError, match="unfinished"):
        EncodedStore(tmp_path / "s")
    with pytest.raises(EveditError, match="other settings"):
        build("image", vae, minilm, tmp_path / "s", n=4)
    monkeypatch.setattr(sb, "encode_shard", real)
    calls.clear()
    monkeypatch.setattr(sb, "encode_shard", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    build("image", vae, minilm, tmp_path / "s")
    assert calls == [3]  # only the missing second shard was encoded
    assert len(EncodedStore(tmp_path / "s")) == 5
    with pytest.raises(EveditError, match="finished store"):
        build("image", vae, minilm, tmp_path / "s")


def test_text_cache_and_real_length_give_what_the_encoder_gives(minilm):
    texts = ["make the blue circle red", "", "a small striped square on a plain green background", ""]
    uncached = minilm.encode_uncached(texts)
    minilm._cache.clear()
    first, again = minilm(texts), minilm(texts[::-1])
    assert torch.equal(first.hidden_states, uncached.hidden_states)
    assert torch.equal(first.pooled, uncached.pooled)
    assert torch.equal(again.hidden_states, uncached.hidden_states.flip(0))
    short = minilm.encode_uncached(texts, padding="longest")
    n = short.hidden_states.shape[1]
    assert n < minilm.max_length
    real = short.attention_mask.bool()
    assert torch.allclose(short.hidden_states[real], uncached.hidden_states[:, :n][real], atol=1e-5)
    assert torch.allclose(minilm.encode_pooled(texts), uncached.pooled, atol=1e-6)


@pytest.mark.parametrize("stage,kind", [("t2i", "image"), ("edit-adapter", "edit"), ("video-adapter", "video")])
def test_every_stage_trains_two_steps_from_a_tiny_store(parts, vae, minilm, tmp_path, stage, kind):
    build(kind, vae, minilm, tmp_path / "store", n=4)
    recipe = yaml.safe_load(open(f"configs/tiny/{stage}.yaml"))
    stage_parts = parts if stage != "t2i" else {"vae_path": parts["vae_path"]}
    recipe["stage"].update(stage_parts)
    recipe["stage"]["data"] = {"kind": "store", "path": str(tmp_path / "store")}
    if stage == "t2i":  # ShapeWorld's image store holds object masks: the weighted loss reads them
        recipe["stage"]["object_weight"] = 2.0
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["train", stage, "--config", str(path), "--out", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "export" / "train_summary.json").is_file()


def test_align_runs_from_a_tiny_store(minilm, tmp_path):
    from evedit.training.fdd import FDDConfig, align
    from test_fdd import TINY, world_model

    teacher = world_model(minilm)
    data = source_dataset("align", "shapeworld", 2, frames=2)
    build_store("align", data, teacher.vae, minilm, tmp_path / "store", progress=False)
    cfg = FDDConfig(**{**TINY, "sample_every": 1}, out=str(tmp_path / "run"))
    cfg = replace(cfg, data={"kind": "store", "path": str(tmp_path / "store")})
    folder = align(cfg, teacher=teacher, progress=False)
    assert Path(folder).is_dir() and list((tmp_path / "run" / "samples").glob("align_*.gif"))


def test_data_build_cli_errors_are_one_sentence(tmp_path, capsys):
    assert main(["data", "build", "pictures", "-o", str(tmp_path / "s"), "-n", "2"]) == 1
    assert "Unknown store kind 'pictures'" in capsys.readouterr().err
    assert main(["data", "build", "image", "-o", str(tmp_path / "s"), "-n", "2", "--vae", str(tmp_path)]) == 1
    assert "has no config.json" in capsys.readouterr().err
    assert main(["data", "build", "edit", "-o", str(tmp_path / "s"), "-n", "2", "--tasks", "colour"]) == 1
    assert "--tasks takes ShapeWorld task names" in capsys.readouterr().err
    assert main(["data", "build", "image", "-o", str(tmp_path / "s"), "-s", str(tmp_path), "--tasks", "color"]) == 1
    assert "does not apply to your own data" in capsys.readouterr().err
    assert main(["data", "build", "image", "-o", str(tmp_path / "s"), "-n", "2", "--object-px", "20"]) == 1
    assert "--object-px takes two diameters" in capsys.readouterr().err
    assert main(["data", "build", "image", "-o", str(tmp_path / "s"), "-n", "2", "--object-px", "30,24"]) == 1
    assert "object diameters need 3 <= small <= large" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_data_build_tasks_stores_only_those_tasks(parts, tmp_path, capsys):
    from evedit.world import TASKS

    out = tmp_path / "s"
    assert main(["data", "build", "edit", "-o", str(out), "-n", "4", "--tasks", "color, remove",
                 "--vae", parts["vae_path"], "-q"]) == 0
    store = EncodedStore(out, kind="edit")
    assert set(store.column("task").tolist()) <= {TASKS.index("color"), TASKS.index("remove")}
    assert store.manifest["source"] == "shapeworld (color, remove)"


def test_data_build_object_px_renders_and_records_that_world(parts, tmp_path):
    out = tmp_path / "s"
    assert main(["data", "build", "image", "-o", str(out), "-n", "3", "--object-px", "20,24",
                 "--vae", parts["vae_path"], "-q"]) == 0
    store = EncodedStore(out, kind="image")
    assert store.manifest["world"] == {"small_px": 20.0, "large_px": 24.0}
    data = source_dataset("image", "shapeworld", 3, settings=store.manifest["world"])
    ex, _, _ = data.example_frame(0)
    assert {o.diameter(64) for o in ex.scene.objects} <= {20, 24}
    preset = source_dataset("image", "shapeworld", 3)  # the same items in the preset world: other masks
    assert any(not torch.equal(data[i]["objects"], preset[i]["objects"]) for i in range(3))


def test_image_and_video_sources_take_tasks_too():
    from evedit.training.store_build import source_dataset

    image = source_dataset("image", "shapeworld", 6, tasks=("color", "edges"))
    video = source_dataset("video", "shapeworld", 3, frames=2, tasks=("invert",))
    assert {image.example_frame(i)[0].edit.task for i in range(6)} <= {"color", "edges"}
    assert {video.example(i).edit.task for i in range(3)} == {"invert"}


def test_min_snr_weights_follow_the_paper_for_v_prediction():
    from evedit.diffusion import NoiseSchedule
    from evedit.losses import denoising_loss, min_snr_weights

    snr = torch.tensor([0.0, 0.5, 5.0, 50.0])
    assert torch.allclose(min_snr_weights(snr, 5.0), torch.tensor([0.0, 0.5 / 1.5, 5 / 6, 5 / 51]))
    assert torch.allclose(min_snr_weights(snr[1:], 5.0, v_prediction=False), torch.tensor([1.0, 1.0, 0.1]))
    schedule = NoiseSchedule()
    t = torch.tensor([0, 500, 999])
    a = schedule.alphas_cumprod[t]
    assert torch.allclose(schedule.snr(t), a / (1 - a).clamp(min=1e-12), rtol=1e-4)
    out, target = torch.ones(2, 3), torch.zeros(2, 3)
    assert float(denoising_loss(out, target, torch.tensor([1.0, 0.0]))) == 0.5


def test_edit_region_weights_stress_what_the_edit_changes():
    from evedit.losses import denoising_loss, edit_region_weights

    source = torch.zeros(2, 4, 8, 8)
    target = source.clone()
    target[0, :, 2:4, 2:4] = 1.0  # a local edit: 4 of 64 positions
    target[1] = 0.5  # a global edit: every position
    w = edit_region_weights(source, target, 4.0)
    assert w.shape == (2, 1, 8, 8) and torch.allclose(w.flatten(1).mean(1), torch.ones(2))
    assert float(w[0, 0, 2, 2] / w[0, 0, 0, 0]) == pytest.approx(5.0) and torch.allclose(w[1], torch.ones(1, 8, 8))
    missed_edit, missed_rest = target.clone(), target.clone()
    missed_edit[0, :, 2:4, 2:4] = 0.0  # the edit not made: 4 positions wrong
    missed_rest[0, :, 6:8, 6:8] = 1.0  # 4 unchanged positions wrong by as much
    assert float(denoising_loss(missed_edit, target)) == float(denoising_loss(missed_rest, target))
    assert float(denoising_loss(missed_edit, target, w)) == pytest.approx(5 * float(denoising_loss(missed_rest, target, w)))
    on_top = edit_region_weights(source, target, 4.0, renormalise=False)  # unchanged positions keep 1
    assert float(on_top[0, 0, 0, 0]) == 1.0 and float(on_top[0, 0, 2, 2]) == pytest.approx(5.0)


def test_a_shapeworld_image_store_keeps_where_the_objects_are(vae, minilm, tmp_path):
    from evedit.world import ImageCaptionDataset, WorldConfig, visible_masks

    build("image", vae, minilm, tmp_path / "s", n=4)
    store = EncodedStore(tmp_path / "s", kind="image")
    assert store.mask_fields == ("objects",)
    data = ImageCaptionDataset("train", 4, WorldConfig(frames=2))
    for i in range(4):
        ex, f, edited = data.example_frame(i)
        scene = ex.edit.edited_scene if edited else ex.scene
        pixels = torch.from_numpy(visible_masks(scene, 2, 64)[f].any(0)).float()
        cells = pixels.view(16, 4, 16, 4).mean((1, 3))  # a latent cell: 4x4 pixels
        assert store[i]["objects"].shape == (1, 16, 16) and torch.allclose(store[i]["objects"][0], cells, atol=1e-3)
        assert 0 < float(cells.sum()) < 256  # objects, and background around them


def test_object_weight_needs_masks_and_weighs_the_object_cells(parts, vae, minilm, tmp_path):
    from safetensors.torch import save_file

    from evedit.diffusion import NoiseSchedule
    from evedit.losses import region_weights
    from evedit.training.stages.common import weighted_denoising_loss
    from evedit.training.stages.t2i import T2IStage

    region = torch.zeros(2, 1, 4, 4)
    region[0, 0, :2, :2] = 1.0
    w = region_weights(region, 4.0)
    assert torch.allclose(w.flatten(1).mean(1), torch.ones(2)) and float(w[0, 0, 0, 0] / w[0, 0, 3, 3]) == pytest.approx(5.0)
    out, target, t, schedule = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4), torch.tensor([10, 900]), NoiseSchedule()
    plain = weighted_denoising_loss(schedule, out, target, t, 0.0)
    assert torch.allclose(weighted_denoising_loss(schedule, out, target, t, 0.0, torch.ones(2, 1, 4, 4)), plain)
    assert not torch.allclose(weighted_denoising_loss(schedule, out, target, t, 0.0, w), plain)
    folder = tmp_path / "no-masks"  # a store without masks, as one built from your own images
    build("image", vae, minilm, folder, n=2)
    for shard in folder.glob("shard-*.safetensors"):
        tensors = load_file(str(shard))
        tensors.pop("objects")
        save_file(tensors, str(shard))
    stage = T2IStage.from_config({"vae_path": parts["vae_path"], "object_weight": 4.0,
                                  "data": {"kind": "store", "path": str(folder)}})
    with pytest.raises(EveditError, match="object_weight needs object masks"):
        stage.dataset("train")


def test_max_minutes_stops_training_and_exports(parts, vae, minilm, tmp_path):
    import json

    from evedit.training.run import run_training

    build("image", vae, minilm, tmp_path / "store", n=4)
    recipe = yaml.safe_load(open("configs/tiny/t2i.yaml"))
    recipe["train"]["max_steps"] = 50
    recipe["stage"].update(vae_path=parts["vae_path"], data={"kind": "store", "path": str(tmp_path / "store")},
                           snr_gamma=5.0)
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    export = run_training("t2i", tmp_path / "r.yaml", out=tmp_path / "run", max_minutes=1e-7)
    summary = json.loads((export / "train_summary.json").read_text())
    assert summary["steps"] == 1 and "val_loss" in summary["final_eval"]


def test_the_backbone_and_the_controlnet_follow_the_codec_latent_channels(tmp_path):
    from torch.utils.data import default_collate

    from evedit.training.stages.edit_adapter import EditAdapterConfig, EditAdapterStage
    from evedit.training.stages.t2i import T2IConfig, T2IStage

    AutoencoderKL(**{**SHAPEWORLD_VAE, "latent_channels": 8}).save_pretrained(tmp_path / "vae")
    stage = T2IStage(T2IConfig(vae_path=str(tmp_path / "vae")))
    assert stage.unet.config.in_channels == stage.unet.config.out_channels == 8
    data = stage.dataset("train")
    assert torch.isfinite(stage.loss(default_collate([data[0], data[1]]), torch.Generator())["loss"])
    stage.unet.save_pretrained(tmp_path / "unet")
    edit = EditAdapterStage(EditAdapterConfig(vae_path=str(tmp_path / "vae"), unet_path=str(tmp_path / "unet")))
    assert edit.adapter.controlnet.config.conditioning_channels == 8
    data = edit.dataset("train")
    assert torch.isfinite(edit.loss(default_collate([data[0], data[1]]), torch.Generator())["loss"])


def test_codec_latent_channels_and_widths_are_settable():
    from evedit.training.stages.codec import CodecConfig, CodecStage

    stage = CodecStage(CodecConfig(latent_channels=8, block_out_channels=[16, 32, 32]))
    assert stage.vae.config.latent_channels == 8
    assert tuple(stage.vae.config.block_out_channels) == (16, 32, 32)
    z = stage.vae.encode(torch.zeros(1, 3, 64, 64)).latent_dist.mode()
    assert z.shape == (1, 8, 16, 16)


def test_task_weights_draw_the_weighted_tasks_and_train_from_a_store(parts, vae, minilm, tmp_path):
    from evedit.training.data import WeightedStepSampler
    from evedit.training.stages.edit_adapter import EditAdapterConfig, EditAdapterStage
    from evedit.world import TASKS

    build("edit", vae, minilm, tmp_path / "store", n=7)
    store = EncodedStore(tmp_path / "store", kind="edit")
    assert store.column("task").tolist() == [int(store[i]["task"]) for i in range(7)]
    data = {"kind": "store", "path": str(tmp_path / "store")}
    heavy = TASKS[int(store[0]["task"])]
    stage = EditAdapterStage(EditAdapterConfig(**parts, data=data, task_weights={heavy: 1000.0}))
    assert EditAdapterStage(EditAdapterConfig(**parts, data=data)).batch_sampler(0, 0, 1, 1, 4) is None
    with pytest.raises(EveditError, match="from a store"):
        stage.batch_sampler(0, 0, 1, 1, 4)
    stage.dataset("train")
    drawn = [i for b, _ in zip(stage.batch_sampler(0, 0, 1, 1, 50), range(4)) for i in b]
    share = sum(int(store[i]["task"]) == TASKS.index(heavy) for i in drawn) / len(drawn)
    assert share > 0.9  # the other tasks' items weigh 1 against 1000
    # a pure function of the step: a resume at step 3, or two processes, draw the same items
    one = [b for b, _ in zip(WeightedStepSampler(torch.ones(7), 5, 0, batch=4), range(4))]
    assert next(iter(WeightedStepSampler(torch.ones(7), 5, 3, batch=4))) == one[3]
    two = [next(iter(WeightedStepSampler(torch.ones(7), 5, 0, rank=r, world=2, batch=2))) for r in (0, 1)]
    assert two[0] + two[1] == one[0]
    with pytest.raises(EveditError, match="task_weights"):
        EditAdapterStage(EditAdapterConfig(**parts, data=data, task_weights={"colour": 2.0}))
