"""The factorized model: freezing, zero-init equalities, branches, save/load, errors."""

import pytest
import torch

from evedit.errors import EveditError
from evedit.models import Conditioning, load_model, save_model
from evedit.models.lora import lora_parameters
from model_utils import inputs, per_frame_unet, perturb_new_branches, tiny_model

ATOL = 1e-5


@pytest.fixture
def model():
    return tiny_model()


def run_all(model, x, t, cond):
    with torch.no_grad():
        return {k: model.denoiser(k)(x, t, cond) for k in ("edit", "video", "pnp", "student")}


def test_nothing_trainable_in_teachers_and_only_lora_in_student(model):
    assert model.trainable_parameters() == []
    params = model.add_alignment_lora(rank=4)
    trainable = {id(p) for p in model.trainable_parameters()}
    assert trainable == {id(p) for p in lora_parameters(model.motion_unet)}
    assert len(trainable) > 0
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert not any("motion_modules" in n for n in names), "LoRA must skip the temporal layers"
    assert not any(p.requires_grad for p in model.edit_adapter.parameters())
    assert not any(p.requires_grad for p in model.unet.parameters())
    assert len(params) == len(trainable)
    x, t, cond = inputs()
    run_all(model, x, t, cond)  # the teachers toggle the LoRA off and on
    assert {id(p) for p in model.trainable_parameters()} == trainable


def test_student_backward_reaches_only_the_lora(model):
    model.add_alignment_lora(rank=4)
    perturb_new_branches(model)
    x, t, cond = inputs()
    model.denoiser("student")(x, t, cond).square().mean().backward()
    grads = [p for p in model.parameters() if p.grad is not None]
    lora = {id(p) for p in lora_parameters(model.motion_unet)}
    assert grads and all(id(p) in lora for p in grads)
    assert any(p.grad.abs().sum() > 0 for p in grads)


def test_zero_init_composition_equals_parts(model):
    model.add_alignment_lora(rank=4)
    x, t, cond = inputs()
    out = run_all(model, x, t, cond)
    with torch.no_grad():
        ref = per_frame_unet(model, x, t, cond)
    assert torch.equal(out["edit"], ref), "an untrained ControlNet must add nothing"
    assert torch.allclose(out["video"], ref, atol=ATOL), "fresh temporal layers = backbone per frame"
    assert torch.allclose(out["pnp"], ref, atol=ATOL)
    assert torch.equal(out["student"], out["pnp"]), "LoRA B = 0: student = plug-and-play"


def test_each_branch_changes_its_denoisers_only(model):
    model.add_alignment_lora(rank=4)
    x, t, cond = inputs()
    before = run_all(model, x, t, cond)
    perturb_new_branches(model)
    after = run_all(model, x, t, cond)
    for name in ("edit", "video", "pnp", "student"):
        assert not torch.allclose(before[name], after[name], atol=1e-4), name
    assert not torch.allclose(after["student"], after["pnp"], atol=1e-4), "LoRA is applied"
    with torch.no_grad():
        ref = per_frame_unet(model, x, t, cond)
    # the teachers never see the LoRA: the video teacher differs from the backbone only through
    # its first-frame branch, which touches frame 0's input only (no temporal mixing yet)
    diff = (after["video"] - ref).abs().amax(dim=(0, 1, 3, 4))
    assert diff[0] > 1e-3 and torch.all(diff[1:] < ATOL)


def test_task_label_reaches_the_edit_adapter(model):
    perturb_new_branches(model)
    x, t, cond = inputs()
    with torch.no_grad():
        a = model.denoiser("edit")(x, t, cond)
        b = model.denoiser("edit")(x, t, cond.replace(task=(cond.task + 1) % 5))
    assert not torch.allclose(a, b, atol=1e-5)


def test_temporal_layers_mix_frames(model):
    x, t, cond = inputs()
    for module in model.motion_unet.modules():
        proj = getattr(module, "proj_out", None)
        if isinstance(proj, torch.nn.Linear) and proj.weight.abs().sum() == 0:
            torch.nn.init.normal_(proj.weight, std=0.05)
    cond = cond.replace(first_frame=None)
    with torch.no_grad():
        a = model.denoiser("video")(x, t, cond)
        x2 = x.clone()
        x2[:, :, -1] += 1.0  # change only the last frame
        b = model.denoiser("video")(x2, t, cond)
    assert (a - b)[:, :, 0].abs().max() > 1e-4, "frame 0 must see the change in the last frame"


def test_save_load_round_trip_is_exact(model, tmp_path, minilm):
    model.text_encoder = minilm
    model.add_alignment_lora(rank=4)
    perturb_new_branches(model)
    x, t, cond = inputs()
    before = run_all(model, x, t, cond)
    folder = save_model(model, tmp_path / "m")
    loaded = load_model(folder, text_encoder=minilm)
    after = run_all(loaded, x, t, cond)
    for name in before:
        assert torch.equal(before[name], after[name]), name
    assert loaded.trainable_parameters() == []
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == [
        "controlnet", "first_frame", "lora", "motion_adapter", "scheduler", "unet", "vae"]
    assert not any(p.suffix in {".bin", ".pt"} for p in folder.rglob("*"))


