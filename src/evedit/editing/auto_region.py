"""Where an instruction acts, found by the edit adapter: an automatic edit region (``--region auto``).

Not part of EVE: the paper edits whole frames. An instruction such as "make the circle red" should
leave the rest of the frame as it was, yet a few-step student (and any editor drawing from noise)
re-draws everything, and a weak backbone blurs what it re-draws. DiffEdit (Couairon et al., ICLR
2023) finds the region an edit concerns from the model itself: noise the input's latents to half
the schedule, ask the denoiser with and without the edit's text, and threshold the per-pixel
difference of the two noise predictions. Here the two predictions are the edit adapter's ip2p
branches (image + text) and (image only), so the difference is exactly the instruction's text
direction, the term ip2p's text guidance scales; no caption is needed. The region then goes the way
of a user's mask (:mod:`evedit.editing.region`): outside it the editor's latents are the input's,
noised to each step, the result takes the input's clean latents there, and after decoding the
frame takes the input's pixels outside the region's cells (from 0.4.6; before, the input through
the codec: on 48 val clips of the region tasks 22.40 dB against 22.26, flicker 0.0353 against
0.0380, accuracy unchanged).

Decided here (ShapeWorld val split, the shipped model's EVE; ``benchmarks/results/auto_region.md``):
half the schedule (DiffEdit's 0.5), :data:`SAMPLES` = 2 noise draws (DiffEdit uses 10 on 512 px),
each frame's map divided by its maximum and thresholded at 0.5 (DiffEdit's), then grown by one
latent cell (:data:`DILATE`). The rule: edit accuracy no lower than the whole-frame edit's, then the
highest PSNR. Without the growth the region stops short of an object's rim, which keeps its old
colour: on 100 val colour edits, threshold 0.4 ungrown scored 23.23 dB but 58% accuracy, threshold
0.5 grown 23.18 dB and 63%, whole frames 22.33 dB and 61%. The noise draws are seeded per frame
(streams from :data:`NOISE_REGION`), so a frame's region is the same in every window that holds it.
"""

from __future__ import annotations

import torch

from ..models.compose import Conditioning
from ..models.guided import without_text

T_FRACTION = 0.5  # noise level of the probe, as a fraction of the schedule (DiffEdit: 0.5)
SAMPLES = 2  # noise draws averaged per frame
THRESHOLD = 0.5  # of each frame's largest difference (DiffEdit: 0.5)
DILATE = 1  # latent cells the region grows by on every side (the object's rim; see the module notes)
NOISE_REGION = 2  # noise streams of the probes: 2, 3, ... (editors.NOISE_CLIP is 0, NOISE_FIRST_FRAME 1)


def text_direction(teacher, x: torch.Tensor, t: torch.Tensor, cond: Conditioning,
                   null_text: torch.Tensor) -> torch.Tensor:
    """``|eps(x; image, text) - eps(x; image, no text)|`` averaged over channels: ``(B, 1, F, h, w)``."""
    pair = Conditioning.cat([cond, without_text(cond, null_text)])
    full, image_only = teacher(torch.cat([x, x]), torch.cat([t, t]), pair).chunk(2)
    return (full - image_only).abs().mean(dim=1, keepdim=True)


def threshold_map(direction: torch.Tensor, threshold: float = THRESHOLD) -> torch.Tensor:
    """Each frame's map ``(B, 1, F, h, w)`` over its own maximum, thresholded: 1 inside, 0 outside."""
    peak = direction.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    return (direction / peak > threshold).to(direction.dtype)


def grow(region: torch.Tensor, cells: int) -> torch.Tensor:
    """``region`` ``(B, 1, F, h, w)`` grown by ``cells`` latent cells on every side (a max filter)."""
    if cells <= 0:
        return region
    b, c, f, h, w = region.shape
    flat = region.transpose(1, 2).reshape(b * f, c, h, w)
    flat = torch.nn.functional.max_pool2d(flat, 2 * cells + 1, stride=1, padding=cells)
    return flat.reshape(b, f, c, h, w).transpose(1, 2)


def estimate_region(model, cond: Conditioning, null_text: torch.Tensor, latents: torch.Tensor,
                    noises: list[torch.Tensor], threshold: float = THRESHOLD, dilate: int = DILATE) -> torch.Tensor:
    """The edit region of ``latents`` ``(1, C, F, h, w)``: ``(1, 1, F, h, w)``, 1 where the edit may act.

    ``cond``: the edit's conditioning with ``source`` the same frames; ``noises``: one
    ``(1, C, F, h, w)`` draw per probe. The edit adapter judges each frame alone (no first frame).
    """
    teacher = model.denoiser("edit")
    cond = cond.replace(first_frame=None)
    t = torch.full((latents.shape[0],), int(T_FRACTION * model.schedule.num_train_timesteps),
                   dtype=torch.long, device=latents.device)
    total = sum(text_direction(teacher, model.schedule.add_noise(latents, n, t), t, cond, null_text)
                for n in noises)
    return grow(threshold_map(total / len(noises), threshold), dilate)


def default_region_tasks(model) -> tuple[str, ...]:
    """The tasks whose edits default to ``--region auto``: the model's ``spec.region_tasks``, and none
    for a model holding a style LoRA. Decided here (the paper edits whole frames; the region is
    evedit's): a style restyles every pixel, and the found region would keep the style to the edited
    object (on ShapeWorld a styled colour edit then showed the mosaic on the object alone). A subject
    LoRA keeps the region: the subject takes one object's place."""
    token = getattr(model, "token_lora", None)
    return () if token is not None and token.kind == "style" else tuple(model.spec.region_tasks)


def region_mode(asked: str | None, task: str | None, region_tasks) -> str:
    """``--region`` resolved: what the user asked, else "auto" for the model's ``region_tasks``."""
    if asked is not None:
        return asked
    return "auto" if task is not None and task in tuple(region_tasks) else "full"
