"""The edit-adapter and video-adapter stages on tiny random parts (without the loop)."""

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from torch.utils.data import default_collate

from evedit.errors import EveditError
from evedit.models.presets import SHAPEWORLD_UNET, SHAPEWORLD_VAE
from evedit.training.stages.edit_adapter import EditAdapterConfig, EditAdapterStage
from evedit.training.stages.video_adapter import VideoAdapterConfig, VideoAdapterStage


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("parts")
    torch.manual_seed(0)
    AutoencoderKL(**SHAPEWORLD_VAE).save_pretrained(root / "vae")
    UNet2DConditionModel(**SHAPEWORLD_UNET).save_pretrained(root / "unet")
    return {"vae_path": str(root / "vae"), "unet_path": str(root / "unet")}


def frozen_params(stage):
    """Every parameter the stage uses that is not in a trainable module (by identity)."""
    trainable = {id(p) for m in stage.trainable_modules() for p in m.parameters()}
    return {id(p): p for m in stage.modules().values() for p in m.parameters() if id(p) not in trainable}


def one_step(stage, batch):
    trainable = [p for m in stage.trainable_modules() for p in m.parameters()]
    frozen = frozen_params(stage)
    before = {k: p.detach().clone() for k, p in frozen.items()}
    opt = torch.optim.AdamW(trainable, lr=1e-2)
    losses = stage.loss(batch, torch.Generator().manual_seed(0))
    losses["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable)
    opt.step()
    assert all(torch.equal(before[k], p) for k, p in frozen.items())
    assert not any(p.requires_grad for p in frozen.values())
    return losses


def test_edit_adapter_stage_trains_only_the_controlnet(parts, tmp_path):
    stage = EditAdapterStage(EditAdapterConfig(**parts, eval_items=2, eval_steps=2))
    data = stage.dataset("train")
    batch = default_collate([data[i] for i in range(2)])
    assert set(batch) >= {"input_image", "output_image", "instruction", "task", "output_caption"}
    losses = one_step(stage, batch)
    assert torch.isfinite(losses["loss"])
    assert "edit_psnr" in stage.evaluate()
    assert stage.sample(tmp_path / "s", 0)[0].is_file()
    stage.export(tmp_path / "export")
    assert (tmp_path / "export" / "controlnet" / "diffusion_pytorch_model.safetensors").is_file()


def test_edit_adapter_init_from_continues_from_a_trained_controlnet(parts, tmp_path):
    from evedit.errors import EveditError

    first = EditAdapterStage(EditAdapterConfig(**parts))
    with torch.no_grad():  # a "trained" adapter: its zero convolutions are no longer zero
        first.adapter.controlnet.controlnet_mid_block.weight.normal_()
    first.export(tmp_path)
    again = EditAdapterStage(EditAdapterConfig(**parts, init_from=str(tmp_path / "controlnet")))
    want, got = first.adapter.controlnet.state_dict(), again.adapter.controlnet.state_dict()
    assert set(want) == set(got) and all(torch.equal(want[k], got[k]) for k in want)
    assert again.adapter.controlnet.dtype == torch.float32
    fresh = EditAdapterStage(EditAdapterConfig(**parts)).adapter.controlnet.state_dict()
    assert not torch.equal(fresh["controlnet_mid_block.weight"], got["controlnet_mid_block.weight"])
    with pytest.raises(EveditError, match="not a ControlNet folder"):
        EditAdapterStage(EditAdapterConfig(**parts, init_from=str(tmp_path / "missing")))


def test_edit_adapter_condition_dropout_rates(parts):
    stage = EditAdapterStage(EditAdapterConfig(**parts))
    no_text, no_image = stage._dropout_masks(20000, torch.Generator().manual_seed(0))
    both = (no_text & no_image).float().mean()
    assert abs(both - 0.05) < 0.01
    assert abs((no_text & ~no_image).float().mean() - 0.05) < 0.01
    assert abs((no_image & ~no_text).float().mean() - 0.05) < 0.01


@pytest.mark.parametrize("routing", ["paper", "empty"])
def test_edit_adapter_prompt_routing_sets_the_backbone_text(parts, routing):
    """``empty``: every backbone text is the empty one, whatever the dropout; the instruction still
    reaches the ControlNet. ``paper``: the output caption does."""
    from evedit.world import EditTripletDataset

    stage = EditAdapterStage(EditAdapterConfig(**parts, prompt_routing=routing))
    data = EditTripletDataset("val", 3)
    batch = torch.utils.data.default_collate([data[i] for i in range(3)])
    caption, instruction = stage._prompts(batch, torch.tensor([False, False, True]))
    null = stage.text([""]).hidden_states
    assert not torch.allclose(instruction[0], null[0]) and torch.allclose(instruction[2], null[0])
    assert torch.allclose(caption[0], null[0]) == (routing == "empty")
    with pytest.raises(EveditError, match="prompt_routing"):
        EditAdapterStage(EditAdapterConfig(**parts, prompt_routing="caption"))


def test_text_at_every_level_starts_equal_and_then_reads_the_instruction(parts):
    from evedit.models.edit_adapter import text_at_every_level

    stage = EditAdapterStage(EditAdapterConfig(**parts))
    net = stage.adapter.controlnet
    for p in net.controlnet_down_blocks.parameters():  # non-zero residuals, as after training
        torch.nn.init.normal_(p, std=0.1)
    upgraded = text_at_every_level(net)
    assert list(upgraded.config.down_block_types) == ["CrossAttnDownBlock2D"] * 3
    assert text_at_every_level(upgraded) is upgraded
    x, src = torch.randn(2, 4, 16, 16), torch.randn(2, 4, 16, 16)
    t, text, task = torch.tensor([10, 500]), torch.randn(2, 8, 384), torch.tensor([0, 3])
    a = net(x, t, encoder_hidden_states=text, controlnet_cond=src, class_labels=task, return_dict=False)
    b = upgraded(x, t, encoder_hidden_states=text, controlnet_cond=src, class_labels=task, return_dict=False)
    assert all(torch.allclose(u, v, atol=1e-6) for u, v in zip(a[0], b[0]))
    for p in upgraded.down_blocks[0].attentions.parameters():
        torch.nn.init.normal_(p, std=0.1)
    other = upgraded(x, t, encoder_hidden_states=-text, controlnet_cond=src, class_labels=task, return_dict=False)
    again = upgraded(x, t, encoder_hidden_states=text, controlnet_cond=src, class_labels=task, return_dict=False)
    assert not torch.allclose(other[0][1], again[0][1])  # the first block's full-resolution residual reads the text
    assert EditAdapterStage(EditAdapterConfig(**parts, text_every_level=True)).adapter.controlnet.config.down_block_types[0] \
        == "CrossAttnDownBlock2D"


def test_pooled_instruction_starts_equal_then_shifts_every_block_and_round_trips(parts, tmp_path):
    from diffusers import ControlNetModel

    from evedit.models.edit_adapter import instruction_in_time_embedding

    net = EditAdapterStage(EditAdapterConfig(**parts)).adapter.controlnet
    for p in net.controlnet_down_blocks.parameters():  # non-zero residuals, as after training
        torch.nn.init.normal_(p, std=0.1)
    upgraded = instruction_in_time_embedding(net)
    assert upgraded.config.addition_embed_type == "text" and instruction_in_time_embedding(upgraded) is upgraded
    x, src = torch.randn(2, 4, 16, 16), torch.randn(2, 4, 16, 16)
    t, text, task = torch.tensor([10, 500]), torch.randn(2, 8, 384), torch.tensor([0, 3])

    def run(model, states):
        down, mid = model(x, t, encoder_hidden_states=states, controlnet_cond=src, class_labels=task, return_dict=False)
        return torch.cat([r.flatten() for r in down] + [mid.flatten()])

    assert torch.allclose(run(net, text), run(upgraded, text), atol=1e-6)
    torch.nn.init.normal_(upgraded.add_embedding.norm2.weight, std=1.0)
    assert not torch.allclose(run(upgraded, text), run(upgraded, -text), atol=1e-4)  # the pool reads the text
    upgraded.save_pretrained(tmp_path / "cn")
    again = ControlNetModel.from_pretrained(tmp_path / "cn")
    assert again.config.addition_embed_type == "text" and torch.equal(run(again, text), run(upgraded, text))
    stage = EditAdapterStage(EditAdapterConfig(**parts, pooled_instruction=True))
    assert stage.adapter.controlnet.config.addition_embed_type == "text"


def test_wider_condition_starts_equal_then_uses_its_new_features_and_round_trips(parts, tmp_path):
    from diffusers import ControlNetModel

    from evedit.models.edit_adapter import wider_condition

    net = EditAdapterStage(EditAdapterConfig(**parts)).adapter.controlnet
    for p in list(net.controlnet_down_blocks.parameters()) + list(net.controlnet_cond_embedding.conv_out.parameters()):
        torch.nn.init.normal_(p, std=0.1)  # non-zero residuals and condition, as after training
    wide = wider_condition(net, 64)
    assert tuple(wide.config.conditioning_embedding_out_channels) == (64,) and wider_condition(wide, 64) is wide
    x, src = torch.randn(2, 4, 16, 16), torch.randn(2, 4, 16, 16)
    t, text, task = torch.tensor([10, 500]), torch.randn(2, 8, 384), torch.tensor([0, 3])

    def run(model, cond=src):
        down, mid = model(x, t, encoder_hidden_states=text, controlnet_cond=cond, class_labels=task, return_dict=False)
        return torch.cat([r.flatten() for r in down] + [mid.flatten()])

    assert torch.allclose(run(net), run(wide), atol=1e-6)
    torch.nn.init.normal_(wide.controlnet_cond_embedding.conv_out.weight[:, 16:], std=0.1)
    assert not torch.allclose(run(net), run(wide), atol=1e-4)  # the new features reach the residuals
    wide.save_pretrained(tmp_path / "cn")
    assert torch.equal(run(ControlNetModel.from_pretrained(tmp_path / "cn")), run(wide))
    with pytest.raises(ValueError, match="widen, not narrow"):
        wider_condition(wide, 16)
    stage = EditAdapterStage(EditAdapterConfig(**parts, init_from=str(tmp_path / "cn"), cond_channels=128))
    assert tuple(stage.adapter.controlnet.config.conditioning_embedding_out_channels) == (128,)
    with pytest.raises(EveditError, match="cond_channels"):
        EditAdapterStage(EditAdapterConfig(**parts, init_from=str(tmp_path / "cn"), cond_channels=32))


def test_deeper_attention_starts_equal_then_uses_its_new_blocks_and_round_trips(parts, tmp_path):
    from diffusers import ControlNetModel

    from evedit.models.edit_adapter import deeper_attention

    net = EditAdapterStage(EditAdapterConfig(**parts, text_every_level=True)).adapter.controlnet
    for p in net.controlnet_down_blocks.parameters():
        torch.nn.init.normal_(p, std=0.1)  # non-zero residuals, as after training
    deep = deeper_attention(net, 2)
    assert deep.config.transformer_layers_per_block == 2 and deeper_attention(deep, 2) is deep
    x, src = torch.randn(2, 4, 16, 16), torch.randn(2, 4, 16, 16)
    t, text, task = torch.tensor([10, 500]), torch.randn(2, 8, 384), torch.tensor([0, 3])

    def run(model):
        down, mid = model(x, t, encoder_hidden_states=text, controlnet_cond=src, class_labels=task, return_dict=False)
        return torch.cat([r.flatten() for r in down] + [mid.flatten()])

    assert torch.allclose(run(net), run(deep), atol=1e-6)
    new = deep.down_blocks[1].attentions[0].transformer_blocks[1]
    torch.nn.init.normal_(new.attn2.to_out[0].weight, std=0.1)  # the new block's cross-attention now speaks
    assert not torch.allclose(run(net), run(deep), atol=1e-4)
    deep.save_pretrained(tmp_path / "cn")
    assert torch.equal(run(ControlNetModel.from_pretrained(tmp_path / "cn")), run(deep))
    with pytest.raises(ValueError, match="deepen, not shrink"):
        deeper_attention(deep, 1)
    stage = EditAdapterStage(EditAdapterConfig(**parts, init_from=str(tmp_path / "cn"), attention_layers=3))
    assert stage.adapter.controlnet.config.transformer_layers_per_block == 3
    with pytest.raises(EveditError, match="attention_layers"):
        EditAdapterStage(EditAdapterConfig(**parts, init_from=str(tmp_path / "cn"), attention_layers=1))


def test_edit_weight_applies_only_from_its_min_t(parts):
    stages = {name: EditAdapterStage(EditAdapterConfig(**parts, **kw)) for name, kw in (
        ("plain", {}), ("weighted", {"edit_weight": 8.0}), ("never", {"edit_weight": 8.0, "edit_weight_min_t": 1000}))}
    batch = default_collate([stages["plain"].dataset("train")[i] for i in range(2)])
    batch["task"] = torch.zeros(2, dtype=torch.long)  # a local task, so the weights are not uniform
    with torch.no_grad():
        loss = {k: float(s.loss(batch, torch.Generator().manual_seed(3))["loss"]) for k, s in stages.items()}
    assert loss["never"] == pytest.approx(loss["plain"], rel=1e-6)  # t < 1000 always: no item weighted
    assert loss["weighted"] != pytest.approx(loss["plain"], rel=1e-4)
    for unused in ({"edit_weight_min_t": 500}, {"edit_weight_renorm": False}, {"edit_weight_tasks": ["color"]}):
        with pytest.raises(EveditError, match="set edit_weight above 0"):
            EditAdapterStage(EditAdapterConfig(**parts, **unused))


def test_edit_weight_tasks_weigh_only_their_items(parts):
    from evedit.world import TASKS

    kinds = {"plain": {}, "all": {"edit_weight": 8.0}, "color": {"edit_weight": 8.0, "edit_weight_tasks": ["color"]},
             "background": {"edit_weight": 8.0, "edit_weight_tasks": ["background"]}}
    stages = {k: EditAdapterStage(EditAdapterConfig(**parts, **kw)) for k, kw in kinds.items()}
    batch = default_collate([stages["plain"].dataset("train")[i] for i in range(2)])
    batch["task"] = torch.full((2,), TASKS.index("color"), dtype=torch.long)
    with torch.no_grad():
        loss = {k: float(s.loss(batch, torch.Generator().manual_seed(3))["loss"]) for k, s in stages.items()}
    assert loss["color"] == pytest.approx(loss["all"], rel=1e-6)  # the colour items are weighted
    assert loss["background"] == pytest.approx(loss["plain"], rel=1e-6)  # others take the plain loss
    assert loss["all"] != pytest.approx(loss["plain"], rel=1e-4)
    with pytest.raises(EveditError, match="edit_weight_tasks takes ShapeWorld task names"):
        EditAdapterStage(EditAdapterConfig(**parts, edit_weight=8.0, edit_weight_tasks=["colour"]))


def test_video_adapter_stage_trains_only_temporal_layers_and_first_frame(parts, tmp_path):
    stage = VideoAdapterStage(VideoAdapterConfig(**parts, eval_items=1, eval_steps=2))
    data = stage.dataset("train")
    batch = default_collate([data[i] for i in range(2)])
    one_step(stage, batch)
    names = {n for n, p in stage.model.named_parameters() if p.requires_grad}
    assert names and all("motion_modules" in n for n in names)
    metrics = stage.evaluate()
    assert set(metrics) == {"first_frame_psnr", "clip_psnr", "frame_change_ratio"}
    assert stage.sample(tmp_path / "s", 0)[0].suffix == ".gif"
    stage.export(tmp_path / "export")
    assert (tmp_path / "export" / "motion_adapter" / "config.json").is_file()
    assert (tmp_path / "export" / "first_frame" / "config.json").is_file()


def test_first_frame_keep_mask_switches_items_off():
    from evedit.models.video_adapter import FirstFrameBranch

    branch = FirstFrameBranch(4, 8)
    torch.nn.init.normal_(branch.conv.weight)
    feats = branch(torch.randn(2, 4, 6, 6), 3, keep=torch.tensor([1.0, 0.0]))  # (B*F, 8, 6, 6)
    assert feats[:3].abs().sum() > 0 and feats[3:].abs().sum() == 0


def test_first_frame_every_frame_hands_the_latent_to_every_frame(tmp_path):
    from evedit.models.video_adapter import FirstFrameBranch

    first = torch.randn(1, 4, 6, 6)
    zero_padded, every = FirstFrameBranch(4, 8), FirstFrameBranch(4, 8, every_frame=True)
    torch.nn.init.normal_(zero_padded.conv.weight)
    every.load_state_dict(zero_padded.state_dict())
    a, b = zero_padded(first, 3), every(first, 3)  # (F, 8, 6, 6)
    assert torch.equal(a[0], b[0])  # frame 0: the latent and the mask, in both layouts
    assert a[1:].abs().sum() == 0 and b[1:].abs().sum() > 0
    assert torch.equal(b[1], b[2])  # the other frames: the latent without the mask
    assert not torch.allclose(b[0], b[1])  # the mask tells frame 0 apart
    every.save_pretrained(tmp_path / "ff")
    assert FirstFrameBranch.from_pretrained(tmp_path / "ff").config.every_frame is True


def test_video_adapter_init_from_continues_with_either_frame_layout(parts, tmp_path):
    first = VideoAdapterStage(VideoAdapterConfig(**parts))
    with torch.no_grad():  # "trained": the branch and the temporal output projections non-zero
        first.first_frame.conv.weight.normal_()
        for m in first.trainable_modules():
            for p in m.parameters():
                p.add_(0.01)
    first.export(tmp_path / "video")
    for every in (False, True):
        cont = VideoAdapterStage(VideoAdapterConfig(**parts, init_from=str(tmp_path / "video"), every_frame=every))
        assert cont.first_frame.config.every_frame is every
        assert torch.equal(cont.first_frame.conv.weight, first.first_frame.conv.weight)
        ours, theirs = cont.model.state_dict(), first.model.state_dict()
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs if "motion_modules." in k)
    fresh = VideoAdapterStage(VideoAdapterConfig(**parts))
    assert fresh.first_frame.conv.weight.abs().sum() == 0
    with pytest.raises(EveditError, match="is not a motion adapter folder"):
        VideoAdapterStage(VideoAdapterConfig(**parts, init_from=str(tmp_path / "missing")))


