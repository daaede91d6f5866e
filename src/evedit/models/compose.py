"""The factorized model: one set of parts, four denoisers with one call contract.

Parts (EVE section 3.1): the frozen T2I backbone (a 2D UNet), the edit adapter (ControlNet), the
video adapter (the backbone's weights plus temporal layers, in a ``UNetMotionModel``, with a
first-frame branch) and, once added, the alignment LoRA on the motion model's spatial attention.
The motion model holds a copy of the backbone's spatial weights; the LoRA lives only there, and
the teachers run it with the LoRA disabled, so they see exactly the frozen backbone.

Every denoiser is called as ``denoiser(x, t, cond) -> model output`` with ``x`` noisy latents
``(B, C, F, H, W)``, ``t`` integer timesteps ``(B,)`` and a :class:`Conditioning`:

- ``EditTeacher``: backbone + edit adapter, frames as a batch (psi = [theta, theta_edit]);
- ``VideoTeacher``: backbone + video adapter, first-frame conditioned (rho = [theta, theta_video]);
- ``PlugAndPlay``: both adapters, no LoRA (eta);
- ``Student``: both adapters + LoRA (phi = [theta, theta_edit, theta_video, theta_align]);
- with a style or subject LoRA (:mod:`evedit.models.token_lora`): ``TokenTeacher`` (denoiser
  ``style`` or ``subject``, the LoRA's kind), backbone + that LoRA on each frame, and
  ``TokenPlugAndPlay`` (``pnp-token``), both adapters + the LoRA without alignment; the student
  then runs it beside the alignment LoRA.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from einops import rearrange
from torch import nn

from ..diffusion.schedule import NoiseSchedule
from .codec import check_video
from .edit_adapter import EditAdapter
from .hooks import added_to_input
from .lora import activate_adapters, add_lora, lora_adapters, lora_disabled, lora_parameters
from .video_adapter import FirstFrameBranch, FirstFrameHook


@dataclass
class Conditioning:
    """What the denoisers are conditioned on; batch-first, one entry per video.

    caption: (B, L, D) the backbone's prompt (EVE: the output caption).
    instruction: (B, L, D) the edit adapter's prompt (the instruction).
    source: (B, C', F, H', W') the input frames in the edit adapter's condition space.
    task: (B,) integer task labels for the edit adapter.
    first_frame: (B, C, h, w) clean latent of the (edited) first frame for the video adapter.
    token_caption: (B, L, D) with a style or subject LoRA: the caption with its trigger, which the
        student (and ``pnp-token``) give the backbone in place of ``caption``.
    """

    caption: torch.Tensor
    instruction: torch.Tensor | None = None
    source: torch.Tensor | None = None
    task: torch.Tensor | None = None
    first_frame: torch.Tensor | None = None
    token_caption: torch.Tensor | None = None

    def replace(self, **changes) -> "Conditioning":
        return replace(self, **changes)

    @staticmethod
    def cat(items: list["Conditioning"]) -> "Conditioning":
        """Concatenate along the batch (to run guidance branches in one call)."""
        out = {}
        for f in fields(Conditioning):
            values = [getattr(c, f.name) for c in items]
            if any(v is None for v in values):
                if not all(v is None for v in values):
                    raise ValueError(f"cannot concatenate conditionings: {f.name} is set in only some")
                out[f.name] = None
            else:
                out[f.name] = torch.cat(values)
        return Conditioning(**out)


def _per_frame(x: torch.Tensor | None, frames: int) -> torch.Tensor | None:
    """(B, ...) -> (B*F, ...), batch-major, matching ``(b f)`` folding."""
    return None if x is None else x.repeat_interleave(frames, dim=0)


class EVEModel(nn.Module):
    """Holds the frozen parts and builds the four denoisers."""

    def __init__(self, vae, text_encoder, unet, edit_adapter: EditAdapter, motion_unet,
                 first_frame: FirstFrameBranch, schedule: NoiseSchedule, spec):
        super().__init__()
        self.vae, self.text_encoder, self.unet = vae, text_encoder, unet
        self.edit_adapter, self.motion_unet, self.first_frame = edit_adapter, motion_unet, first_frame
        self.schedule, self.spec = schedule, spec
        self.extras: dict = {}  # further part folders (ShapeCLIP, task classifier) by name
        self.token_lora = None  # a TokenLoRA once attached (evedit.models.token_lora.attach_token_lora) ...
        self.token_unet = None  # ... and the token teacher's backbone copy with it
        self.requires_grad_(False)
        self.first_frame_hook = FirstFrameHook(motion_unet, first_frame)

    # ---- LoRA -------------------------------------------------------------------------------
    def add_alignment_lora(self, rank: int | None = None) -> list[nn.Parameter]:
        """Inject the alignment LoRA; returns its parameters, the only trainable ones."""
        if "align" not in lora_adapters(self.motion_unet):
            add_lora(self.motion_unet, rank or self.spec.lora_rank)
            activate_adapters(self.motion_unet, lora_adapters(self.motion_unet))  # beside a style or subject LoRA
        params = lora_parameters(self.motion_unet)
        for p in params:
            p.requires_grad_(True)
        return params

    @property
    def has_lora(self) -> bool:
        """Whether the alignment LoRA is there (a style or subject LoRA alone does not count)."""
        return "align" in lora_adapters(self.motion_unet)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    # ---- shared pieces ----------------------------------------------------------------------
    def edit_residuals(self, flat: torch.Tensor, t_flat: torch.Tensor, cond: Conditioning, frames: int):
        """The edit adapter's outputs for frames folded into the batch (flat is (B*F, C, h, w)):
        ``(down_residuals, mid_residual, input_features)``, the last None without a source branch."""
        if cond.source is None or cond.instruction is None:
            raise ValueError("the edit adapter needs `source` (input frames) and `instruction`")
        check_video(cond.source, "conditioning source")
        if cond.source.shape[2] != frames:
            raise ValueError(
                f"the input clip has {cond.source.shape[2]} frames but the latents have {frames}"
            )
        source = rearrange(cond.source, "b c f h w -> (b f) c h w").to(flat.dtype)
        down, mid = self.edit_adapter(
            flat, t_flat, _per_frame(cond.instruction, frames), source, _per_frame(cond.task, frames),
        )
        return down, mid, self.edit_adapter.input_features(source)

    def motion_forward(self, x, t, cond: Conditioning, residuals=None, triggered: bool = False) -> torch.Tensor:
        """The motion model on (B, C, F, h, w) with optional edit-adapter outputs
        (:meth:`edit_residuals`); ``triggered``: on ``cond.token_caption`` where there is one."""
        frames = x.shape[2]
        caption = cond.token_caption if triggered and cond.token_caption is not None else cond.caption
        down, mid, features = residuals if residuals is not None else (None, None, None)
        first = self.first_frame_hook.condition(cond.first_frame, frames)
        with first, added_to_input(self.motion_unet, features):
            return self.motion_unet(
                x, t, _per_frame(caption, frames),
                down_block_additional_residuals=down, mid_block_additional_residual=mid,
            ).sample

    def denoiser(self, name: str) -> "Denoiser":
        kinds = {"edit": EditTeacher, "video": VideoTeacher, "pnp": PlugAndPlay, "student": Student,
                 "style": TokenTeacher, "subject": TokenTeacher, "pnp-token": TokenPlugAndPlay,
                 "edit-token": TokenEditTeacher}
        if name not in kinds:
            raise ValueError(f"unknown denoiser {name!r}; choose from {sorted(kinds)}")
        either = name in ("pnp-token", "edit-token")  # take the model's style or subject LoRA, whichever
        if kinds[name] in (TokenTeacher, TokenPlugAndPlay, TokenEditTeacher) and (
                self.token_lora is None or not either and self.token_lora.kind != name):
            raise ValueError(f"the {name!r} denoiser needs a {'style or subject' if either else name} "
                             "LoRA on the model (evedit.models.token_lora.attach_token_lora)")
        return kinds[name](self)


class Denoiser:
    """``denoiser(x (B,C,F,h,w), t (B,), cond) -> model output (B,C,F,h,w)``."""

    def __init__(self, model: EVEModel):
        self.model = model

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        b, _, _, _, _ = check_video(x, "noisy latents")
        t = torch.as_tensor(t, device=x.device).long().reshape(-1).expand(b)
        if cond.caption.shape[0] != b:
            raise ValueError(f"conditioning has batch {cond.caption.shape[0]}, latents have {b}")
        return self.forward(x, t, cond)

    def forward(self, x, t, cond):  # pragma: no cover - abstract
        raise NotImplementedError


def image_edit_forward(unet, edit_adapter: EditAdapter, x, t, caption, instruction, source, task):
    """Backbone + edit adapter on images: x (N, C, h, w), t (N,), caption/instruction (N, L, D),
    source (N, C', H', W'), task (N,) -> model output (N, C, h, w). The edit teacher applies it
    to frames folded into the batch; the edit-adapter training stage applies it to image pairs."""
    down, mid = edit_adapter(x, t, instruction, source, task)
    with added_to_input(unet, edit_adapter.input_features(source)):
        return unet(
            x, t, caption, down_block_additional_residuals=down, mid_block_additional_residual=mid,
        ).sample


class EditTeacher(Denoiser):
    """Backbone + edit adapter; each frame edited independently (frames as a batch)."""

    def backbone(self):
        return self.model.unet

    def forward(self, x, t, cond):
        m, frames, unet = self.model, x.shape[2], self.backbone()
        flat = rearrange(x, "b c f h w -> (b f) c h w")
        t_flat = _per_frame(t, frames)
        down, mid, features = m.edit_residuals(flat, t_flat, cond, frames)
        with added_to_input(unet, features):
            out = unet(
                flat, t_flat, _per_frame(cond.caption, frames),
                down_block_additional_residuals=down, mid_block_additional_residual=mid,
            ).sample
        return rearrange(out, "(b f) c h w -> b c f h w", f=frames)


class TokenEditTeacher(EditTeacher):
    """The edit teacher on the style or subject teacher's backbone (backbone + its LoRA): the edit
    adapter's residuals into ``model.token_unet``, caption-conditioned as that teacher is (the
    caption should carry the LoRA's trigger). FDD's ``edit_teacher_token`` option scores the
    student with it."""

    def backbone(self):
        return self.model.token_unet


class VideoTeacher(Denoiser):
    """Backbone + temporal layers, conditioned on the caption and the first frame; no LoRA."""

    def forward(self, x, t, cond):
        with lora_disabled(self.model.motion_unet):
            return self.model.motion_forward(x, t, cond)


class _BothAdapters(Denoiser):
    def _run(self, x, t, cond, triggered: bool = False):
        m, frames = self.model, x.shape[2]
        flat = rearrange(x, "b c f h w -> (b f) c h w")
        residuals = m.edit_residuals(flat, _per_frame(t, frames), cond, frames)
        return m.motion_forward(x, t, cond, residuals, triggered)


class PlugAndPlay(_BothAdapters):
    """Both adapters on the backbone, unaligned (EVE's "w/o alignment" reference)."""

    def forward(self, x, t, cond):
        with lora_disabled(self.model.motion_unet):
            return self._run(x, t, cond)


class Student(_BothAdapters):
    """Both adapters plus the alignment LoRA (equals plug-and-play while LoRA B is zero)."""

    def forward(self, x, t, cond):
        return self._run(x, t, cond, triggered=True)


class TokenTeacher(Denoiser):
    """Backbone + style or subject LoRA, each frame on its own (frames as a batch), caption-conditioned."""

    def forward(self, x, t, cond):
        m, frames = self.model, x.shape[2]
        flat = rearrange(x, "b c f h w -> (b f) c h w")
        out = m.token_unet(flat, _per_frame(t, frames), _per_frame(cond.caption, frames)).sample
        return rearrange(out, "(b f) c h w -> b c f h w", f=frames)


class TokenPlugAndPlay(_BothAdapters):
    """Both adapters and the style or subject LoRA, without alignment (the group's unaligned reference)."""

    def forward(self, x, t, cond):
        unet, kind = self.model.motion_unet, self.model.token_lora.kind
        before = lora_adapters(unet) if self.model.has_lora else [kind]
        activate_adapters(unet, [kind])
        try:
            return self._run(x, t, cond, triggered=True)
        finally:
            activate_adapters(unet, before)
