"""FDD settings: every choice the paper leaves open is a named, documented field.

Paper values (EVE sections 3-4): k = 3 rollout steps with K-bin timesteps, alpha = beta = 0.5,
lambda = 2.5, 1000 SDS-only iterations then 500 with the adversarial losses, batch 64, lr 1e-5.
Not given by the paper, decided here (see each field): c(t), the SDS timestep range, teacher
guidance scales, the DDIM steps of the teachers' "real" generations, the discriminator's feature
network, head width, learning rate and update ratio, R1, the generator-loss form, LoRA rank.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...errors import EveditError
from ...models.presets import MAX_GUIDANCE

ABLATIONS = ("none", "no-sds", "no-adv", "no-kbin", "random-init")
TEACHER_KINDS = ("edit", "video", "style", "subject")  # the teachers FDD can score with (evedit.training.fdd.loss.TEACHER_TERMS)


@dataclass
class FDDConfig:
    model: str = "shapeworld"  # model folder or preset holding the pretrained parts (teachers)
    # --- schedule of training (paper: 1000 SDS-only + 500 SDS+adversarial) ---
    steps_sds: int = 1000
    steps_adv: int = 500
    batch_size: int = 2  # clips per micro-batch and process (paper: 64 on GPUs)
    grad_accum: int = 1  # micro-batches per step: the global batch is batch_size x grad_accum x processes
    mixed_precision: str = "no"  # "no" | "fp16" | "bf16" on GPUs (CPU runs are fp32)
    lr: float = 1e-5  # LoRA learning rate (paper: 1e-5, fixed, no warm-up)
    disc_lr: float = 1e-4  # discriminator heads (not given; ADD-like)
    lora_rank: int = 8  # not given by the paper
    lora_init: str = "fresh"  # "fresh": a new LoRA (B = 0) even when the model folder ships one; "continue": tune it
    # --- student rollout ---
    k: int = 3  # rollout steps (paper: 3, "the most that fits in memory")
    timesteps: str = "kbin"  # "kbin" (paper) or "fixed" (the w/o K-Bin ablation)
    kbin_first: str = "max"  # first step at T-1 (pure noise at zero terminal SNR) or "random" in bin 1
    grad_checkpointing: bool = False  # recompute each rollout step in backward to save memory
    student_guidance: float = 1.0  # text scale of the student's rollout, ip2p dual guided with
    #   edit_image_scale when > 1 (not in the paper: its student is unguided); the exported model
    #   samples EVE at it (spec.student_guidance). benchmarks/results/guided_fdd.md
    align_region: bool = False  # on the model's region tasks (spec.region_tasks), keep the rollout, the
    #   edit teacher's first frame and its reals to the region the edit adapter finds, the input's
    #   latents outside, as EVE samples them with --region auto (evedit.editing.auto_region; not in
    #   the paper, which edits whole frames). benchmarks/results/align_region.md
    noise_share: float = 0.0  # share of the rollout's starting noise drawn once per clip, as EVE samples
    #   at spec.noise_share (evedit.editing.editors.frame_noise; not in the paper; 0: each frame its own);
    #   the exported model samples at it. benchmarks/results/noise_share.md
    # --- SDS ---
    # Each frozen teacher by name, with the weight of its terms (its SDS and adversarial losses and
    # its critic's): EVE's alpha (edit) and beta (video), 0.5 each. Every teacher brings its own
    # SDS term and discriminator (evedit.training.fdd.loss.TEACHER_TERMS lists the kinds).
    teachers: dict = field(default_factory=lambda: {"edit": 0.5, "video": 0.5})
    lam: float = 2.5  # SDS weight relative to the adversarial term (ADD's lambda)
    sds_weighting: str = "sigma"  # c(t); see evedit.losses.sds
    sds_t_min: float = 0.02  # SDS timestep range as fractions of T (DreamFusion's U(0.02, 0.98))
    sds_t_max: float = 0.98
    guide_distill: float = 0.0  # weight of the guidance-distillation term (not in the paper; 0: off):
    #   the student's rollout against the guided plug-and-play rollout from the same noise
    #   (evedit.training.fdd.loss.guide_term; benchmarks/results/guide_distill.md)
    edit_image_scale: float = 1.5  # edit teacher's ip2p image guidance (SDS and reals)
    edit_text_scale: float = 2.0  # edit teacher's ip2p text guidance: 2.0 beat ip2p's habitual 3.0 by
    #   0.3 dB on validation edits (benchmarks/results/guidance_sweep.md, image 1.5 kept)
    video_scale: float = 2.0  # video teacher's caption CFG
    video_teacher_caption: str = "routing"  # what the video teacher reads (its SDS and real clips): "routing",
    #   the student's caption (with prompt_routing "empty", the empty text); "output", each item's output
    #   caption (training only, as the paper's alignment data carries captions; the student still reads
    #   its routing's). Measured: benchmarks/results/obj20_benchmark.md
    # --- a style or subject LoRA group (EVE's "Additional Adapter Combinations"; evedit.models.token_lora) ---
    token_lora: str | None = None  # a style-lora or subject-lora export (or model part) to attach; its teacher
    #   needs one unless the model folder holds one. The student then runs it beside the LoRA.
    token_template: str = "{caption}, as a zwx mosaic"  # the backbone's caption with the LoRA's
    #   trigger, where its lora.json names none (ShapeWorld's zwx mosaic; its sks star:
    #   "{caption}, and a sks star"; evedit.world.groups)
    token_teacher_caption: str = "trigger"  # what the style/subject teacher reads: "trigger", the student's
    #   caption with the trigger (from the instruction alone: the trigger alone); "output", the
    #   item's output caption with the trigger (training only; needs caption text: ShapeWorld or
    #   manifest data, not an encoded store). As a stylizer it keeps 12.9 dB of the exact mosaic told
    #   the scene against 11.4 on the trigger alone (benchmarks/results/stylized_edit.md).
    edit_teacher_token: bool = False  # with a style or subject LoRA: the edit teacher's SDS term and its
    #   critic's reals come from the edit adapter on that LoRA's backbone (models.compose.TokenEditTeacher),
    #   reading the student's caption with the trigger; the first frame stays the plain edit teacher's.
    #   Not in the paper (its teachers are one adapter each): the plain edit teacher pulls a styled output
    #   toward a plain frame 5-11x harder than toward the edit (benchmarks/group_term_probe.py). Measured:
    #   the style group keeps its mosaic to the run's end with it (test style 0.598 against 0.342, +0.18
    #   dB); the subject group gains the star's colours and loses 0.47 dB (benchmarks/results/*_edit.md).
    token_scale: float = 2.0  # style/subject teacher's caption CFG (SDS, reals, the first frame's pass);
    #   evedit.models.token_lora.TOKEN_SCALE: 4.0 redraws the content (benchmarks/results/stylized_edit.md)
    # --- adversarial ---
    real_steps: int = 10  # DDIM steps of the teachers' own generations ("real" samples)
    bank_per_item: int = 2  # distinct teacher generations kept per alignment item (a fixed bank)
    disc_t_max: int = 250  # discriminator inputs are noised to t ~ U[0, disc_t_max] (LADD)
    disc_dim: int = 64  # head width
    disc_warmup: int = 0  # critic-only updates in the last N SDS-only iterations (the student's loss
    #                       stays SDS only there); 0: the heads start learning with the adversarial terms
    disc_levels: tuple[int, ...] = (1, 2, 3)  # backbone feature levels (3 = mid block)
    r1_weight: float = 0.0  # ADD uses 1e-5 above 128 px; ShapeWorld latents are 16 px
    g_form: str = "add"  # generator hinge form, see evedit.losses.adversarial
    # --- data ---
    data: dict = field(default_factory=lambda: {"kind": "shapeworld", "length": 512})
    tasks: tuple[str, ...] = ("color", "texture", "shape", "add", "remove", "background",
                              "grayscale", "invert", "brightness", "outline", "pixelate")
    # --- bookkeeping ---
    ablation: str = "none"
    seed: int = 0
    log_every: int = 10
    term_grads_every: int = 50  # every N steps, log each generator term's own LoRA gradient norm (0: never)
    sample_every: int = 250
    ckpt_every: int = 100
    out: str = "runs/align"

    @property
    def total_steps(self) -> int:
        return self.steps_sds + self.steps_adv

    @property
    def token_teacher_kind(self) -> str | None:
        """``style`` or ``subject`` when that teacher is among ``teachers`` (at most one of them)."""
        kinds = [k for k in ("style", "subject") if k in self.teachers]
        return kinds[0] if kinds else None

    def effective(self) -> "FDDConfig":
        """The config with its ablation applied (EVE Table 2)."""
        from dataclasses import replace

        if self.ablation not in ABLATIONS:
            raise ValueError(f"unknown ablation {self.ablation!r}; choose from {ABLATIONS}")
        unknown = sorted(set(self.teachers) - set(TEACHER_KINDS))
        if unknown or not self.teachers or any(float(w) < 0 for w in self.teachers.values()):
            raise EveditError(f"The alignment's teachers must map some of {', '.join(TEACHER_KINDS)} "
                              f"to weights of at least 0, got {dict(self.teachers)}.")
        if "style" in self.teachers and "subject" in self.teachers:
            raise EveditError("An alignment takes a style teacher or a subject teacher, not both: a model "
                              "holds one style or subject LoRA.")
        if self.token_teacher_caption not in ("trigger", "output"):
            raise EveditError(f"token_teacher_caption must be 'trigger' or 'output', got {self.token_teacher_caption!r}.")
        if self.edit_teacher_token and self.token_teacher_kind is None:
            raise EveditError("edit_teacher_token needs a style or subject teacher among the teachers.")
        if self.video_teacher_caption not in ("routing", "output"):
            raise EveditError(f"video_teacher_caption must be 'routing' or 'output', got {self.video_teacher_caption!r}.")
        if not 1.0 <= float(self.student_guidance) <= MAX_GUIDANCE:  # ModelSpec.student_guidance's range
            raise EveditError(f"student_guidance must be a number from 1 (unguided) to {MAX_GUIDANCE:g}, "
                              f"got {self.student_guidance!r}.")
        if not 0.0 <= float(self.noise_share) <= 1.0:  # ModelSpec.noise_share's range
            raise EveditError(f"noise_share must be a number from 0 to 1, got {self.noise_share!r}.")
        if self.ablation == "no-kbin":
            return replace(self, timesteps="fixed")
        if self.ablation == "no-adv":  # SDS only, same number of steps
            return replace(self, steps_sds=self.total_steps, steps_adv=0)
        if self.ablation == "no-sds":  # adversarial only, from the first step
            return replace(self, lam=0.0, steps_sds=0, steps_adv=self.total_steps)
        return self
