"""Helpers for model tests: tiny random EVE models and conditioning."""

from contextlib import contextmanager
from dataclasses import replace

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from evedit.diffusion import NoiseSchedule
from evedit.models import Conditioning, ModelSpec, assemble
from evedit.models.edit_adapter import controlnet_from_unet
from evedit.models.lora import lora_layers
from evedit.models.presets import (
    SHAPEWORLD_CONTROLNET, SHAPEWORLD_MOTION, SHAPEWORLD_UNET, SHAPEWORLD_VAE,
)
from evedit.models.video_adapter import new_motion_adapter

NUM_TASKS = 5


def tiny_model(text_encoder=None, seed=0, num_tasks=NUM_TASKS):
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**SHAPEWORLD_UNET)
    vae = AutoencoderKL(**SHAPEWORLD_VAE)
    controlnet = controlnet_from_unet(unet, num_tasks, **SHAPEWORLD_CONTROLNET)
    spec = ModelSpec(tasks=tuple(f"t{i}" for i in range(num_tasks)))
    return assemble(
        vae=vae, text_encoder=text_encoder, unet=unet, controlnet=controlnet,
        motion_adapter=new_motion_adapter(**SHAPEWORLD_MOTION), spec=spec, schedule=NoiseSchedule(),
    )


def inputs(batch=2, frames=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 4, frames, 16, 16, generator=g)
    t = torch.randint(0, 1000, (batch,), generator=g)
    cond = Conditioning(
        caption=torch.randn(batch, 32, 384, generator=g),
        instruction=torch.randn(batch, 32, 384, generator=g),
        source=torch.randn(batch, 4, frames, 16, 16, generator=g),
        task=torch.randint(0, NUM_TASKS, (batch,), generator=g),
        first_frame=torch.randn(batch, 4, 16, 16, generator=g),
    )
    return x, t, cond


def perturb_new_branches(model, scale=0.05, seed=2):
    """Give every zero-initialised branch random weights (as training would)."""
    g = torch.Generator().manual_seed(seed)
    cn = model.edit_adapter.controlnet
    modules = [*cn.controlnet_down_blocks, cn.controlnet_mid_block, cn.controlnet_cond_embedding.conv_out,
               model.first_frame.conv]
    with torch.no_grad():
        for module in modules:
            for p in module.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * scale)
        cn.class_embedding.weight.copy_(torch.randn(cn.class_embedding.weight.shape, generator=g))
        for layer in lora_layers(model.motion_unet):
            for p in layer.lora_B.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * scale)


def per_frame_unet(model, x, t, cond):
    """The bare backbone applied frame by frame, for comparison."""
    b, c, f, h, w = x.shape
    flat = x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
    out = model.unet(flat, t.repeat_interleave(f), cond.caption.repeat_interleave(f, 0)).sample
    return out.reshape(b, f, c, h, w).permute(0, 2, 1, 3, 4)


def save_edit_model(root, text_encoder):
    """A tiny ShapeWorld model with the alignment LoRA and a task classifier, saved under ``root``:
    every new branch perturbed so the student, teachers and first-frame branch all differ."""
    from evedit.models import build_shapeworld, save_model
    from evedit.models.task_classifier import TaskClassifier

    model = build_shapeworld(text_encoder=text_encoder)
    model.add_alignment_lora()
    perturb_new_branches(model)
    classifier = TaskClassifier(tasks=model.spec.tasks)
    classifier.save_pretrained(root / "classifier", safe_serialization=True)
    return save_model(model, root / "model", extras={"task_classifier": root / "classifier"})


def run_cli(args, capsys):
    """``evedit ARGS`` in this process: (exit status, stdout, stderr); typer's exits included."""
    from evedit.cli import main

    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # typer exits for --help / usage errors
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


@contextmanager
def spec_as(pipe, **fields):
    """``pipe``'s model with ``fields`` replaced in its spec for the block (a model folder's
    manifest defaults), restored after it."""
    spec = pipe.model.spec
    pipe.model.spec = replace(spec, **fields)
    try:
        yield pipe
    finally:
        pipe.model.spec = spec
