"""The training loop and the codec/t2i stages: smoke runs, exact resume, freezing, NaN, Ctrl-C."""

import hashlib
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from evedit.cli import main
from evedit.errors import EveditError
from evedit.training import TrainConfig, load_config, train
from evedit.training.checkpoint import list_checkpoints, load_tree, save_tree
from evedit.training.data import DataConfig, StepSampler, image_caption_dataset
from evedit.training.stages import STAGES
from evedit.training.stages.codec import CodecConfig, CodecStage
from evedit.training.stages.t2i import T2IConfig, T2IStage

TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny"
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"}


def cli(*args) -> int:
    try:
        return main(["train", *map(str, args)])
    except SystemExit as exc:  # typer exits 0 on success, 130 on Ctrl-C
        return exc.code


def recipe(tmp_path: Path, stage_name: str) -> Path:
    """The tiny codec recipe, renamed for a test stage."""
    path = tmp_path / f"{stage_name}.yaml"
    path.write_text((TINY / "codec.yaml").read_text().replace("stage_name: codec", f"stage_name: {stage_name}"))
    return path


def records(out: Path, split: str = "train") -> dict[int, dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r for r in map(json.loads, lines) if r["split"] == split}


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def assert_no_pickles(folder: Path) -> None:
    assert not [p for p in folder.rglob("*") if p.suffix in PICKLE_SUFFIXES]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread


@pytest.fixture(scope="module")
def codec_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "codec"
    assert cli("codec", "--config", TINY / "codec.yaml", "--out", out) == 0
    return out


def test_codec_smoke_run_through_the_cli(codec_run):
    vae = codec_run / "export" / "vae"
    assert (vae / "diffusion_pytorch_model.safetensors").is_file()
    scaling = json.loads((vae / "config.json").read_text())["scaling_factor"]
    assert scaling > 0 and scaling != 1.0  # measured from latents at export
    summary = json.loads((codec_run / "export" / "train_summary.json").read_text())
    assert summary["steps"] == 2 and "psnr" in summary["final_eval"]
    assert "max_steps: 2" in (codec_run / "export" / "config.yaml").read_text()
    ckpt = codec_run / "checkpoints" / "step_000002"
    assert {"trainable.safetensors", "ema.safetensors", "optimizer.safetensors", "optimizer.json",
            "rng_0.json", "state.json", "config.yaml"} <= {p.name for p in ckpt.iterdir()}
    assert (codec_run / "samples" / "codec_000002.png").is_file()
    assert set(records(codec_run)) == {1, 2} and "psnr" in records(codec_run, "val")[2]
    assert list((codec_run / "tensorboard").rglob("events.out.tfevents.*"))
    assert_no_pickles(codec_run)


