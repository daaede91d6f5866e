"""Sample GIFs during alignment: input | student | each teacher's own generation (edit, video, style
or subject, as ``teachers`` lists them; in the adversarial phase), one row per clip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...io import write_video
from ...models.codec import decode_video


def _frames(model, latents: torch.Tensor) -> np.ndarray:
    """(B, C, F, h, w) latents -> (B, F, H, W, 3) uint8."""
    x = decode_video(model.vae, latents)  # (B, 3, F, H, W) in [-1, 1]
    x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 4, 1).cpu().numpy()


@torch.no_grad()
def write_samples(state, batch: dict, ab, fake: torch.Tensor, out_dir: Path, step: int) -> Path:
    model = state.teacher
    if "clip" in batch:
        inputs = ((batch["clip"].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1).numpy()
    else:  # an encoded store's batch: the input clip decoded from its latents
        inputs = _frames(model, ab.source)
    columns, names = [inputs, _frames(model, fake)], ["input", "student"]
    reals = {"edit": ab.edit_real, "video": ab.video_real, "style": ab.token_real, "subject": ab.token_real}
    for kind in state.cfg.teachers:
        if reals[kind] is not None:
            columns.append(_frames(model, reals[kind]))
            names.append(f"{kind} teacher")
    b, f, h, _, _ = columns[0].shape
    gap = np.full((f, h, 2, 3), 255, np.uint8)
    rows = []
    for i in range(b):
        parts = [p for col in columns for p in (col[i], gap)][:-1]
        rows.append(np.concatenate(parts, axis=2))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"align_{step:06d}.gif"
    write_video(path, np.concatenate(rows, axis=1), fps=8.0)
    (out_dir / f"align_{step:06d}.txt").write_text(
        f"columns: {' | '.join(names)} (teachers only in the adversarial phase)\n"
        + "\n".join(batch.get("instruction", ["(an encoded store's items carry no instruction text)"])) + "\n")
    return path
