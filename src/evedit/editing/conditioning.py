"""Conditioning for an edit, built exactly as the alignment built the student's
(:func:`evedit.training.fdd.teachers.encode_batch` and ``AlignBatch.student_cond``).

- Texts: the edit adapter always gets the instruction. The backbone gets, by the model's
  ``prompt_routing``: ``paper``, the output caption when one is given, else the empty text;
  ``empty``, the empty text (the adapter was trained to carry the edit alone), or the caption
  when one is given; ``instruction`` (ip2p-style ControlNets), the instruction. A user rarely has
  an output caption. Decided by measurement (benchmarks/results/caption_choice.md, the 0.1.0
  model, 8 test frames per task): with no caption the empty text scored 16.8 dB mean, the
  instruction as the caption 13.6 dB (it turned whole frames the asked colour), the output caption
  18.6 dB. Text longer than the encoder takes is truncated with a warning by the text encoder.
- Task: ``auto`` asks the model's task classifier (``model.extras["task_classifier"]``), a name is
  checked against ``model.spec.tasks``; a model without task labels takes none.
- Source: the input frames in the edit adapter's condition space (codec latents for ShapeWorld,
  RGB in [0, 1] for ip2p ControlNets). The codec runs in chunks so memory stays flat in length.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import EveditError
from ..models import EVEModel
from ..models.codec import decode_video, encode_video

CODEC_CHUNK = 8  # frames per codec call: memory does not grow with the video's length


def encode_texts(model: EVEModel, instruction: str, caption: str | None, null: torch.Tensor | None = None):
    """-> (caption (1, L, D), instruction (1, L, D), null (1, L, D)) hidden states; ``null``, the
    empty text's embedding, is computed unless given (it never changes for a model)."""
    device = model.unet.device
    instr = model.text_encoder([instruction]).hidden_states.to(device)
    if null is None:
        null = model.text_encoder([""]).hidden_states.to(device)
    if model.spec.prompt_routing == "instruction" or (caption is not None and caption.strip() == instruction):
        cap = instr
    elif caption is None or not caption.strip():
        cap = null
    else:
        cap = model.text_encoder([caption.strip()]).hidden_states.to(device)
    return cap, instr, null


def token_caption(model: EVEModel, caption: str | None) -> torch.Tensor | None:
    """With a style or subject LoRA (:mod:`evedit.models.token_lora`): the caption (empty when none
    is given) with its trigger, (1, L, D), which the student gives its backbone; None without one."""
    if model.token_lora is None:
        return None
    return model.text_encoder([model.token_lora.caption(caption or "")]).hidden_states.to(model.unet.device)


def load_classifier(folder: Path):
    from ..models.task_classifier import TaskClassifier

    try:
        return TaskClassifier.from_pretrained(folder, use_safetensors=True, local_files_only=True).eval()
    except (OSError, ValueError, RuntimeError) as exc:
        raise EveditError(f"Could not load the task classifier at '{folder}': {str(exc).splitlines()[0]}") from exc


def resolve_task(model: EVEModel, task: str, instruction: str, classifier=None, min_probability: float = 0.0):
    """-> (task name or None, probability or None, label tensor (1,) or None).

    ``classifier``: a loaded classifier to reuse, or None to load ``model.extras`` on demand.
    ``min_probability``: with ``task="auto"``, a choice below it is refused with the two most
    likely tasks named (the command line uses :data:`~evedit.editing.options.AUTO_TASK_THRESHOLD`).
    """
    tasks = tuple(model.spec.tasks)
    if not tasks:
        if task != "auto":
            raise EveditError(f"This model takes no task label, so --task {task!r} cannot be used; leave it out.")
        return None, None, None
    probability = None
    if task == "auto":
        if classifier is None:
            folder = model.extras.get("task_classifier")
            if folder is None:
                raise EveditError(
                    "This model has no task classifier, so --task auto cannot pick the task; "
                    f"pass --task NAME (one of: {', '.join(tasks)})."
                )
            classifier = load_classifier(Path(folder))
        encoder = model.text_encoder if getattr(model.text_encoder, "pooled_size", None) == \
            classifier.config.text_dim else None
        ranked = classifier.rank(instruction, encoder)
        task, probability = ranked[0]
        if probability < min_probability:
            pair = " and ".join(f"{name} (p={p:.2f})" for name, p in ranked[:2])
            raise EveditError(
                f"The task classifier is unsure of this instruction's task (it hesitated between {pair}, "
                f"below the {min_probability:.2f} it needs); pass --task NAME (one of: {', '.join(tasks)})."
            )
        if task not in tasks:
            raise EveditError(f"The task classifier chose {task!r}, which this model does not know; pass --task NAME.")
    elif task not in tasks:
        raise EveditError(f"Unknown task {task!r}; this model knows: {', '.join(tasks)} (or auto).")
    label = torch.tensor([tasks.index(task)], device=model.unet.device)
    return task, probability, label


def encode_source(model: EVEModel, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 3, F, S, S) pixels in [-1, 1] -> (codec latents (1, C, F, h, w), adapter source)."""
    video = video.to(model.unet.device)
    chunks = [encode_video(model.vae, video[:, :, i:i + CODEC_CHUNK])
              for i in range(0, video.shape[2], CODEC_CHUNK)]
    latents = torch.cat(chunks, dim=2).float()
    if model.edit_adapter.cond_space == "pixel":
        return latents, (video + 1) / 2
    return latents, latents


def decode_latents(model: EVEModel, latents: torch.Tensor) -> torch.Tensor:
    """(1, C, F, h, w) latents -> (1, 3, F, S, S) pixels in [-1, 1], decoded in chunks."""
    chunks = [decode_video(model.vae, latents[:, :, i:i + CODEC_CHUNK]).float()
              for i in range(0, latents.shape[2], CODEC_CHUNK)]
    return torch.cat(chunks, dim=2)
