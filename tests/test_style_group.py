"""A style LoRA as a third adapter (EVE's "Additional Adapter Combinations"): its denoisers, its
place in a model folder, and FDD with the style teacher."""

import copy
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from evedit.cli import main
from evedit.errors import EveditError
from evedit.models import load_model, save_model
from evedit.models.lora import add_lora, lora_adapters, save_lora
from evedit.models.token_lora import attach_token_lora, read_token_lora, token_pass
from evedit.training.fdd import FDDConfig, align
from model_utils import inputs, tiny_model

TINY = dict(steps_sds=1, steps_adv=1, batch_size=1, real_steps=1, bank_per_item=1, k=2,
            data={"kind": "shapeworld", "length": 4, "frames": 2}, sample_every=0, ckpt_every=1,
            log_every=1, disc_dim=16)


def style_folder(model, root, template=None):
    """A random (non-zero) style LoRA for ``model``'s backbone, as the style-lora stage exports it."""
    unet = copy.deepcopy(model.unet)
    add_lora(unet, 4, adapter="style")
    torch.manual_seed(3)
    for name, p in unet.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    save_lora(unet, root, adapter="style", file="style_lora.safetensors")
    meta = {"adapter": "style", "rank": 4, "alpha": 4, "token": "zwx", **({"template": template} if template else {})}
    (root / "lora.json").write_text(json.dumps(meta))
    return root


def test_style_denoisers_and_what_each_runs(tmp_path):
    model = tiny_model()
    x, t, cond = inputs()
    pnp, student = model.denoiser("pnp")(x, t, cond), model.denoiser("student")(x, t, cond)
    attach_token_lora(model, read_token_lora(style_folder(model, tmp_path), "{caption}, as a zwx mosaic"))
    styled = cond.replace(token_caption=torch.randn_like(cond.caption))
    assert torch.equal(model.denoiser("pnp")(x, t, styled), pnp)  # plug-and-play: no LoRA at all
    assert not torch.allclose(model.denoiser("student")(x, t, styled), student)
    assert torch.equal(model.denoiser("pnp-token")(x, t, styled), model.denoiser("student")(x, t, styled))
    model.add_alignment_lora(4)
    assert lora_adapters(model.motion_unet) == ["style", "align"]
    assert model.motion_unet.active_adapters() == ["style", "align"]
    for name, p in model.motion_unet.named_parameters():
        if "lora_B.align" in name:
            torch.nn.init.normal_(p, std=0.1)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".align." in n for n in trainable)
    aligned = model.denoiser("student")(x, t, styled)
    assert not torch.allclose(aligned, model.denoiser("pnp-token")(x, t, styled))
    assert torch.equal(model.denoiser("student")(x, t, styled), aligned)  # pnp-style restored both
    assert not any("lora" in n for n, _ in model.unet.named_parameters())  # the backbone stays bare
    frames = model.denoiser("style")(x, t, styled.replace(caption=styled.token_caption))
    assert frames.shape == x.shape
    assert model.token_lora.caption("") == "as a zwx mosaic"
    assert model.token_lora.caption("a red circle") == "a red circle, as a zwx mosaic"


def test_a_styled_model_folder_keeps_its_style(tmp_path):
    model = tiny_model()
    attach_token_lora(model, read_token_lora(style_folder(model, tmp_path / "s"), "{caption} in zwx style"))
    model.add_alignment_lora(4)
    save_model(model, tmp_path / "m")
    back = load_model(tmp_path / "m", text_encoder=model.text_encoder)
    assert back.token_lora.template == "{caption} in zwx style" and back.has_lora
    x, t, cond = inputs()
    styled = cond.replace(token_caption=cond.caption.flip(0))
    for name in ("student", "style", "edit"):
        c = styled.replace(caption=styled.token_caption) if name == "style" else styled
        assert torch.allclose(back.denoiser(name)(x, t, c), model.denoiser(name)(x, t, c), atol=1e-5), name
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(x.shape, generator=g)
    out = token_pass(model, x, styled.token_caption, cond.caption[:1], noise, steps=2)
    assert out.shape == x.shape and not torch.allclose(out, x)


