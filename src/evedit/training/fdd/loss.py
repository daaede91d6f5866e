"""The FDD objective: the student's rollout, the SDS and adversarial terms, and the two losses the
training loop's turns step on, :func:`generator_loss` then :func:`critic_loss`.

Generator (only the LoRA trains, EVE section 3.1), a sum over the teachers ``cfg.teachers``:
    L_G = sum_i w_i (L_G-i + lam L_SDS-i)     (EVE: w_edit = alpha, w_video = beta)
Critic (only the discriminator heads train):
    L_D = sum_i w_i L_D-i
Each teacher kind brings its SDS term, its discriminator's logits and its "real" generations
(:data:`TEACHER_TERMS`): the edit teacher, the video teacher and, for a style or subject group
(EVE's "Additional Adapter Combinations", :mod:`evedit.models.token_lora`), the style or subject
teacher. The adversarial terms join after ``steps_sds`` SDS-only iterations (the
paper's curriculum); the critic may start ``disc_warmup`` iterations earlier (:func:`critic_phase`).
Weights are applied here and nowhere else; :mod:`evedit.losses` holds the pure loss functions, and
every random draw here comes from ``state.generator`` (the loop's generator of the micro-batch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from einops import rearrange
from torch.utils.checkpoint import checkpoint

from ...diffusion import ddim_sample, fixed_timesteps, kbin_timesteps
from ...losses import hinge_d_loss, hinge_g_loss, r1_penalty, sds_loss, sds_weight
from ...models import EVEModel
from ...models.guided import edit_teacher_guided, text_guided
from .config import FDDConfig
from .teachers import AlignBatch, edit_teacher, kept_sample


@dataclass
class FDDState:
    """Everything one iteration touches."""

    cfg: FDDConfig
    teacher: EVEModel  # frozen teachers (and, unless random-init, the student's parts)
    student: EVEModel  # holds the LoRA (the same object as ``teacher`` except for random-init)
    critics: dict[str, torch.nn.Module]  # each teacher's discriminator by teacher name (empty: SDS only)
    g_params: list[torch.nn.Parameter]  # what the generator's turn trains: the LoRA (+ random-init's parts)
    d_params: list[torch.nn.Parameter]  # what the critic's turn trains: the discriminator heads
    generator: torch.Generator  # CPU generator for every random draw of the micro-batch


def rollout_timesteps(cfg: FDDConfig, generator: torch.Generator, T: int = 1000) -> list[int]:
    """K-bin timesteps (or fixed ones for the ablation); the first is T-1 unless kbin_first=random."""
    if cfg.timesteps == "fixed":
        return fixed_timesteps(cfg.k, T)
    steps = kbin_timesteps(cfg.k, T, generator)
    if cfg.kbin_first == "max":
        steps[0] = T - 1
    return steps


def rollout_noise(shape: torch.Size, share: float, generator: torch.Generator) -> torch.Tensor:
    """(B, C, F, h, w) standard normal noise; with ``share`` > 0 mixed with one draw per clip shared by
    its frames, as :func:`evedit.editing.editors.frame_noise` draws EVE's (0 draws no more numbers)."""
    noise = torch.randn(shape, generator=generator)
    if share:
        common = torch.randn((*shape[:2], 1, *shape[3:]), generator=generator)
        noise = share**0.5 * common + (1.0 - share) ** 0.5 * noise
    return noise


