"""Edit options: one validated record shared by the Python API and the command line.

Every check raises :class:`~evedit.errors.EveditError` with one sentence, before any file is
read or any model is loaded, so a bad option never costs a model load and never leaves output.

Defaults the paper leaves open, decided here:

- ``steps``: EVE samples the student with k = 3 DDIM steps (the k it was distilled with);
  the teacher editors take 50 DDIM steps (the usual DDIM budget, and the "50 steps" the
  speed claim compares against).
- ``guidance``: for EVE the model's ``student_guidance`` (1, none, unless the model chose
  another on the ShapeWorld val split; 2.0 for the shipped model); >1 applies ip2p dual guidance
  (image 1.5, text ``guidance``) to the student, as plug-and-play is guided. The teachers use
  the scales the student was distilled against (:class:`~evedit.training.fdd.config.FDDConfig`:
  ip2p text 2.0 with image 1.5, video CFG 2.0), so editors compare like for like.
- ``first_frame_steps``: 4 DDIM steps for the edit teacher's first-frame edit. The alignment
  made the student's first-frame conditions with 10 (``real_steps``); measured on the shipped
  0.3.0 model (2026-12-03, 33 test clips, 3 of each non-vision task), EVE's clips score 19.491 dB
  against the truth with 4 steps, 19.487 with 6 and 19.483 with 10 (worst clip -0.06 dB against
  10), while the first-frame edit costs 0.24 s instead of 0.59 s of an 8-frame edit's 1.22 s
  (``benchmarks/results/edit.md``). Ask for more with ``--first-frame-steps``.
- ``window``: the model's training window (``spec.num_frames``, 8 for EVE); ``overlap`` 1: each
  window starts on the previous window's last edited frame, which conditions the video adapter.
- ``lora_scale``: the strength of EVE's alignment LoRA (its low-rank update times the scale; 0
  is the unaligned student). EVE has none; the default is the model's (``ModelSpec.lora_scale``,
  1 unless the model chose another on the ShapeWorld val split, ``benchmarks/lora_scale.py``).
  Only the ``eve`` editor uses the LoRA, so the others ignore it.
- ``region``: "full" edits whole frames (EVE); "auto" edits only where the edit adapter finds the
  instruction acts (:mod:`evedit.editing.auto_region`, not in the paper). The default is the
  model's: "auto" for the tasks in ``ModelSpec.region_tasks`` (chosen on the ShapeWorld val split),
  "full" for the others; a ``--mask`` replaces it. Every editor takes it.
- ``noise_share``: how much of each frame's starting noise is one draw shared by the whole clip
  (0: every frame its own noise; 1: the same noise for every frame; between: PYoCo's mixed noise
  prior, :func:`~evedit.editing.editors.frame_noise`). Not in the paper, which does not say how
  frames' noise is drawn. Every editor takes it. The default is the model's
  (``ModelSpec.noise_share``, 0 unless the model chose another on the ShapeWorld val split,
  ``benchmarks/noise_share.py``).
- ``seed`` 0: every run is seeded, so the same command gives the same frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import unicodedata

from ..errors import EveditError

EDITORS = ("eve", "plug-and-play", "per-frame", "sdedit")
ALIASES = {"pnp": "plug-and-play", "plug_and_play": "plug-and-play", "per_frame": "per-frame",
           "perframe": "per-frame", "student": "eve"}
FITS = ("crop", "stretch")
REGIONS = ("auto", "full")  # --region: the region the edit adapter finds (evedit.editing.auto_region), or whole frames
AUTO_TASK_THRESHOLD = 0.5  # `evedit edit --task auto` refuses a classifier choice less likely than this
MAX_STEPS = 1000  # T: no schedule has more timesteps than the model was trained with
MAX_GUIDANCE = 100.0  # models.presets.MAX_GUIDANCE, written out (see MAX_LORA_SCALE)
MAX_LORA_SCALE = 4.0  # models.presets.MAX_LORA_SCALE, written out: options import no torch (a test checks)
SDEDIT_STRENGTH = 0.75  # the paper's SDEdit baseline noise strength

# The alignment's values (FDDConfig: k, edit_text_scale, video_scale, edit_image_scale,
# real_steps), written out so that `evedit edit` does not import the training package (a test
# checks they stay equal).
FDD_K, FDD_EDIT_TEXT_SCALE, FDD_VIDEO_SCALE, FDD_EDIT_IMAGE_SCALE, FDD_REAL_STEPS = 3, 2.0, 2.0, 1.5, 10
DEFAULT_STEPS = {"eve": FDD_K, "plug-and-play": 50, "per-frame": 50, "sdedit": 50}
DEFAULT_GUIDANCE = {"eve": 1.0, "plug-and-play": FDD_EDIT_TEXT_SCALE,
                    "per-frame": FDD_EDIT_TEXT_SCALE, "sdedit": FDD_VIDEO_SCALE}
IMAGE_GUIDANCE = FDD_EDIT_IMAGE_SCALE  # ip2p image scale of the edit teacher and plug-and-play
FIRST_FRAME_STEPS = 4  # decided by measurement, see the module docstring
FIRST_FRAME_TEXT_GUIDANCE = FDD_EDIT_TEXT_SCALE


def check_region(region: str | None) -> None:
    """``--region`` is None (the model's default), or one of :data:`REGIONS`; else one sentence."""
    if region is not None and region not in REGIONS:
        raise EveditError(f"Unknown --region {region!r}; choose one of: {', '.join(REGIONS)}.")


@dataclass(frozen=True)
class EditOptions:
    """What to do; ``None`` means "the editor's or the model's default" (see module notes)."""

    editor: str = "eve"
    steps: int | None = None
    guidance: float | None = None
    seed: int = 0
    task: str = "auto"
    caption: str | None = None
    max_frames: int | None = None
    stride: int = 1
    window: int | None = None
    overlap: int | None = None
    first_frame_steps: int | None = None
    lora_scale: float | None = None  # EVE's alignment LoRA strength (None: the model's)
    fit: str = "crop"
    region: str | None = None  # "auto": edit the region the edit adapter finds; "full": whole frames; None: the model's
    min_task_probability: float = 0.0  # task "auto": refuse a classifier choice below this
    noise_share: float | None = None  # share of the frames' noise drawn once per clip (None: the model's)

    def checked(self) -> "EditOptions":
        """The options with the editor name canonical and every value in range."""
        editor = canonical_editor(self.editor)
        _int_in("--steps", self.steps, 1, MAX_STEPS)
        _int_in("--first-frame-steps", self.first_frame_steps, 1, MAX_STEPS)
        _int_in("--seed", self.seed, 0, None, optional=False)
        _int_in("--max-frames", self.max_frames, 1, None)
        _int_in("--stride", self.stride, 1, None, optional=False)
        _int_in("--window", self.window, 1, None)
        _int_in("--overlap", self.overlap, 0, None)
        if self.window is not None and self.overlap is not None and self.overlap >= self.window:
            raise EveditError(
                f"--overlap must be smaller than --window, got overlap {self.overlap} and window {self.window}."
            )
        if self.guidance is not None:
            g = self.guidance
            if isinstance(g, bool) or not isinstance(g, (int, float)) or not math.isfinite(g) \
                    or not 1.0 <= g <= MAX_GUIDANCE:
                raise EveditError(
                    f"--guidance must be a number from 1 (no guidance) to {MAX_GUIDANCE:g}, got {g!r}."
                )
        if self.lora_scale is not None:
            s = self.lora_scale
            if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0.0 <= s <= MAX_LORA_SCALE:
                raise EveditError(f"--lora-scale must be a number from 0 (no alignment LoRA) to "
                                  f"{MAX_LORA_SCALE:g}, got {s!r}.")
        check_noise_share(self.noise_share, "--noise-share", optional=True)
        p = self.min_task_probability
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise EveditError(f"The minimum task probability must be from 0 to 1, got {p!r}.")
        check_region(self.region)
        if self.fit not in FITS:
            raise EveditError(f"Unknown --fit {self.fit!r}; choose one of: {', '.join(FITS)}.")
        if not isinstance(self.task, str) or not self.task.strip():
            raise EveditError("--task must be 'auto' or a task name.")
        if self.caption is not None:
            check_text(self.caption, "caption", "give a description of the edited video or leave it out")
        return replace(self, editor=editor, task=self.task.strip())

    def resolved(self, model_window: int, max_window: int, lora_scale: float = 1.0,
                 student_guidance: float = DEFAULT_GUIDANCE["eve"], noise_share: float = 0.0) -> "EditOptions":
        """Fill the model-dependent defaults: steps, guidance, window, overlap, LoRA scale, noise share.

        ``model_window``: the window the video adapter was trained on; ``max_window``: the most
        frames its temporal position embeddings cover (a longer window cannot run);
        ``lora_scale``: the model's alignment-LoRA strength (``ModelSpec.lora_scale``);
        ``student_guidance``: EVE's default guidance (``ModelSpec.student_guidance``);
        ``noise_share``: the model's (``ModelSpec.noise_share``)."""
        window = self.window if self.window is not None else min(model_window, max_window)
        if window > max_window:
            raise EveditError(
                f"--window {window} is longer than this model's temporal layers cover ({max_window} frames)."
            )
        overlap = self.overlap if self.overlap is not None else min(1, window - 1)
        if overlap >= window:
            raise EveditError(
                f"--overlap must be smaller than --window, got overlap {overlap} and window {window}."
            )
        return replace(
            self, window=window, overlap=overlap,
            steps=self.steps or DEFAULT_STEPS[self.editor],
            guidance=self.guidance if self.guidance is not None else float(
                {**DEFAULT_GUIDANCE, "eve": student_guidance}[self.editor]),  # EVE's is the model's
            first_frame_steps=self.first_frame_steps or FIRST_FRAME_STEPS,
            lora_scale=float(self.lora_scale if self.lora_scale is not None else lora_scale),
            noise_share=float(self.noise_share if self.noise_share is not None else noise_share),
        )


def check_noise_share(share, name: str, optional: bool = False) -> None:
    """A noise share is a number from 0 to 1 (None too when ``optional``); else one sentence."""
    if share is None and optional:
        return
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0.0 <= share <= 1.0:
        raise EveditError(f"{name} must be a number from 0 (each frame its own noise) to 1 (one noise for "
                          f"every frame), got {share!r}.")


def canonical_editor(name: str) -> str:
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in EDITORS:
        raise EveditError(f"Unknown editor {name!r}; choose one of: {', '.join(EDITORS)}.")
    return key


def check_instruction(instruction: object) -> str:
    """The instruction, stripped, if it is text a person could have meant (see :func:`check_text`)."""
    return check_text(instruction, "instruction", 'say what to change, e.g. "make the circle red"')


def check_text(text: object, what: str, hint: str) -> str:
    """``text`` stripped; refused with one sentence when it is empty, is not valid Unicode text
    (bytes that are not UTF-8 reach Python as lone surrogates), holds a control character other
    than tab and line breaks, or holds no letter at all (long text only warns later)."""
    if not isinstance(text, str) or not text.strip():
        raise EveditError(f"The {what} is empty; {hint}.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EveditError(
            f"The {what} is not valid text (it holds bytes that are not UTF-8 at character {exc.start + 1}); "
            f"{hint}."
        ) from exc
    bad = next((c for c in text if unicodedata.category(c) in ("Cc", "Cs") and c not in "\t\n\r"), None)
    if bad is not None:
        raise EveditError(f"The {what} holds a control character (U+{ord(bad):04X}); {hint}.")
    if not any(c.isalpha() for c in text):
        raise EveditError(f"The {what} holds no letters, so it cannot describe an edit; {hint}.")
    return text.strip()


def _int_in(name: str, value, low: int, high: int | None, optional: bool = True) -> None:
    if value is None and optional:
        return
    ok = isinstance(value, int) and not isinstance(value, bool)
    if ok and value >= low and (high is None or value <= high):
        return
    bound = f"from {low} to {high}" if high is not None else f"{low} or more"
    raise EveditError(f"{name} must be a whole number {bound}, got {value!r}.")


def check_device(name: str | None):
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``."""
    import torch

    text = "auto" if name is None else str(name).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError) as exc:
        raise EveditError(f"Unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps.") from exc
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise EveditError(f"Device {name!r} was asked for but CUDA is not available on this machine.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise EveditError(f"Device {name!r} does not exist ({torch.cuda.device_count()} CUDA devices).")
        return device
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise EveditError(f"Device {name!r} was asked for but MPS is not available on this machine.")
        return device
    raise EveditError(f"Unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps.")