def test_read_token_lora_refuses_what_is_not_a_style_or_subject_lora(tmp_path):
    with pytest.raises(EveditError, match="holds no style or subject LoRA"):
        read_token_lora(tmp_path)
    folder = style_folder(tiny_model(), tmp_path)
    with pytest.raises(EveditError, match="caption template"):
        read_token_lora(folder)
    meta = json.loads((folder / "lora.json").read_text())
    (folder / "lora.json").write_text(json.dumps({**meta, "adapter": "align"}))
    with pytest.raises(EveditError, match="not a style or subject LoRA"):
        read_token_lora(folder)
    (folder / "lora.json").write_text(json.dumps({**meta, "adapter": "subject"}))
    with pytest.raises(EveditError, match="no subject LoRA weights"):
        read_token_lora(folder, "{caption}, and a sks star")


def test_fdd_with_the_style_teacher(minilm, tmp_path):
    from evedit.world import TASKS

    model = tiny_model(text_encoder=minilm, num_tasks=len(TASKS))
    folder = style_folder(model, tmp_path / "style")
    cfg = FDDConfig(**{**TINY, "teachers": {"edit": 0.5, "video": 0.5, "style": 0.5}},
                    token_lora=str(folder), out=str(tmp_path / "run"))
    align(cfg, teacher=model, progress=False)
    logs = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {"sds_style", "g_style", "d_style", "sds_edit", "sds_video"} <= set(logs[-1])
    assert logs[-1]["g_total"] == pytest.approx(sum(
        0.5 * (logs[-1][f"g_{n}"] + cfg.lam * logs[-1][f"sds_{n}"]) for n in ("edit", "video", "style")), rel=1e-5)
    back = load_model(tmp_path / "run" / "model", text_encoder=minilm)
    assert back.token_lora is not None and back.has_lora
    from evedit.training.ship import _take_lora  # `evedit model assemble --aligned` takes both LoRAs

    fresh = tiny_model(text_encoder=minilm, num_tasks=len(TASKS))
    card = _take_lora(fresh, tmp_path / "run" / "model")
    assert fresh.has_lora and fresh.token_lora.template == "{caption}, as a zwx mosaic" and "style LoRA" in card


def test_the_style_teacher_can_read_the_output_caption(minilm, tmp_path):
    """``token_teacher_caption: output``: the style teacher's caption is the item's output caption
    with the trigger, the student's stays the trigger alone (empty routing); a store is refused."""
    from torch.utils.data import default_collate

    from evedit.training.fdd.teachers import encode_batch, with_teacher_caption
    from evedit.world import TASKS, AlignmentDataset

    model = tiny_model(text_encoder=minilm, num_tasks=len(TASKS))
    model.spec = replace(model.spec, prompt_routing="empty")
    attach_token_lora(model, read_token_lora(style_folder(model, tmp_path / "style"), "{caption}, as a zwx mosaic"))
    data = AlignmentDataset("val", 2, config=None)
    batch = default_collate([data[0], data[1]])
    ab = with_teacher_caption(model, encode_batch(model, batch), batch)
    want = model.text_encoder([f"{c}, as a zwx mosaic" for c in batch["output_caption"]]).hidden_states
    assert torch.allclose(ab.token_cond().caption, want)
    assert torch.allclose(ab.student_cond().token_caption, model.text_encoder(["as a zwx mosaic"] * 2).hidden_states)
    with pytest.raises(EveditError, match="captions' text"):
        with_teacher_caption(model, ab, {"index": [0, 1]})
    cfg = FDDConfig(**{**TINY, "teachers": {"edit": 0.5, "style": 0.5}}, token_lora=str(tmp_path / "style"),
                    token_teacher_caption="output", out=str(tmp_path / "run"))
    align(cfg, teacher=model, progress=False)
    assert (tmp_path / "run" / "model" / "style_lora").is_dir()