def test_t2i_smoke_run_on_the_codec_export(codec_run, tmp_path):
    recipe = (TINY / "t2i.yaml").read_text().replace("runs/tiny/codec/export/vae", str(codec_run / "export"))
    (tmp_path / "t2i.yaml").write_text(recipe)
    out = tmp_path / "t2i"
    assert cli("t2i", "--config", tmp_path / "t2i.yaml", "--out", out) == 0
    assert (out / "export" / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert (out / "samples" / "t2i_000002.png").is_file()
    assert len((out / "samples" / "t2i_000002.txt").read_text().splitlines()) == 2
    assert "val_loss" in records(out, "val")[2]
    assert_no_pickles(out)


def test_gradient_checkpointing_trains_the_same_steps(codec_run, tmp_path, capsys):
    recipe = (TINY / "t2i.yaml").read_text().replace("runs/tiny/codec/export/vae", str(codec_run / "export"))
    (tmp_path / "plain.yaml").write_text(recipe)
    (tmp_path / "recompute.yaml").write_text(recipe.replace("train:\n", "train:\n  gradient_checkpointing: true\n"))
    for name in ("plain", "recompute"):
        assert cli("t2i", "--config", tmp_path / f"{name}.yaml", "--out", tmp_path / name) == 0
    assert "gradient checkpointing: unet" in capsys.readouterr().err
    a, b = records(tmp_path / "plain"), records(tmp_path / "recompute")
    for step in (1, 2):
        assert a[step]["loss"] == pytest.approx(b[step]["loss"], rel=1e-5)
        assert a[step]["grad_norm"] == pytest.approx(b[step]["grad_norm"], rel=1e-4)


def test_resume_continues_exactly(tmp_path):
    recipe = ["--config", TINY / "codec.yaml"]
    assert cli("codec", *recipe, "--max-steps", 4, "--out", tmp_path / "a") == 0
    assert cli("codec", *recipe, "--max-steps", 2, "--out", tmp_path / "b") == 0
    assert cli("codec", *recipe, "--max-steps", 4, "--out", tmp_path / "b", "--resume") == 0
    a, b = records(tmp_path / "a"), records(tmp_path / "b")
    for step in (3, 4):
        assert a[step]["loss"] == b[step]["loss"] and a[step]["grad_norm"] == b[step]["grad_norm"]
    last = "checkpoints/step_000004"
    for name in ("trainable.safetensors", "ema.safetensors", "optimizer.safetensors"):
        assert digest(tmp_path / "a" / last)[name] == digest(tmp_path / "b" / last)[name]
    assert records(tmp_path / "a", "val")[4] == records(tmp_path / "b", "val")[4]


def test_an_existing_run_needs_resume_and_resume_needs_a_run(codec_run, tmp_path, capsys):
    assert cli("codec", "--config", TINY / "codec.yaml", "--out", codec_run) == 1
    assert "--resume" in capsys.readouterr().err
    assert cli("codec", "--config", TINY / "codec.yaml", "--out", tmp_path / "new", "--resume") == 1
    assert "Nothing to resume" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_t2i_trains_only_the_unet(codec_run, tmp_path):
    stage = T2IStage(T2IConfig(vae_path=str(codec_run / "export" / "vae"),
                               data=DataConfig(train_items=8, val_items=2), eval_items=2, sample_items=1))
    before = {name: {k: v.clone() for k, v in m.state_dict().items()} for name, m in stage.modules().items()}
    cfg = TrainConfig(out=str(tmp_path), max_steps=1, batch_size=2, lr=1e-2, eval_every=0, sample_every=0)
    train(stage, cfg)
    for name, module in stage.modules().items():
        after = module.state_dict()
        same = all(torch.equal(before[name][k], after[k]) for k in after)
        assert same == (name != "unet"), name
        assert all(p.requires_grad == (name == "unet") for p in module.parameters())


def test_t2i_unet_overrides_change_the_backbone_and_the_codec_sets_its_channels(codec_run):
    wide = T2IStage(T2IConfig(vae_path=str(codec_run / "export" / "vae"),
                              unet={"block_out_channels": [64, 128, 128], "in_channels": 9}))
    assert list(wide.unet.config.block_out_channels) == [64, 128, 128]
    channels = wide.vae.config.latent_channels
    assert wide.unet.config.in_channels == wide.unet.config.out_channels == channels != 9


def test_codec_decoder_only_keeps_the_encoder_and_its_latent_scale(codec_run, tmp_path):
    vae = codec_run / "export" / "vae"
    stage = CodecStage(CodecConfig(init_from=str(vae), decoder_only=True, eval_items=2, sample_items=1,
                                   data=DataConfig(train_items=8, val_items=2)))
    before = {k: v.clone() for k, v in stage.vae.state_dict().items()}
    train(stage, TrainConfig(out=str(tmp_path / "run"), max_steps=1, batch_size=2, lr=1e-2,
                             eval_every=0, sample_every=0))
    changed = {k.split(".")[0] for k, v in stage.vae.state_dict().items() if not torch.equal(before[k], v)}
    assert changed == {"decoder", "post_quant_conv"}
    stage.export(tmp_path / "export")
    scale = [json.loads((f / "vae" / "config.json").read_text())["scaling_factor"]
             for f in (codec_run / "export", tmp_path / "export")]
    assert scale[0] == scale[1]
    with pytest.raises(EveditError, match="init_from"):
        CodecStage(CodecConfig(decoder_only=True))


def test_codec_latent_noise_is_seeded_and_changes_the_decoder_loss(codec_run):
    batch = {"image": torch.rand(2, 3, 64, 64) * 2 - 1}
    losses = {}
    for noise in (0.0, 0.0, 1.0):
        stage = CodecStage(CodecConfig(init_from=str(codec_run / "export" / "vae"), decoder_only=True,
                                       latent_noise=noise))
        losses.setdefault(noise, []).append(float(stage.loss(batch, torch.Generator().manual_seed(0))["loss"].detach()))
    assert losses[0.0][0] == losses[0.0][1] != losses[1.0][0]


class NanCodec(CodecStage):
    """The codec whose loss turns NaN at step 3, computed from the weights of the step-2 checkpoint."""

    name = "codec-nan"
    calls = 0

    def loss(self, batch, generator=None):
        NanCodec.calls += 1
        terms = super().loss(batch, generator)
        if NanCodec.calls == 3:
            NanCodec.ckpt_digest = digest(self.out / "checkpoints" / "step_000000")
            terms["loss"] = terms["loss"] * float("nan")
        return terms


def test_nan_loss_stops_with_one_sentence_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(STAGES, "codec-nan", NanCodec)
    monkeypatch.setattr(NanCodec, "out", tmp_path, raising=False)
    monkeypatch.setattr(NanCodec, "calls", 0)
    config = recipe(tmp_path.parent, "codec-nan")
    assert cli("codec-nan", "--config", config, "--out", tmp_path, "--max-steps", 4) == 1
    err = capsys.readouterr().err
    assert "loss became nan at step 3" in err and "Traceback" not in err
    assert "step_000002" in err and "was deleted" in err and "step_000000' is kept" in err
    # the step-2 weights gave the NaN, so their checkpoint goes; the initial weights' one stays
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["step_000000"]
    assert digest(tmp_path / "checkpoints" / "step_000000") == NanCodec.ckpt_digest
    assert not list((tmp_path / "checkpoints").glob(".tmp-*")) and not (tmp_path / "export").exists()


class SigintCodec(CodecStage):
    """The codec that receives Ctrl-C (a real SIGINT) during step 2, or raises it at step 2."""

    name = "codec-sigint"
    calls, mode = 0, "signal"

    def loss(self, batch, generator=None):
        SigintCodec.calls += 1
        if SigintCodec.calls == 2:
            if SigintCodec.mode == "raise":
                raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGINT)
        return super().loss(batch, generator)


