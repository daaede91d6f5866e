"""A style or subject LoRA on the factorized model: EVE's "Additional Adapter Combinations".

A *token LoRA* is a peft LoRA on the backbone's spatial attention called by a rare token in the
caption (DreamBooth): a style (``evedit train style-lora``, stylized editing) or a subject
(``evedit train subject-lora``, editing with a personal subject). Its ``lora.json`` names its kind
(``adapter``: ``style`` or ``subject``), which is also its peft adapter name and the name of its
FDD teacher. A model holds at most one (decided here: the paper aligns the edit adapter with one
such LoRA at a time). :func:`attach_token_lora` loads it twice:

- on a copy of the 2D backbone, ``model.token_unet``, the token teacher's
  (:class:`~evedit.models.compose.TokenTeacher`: backbone + LoRA, each frame alone). A copy (one
  more backbone in memory) keeps ``model.unet`` free of adapters, so the edit teacher, the
  discriminators' features and the saved backbone stay exactly the frozen one;
- on the motion model's spatial attention, active beside the alignment LoRA in the student (and
  switched off with every other LoRA in the video teacher and plug-and-play).

The backbone's caption carries the trigger through :attr:`TokenLoRA.template` (ShapeWorld's zwx
mosaic: ``"{caption}, as a zwx mosaic"``; its sks star: ``"{caption}, and a sks star"``, the forms
the stages trained on); with the empty caption of an edit from the instruction alone it is the
trigger phrase alone (decided here: the student must be told to stylize or to draw the subject, and
the user gives no caption).
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import EveditError
from .lora import activate_adapters, lora_adapters, load_lora

TOKEN_KINDS = ("style", "subject")
LORA_JSON = "lora.json"
EXAMPLE_TEMPLATES = {"style": "{caption}, as a zwx mosaic", "subject": "{caption}, and a sks star"}

#: :func:`token_pass`'s SDEdit strength (the last share of a DDIM schedule the token teacher runs)
#: and the token teacher's default CFG. Chosen for the style on 8 test frames of the colour task,
#: the true edit stylized with the trigger alone (2026-12-05, ``benchmarks/results/stylized_edit.md``):
#: CFG 4 at any strength from 0.2 redraws the content (11.2 dB or less against the plain frame at
#: 0.3), CFG 1 adds almost no grout (style score 0.05 to 0.10 up to strength 0.5); 0.5 with CFG 1.5
#: to 2.5 gives the most mosaic per content lost. The subject uses the same (not swept).
PASS_STRENGTH = 0.5
PASS_STEPS = 10
TOKEN_SCALE = 2.0


def lora_file(kind: str) -> str:
    """The weights file of a token LoRA of ``kind``: the stage's export name."""
    return f"{kind}_lora.safetensors"


