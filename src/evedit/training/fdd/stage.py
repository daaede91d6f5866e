"""FDD as a stage of the one training loop (:class:`~evedit.training.loop.Trainer`): two turns.

Each step, after :meth:`FDDStage.prepare_batch` (encode the clips and texts, attach the teacher
bank's generations), the loop takes the generator's turn (:func:`~.loss.generator_loss`, the LoRA's
AdamW, clipped at 1) and then, in the critic's phase, the critic's turn (:func:`~.loss.critic_loss`
on the generator turn's detached output, the heads' AdamW, clipped at 10), as DMD2's
``train_one_step`` does. Checkpoints, resume, Ctrl-C/SIGTERM, NaN stops, metrics, TensorBoard,
samples and the export are the loop's, so they behave as ``evedit train``'s; the export is the
aligned model folder ``<out>/model`` and ``<out>/align_summary.json``.

Several processes: step ``s``'s global batch is :func:`~.run.batch_indices` at ``batch_size x
grad_accum x processes`` items, and micro-batch slot ``j`` (``k * processes + rank``) takes its
``j``-th share and draws from a generator seeded by (seed, s, j); slot 0 keeps the one-process
seeds of (seed, s). Every process holds the teachers and its own teacher bank.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.data import Dataset, Sampler

from ...models import save_model
from ..config import TrainConfig, check_train_config
from ..data import stream_seed
from ..turns import Turn
from .config import FDDConfig
from .loss import critic_loss, critic_phase, generator_loss
from .run import _cfg_dict, alignment_data, batch_indices, build_state, trained_modules
from .samples import write_samples
from .teachers import TeacherBank, encode_batch, with_teacher_caption


class IndexedItems(Dataset):
    """The alignment items, each with its ``index`` (the teacher bank is keyed by it)."""

    def __init__(self, data):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict:
        return {**self.data[index], "index": index}


class AlignSampler(Sampler):
    """Endless micro-batches from step ``start`` on: each step's ``grad_accum`` slots of this rank."""

    def __init__(self, cfg: FDDConfig, n: int, start: int, rank: int, world: int, accum: int, batch: int):
        self.cfg, self.n, self.start = cfg, n, start
        self.rank, self.world, self.accum, self.batch = rank, world, accum, batch

    def __iter__(self):
        step, b = self.start, self.batch
        while True:
            items = batch_indices(self.cfg, step, self.n, b * self.accum * self.world)
            for k in range(self.accum):
                slot = k * self.world + self.rank
                yield items[slot * b:(slot + 1) * b]
            step += 1

    def __len__(self) -> int:
        return 2**62