@pytest.mark.parametrize("mode,saved", [("signal", "step_000002"), ("raise", "step_000001")])
def test_ctrl_c_saves_a_checkpoint_and_resume_finishes(mode, saved, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(STAGES, "codec-sigint", SigintCodec)
    monkeypatch.setattr(SigintCodec, "calls", 0)
    monkeypatch.setattr(SigintCodec, "mode", mode)
    config = recipe(tmp_path.parent, "codec-sigint")
    args = ("codec-sigint", "--config", config, "--out", tmp_path, "--max-steps", 3)
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when pytest runs as a background job
    assert cli(*args) == 130
    assert "continue with --resume" in capsys.readouterr().err
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["step_000000", saved]
    assert signal.getsignal(signal.SIGINT) == before  # the loop put the caller's handler back
    assert cli(*args, "--resume") == 0
    assert json.loads((tmp_path / "export" / "train_summary.json").read_text())["steps"] == 3


def test_user_errors_are_one_sentence(tmp_path, capsys):
    assert cli("nope", "--config", TINY / "codec.yaml") == 1
    assert "codec, t2i" in capsys.readouterr().err
    assert cli("codec", "--config", tmp_path / "missing.yaml") == 1
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "bad.yaml").write_text("train:\n  max_stepz: 3\n")
    assert cli("codec", "--config", tmp_path / "bad.yaml") == 1
    assert "max_stepz" in capsys.readouterr().err
    (tmp_path / "bad2.yaml").write_text("stage:\n  kl_weight: lots\n")
    assert cli("codec", "--config", tmp_path / "bad2.yaml", "--out", tmp_path / "x") == 1
    assert "kl_weight" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_config_layers_defaults_file_and_overrides(tmp_path):
    (tmp_path / "r.yaml").write_text("train:\n  lr: 3.0e-4\n  max_steps: 7\nstage: {kl_weight: 0.5}\n")
    cfg, stage = load_config(tmp_path / "r.yaml", "codec", {"max_steps": 9, "out": None})
    assert (cfg.lr, cfg.max_steps, cfg.batch_size, cfg.out) == (3e-4, 9, 16, "runs/train")
    assert stage == {"kl_weight": 0.5}
    with pytest.raises(EveditError, match="recipe for stage 'codec'"):
        load_config(TINY / "codec.yaml", "t2i")


def test_image_caption_folder(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        size = (40 + i, 30) if i % 2 else (30, 50)
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
        rows.append({"file_name": f"{i}.png", "text": f"picture {i}"})
    (tmp_path / "metadata.jsonl").write_text("\n".join(map(json.dumps, rows)))
    cfg = DataConfig(kind="folder", path=str(tmp_path), size=32)
    train_set, val_set = image_caption_dataset(cfg, "train"), image_caption_dataset(cfg, "val")
    assert (len(train_set), len(val_set)) == (11, 1)
    item = val_set[0]
    assert item["image"].shape == (3, 32, 32) and item["caption"] == "picture 11"
    assert item["image"].min() >= -1 and item["image"].max() <= 1
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"file_name": "gone.png", "text": "x"}))
    with pytest.raises(EveditError, match="do not exist"):
        image_caption_dataset(cfg, "train")


def test_step_sampler_is_a_function_of_the_position():
    full = StepSampler(10, 3, seed=1)
    stream = [i for _, batch in zip(range(8), full) for i in batch]  # 24 items, 2.4 epochs
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:20]) == list(range(10))
    later = next(iter(StepSampler(10, 3, seed=1, start=9)))
    assert later == stream[9:12]
    ranks = [next(iter(StepSampler(10, 3, seed=1, rank=r, world=2))) for r in (0, 1)]
    assert ranks[0] + ranks[1] == stream[:6]