def student_rollout(state: FDDState, ab: AlignBatch, timesteps: list[int], noise: torch.Tensor) -> torch.Tensor:
    """The student edits the clip from pure ``noise`` in k DDIM steps, keeping the graph of all steps.

    With ``student_guidance`` > 1 each step is ip2p dual guided (image ``edit_image_scale``, text
    ``student_guidance``), as the ``eve`` editor samples a model whose ``spec.student_guidance`` is
    that value: the LoRA then trains for the student it will run in (this project's choice; the paper's
    student is unguided, which ``student_guidance`` 1 keeps). With ``align_region`` it is kept to
    ``ab.region`` as EVE keeps a region task's edit (the SDS and critic terms then see the input outside)."""
    student, cond, c = state.student.denoiser("student"), ab.student_cond(), state.cfg
    call = student if c.student_guidance == 1.0 else (lambda x, t, cond: edit_teacher_guided(
        student, x, t, cond, ab.null, c.edit_image_scale, c.student_guidance))
    fn = (lambda x, t: checkpoint(call, x, t, cond, use_reentrant=False)) \
        if c.grad_checkpointing else (lambda x, t: call(x, t, cond))
    return kept_sample(fn, noise, timesteps, state.student.schedule, ab.region, ab.source)


def guide_term(state: FDDState, ab: AlignBatch, x0: torch.Tensor, noise: torch.Tensor,
               timesteps: list[int]) -> torch.Tensor:
    """Guidance distillation (this project's addition; the paper has no such term): the student's
    rollout against plug-and-play's (both adapters, LoRA off) from the same noise over the same
    timesteps, guided as the edit teacher (ip2p image and text scales): meant to hand the unguided
    student what guidance gives (the guided adapters at its 3 steps score higher than it on val).
    The target is the frozen adapters' own generation: no data enters it. Measured on ShapeWorld,
    it lowers the unguided student's val PSNR as FDD's terms do (``benchmarks/results/guide_distill.md``)."""
    pnp, cond, c = state.teacher.denoiser("pnp"), ab.student_cond(), state.cfg
    with torch.no_grad():
        target = ddim_sample(lambda x, t: edit_teacher_guided(
            pnp, x, t, cond, ab.null, c.edit_image_scale, c.edit_text_scale), noise, timesteps, state.teacher.schedule)
    return torch.nn.functional.mse_loss(x0, target)


def sds_term(state: FDDState, x0: torch.Tensor, teacher_fn) -> torch.Tensor:
    """Re-noise the student's output and score it with a frozen teacher (no grad into it)."""
    cfg, schedule = state.cfg, state.teacher.schedule
    T = schedule.num_train_timesteps
    b = x0.shape[0]
    t = torch.randint(int(cfg.sds_t_min * T), int(cfg.sds_t_max * T), (b,), generator=state.generator)
    t = t.to(x0.device)
    noise = torch.randn(x0.shape, generator=state.generator).to(x0.device)
    x_t = schedule.add_noise(x0.detach(), noise, t)
    with torch.no_grad():
        _, eps_hat = schedule.split(teacher_fn(x_t, t), x_t, t)
    return sds_loss(x0, eps_hat, noise, sds_weight(cfg.sds_weighting, schedule.alpha_bar(t, x0)))


def edit_sds(state: FDDState, ab: AlignBatch, x0: torch.Tensor) -> torch.Tensor:
    c = state.cfg
    teacher, cond = edit_teacher(state.teacher, ab, c.edit_teacher_token)
    return sds_term(state, x0, lambda x, t: edit_teacher_guided(
        teacher, x, t, cond, ab.null, c.edit_image_scale, c.edit_text_scale))


def video_sds(state: FDDState, ab: AlignBatch, x0: torch.Tensor) -> torch.Tensor:
    teacher, cond = state.teacher.denoiser("video"), ab.video_cond()
    return sds_term(state, x0, lambda x, t: text_guided(teacher, x, t, cond, ab.null, state.cfg.video_scale))


def token_sds(state: FDDState, ab: AlignBatch, x0: torch.Tensor) -> torch.Tensor:
    teacher, cond = state.teacher.denoiser(state.teacher.token_lora.kind), ab.token_cond()
    return sds_term(state, x0, lambda x, t: text_guided(teacher, x, t, cond, ab.null, state.cfg.token_scale))


