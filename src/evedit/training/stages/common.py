"""Pieces the diffusion stages share: frozen parts from folders, text, metrics, image grids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from diffusers import UNet2DConditionModel

from ...errors import EveditError
from ...losses import denoising_loss, min_snr_weights
from ...models.codec import codec_class
from ...models.folder import refuse_pickles
from ...text import MiniLMTextEncoder


def load_frozen(cls, path: str | Path, what: str):
    """A diffusers model from a local folder (safetensors only), frozen, in eval mode."""
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise EveditError(
            f"The {what} folder '{folder}' has no config.json; train that stage first or fix the path."
        )
    refuse_pickles(folder)
    model = cls.from_pretrained(folder, use_safetensors=True, local_files_only=True)
    return model.eval().requires_grad_(False)


def load_trainable(cls, path: str | Path, what: str):
    """A diffusers model to continue training from (a stage's ``init_from``), in fp32."""
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise EveditError(f"init_from '{folder}' is not a {what} folder (no config.json).")
    refuse_pickles(folder)
    return cls.from_pretrained(folder, use_safetensors=True, local_files_only=True, torch_dtype=torch.float32)


def load_vae(path: str | Path):
    """The frozen codec in ``path``: ``AutoencoderKL`` or ``AutoencoderDC``, as its config says."""
    return load_frozen(codec_class(path), path, "codec (vae)")


def load_unet(path: str | Path) -> UNet2DConditionModel:
    return load_frozen(UNet2DConditionModel, path, "backbone (unet)")


_TEXT: dict[str, MiniLMTextEncoder] = {}


def text_encoder() -> MiniLMTextEncoder:
    """The frozen MiniLM encoder, loaded once per process."""
    if "minilm" not in _TEXT:
        _TEXT["minilm"] = MiniLMTextEncoder.from_pretrained()
    return _TEXT["minilm"]


def weighted_denoising_loss(schedule, out: torch.Tensor, target: torch.Tensor, t: torch.Tensor,
                            snr_gamma: float, positions: torch.Tensor | None = None) -> torch.Tensor:
    """The stages' denoising MSE: unweighted (``snr_gamma`` 0) or min-SNR-gamma weighted, times
    per-position weights ``positions`` (B, 1, h, w) where given (:func:`~evedit.losses.region_weights`)."""
    weights = positions
    if snr_gamma > 0:
        v = schedule.config.prediction_type == "v_prediction"
        snr = min_snr_weights(schedule.snr(t), snr_gamma, v_prediction=v)
        weights = snr if positions is None else positions * snr.view(-1, 1, 1, 1).to(positions)
    return denoising_loss(out, target, weights)


def drop_texts(texts: list[str], mask: torch.Tensor) -> list[str]:
    """Replace the texts where ``mask`` is True by the empty string (condition dropout)."""
    return ["" if bool(m) else s for s, m in zip(texts, mask)]


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR in dB between images in [-1, 1], per leading item."""
    mse = ((a.clamp(-1, 1) - b.clamp(-1, 1)) / 2).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp(min=1e-10))


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(..., 3, H, W) in [-1, 1] -> (..., H, W, 3) uint8."""
    x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.movedim(-3, -1).cpu().numpy()


def grid(rows: list[list[np.ndarray]], gap: int = 2) -> np.ndarray:
    """Images (H, W, 3) arranged in rows with white gaps."""
    h, w = rows[0][0].shape[:2]
    n_cols = max(len(r) for r in rows)
    out = np.full((len(rows) * (h + gap) - gap, n_cols * (w + gap) - gap, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            out[i * (h + gap): i * (h + gap) + h, j * (w + gap): j * (w + gap) + w] = img
    return out


TIMESTEP_BIAS = ("none", "later", "earlier")


def check_timestep_bias(strategy: str = "none", multiplier: float = 1.0, portion: float = 0.25) -> None:
    """Refuse a timestep bias :func:`biased_timesteps` cannot draw, in one sentence."""
    if strategy != "none" and (strategy not in TIMESTEP_BIAS or multiplier <= 0 or not 0 < portion < 1):
        raise EveditError(f"timestep bias: strategy one of {', '.join(TIMESTEP_BIAS)}, multiplier above 0 and "
                          f"portion in (0, 1); got {strategy!r}, {multiplier}, {portion}.")


def biased_timesteps(n: int, num_timesteps: int, generator, strategy: str = "none",
                     multiplier: float = 1.0, portion: float = 0.25) -> torch.Tensor:
    """``n`` training timesteps, uniform or with the ``portion`` latest (``"later"``) or earliest
    (``"earlier"``) timesteps drawn ``multiplier`` times as often: the timestep bias of diffusers'
    SDXL training example (``--timestep_bias_strategy``, ``--timestep_bias_multiplier``,
    ``--timestep_bias_portion``). ``"none"`` draws exactly as ``torch.randint`` does."""
    check_timestep_bias(strategy, multiplier, portion)
    if strategy == "none":
        return torch.randint(0, num_timesteps, (n,), generator=generator)
    weights = torch.ones(num_timesteps)
    k = int(num_timesteps * portion)
    if strategy == "later":
        weights[num_timesteps - k:] = multiplier
    else:
        weights[:k] = multiplier
    return torch.multinomial(weights, n, replacement=True, generator=generator)