def test_the_edit_teacher_on_the_style_backbone(minilm, tmp_path):
    """``edit_teacher_token``: the edit adapter's residuals into the style LoRA's backbone (equal to the
    plain edit teacher once that LoRA is zero); its SDS term and critic's reals use it, the first frame
    stays the plain edit teacher's; a config without a style or subject teacher is refused."""
    from torch.utils.data import default_collate

    from evedit.training.fdd.teachers import TeacherBank, edit_teacher_generate, encode_batch
    from evedit.world import TASKS, AlignmentDataset

    model = tiny_model(text_encoder=minilm, num_tasks=len(TASKS))
    x, t, cond = inputs()
    with pytest.raises(ValueError, match="needs a style or subject LoRA"):
        model.denoiser("edit-token")
    attach_token_lora(model, read_token_lora(style_folder(model, tmp_path / "style"), "{caption}, as a zwx mosaic"))
    plain, styled = model.denoiser("edit")(x, t, cond), model.denoiser("edit-token")(x, t, cond)
    assert styled.shape == plain.shape and not torch.allclose(styled, plain)
    for name, p in model.token_unet.named_parameters():
        if "lora_B" in name:
            torch.nn.init.zeros_(p)
    assert torch.allclose(model.denoiser("edit-token")(x, t, cond), plain, atol=1e-6)
    attach_token_lora(model, read_token_lora(tmp_path / "style", "{caption}, as a zwx mosaic"))  # non-zero again
    cfg = FDDConfig(**{**TINY, "teachers": {"edit": 0.5, "style": 0.5}}, edit_teacher_token=True,
                    token_lora=str(tmp_path / "style"), out=str(tmp_path / "run"))
    data = AlignmentDataset("val", 2, config=None)
    ab = encode_batch(model, default_collate([data[0], data[1]]))
    bank = TeacherBank(model, cfg)
    filled = bank.fill(ab, [0, 1], 0, with_reals=True)
    seeds = bank._seeds([0, 1], 0, 0)
    assert torch.allclose(filled.edit_real, edit_teacher_generate(model, ab, cfg, seeds, styled=True))
    plain_first = edit_teacher_generate(model, ab, cfg, seeds, slice(0, 1))[:, :, 0]
    assert not torch.allclose(filled.edit_real[:, :, 0], plain_first)
    align(cfg, teacher=model, progress=False)
    logs = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {"sds_edit", "g_edit", "d_edit", "sds_style"} <= set(logs[-1])
    with pytest.raises(EveditError, match="edit_teacher_token needs a style or subject teacher"):
        replace(cfg, teachers={"edit": 0.5, "video": 0.5}).effective()


def test_the_style_teacher_needs_a_style_lora(tmp_path, capsys):
    import yaml

    recipe = tmp_path / "align.yaml"
    recipe.write_text(yaml.safe_dump({**TINY, "teachers": {"edit": 0.5, "style": 0.5}}))
    assert main(["align", "--config", str(recipe), "--out", str(tmp_path / "run"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "style teacher needs a style LoRA" in err and "Traceback" not in err


def test_evedit_edit_runs_a_styled_model_folder(minilm, tmp_path, capsys):
    """A folder from a style group's alignment edits from the CLI: the student on the caption with
    the style's trigger, its first frame edited then stylized."""
    from evedit.io import read_video, write_video
    from evedit.models import build_shapeworld
    from evedit.world import make_example
    from model_utils import perturb_new_branches, run_cli

    model = build_shapeworld(text_encoder=minilm)
    attach_token_lora(model, read_token_lora(style_folder(model, tmp_path / "style"), "{caption}, as a zwx mosaic"))
    model.add_alignment_lora()
    perturb_new_branches(model)
    save_model(model, tmp_path / "model")
    source = write_video(tmp_path / "in.mp4", make_example(3, "color").clip[:4], fps=8)
    outs = {}
    for name in ("styled", "plain"):
        if name == "plain":  # the same folder without its style part
            manifest = json.loads((tmp_path / "model" / "evedit_model.json").read_text())
            del manifest["parts"]["style_lora"]
            (tmp_path / "model" / "evedit_model.json").write_text(json.dumps(manifest))
        code, _, err = run_cli(["edit", source, "make the blue circle red", "-o", tmp_path / f"{name}.mp4",
                                "--model", tmp_path / "model", "--task", "color", "--first-frame-steps", "1",
                                "--device", "cpu", "-q"], capsys)
        assert code == 0, err
        outs[name] = read_video(tmp_path / f"{name}.mp4").frames
    assert outs["styled"].shape == outs["plain"].shape and not np.array_equal(outs["styled"], outs["plain"])


def test_a_styled_model_edits_whole_frames_by_default(tmp_path):
    """The found region would keep a style to the edited object: a model holding a style LoRA takes
    none of its region tasks by default (``--region auto`` still asks for it)."""
    from evedit.editing.auto_region import default_region_tasks, region_mode

    model = tiny_model()
    model.spec = replace(model.spec, region_tasks=("color", "shape"))
    assert default_region_tasks(model) == ("color", "shape")
    attach_token_lora(model, read_token_lora(style_folder(model, tmp_path / "s"), "{caption}, as a zwx mosaic"))
    assert default_region_tasks(model) == ()
    assert region_mode(None, "color", default_region_tasks(model)) == "full"
    assert region_mode("auto", "color", default_region_tasks(model)) == "auto"