def test_model_folder_errors(model, tmp_path, minilm):
    with pytest.raises(EveditError, match="does not exist"):
        load_model(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EveditError, match="no evedit_model.json"):
        load_model(tmp_path / "empty")
    folder = save_model(model, tmp_path / "m")
    (folder / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x04not really")
    with pytest.raises(EveditError, match="pickle"):
        load_model(folder, text_encoder=minilm)
    (folder / "unet" / "diffusion_pytorch_model.bin").unlink()
    for f in (folder / "controlnet").glob("*.safetensors"):
        f.unlink()
    with pytest.raises(EveditError, match="incomplete.*controlnet"):
        load_model(folder, text_encoder=minilm)


def test_wrong_shapes_raise_clear_errors(model):
    x, t, cond = inputs()
    student = model.denoiser("student")
    with pytest.raises(ValueError, match=r"\(B, C, F, H, W\)"):
        student(x[:, :, 0], t, cond)
    with pytest.raises(ValueError, match="frames"):
        student(x, t, cond.replace(source=cond.source[:, :, :2]))
    with pytest.raises(ValueError, match="batch"):
        student(x[:1], t[:1], cond)
    with pytest.raises(ValueError, match="needs `source`"):
        student(x, t, cond.replace(source=None))
    with pytest.raises(ValueError, match="unknown denoiser"):
        model.denoiser("teacher")


def test_conditioning_cat():
    _, _, cond = inputs(batch=2)
    both = Conditioning.cat([cond, cond.replace(first_frame=cond.first_frame * 0)])
    assert both.caption.shape[0] == 4 and both.first_frame.shape[0] == 4
    with pytest.raises(ValueError, match="only some"):
        Conditioning.cat([cond, cond.replace(task=None)])


def test_half_precision_folder_with_extras(model, tmp_path, minilm):
    model.text_encoder = minilm
    perturb_new_branches(model)
    extra = tmp_path / "extra_src"
    model.first_frame.save_pretrained(extra)  # any diffusers-format part will do
    folder = save_model(model, tmp_path / "half", half=True, extras={"shapeclip": extra}, card="# card\n")
    from safetensors import safe_open

    with safe_open(str(folder / "unet" / "diffusion_pytorch_model.safetensors"), "pt") as f:
        assert f.get_tensor(next(iter(f.keys()))).dtype == torch.float16
    loaded = load_model(folder, text_encoder=minilm)
    assert next(loaded.unet.parameters()).dtype == torch.float32
    assert loaded.extras == {"shapeclip": folder / "shapeclip"}
    x, t, cond = inputs()
    with torch.no_grad():
        a, b = model.denoiser("pnp")(x, t, cond), loaded.denoiser("pnp")(x, t, cond)
    assert torch.allclose(a, b, atol=5e-2), "fp16 storage changes outputs only by rounding"
    again = save_model(loaded, tmp_path / "again")
    assert (again / "shapeclip" / "config.json").is_file() and (folder / "README.md").is_file()


def test_source_branch_starts_equal_then_feeds_every_edit_denoiser_and_round_trips(model, tmp_path, minilm):
    from evedit.models.edit_adapter import SourceBranch

    model.text_encoder = minilm
    model.add_alignment_lora(rank=4)
    perturb_new_branches(model)
    x, t, cond = inputs()
    without = run_all(model, x, t, cond)
    model.edit_adapter.source_branch = SourceBranch(4, model.unet.config.block_out_channels[0])
    zero = run_all(model, x, t, cond)
    assert all(torch.equal(without[k], zero[k]) for k in without), "zero init: nothing changes"
    torch.nn.init.normal_(model.edit_adapter.source_branch.conv.weight, std=0.05)
    trained = run_all(model, x, t, cond)
    for name in ("edit", "pnp", "student"):
        assert not torch.allclose(without[name], trained[name], atol=1e-4), name
    assert torch.equal(without["video"], trained["video"]), "the video teacher has no edit adapter"
    with torch.no_grad():  # an all-zero source (ip2p image dropout) adds exactly nothing
        dropped = cond.replace(source=torch.zeros_like(cond.source))
        a = model.denoiser("edit")(x, t, dropped)
        branch, model.edit_adapter.source_branch = model.edit_adapter.source_branch, None
        b = model.denoiser("edit")(x, t, dropped)
        model.edit_adapter.source_branch = branch
    assert torch.equal(a, b)
    assert not model.unet.conv_in._forward_hooks, "the hook lives only during a call"
    folder = save_model(model, tmp_path / "m")
    loaded = load_model(folder, text_encoder=minilm)
    after = run_all(loaded, x, t, cond)
    assert all(torch.equal(trained[k], after[k]) for k in trained)
    assert (folder / "source_branch" / "config.json").is_file()


def test_load_model_takes_an_edit_adapter_export_in_place_of_its_own(model, tmp_path, minilm):
    from evedit.models.edit_adapter import SourceBranch

    model.text_encoder = minilm
    folder = save_model(model, tmp_path / "m")
    controlnet = model.edit_adapter.controlnet
    with torch.no_grad():
        for p in controlnet.parameters():
            p.add_(0.01)
    export = tmp_path / "export"
    controlnet.save_pretrained(export / "controlnet")
    plain = load_model(folder, text_encoder=minilm, edit_adapter=export)
    assert plain.edit_adapter.source_branch is None, "the run trained no source branch"
    branch = SourceBranch(4, model.unet.config.block_out_channels[0])
    torch.nn.init.normal_(branch.conv.weight, std=0.05)
    branch.save_pretrained(export / "source_branch")
    loaded = load_model(folder, text_encoder=minilm, edit_adapter=export)
    for name, p in controlnet.state_dict().items():
        assert torch.equal(loaded.edit_adapter.controlnet.state_dict()[name], p), name
    assert torch.equal(loaded.edit_adapter.source_branch.conv.weight, branch.conv.weight)
    own = load_model(folder, text_encoder=minilm).edit_adapter.controlnet.state_dict()
    assert not torch.allclose(own["conv_in.weight"], loaded.edit_adapter.controlnet.state_dict()["conv_in.weight"])
    with pytest.raises(EveditError, match="with the edit adapter"):
        load_model(folder, text_encoder=minilm, edit_adapter=tmp_path / "nowhere")
