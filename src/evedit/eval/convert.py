"""``evedit convert viclip IN.pth OUT_DIR``: the official ViCLIP pickle -> safetensors + config.

The checkpoint is read with ``torch.load(weights_only=True)``, PyTorch's restricted unpickler,
which builds only tensors and plain containers and refuses anything that would run code; nothing
else in evedit ever unpickles. The state dict is taken from the checkpoint's ``"model"`` entry (as
the reference code does), or the checkpoint itself; ``module.`` prefixes (DDP) are dropped.
Sizes are read off the tensors' shapes (head counts are not stored: width / 64, CLIP's rule, unless
given). A CLIP tokenizer (the ViT-L/14 one: same BPE as ViCLIP's ``simple_tokenizer``) is copied
in from a local folder or the local Hugging Face cache when available.

The key layout follows the reference source (see :mod:`evedit.eval.viclip`); it has not been
checked against the released file, which could not be downloaded here.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import torch

from ..atomic import replace_folder
from ..errors import EveditError
from .viclip import CONFIG_FILE, WEIGHTS_FILE, ViCLIP, ViCLIPConfig

DEFAULT_TOKENIZER = "openai/clip-vit-large-patch14"
_BLOCK = re.compile(r"^(vision_encoder|text_encoder)\.transformer\.resblocks\.(\d+)\.")


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of a ViCLIP ``.pth``, through the weights-only unpickler."""
    if not path.is_file():
        raise EveditError(f"ViCLIP checkpoint '{path}' does not exist.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # the restricted unpickler raises UnpicklingError, RuntimeError, ...
        raise EveditError(f"Could not read '{path}' as a weights-only checkpoint (it may hold code or "
                          f"be corrupt): {str(exc).splitlines()[0]}") from exc
    for key in ("model", "state_dict", "module"):
        if isinstance(ckpt, dict) and isinstance(ckpt.get(key), dict):
            ckpt = ckpt[key]
            break
    if not isinstance(ckpt, dict) or not all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise EveditError(f"'{path}' does not hold a state dict of tensors.")
    return {k.removeprefix("module."): v for k, v in ckpt.items()}


def infer_config(state: dict[str, torch.Tensor], vision_heads: int | None = None,
                 text_heads: int | None = None) -> ViCLIPConfig:
    """Model sizes from the tensors' shapes."""
    try:
        conv = state["vision_encoder.conv1.weight"]  # (W, 3, k, p, p)
        pos = state["vision_encoder.positional_embedding"]  # (n + 1, W)
        tokens = state["text_encoder.token_embedding.weight"]  # (V, Wt)
        text_pos = state["text_encoder.positional_embedding"]  # (L, Wt)
        proj = state["vision_encoder.proj"]  # (W, E)
        frames = state["vision_encoder.temporal_positional_embedding"].shape[1]
    except KeyError as exc:
        raise EveditError(f"The checkpoint is not a ViCLIP state dict: it lacks {exc.args[0]!r}.") from None
    layers = {"vision_encoder": 0, "text_encoder": 0}
    for key in state:
        if m := _BLOCK.match(key):
            layers[m.group(1)] = max(layers[m.group(1)], int(m.group(2)) + 1)
    width, text_width, patch = conv.shape[0], tokens.shape[1], conv.shape[-1]
    return ViCLIPConfig(
        vision_width=width, vision_layers=layers["vision_encoder"], vision_heads=vision_heads or max(1, width // 64),
        patch_size=patch, temporal_kernel=conv.shape[2], image_size=round((pos.shape[0] - 1) ** 0.5) * patch,
        num_frames=frames, embed_dim=proj.shape[1], text_width=text_width, text_layers=layers["text_encoder"],
        text_heads=text_heads or max(1, text_width // 64), context_length=text_pos.shape[0],
        vocab_size=tokens.shape[0],
    )


def _copy_tokenizer(source: str | Path | None, dest: Path) -> bool:
    from transformers import CLIPTokenizer

    if source is None:
        return False
    try:
        tok = CLIPTokenizer.from_pretrained(str(source), local_files_only=True)
    except (OSError, ValueError):
        return False
    tok.save_pretrained(dest)
    return True


def convert_viclip(src: str | Path, out: str | Path, tokenizer: str | Path | None = DEFAULT_TOKENIZER,
                   vision_heads: int | None = None, text_heads: int | None = None) -> Path:
    """Write ``out/`` = ``config.json`` + ``model.safetensors`` (+ tokenizer files); atomic."""
    from safetensors.torch import save_file

    src, out = Path(src), Path(out)
    state = read_checkpoint(src)
    config = infer_config(state, vision_heads, text_heads)
    model = ViCLIP(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise EveditError(f"'{src}' does not match the ViCLIP layout: missing {sorted(missing)[:3]}, "
                          f"unexpected {sorted(unexpected)[:3]}.")
    out.parent.mkdir(parents=True, exist_ok=True)
    def write(tmp: Path) -> None:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        (tmp / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=2) + "\n")
        if not _copy_tokenizer(tokenizer, tmp):
            warnings.warn(f"No CLIP tokenizer found at {tokenizer!r}: copy vocab.json and merges.txt of "
                          f"{DEFAULT_TOKENIZER} into '{out}' before scoring text.", stacklevel=4)

    return replace_folder(out, write)
