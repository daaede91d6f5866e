"""TGVE / TGVE+ metrics with the real models (transformers' CLIP classes and our ViCLIP).

Models come from local folders or hub ids already in the local Hugging Face cache (nothing is
downloaded); weights are loaded from safetensors only:

- ``clip_text`` and ``clip_frame``: ``openai/clip-vit-large-patch14`` as LOVEU-TGVE's
  ``run_eval.py``: frames resized to 480x480 (bicubic), then the CLIP processor; the text score is
  the mean of ``logits_per_image`` (logit_scale.exp() * cos, i.e. 100 cos); CLIPFrame the mean
  cosine over all off-diagonal frame pairs. ``clip_dir`` adds InstructPix2Pix's directional score
  per frame (input caption -> output caption).
- ``pick_score``: ``yuvalkirstain/PickScore_v1`` (the TGVE script's ``pickapic-anonymous``) with the
  ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K`` processor: logit_scale.exp() * cos, mean over frames.
- ``viclip_out`` / ``viclip_dir``: a converted ViCLIP (see :mod:`evedit.eval.viclip`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import EveditError
from . import metrics as M
from .items import Item

CLIP_SOURCE = "openai/clip-vit-large-patch14"
PICKSCORE_SOURCE = "yuvalkirstain/PickScore_v1"
PICKSCORE_PROCESSOR = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
TGVE_METRICS: tuple[str, ...] = ("pick_score", "clip_frame", "viclip_dir", "viclip_out", "clip_text", "clip_dir")
METRIC_MODELS = {"clip": ("clip_text", "clip_frame", "clip_dir"), "pickscore": ("pick_score",),
                 "viclip": ("viclip_out", "viclip_dir")}
TGVE_SIZE = 480  # frames are resized to 480x480 first, as the TGVE script does


class CLIPScorer:
    """A transformers ``CLIPModel`` and its processor: unit image / text embeddings and the scale."""

    def __init__(self, model, processor, batch_size: int = 32):
        self.model = model.eval().requires_grad_(False)
        self.processor, self.batch_size = processor, batch_size

    @classmethod
    def from_pretrained(cls, source: str | Path, processor: str | Path | None = None, what: str = "CLIP",
                        device: str | torch.device = "cpu") -> "CLIPScorer":
        from transformers import CLIPModel, CLIPProcessor

        from ..text import quiet_transformers

        kw = dict(local_files_only=True)
        try:
            with quiet_transformers():
                model = CLIPModel.from_pretrained(str(source), use_safetensors=True, **kw)
                proc = CLIPProcessor.from_pretrained(str(processor or source), **kw)
        except (OSError, ValueError) as exc:
            raise EveditError(
                f"Could not load the {what} model '{source}'" + (f" with processor '{processor}'" if processor else "")
                + " from a local folder or the local Hugging Face cache (safetensors weights needed): download it "
                f"on a connected machine (`huggingface-cli download {source}`) or pass a folder."
            ) from exc
        return cls(model.to(device), proc)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.exp())

    @torch.no_grad()
    def image_features(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 ``(F, H, W, 3)`` -> unit embeddings ``(F, D)``."""
        images = [Image.fromarray(f).resize((TGVE_SIZE, TGVE_SIZE), Image.BICUBIC) for f in frames]
        out = []
        for i in range(0, len(images), self.batch_size):
            pixels = self.processor(images=images[i:i + self.batch_size], return_tensors="pt")["pixel_values"]
            out.append(_pooled(self.model.get_image_features(pixel_values=pixels.to(self.device))))
        return F.normalize(torch.cat(out).float(), dim=-1)

    @torch.no_grad()
    def text_features(self, texts: list[str]) -> torch.Tensor:
        """Texts -> unit embeddings ``(B, D)`` (truncated to 77 tokens)."""
        tok = self.processor(text=list(texts), padding=True, truncation=True, max_length=77, return_tensors="pt")
        feats = self.model.get_text_features(input_ids=tok["input_ids"].to(self.device),
                                             attention_mask=tok["attention_mask"].to(self.device))
        return F.normalize(_pooled(feats).float(), dim=-1)


def _pooled(out) -> torch.Tensor:
    """transformers 5 returns a model output whose ``pooler_output`` is projected; 4.x a tensor."""
    return out.pooler_output if hasattr(out, "pooler_output") else out