class FDDStage:
    """The student and critic of FDD, their data and objective, as the loop's stage ``align``."""

    name = "align"
    export_name = "model"

    def __init__(self, cfg: FDDConfig, teacher=None):
        self.cfg = cfg.effective()
        self.config = _cfg_dict(self.cfg)
        self.state = build_state(self.cfg, teacher)
        self.data = alignment_data(self.cfg, self.state.teacher)
        self.bank = TeacherBank(self.state.teacher, self.cfg)
        self._last = None  # (batch, AlignBatch, student output) of the newest micro-batch, for samples

    # ---- what the loop places and trains ---------------------------------------------------------
    def modules(self) -> dict[str, torch.nn.Module]:
        s = self.state
        return {"teacher": s.teacher, "student": s.student, **{f"d_{n}": c for n, c in s.critics.items()}}

    def trainable_modules(self) -> list[torch.nn.Module]:
        return []  # FDD trains parameters (the LoRA inside the motion UNet), given by turns()

    def _named(self, params: list[torch.nn.Parameter]) -> list[tuple[str, torch.nn.Parameter]]:
        """``params`` with their checkpoint keys, ``<module>.<parameter>``."""
        wanted, names = {id(p) for p in params}, {}
        for module_name, module in trained_modules(self.state).items():
            for key, p in module.named_parameters():
                if id(p) in wanted:
                    names.setdefault(id(p), f"{module_name}.{key}")
        return [(names[id(p)], p) for p in params]

    def turns(self) -> list[Turn]:
        cfg, s = self.cfg, self.state
        g_opt = torch.optim.AdamW(s.g_params, lr=cfg.lr, weight_decay=0.0)
        turns = [Turn("generator", self._named(s.g_params), g_opt, self.generator_turn, lambda _: cfg.lr,
                      clip=1.0, total="g_total", norm_key="g_grad_norm", lr_key=None)]
        if s.d_params:
            d_opt = torch.optim.AdamW(s.d_params, lr=cfg.disc_lr, betas=(0.0, 0.99), weight_decay=0.0)
            turns.append(Turn("critic", self._named(s.d_params), d_opt, self.critic_turn,
                              lambda _: cfg.disc_lr, clip=10.0, active=lambda step: critic_phase(s, step),
                              total="d_total", norm_key="d_grad_norm", lr_key=None))
        return turns

    # ---- data and noise ---------------------------------------------------------------------------
    def dataset(self, split: str) -> Dataset:
        return IndexedItems(self.data)

    def batch_sampler(self, step: int, rank: int, world: int, accum: int, batch: int) -> AlignSampler:
        return AlignSampler(self.cfg, len(self.data), step, rank, world, accum, batch)

    def noise_seed(self, seed: int, step: int, slot: int) -> int:
        return stream_seed(seed, 11, step) if slot == 0 else stream_seed(seed, 11, step, slot)

    def prepare_batch(self, batch: dict, step: int) -> dict:
        indices = [int(i) for i in batch["index"]]
        ab = encode_batch(self.state.teacher, batch, self.cfg.video_teacher_caption)
        if self.cfg.token_teacher_caption == "output" and self.cfg.token_teacher_kind is not None:
            ab = with_teacher_caption(self.state.teacher, ab, batch)
        ab = self.bank.fill(ab, indices, step, with_reals=critic_phase(self.state, step))
        return {"batch": batch, "ab": ab}

    # ---- the two turns ----------------------------------------------------------------------------
    def generator_turn(self, prepared: dict, generator: torch.Generator, step: int) -> dict:
        self.state.generator = generator
        terms, prepared["fake"] = generator_loss(self.state, prepared["ab"], step)
        self._last = (prepared["batch"], prepared["ab"], prepared["fake"])
        return terms

    def critic_turn(self, prepared: dict, generator: torch.Generator, step: int) -> dict:
        self.state.generator = generator  # continues the generator turn's stream
        return critic_loss(self.state, prepared["ab"], prepared["fake"])

    # ---- outputs ----------------------------------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        return {}  # FDD has no validation figure; see `evedit eval` on the exported model

    def sample(self, out_dir: Path, step: int) -> list[Path]:
        return [] if self._last is None else [write_samples(self.state, *self._last, out_dir, step)]

    def export(self, folder: Path) -> None:
        """The aligned model as trained: its LoRA at strength 1 and the student guided as in the rollout
        (``lora_scale`` 1, ``student_guidance`` and ``noise_share`` the config's) whatever the aligned folder's were
        (``benchmarks/lora_scale.py`` chooses others on the val split)."""
        student, spec = self.state.student, self.state.student.spec
        student.spec = replace(spec, lora_scale=1.0, student_guidance=self.cfg.student_guidance,
                               noise_share=self.cfg.noise_share)
        try:
            save_model(student, folder)
        finally:
            student.spec = spec

    def after_export(self, out: Path, summary: dict) -> None:
        """``<out>/align_summary.json``, which the model card and the recipe timings read."""
        record = {"steps": self.cfg.total_steps, "seconds": round(summary["wall_time_s"], 1),
                  "num_processes": summary["num_processes"], "num_machines": summary["num_machines"],
                  "config": self.config}
        part = out / ".align_summary.json.part"
        part.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(part, out / "align_summary.json")


def train_config(cfg: FDDConfig) -> TrainConfig:
    """The loop's settings for an FDD run (no EMA or evaluation; the turns set lr and clipping)."""
    train = TrainConfig(out=cfg.out, max_steps=cfg.total_steps, batch_size=cfg.batch_size, lr=cfg.lr,
                        grad_accum=cfg.grad_accum, mixed_precision=cfg.mixed_precision, seed=cfg.seed,
                        log_every=cfg.log_every, sample_every=cfg.sample_every, eval_every=0,
                        ckpt_every=cfg.ckpt_every, ema_decay=0.0, keep_checkpoints=2)
    check_train_config(train)
    return train


def align(cfg: FDDConfig, resume: bool = False, teacher=None, progress: bool = True) -> Path:
    """Run FDD with ``cfg`` on the training loop; returns the aligned model folder."""
    from ..loop import Trainer

    stage = FDDStage(cfg, teacher)
    return Trainer(stage, train_config(stage.cfg), progress=progress).fit(resume)


def one_step(trainer, step: int) -> dict[str, float]:
    """Benchmarks and diagnostics: train iteration ``step`` alone on a set-up ``trainer`` (outside
    ``fit``: nothing is logged or saved) and return its figures."""
    trainer.step = step
    trainer.data = trainer._batches()  # the data of iteration ``step``
    figures = trainer.train_step()
    return {**{k: float(v) for k, v in figures["terms"].items()}, **figures["extra"]}


def set_up(cfg: FDDConfig, teacher=None):
    """A :class:`~evedit.training.loop.Trainer` for ``cfg``, set up for :func:`one_step`."""
    from ..loop import Trainer

    stage = FDDStage(cfg, teacher)
    trainer = Trainer(stage, train_config(stage.cfg), progress=False)
    trainer.setup(resume=False)
    return trainer