def test_video_adapter_takes_the_backbone_widths(parts, tmp_path):
    wide = tmp_path / "wide-unet"
    UNet2DConditionModel(**{**SHAPEWORLD_UNET, "block_out_channels": (64, 128, 128)}).save_pretrained(wide)
    stage = VideoAdapterStage(VideoAdapterConfig(vae_path=parts["vae_path"], unet_path=str(wide)))
    widths = {m.proj_in.in_features for m in stage.trainable_modules() if hasattr(m, "proj_in")}
    assert widths == {64, 128}
    stage.export(tmp_path / "video")
    with pytest.raises(EveditError, match="block widths"):
        VideoAdapterStage(VideoAdapterConfig(**parts, init_from=str(tmp_path / "video")))


@pytest.mark.parametrize("stage", ["edit-adapter", "video-adapter"])
def test_two_step_smoke_through_the_cli(parts, tmp_path, stage):
    import yaml

    from evedit.cli import main

    recipe = yaml.safe_load(open(f"configs/tiny/{stage}.yaml"))
    recipe["stage"].update(parts)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    code = main(["train", stage, "--config", str(path), "--out", str(tmp_path / "run")])
    assert code == 0
    export = tmp_path / "run" / "export"
    wanted = ["controlnet"] if stage == "edit-adapter" else ["motion_adapter", "first_frame"]
    assert all((export / w / "config.json").is_file() for w in wanted)