def _disc_noise(state: FDDState, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """LADD: discriminator inputs are noised to a small timestep (same t for real and fake)."""
    noise = torch.randn(x.shape, generator=state.generator).to(x.device)
    return state.teacher.schedule.add_noise(x, noise, t)


def _disc_t(state: FDDState, b: int, device) -> torch.Tensor:
    return torch.randint(0, state.cfg.disc_t_max + 1, (b,), generator=state.generator).to(device)


def d_edit_logits(state: FDDState, ab: AlignBatch, clip: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """D_e on every frame of ``clip`` (B, C, F, h, w) with its own input frame -> (B*F,)."""
    frames = clip.shape[2]
    x = rearrange(_disc_noise(state, clip, t), "b c f h w -> (b f) c h w")
    rep = lambda v: v.repeat_interleave(frames, 0)  # noqa: E731
    if ab.source_feats is None:  # the clean input frames' features, once per batch
        src = rearrange(ab.source, "b c f h w -> (b f) c h w")
        ab.source_feats = state.critics["edit"].source_features(src, rep(ab.caption))
    return state.critics["edit"](x, ab.source_feats, rep(t), rep(ab.caption), rep(ab.instruction))


def d_video_logits(state: FDDState, ab: AlignBatch, clip: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return state.critics["video"](_disc_noise(state, clip, t), t, ab.caption, ab.caption_pooled)


def d_token_logits(state: FDDState, ab: AlignBatch, clip: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """D_s (style) or D_p (subject) on every frame of ``clip`` with the caption with the trigger -> (B*F,)."""
    return state.critics[state.teacher.token_lora.kind](_disc_noise(state, clip, t), t, ab.token_caption, ab.token_pooled)


@dataclass(frozen=True)
class TeacherTerms:
    """What one teacher kind adds to FDD: its SDS term, its critic's logits, its reals' field."""

    sds: Callable[[FDDState, AlignBatch, torch.Tensor], torch.Tensor]  # (state, batch, x0) -> loss
    logits: Callable[[FDDState, AlignBatch, torch.Tensor, torch.Tensor], torch.Tensor]  # (.., clip, t)
    real: str  # the AlignBatch field holding the teacher's own generations


TEACHER_TERMS = {"edit": TeacherTerms(edit_sds, d_edit_logits, "edit_real"),
                 "video": TeacherTerms(video_sds, d_video_logits, "video_real"),
                 "style": TeacherTerms(token_sds, d_token_logits, "token_real"),
                 "subject": TeacherTerms(token_sds, d_token_logits, "token_real")}


def adversarial_phase(state: FDDState, step: int) -> bool:
    """The student's loss has the adversarial terms (the paper: after the SDS-only iterations)."""
    return step >= state.cfg.steps_sds and bool(state.critics)


def critic_phase(state: FDDState, step: int) -> bool:
    """The discriminator heads train: the adversarial phase, and ``disc_warmup`` iterations before it.

    Warm-up is this project's choice (the paper gives no discriminator schedule): without it the
    heads start from scratch when the adversarial terms join, and in 200 updates at batch 2 they
    stayed at chance while their generator terms pulled on the LoRA 3 to 8 times harder than SDS.
    With ``disc_warmup: 400`` (and lr 1e-3) an earlier build's critic separated real from fake before
    the adversarial terms joined (d_total 1.6-1.7 against ~1.9); see the README's ablations.
    """
    start = max(0, state.cfg.steps_sds - state.cfg.disc_warmup)
    return step >= start and bool(state.critics)


def generator_loss(state: FDDState, ab: AlignBatch, step: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The student's terms and their weighted sum ``g_total`` (back-propagated into the LoRA), and the
    (detached) student output the critic's turn scores."""
    cfg = state.cfg
    timesteps = rollout_timesteps(cfg, state.generator)
    noise = rollout_noise(ab.source.shape, cfg.noise_share, state.generator).to(ab.source.device)
    x0 = student_rollout(state, ab, timesteps, noise)
    terms = {}
    if cfg.lam > 0:
        for name in cfg.teachers:
            terms[f"sds_{name}"] = TEACHER_TERMS[name].sds(state, ab, x0)
    if adversarial_phase(state, step):
        t = _disc_t(state, x0.shape[0], x0.device)
        for name in cfg.teachers:
            terms[f"g_{name}"] = hinge_g_loss(TEACHER_TERMS[name].logits(state, ab, x0, t), cfg.g_form)
    zero = x0.new_zeros(())
    if cfg.guide_distill > 0:
        terms["guide"] = guide_term(state, ab, x0, noise, timesteps)
    total = sum(w * (terms.get(f"g_{n}", zero) + cfg.lam * terms.get(f"sds_{n}", zero))
                for n, w in cfg.teachers.items()) + cfg.guide_distill * terms.get("guide", zero)
    out = dict(terms)
    if cfg.term_grads_every and (step + 1) % cfg.term_grads_every == 0:  # a logged step when
        # term_grads_every is a multiple of log_every (the log records iteration step + 1)
        weights = {**{f"g_{n}": w for n, w in cfg.teachers.items()},
                   **{f"sds_{n}": w * cfg.lam for n, w in cfg.teachers.items()}, "guide": cfg.guide_distill}
        out.update({k: torch.tensor(v) for k, v in term_grad_norms(terms, state.g_params, weights).items()})
    out["g_total"] = total
    return out, x0.detach()


def term_grad_norms(terms: dict[str, torch.Tensor], params: list, weights: dict[str, float]) -> dict[str, float]:
    """The LoRA gradient norm of each weighted term alone (diagnostics: which term drives the update)."""
    out = {}
    for name, value in terms.items():
        if not value.requires_grad:
            continue
        grads = torch.autograd.grad(weights[name] * value, params, retain_graph=True, allow_unused=True)
        out[f"gradnorm_{name}"] = float(torch.sqrt(sum((g.float() ** 2).sum() for g in grads if g is not None)))
    return out


def critic_loss(state: FDDState, ab: AlignBatch, fake: torch.Tensor) -> dict[str, torch.Tensor]:
    """The heads' terms and their sum ``d_total``: teachers' generations are real, the student's fake."""
    cfg = state.cfg
    t = _disc_t(state, fake.shape[0], fake.device)
    losses = {}
    for name, weight in cfg.teachers.items():
        terms = TEACHER_TERMS[name]
        real_logits, fake_logits = _real_and_fake(state, ab, terms.logits, getattr(ab, terms.real), fake, t)
        losses[f"d_{name}"] = weight * hinge_d_loss(real_logits, fake_logits)
        losses[f"d_{name}_real"] = real_logits.detach().mean()
        losses[f"d_{name}_fake"] = fake_logits.detach().mean()
    total = sum(losses[f"d_{name}"] for name in cfg.teachers)
    if cfg.r1_weight > 0:
        total = total + cfg.r1_weight * _r1(state, ab, t)
    losses["d_total"] = total
    return losses


def _real_and_fake(state: FDDState, ab: AlignBatch, logits_fn, real, fake, t):
    """Real and fake through the discriminator in one batched call (same noise level t)."""
    b = real.shape[0]
    doubled = AlignBatch(**{**ab.__dict__, **{k: _twice(getattr(ab, k)) for k in _BATCHED}})
    doubled.source_feats = None if ab.source_feats is None else [torch.cat([f, f]) for f in ab.source_feats]
    logits = logits_fn(state, doubled, torch.cat([real, fake]), torch.cat([t, t]))
    per_item = logits.shape[0] // (2 * b)
    return logits[: b * per_item], logits[b * per_item:]


_BATCHED = ("source", "caption", "caption_pooled", "instruction", "task", "token_caption", "token_pooled")


def _twice(x):
    return None if x is None else torch.cat([x, x])


def _r1(state: FDDState, ab: AlignBatch, t: torch.Tensor) -> torch.Tensor:
    """R1 on the real inputs of every teacher's discriminator (here: their noised latents)."""
    penalty = 0
    for name in state.cfg.teachers:
        terms = TEACHER_TERMS[name]
        real = getattr(ab, terms.real).clone().requires_grad_(True)
        penalty = penalty + r1_penalty(terms.logits(state, ab, real, t), [real])
    return penalty