def test_state_trees_round_trip_without_pickles(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    save_tree(tmp_path, "opt", opt.state_dict())
    back = load_tree(tmp_path, "opt")
    assert back["param_groups"][0]["betas"] == opt.state_dict()["param_groups"][0]["betas"]
    for key, state in opt.state_dict()["state"].items():
        assert all(torch.equal(state[k], back["state"][key][k]) for k in state)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["opt.json", "opt.safetensors"]


def test_assembly_takes_the_decoder_fine_tune_where_it_was_exported(tmp_path):
    from evedit.training.ship import _part, card_stages

    (tmp_path / "codec" / "export" / "vae").mkdir(parents=True)
    (tmp_path / "codec" / "export" / "vae" / "config.json").write_text("{}")
    assert _part(tmp_path, "codec", "vae") == tmp_path / "codec" / "export" / "vae"
    (tmp_path / "codec-decoder" / "export" / "vae").mkdir(parents=True)
    assert _part(tmp_path, "codec", "vae") == tmp_path / "codec" / "export" / "vae"  # not exported yet
    (tmp_path / "codec-decoder" / "export" / "vae" / "config.json").write_text("{}")
    assert _part(tmp_path, "codec", "vae") == tmp_path / "codec-decoder" / "export" / "vae"
    (tmp_path / "codec-decoder-noise" / "export" / "vae").mkdir(parents=True)
    (tmp_path / "codec-decoder-noise" / "export" / "vae" / "config.json").write_text("{}")
    assert _part(tmp_path, "codec", "vae") == tmp_path / "codec-decoder-noise" / "export" / "vae"
    assert {"codec", "codec-decoder", "codec-decoder-noise"} <= set(card_stages(tmp_path))
    with pytest.raises(EveditError, match="evedit train t2i"):
        _part(tmp_path, "t2i", "unet")


def test_model_card_says_which_stages_continued_from_trained_weights(tmp_path):
    import json

    import yaml

    from evedit.training.ship import model_card

    for stage, init in (("codec", None), ("edit-adapter", "models/shapeworld/controlnet")):
        export = tmp_path / stage / "export"
        export.mkdir(parents=True)
        (export / "train_summary.json").write_text(json.dumps(
            {"steps": 3000, "steps_this_run": 3000, "wall_time_s": 600.0, "final_eval": {"edit_psnr": 15.5}}))
        (export / "config.yaml").write_text(yaml.safe_dump({"stage_name": stage, "stage": {"init_from": init}}))
    card = model_card(tmp_path, ["codec", "edit-adapter"])
    assert "| edit-adapter | 3000 | 3000 | 10.0 | edit_psnr 15.5 |" in card
    assert "Total training time: 20.0 min." in card
    assert "`edit-adapter` continued from the trained weights in `models/shapeworld/controlnet`" in card
    assert "`codec` continued" not in card


def test_learning_rate_warms_up_then_drops_at_milestones():
    from evedit.training.config import TrainConfig
    from evedit.training.loop import Trainer

    cfg = TrainConfig(lr=2e-3, warmup_steps=10, lr_milestones=[100, 200], lr_gamma=0.5)
    stage = type("Stage", (), {"name": "codec", "config": {}})()
    lr = Trainer(stage=stage, cfg=cfg, resolved={})._lr
    assert lr(0) == pytest.approx(2e-4) and lr(9) == pytest.approx(2e-3)
    assert lr(99) == pytest.approx(2e-3) and lr(100) == pytest.approx(1e-3)
    assert lr(199) == pytest.approx(1e-3) and lr(200) == pytest.approx(5e-4)
    assert Trainer(stage=stage, cfg=TrainConfig(lr=1e-3), resolved={})._lr(5000) == 1e-3


def test_the_card_says_when_the_critic_started_and_the_sds_weight():
    from evedit.training.ship import _adversarial_note

    assert _adversarial_note({"steps_sds": 400, "disc_warmup": 400, "lam": 40.0}) == (
        ", SDS weight 40; the critic trained from iteration 1")
    assert _adversarial_note({"steps_sds": 600, "steps_adv": 0, "lam": 2.5}) == ""
    assert _adversarial_note({"steps_sds": 400, "disc_warmup": 400}) == "; the critic trained from iteration 1"
    assert _adversarial_note({"steps_sds": 400, "disc_warmup": 100}) == "; the critic trained from iteration 301"
    assert _adversarial_note({"steps_sds": 400}) == ""
    assert _adversarial_note({"steps_sds": 600, "steps_adv": 0, "disc_warmup": 400, "ablation": "no-adv"}) == ""