def _loss_and_grads(stage, batch):
    losses = stage.loss(batch, torch.Generator().manual_seed(0))
    losses["loss"].backward()
    grads = {n: p.grad.clone() for n, p in stage.adapter.controlnet.named_parameters() if p.grad is not None}
    return losses["loss"].detach(), grads


def test_gradient_checkpointing_recomputes_the_frozen_unet_and_gives_the_same_gradients(parts):
    from evedit.training.recompute import enable_activation_checkpointing

    torch.manual_seed(0)
    plain = EditAdapterStage(EditAdapterConfig(**parts))
    torch.manual_seed(0)
    recomputed = EditAdapterStage(EditAdapterConfig(**parts))
    for stage in (plain, recomputed):
        stage.unet.requires_grad_(False)
        stage.vae.requires_grad_(False)
        with torch.no_grad():  # a trained adapter: its zero convolutions pass gradients on
            for conv in [*stage.adapter.controlnet.controlnet_down_blocks, stage.adapter.controlnet.controlnet_mid_block]:
                conv.weight.copy_(torch.linspace(-0.05, 0.05, conv.weight.numel()).view_as(conv.weight))
    names = enable_activation_checkpointing(recomputed.modules())
    assert {"unet", "controlnet", "vae"} <= set(names)
    assert recomputed.unet.is_gradient_checkpointing and not plain.unet.is_gradient_checkpointing
    data = plain.dataset("train")
    batch = default_collate([data[i] for i in range(2)])
    (loss_a, grads_a), (loss_b, grads_b) = _loss_and_grads(plain, batch), _loss_and_grads(recomputed, batch)
    assert torch.allclose(loss_a, loss_b, atol=1e-6)
    assert set(grads_a) == set(grads_b) and len(grads_a) > 10
    assert all(torch.allclose(grads_a[n], grads_b[n], atol=1e-6, rtol=1e-4) for n in grads_a)
    assert any(grads_a[n].abs().sum() > 0 for n in grads_a if n.startswith("down_blocks.0"))