@dataclass(frozen=True)
class TokenLoRA:
    folder: Path  # holds <kind>_lora.safetensors and lora.json
    rank: int
    alpha: float | None
    template: str  # the backbone's caption with the trigger; "{caption}" marks the caption
    scale: float = TOKEN_SCALE  # the token teacher's caption CFG (as the group that aligned it chose)
    kind: str = "style"  # "style" or "subject": the peft adapter name and the FDD teacher's

    @property
    def part(self) -> str:
        """The model folder's part name: ``style_lora`` or ``subject_lora``."""
        return f"{self.kind}_lora"

    def caption(self, text: str) -> str:
        """The caption with the trigger (``text`` may be empty: the trigger phrase alone, without the
        template's joining comma and "and": "as a zwx mosaic", "a sks star")."""
        out = self.template.replace("{caption}", text.strip())
        return re.sub(r"^[\s,]*(and\s+)?", "", out).strip() if not text.strip() else out

    def save(self, folder: Path) -> None:
        """Copy the weights and write ``lora.json`` (kind, rank, alpha, template, CFG) into ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.folder / lora_file(self.kind), folder / lora_file(self.kind))
        meta = {"adapter": self.kind, "rank": self.rank, "alpha": self.alpha, "template": self.template,
                "scale": self.scale}
        (folder / LORA_JSON).write_text(json.dumps(meta, indent=1) + "\n")


def read_token_lora(folder: str | Path, template: str | None = None, scale: float | None = None) -> TokenLoRA:
    """The style or subject LoRA in ``folder`` (a ``style-lora``/``subject-lora`` stage export or a
    model folder's part); ``template`` is used where ``lora.json`` names none (the stage's export
    records only its token; a model folder's part records it); ``scale`` overrides the recorded CFG
    (default TOKEN_SCALE)."""
    folder = Path(folder)
    if not (folder / LORA_JSON).is_file():
        raise EveditError(f"'{folder}' holds no style or subject LoRA (it needs {LORA_JSON}).")
    meta = json.loads((folder / LORA_JSON).read_text())
    kind = meta.get("adapter", "style")
    if kind not in TOKEN_KINDS:
        raise EveditError(f"The LoRA in '{folder}' is a {kind} LoRA, not a style or subject LoRA.")
    if not (folder / lora_file(kind)).is_file():
        raise EveditError(f"'{folder}' holds no {kind} LoRA weights (it needs {lora_file(kind)}).")
    template = meta.get("template") or template
    if not template or "{caption}" not in template:
        raise EveditError(f"The {kind} LoRA in '{folder}' needs a caption template with {{caption}}, e.g. "
                          f"'{EXAMPLE_TEMPLATES[kind]}'.")
    scale = float(scale if scale is not None else meta.get("scale", TOKEN_SCALE))
    return TokenLoRA(folder, int(meta["rank"]), meta.get("alpha"), template, scale, kind)


def attach_token_lora(model, lora: TokenLoRA) -> None:
    """Load ``lora`` onto a copy of ``model``'s backbone (the token teacher's) and onto its motion
    model (active beside any alignment LoRA); the weights stay frozen. A LoRA of the kind the model
    already holds replaces it."""
    if model.token_lora is not None and model.token_lora.kind != lora.kind:
        raise EveditError(f"This model already holds a {model.token_lora.kind} LoRA; a model takes one "
                          "style or subject LoRA.")
    token_unet = copy.deepcopy(model.unet)
    file = lora_file(lora.kind)
    try:
        load_lora(token_unet, lora.folder, lora.rank, lora.alpha, adapter=lora.kind, file=file)
        load_lora(model.motion_unet, lora.folder, lora.rank, lora.alpha, adapter=lora.kind, file=file)
    except (ValueError, RuntimeError, KeyError) as exc:
        raise EveditError(f"The {lora.kind} LoRA in '{lora.folder}' does not fit this model: "
                          f"{str(exc).splitlines()[0]}") from exc
    model.token_unet = token_unet.requires_grad_(False)
    activate_adapters(model.motion_unet, lora_adapters(model.motion_unet))
    model.token_lora = lora


@torch.no_grad()
def token_pass(model, latents: torch.Tensor, token_caption: torch.Tensor, null: torch.Tensor, noise: torch.Tensor,
               scale: float | None = None, strength: float = PASS_STRENGTH, steps: int = PASS_STEPS) -> torch.Tensor:
    """The token teacher's SDEdit of clean ``latents`` (B, C, F, h, w), each frame alone: noised to
    the first of the last ``strength`` share of a ``steps``-step DDIM schedule (diffusers' img2img
    rule) and denoised on ``token_caption`` (B, L, D) with caption CFG ``scale`` (default: the
    LoRA's own). It makes the first-frame condition of a style or subject group (the first frame
    edited, then stylized or given the subject) and the two-pass baseline."""
    from ..diffusion import ddim_sample, sdedit_timesteps
    from .compose import Conditioning
    from .guided import text_guided

    teacher, cond = model.denoiser(model.token_lora.kind), Conditioning(caption=token_caption)
    scale = model.token_lora.scale if scale is None else scale
    timesteps = sdedit_timesteps(steps, strength, model.schedule.num_train_timesteps)
    t0 = torch.full((latents.shape[0],), timesteps[0], dtype=torch.long, device=latents.device)
    start = model.schedule.add_noise(latents, noise, t0)
    return ddim_sample(lambda x, t: text_guided(teacher, x, t, cond, null, scale), start, timesteps, model.schedule)
