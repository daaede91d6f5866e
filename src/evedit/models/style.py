"""A style LoRA on the factorized model: EVE's "Additional Adapter Combinations" (stylized editing).

A style LoRA (``evedit train style-lora``: peft LoRA on the backbone's spatial attention, called by a
rare token in the caption) joins the model as a third adapter. :func:`attach_style` loads it twice,
as the peft adapter ``style``:

- on a copy of the 2D backbone, ``model.style_unet``, the style teacher's
  (:class:`~evedit.models.compose.StyleTeacher`: backbone + style LoRA, each frame alone). A copy
  (one more backbone in memory) keeps ``model.unet`` free of adapters, so the edit teacher, the
  discriminators' features and the saved backbone stay exactly the frozen one;
- on the motion model's spatial attention, active beside the alignment LoRA in the student (and
  switched off with every other LoRA in the video teacher and plug-and-play).

The backbone's caption carries the style's trigger through :attr:`StyleLoRA.template` (ShapeWorld's
zwx mosaic: ``"{caption}, as a zwx mosaic"``, the form the style stage trained on); with the empty
caption of an edit from the instruction alone it is the trigger phrase alone (decided here: the
student must be told to stylize, and the user gives no caption).
"""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import EveditError
from .lora import activate_adapters, lora_adapters, load_lora

STYLE_ADAPTER = "style"
STYLE_FILE = "style_lora.safetensors"
STYLE_JSON = "lora.json"

#: :func:`stylize`'s SDEdit strength (the last share of a DDIM schedule the style teacher runs) and
#: the style teacher's default CFG. Chosen on 8 test frames of the colour task, the true edit
#: stylized with the trigger alone (2026-12-05, ``benchmarks/results/stylized_edit.md``):
#: CFG 4 at any strength from 0.2 redraws the content (11.2 dB or less against the plain frame at
#: 0.3), CFG 1 adds almost no grout (style score 0.05 to 0.10 up to strength 0.5); 0.5 with CFG 1.5
#: to 2.5 gives the most mosaic per content lost.
STYLIZE_STRENGTH = 0.5
STYLIZE_STEPS = 10
STYLE_SCALE = 2.0


@dataclass(frozen=True)
class StyleLoRA:
    folder: Path  # holds style_lora.safetensors and lora.json
    rank: int
    alpha: float | None
    template: str  # the backbone's caption with the style's trigger; "{caption}" marks the caption
    scale: float = STYLE_SCALE  # the style teacher's caption CFG (as the group that aligned it chose)

    def caption(self, text: str) -> str:
        """The caption with the trigger (``text`` may be empty: the trigger phrase alone)."""
        out = self.template.replace("{caption}", text.strip())
        return out.strip().lstrip(",").strip() if not text.strip() else out

    def save(self, folder: Path) -> None:
        """Copy the weights and write ``lora.json`` (rank, alpha, template) into ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.folder / STYLE_FILE, folder / STYLE_FILE)
        meta = {"adapter": STYLE_ADAPTER, "rank": self.rank, "alpha": self.alpha, "template": self.template,
                "scale": self.scale}
        (folder / STYLE_JSON).write_text(json.dumps(meta, indent=1) + "\n")


def read_style(folder: str | Path, template: str | None = None, scale: float | None = None) -> StyleLoRA:
    """The style LoRA in ``folder`` (a ``style-lora`` stage export or a model folder's part);
    ``template`` is used where ``lora.json`` names none (the stage's export records only its token; a
    model folder's part records it); ``scale`` overrides the recorded CFG (default STYLE_SCALE)."""
    folder = Path(folder)
    if not (folder / STYLE_FILE).is_file() or not (folder / STYLE_JSON).is_file():
        raise EveditError(f"'{folder}' holds no style LoRA (it needs {STYLE_FILE} and {STYLE_JSON}).")
    meta = json.loads((folder / STYLE_JSON).read_text())
    if meta.get("adapter", STYLE_ADAPTER) != STYLE_ADAPTER:
        raise EveditError(f"The LoRA in '{folder}' is a {meta.get('adapter')} LoRA, not a style LoRA.")
    template = meta.get("template") or template
    if not template or "{caption}" not in template:
        raise EveditError(f"The style LoRA in '{folder}' needs a caption template with {{caption}}, e.g. "
                          f"'{{caption}}, as a {meta.get('token', 'zwx')} mosaic'.")
    scale = float(scale if scale is not None else meta.get("scale", STYLE_SCALE))
    return StyleLoRA(folder, int(meta["rank"]), meta.get("alpha"), template, scale)


def attach_style(model, style: StyleLoRA) -> None:
    """Load ``style`` onto a copy of ``model``'s backbone (the style teacher's) and onto its motion
    model (active beside any alignment LoRA); the weights stay frozen."""
    style_unet = copy.deepcopy(model.unet)
    try:
        load_lora(style_unet, style.folder, style.rank, style.alpha, adapter=STYLE_ADAPTER, file=STYLE_FILE)
        load_lora(model.motion_unet, style.folder, style.rank, style.alpha, adapter=STYLE_ADAPTER, file=STYLE_FILE)
    except (ValueError, RuntimeError, KeyError) as exc:
        raise EveditError(f"The style LoRA in '{style.folder}' does not fit this model: "
                          f"{str(exc).splitlines()[0]}") from exc
    model.style_unet = style_unet.requires_grad_(False)
    activate_adapters(model.motion_unet, lora_adapters(model.motion_unet))
    model.style = style




@torch.no_grad()
def stylize(model, latents: torch.Tensor, style_caption: torch.Tensor, null: torch.Tensor, noise: torch.Tensor,
            scale: float | None = None, strength: float = STYLIZE_STRENGTH, steps: int = STYLIZE_STEPS) -> torch.Tensor:
    """The style teacher's SDEdit of clean ``latents`` (B, C, F, h, w), each frame alone: noised to the
    first of the last ``strength`` share of a ``steps``-step DDIM schedule (diffusers' img2img rule)
    and denoised on ``style_caption`` (B, L, D) with caption CFG ``scale`` (default: the style's own).
    It makes the first-frame
    condition of a style group (the first frame edited, then stylized) and the two-pass baseline."""
    from ..diffusion import ddim_sample, ddim_timesteps
    from .compose import Conditioning
    from .guided import text_guided

    teacher, cond = model.denoiser("style"), Conditioning(caption=style_caption)
    scale = model.style.scale if scale is None else scale
    full = ddim_timesteps(steps, model.schedule.num_train_timesteps)
    timesteps = full[steps - max(1, int(steps * strength)):]
    t0 = torch.full((latents.shape[0],), timesteps[0], dtype=torch.long, device=latents.device)
    start = model.schedule.add_noise(latents, noise, t0)
    return ddim_sample(lambda x, t: text_guided(teacher, x, t, cond, null, scale), start, timesteps, model.schedule)