def test_source_branch_trains_beside_the_controlnet_and_continues_from_its_export(parts, tmp_path):
    stage = EditAdapterStage(EditAdapterConfig(**parts, source_branch=True))
    branch = stage.adapter.source_branch
    assert branch is not None and branch in stage.trainable_modules()
    data = stage.dataset("train")
    batch = default_collate([data[i] for i in range(2)])
    one_step(stage, batch)
    assert branch.conv.weight.abs().sum() > 0, "the zero-initialised branch received a gradient step"
    stage.export(tmp_path)
    assert (tmp_path / "source_branch" / "config.json").is_file()
    again = EditAdapterStage(EditAdapterConfig(**parts, init_from=str(tmp_path / "controlnet"), source_branch=True))
    assert torch.equal(again.adapter.source_branch.conv.weight, branch.conv.weight)
    with pytest.raises(EveditError, match="source_branch: true"):
        EditAdapterStage(EditAdapterConfig(**parts, init_from=str(tmp_path / "controlnet")))
    assert EditAdapterStage(EditAdapterConfig(**parts)).adapter.source_branch is None


def test_timestep_bias_draws_late_timesteps_more_often_and_refuses_bad_settings(parts):
    from evedit.training.stages.common import biased_timesteps

    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.equal(biased_timesteps(64, 1000, g()), torch.randint(0, 1000, (64,), generator=g()))
    late = biased_timesteps(20000, 1000, g(), "later", 3.0, 0.4)
    share = (late >= 600).float().mean().item()
    assert abs(share - 1.2 / 1.8) < 0.02  # 40% of the range at weight 3 against 60% at weight 1
    early = biased_timesteps(20000, 1000, g(), "earlier", 3.0, 0.4)
    assert abs((early < 400).float().mean().item() - 1.2 / 1.8) < 0.02
    with pytest.raises(EveditError, match="timestep bias"):
        EditAdapterStage(EditAdapterConfig(**parts, timestep_bias={"strategy": "middle"}))
    with pytest.raises(EveditError, match="timestep_bias takes"):
        EditAdapterStage(EditAdapterConfig(**parts, timestep_bias={"strategy": "later", "share": 0.5}))