class TGVEScorer:
    """The TGVE metrics of the models given (None skips that model's metrics)."""

    def __init__(self, clip: CLIPScorer | None = None, pickscore: CLIPScorer | None = None, viclip=None):
        if clip is None and pickscore is None and viclip is None:
            raise EveditError("TGVE scoring needs at least one of the CLIP, PickScore and ViCLIP models.")
        self.clip, self.pickscore, self.viclip = clip, pickscore, viclip
        self.metrics = tuple(m for m in TGVE_METRICS if any(
            m in METRIC_MODELS[name] for name, model in (("clip", clip), ("pickscore", pickscore),
                                                           ("viclip", viclip)) if model is not None))
        self._inputs: dict[str, dict[str, torch.Tensor]] = {}
        self._texts: dict[tuple[str, str], torch.Tensor] = {}

    def _text(self, which: str, model, caption: str) -> torch.Tensor:
        key = (which, caption)
        if key not in self._texts:
            self._texts[key] = model.text_features([caption])
        return self._texts[key]

    def _input(self, item: Item, inp: np.ndarray) -> dict[str, torch.Tensor]:
        """Input-video embeddings, shared by every prompt and editor of that video."""
        key = str(item.video or item.key)
        if key not in self._inputs:
            self._inputs.clear()  # items of one video are consecutive: keep one
            feats = {}
            if self.clip is not None:
                feats["clip"] = self.clip.image_features(inp)
            if self.viclip is not None:
                feats["viclip"] = self.viclip.video_features(inp)
            self._inputs[key] = feats
        return self._inputs[key]

    def score(self, item: Item, inp: np.ndarray, out: np.ndarray) -> dict[str, float | None]:
        res: dict[str, float | None] = {}
        feats = self._input(item, inp)
        if self.clip is not None:
            e_out = self.clip.image_features(out)
            t_out = self._text("clip", self.clip, item.output_caption)
            res["clip_text"] = M.scaled_cosine(e_out, t_out, self.clip.logit_scale)
            res["clip_frame"] = M.frame_consistency(e_out)
            if item.input_caption and len(out) == len(inp):
                t_in = self._text("clip", self.clip, item.input_caption)
                res["clip_dir"] = M.directional(e_out, feats["clip"], t_out, t_in)
        if self.pickscore is not None:
            t_out = self._text("pick", self.pickscore, item.output_caption)
            res["pick_score"] = M.scaled_cosine(self.pickscore.image_features(out), t_out, self.pickscore.logit_scale)
        if self.viclip is not None:
            v_out = self.viclip.video_features(out)
            t_out = self._text("viclip", self.viclip, item.output_caption)
            res["viclip_out"] = M.mean_cosine(v_out, t_out)
            if item.input_caption:
                t_in = self._text("viclip", self.viclip, item.input_caption)
                res["viclip_dir"] = M.directional(v_out, feats["viclip"], t_out, t_in)
        return res


def load_tgve_scorer(metrics: tuple[str, ...] | None = None, clip: str | Path = CLIP_SOURCE,
                     pickscore: str | Path = PICKSCORE_SOURCE, pickscore_processor: str | Path = PICKSCORE_PROCESSOR,
                     viclip: str | Path | None = None, device: str | torch.device = "cpu") -> TGVEScorer:
    """Load the models the requested model groups (``clip``, ``pickscore``, ``viclip``) need."""
    from .viclip import load_viclip

    wanted = set(metrics or METRIC_MODELS)
    unknown = wanted - set(METRIC_MODELS)
    if unknown:
        raise EveditError(f"Unknown metric group {sorted(unknown)[0]!r}; groups are {', '.join(METRIC_MODELS)}.")
    if "viclip" in wanted and viclip is None:
        raise EveditError(
            "ViCLIP_dir / ViCLIP_out need ViCLIP: get ViClip-InternVid-10M-FLT.pth (Hugging Face OpenGVLab/ViCLIP), "
            "convert it with `evedit convert viclip ViClip-InternVid-10M-FLT.pth models/viclip` and pass "
            "--viclip models/viclip (or leave viclip out of --metrics)."
        )
    return TGVEScorer(
        clip=CLIPScorer.from_pretrained(clip, what="CLIP", device=device) if "clip" in wanted else None,
        pickscore=(CLIPScorer.from_pretrained(pickscore, pickscore_processor, what="PickScore", device=device)
                   if "pickscore" in wanted else None),
        viclip=load_viclip(viclip, device) if "viclip" in wanted else None,
    )
