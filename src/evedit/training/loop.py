"""The one training loop, on accelerate, shared by every stage and by FDD (``evedit align``).

A stage (:class:`~evedit.training.stage.Stage`) owns its parts, data and loss; the loop owns the
rest: placement and precision (accelerate), freezing by module identity, AdamW over exactly the
parameters of ``stage.trainable_modules()``, gradient accumulation and clipping, EMA, logging
(progress bar, TensorBoard, ``metrics.jsonl``), samples, evaluation, checkpoints and exact resume
(:mod:`evedit.training.loop_checkpoints`: verified, with fallback past damaged ones), Ctrl-C, SIGTERM
and NaN handling, and the final export. A stage with several objectives gives its own turns instead
(:mod:`evedit.training.turns`; FDD: the generator's, then the critic's, each with its optimizer).
One step of the loop is a sequence of named steps::

    train_step      per active turn: grad_accum x micro_step (loss, backward), then optimizer_step
    after_step      log_step, sample, evaluate, save_checkpoint at their intervals

Randomness: the generator handed to ``stage.loss`` is a CPU generator seeded by (seed, step,
slot), and the data order is a function of (seed, samples seen) (see :mod:`evedit.training.data`),
so a resumed run draws exactly what an uninterrupted one would. Evaluation and sampling restore
every RNG afterwards, so they do not change the training draws.

Multi-process (``accelerate launch``, :mod:`evedit.training.distributed`): within one step, the
micro-batch ``k`` of process ``r`` is global slot ``k * processes + r``; its items are the stream's
positions of that slot and its noise is seeded by the slot, so N processes x ``grad_accum`` A
train on exactly the items and noise of one process x ``grad_accum`` N*A (same global batch), and
a checkpoint resumes under any process count. Stages call their own modules, so the loop does not
wrap them in DDP; it averages the gradients itself (one all-reduce) before clipping, so clipping,
the optimizer and EMA see the same synchronised gradients on every process; under FSDP
(:mod:`evedit.training.sharding`) the trained blocks are sharded in place, their gradients arrive
averaged, and sampling, evaluation and the export run on every process. Logged train figures are
means over processes; only the main process writes files (checkpoints, with every process's RNG
states gathered to it; samples; metrics; TensorBoard; the export). On CPU the Accelerator is created
with ``cpu=True``, without which torchrun processes silently train unsynchronised.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import send_to_device
from diffusers.training_utils import EMAModel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .checkpoint import TrainState, publish, rng_state, set_rng_state
from .config import TrainConfig, config_dict, config_yaml, hparams
from .data import StepSampler, stream_seed
from .distributed import (
    any_process, average_gradients, broadcast_parameters, count_machines, describe, refuse_sharding,
)
from .loop_checkpoints import Checkpointing, NonFiniteLoss
from .recompute import enable_activation_checkpointing
from .sharding import clip_gradients, main_or_scratch, shard_settings, shard_trainable, trained_state_bytes
from .signals import ignore_sigint, raise_stop, sigint_to_flag
from .turns import Turn


class Trainer(Checkpointing):
    """Runs one stage under one :class:`TrainConfig`; ``fit()`` returns the export folder."""

    def __init__(self, stage, cfg: TrainConfig, resolved: dict | None = None, progress: bool = True):
        self.stage, self.cfg, self.progress = stage, cfg, progress
        self.resolved = resolved or config_dict(stage.name, cfg, getattr(stage, "config", {}))
        self.out = Path(cfg.out)
        self.ckpt_root = self.out / "checkpoints"
        self.step, self.samples_seen, self.start_step = 0, 0, 0
        self.stop_requested, self.ready, self.updating = False, False, False
        self.last_saved: Path | None = None  # newest checkpoint written or loaded
        self.last_good: Path | None = None  # newest checkpoint whose weights gave a finite loss
        self.last_eval: tuple[int, dict] | None = None
        self.train_time, self.first_step_end = 0.0, None
        self.bar_note = ""

    # ---- setup ---------------------------------------------------------------------------------
    def setup(self, resume: bool) -> None:
        cfg = self.cfg
        cuda = torch.cuda.is_available()
        self.accelerator = acc = Accelerator(
            cpu=not cuda, mixed_precision=cfg.mixed_precision if cuda else "no",
            gradient_accumulation_steps=cfg.grad_accum, log_with="tensorboard", project_dir=str(self.out),
        )
        refuse_sharding(acc)
        self._check_out_dir(resume)
        acc.wait_for_everyone()  # no process may see the initial checkpoint as an earlier run's
        self.machines = count_machines(acc)
        self.turns = self._turns()
        for turn in self.turns:
            turn.optimizer = acc.prepare(turn.optimizer)
        self.params = list({id(p): (n, p) for t in self.turns for n, p in t.params}.values())
        broadcast_parameters(acc, [p for _, p in self.params])  # every process starts from rank 0's
        own = hasattr(self.stage, "turns")  # a stage's own turns: files named by turn, parameters only
        self.ema = None if own else self.turns[0].ema
        optimizers = {t.name: t.optimizer for t in self.turns} if own else self.turns[0].optimizer
        self.state = TrainState(self.trainable, self.params, optimizers, self.ema, acc.scaler, params_only=own)
        self.train_data = self.stage.dataset("train")
        saved_rng = self.resume_newest() if resume else None
        self.data = self._batches()
        if saved_rng is not None:  # last, so building the loader cannot shift the restored streams
            set_rng_state(saved_rng)
        acc.init_trackers("tensorboard", config=hparams(self.resolved))
        self.bar = tqdm(total=cfg.max_steps, initial=self.step, desc=self.stage.name, unit="step",
                        disable=not (self.progress and acc.is_local_main_process), dynamic_ncols=True)
        if acc.is_main_process:
            self.bar.write(f"{self.stage.name}: {describe(acc, self.machines, self.global_batch())}",
                           file=sys.stderr)
            if self.bar_note:
                self.bar.write(self.bar_note, file=sys.stderr)
        self.ready = True

    def global_batch(self) -> str:
        """``batch_size x grad_accum x processes = items per optimizer step`` (as text)."""
        cfg, n = self.cfg, self.accelerator.num_processes
        return f"{cfg.batch_size} x {cfg.grad_accum} x {n} = {cfg.batch_size * cfg.grad_accum * n}"

    def _turns(self) -> list[Turn]:
        """The stage's own turns, or one ``train`` turn over its trainable modules (AdamW, EMA)."""
        settings, self.sharded = shard_settings(self.accelerator, self.cfg.shard), []  # FSDP's blocks
        if hasattr(self.stage, "turns"):  # the stage sets requires_grad and builds its optimizers
            for module in self.stage.modules().values():
                module.to(self.accelerator.device)
            self.trainable = {}
            if settings is not None:
                self._note(f"FSDP: {self.stage.name} trains a few small parameters; it runs data-parallel.")
            return self.stage.turns()
        cfg = self.cfg
        self.trainable = self._freeze(self.stage.modules())
        if cfg.gradient_checkpointing:
            names = enable_activation_checkpointing(self.stage.modules())
            self._note(f"gradient checkpointing: {', '.join(names) or 'no model supports it'}.")
        if settings is not None:  # FSDP over the trained modules' blocks, cut from rank 0's values
            self.sharded, note = shard_trainable(self.accelerator, list(self.trainable.values()), settings)
            self._note(note)
        params = list({id(p): (f"{name}.{key}", p) for name, m in self.trainable.items()
                       for key, p in m.named_parameters()}.values())  # a module listed twice is trained once
        optimizer = torch.optim.AdamW([p for _, p in params], lr=cfg.lr, weight_decay=cfg.weight_decay)
        ema = EMAModel([p for _, p in params], decay=cfg.ema_decay) if cfg.ema_decay > 0 else None
        return [Turn("train", params, optimizer, lambda batch, gen, _step: self.stage.loss(batch, gen),
                     self._lr, clip=cfg.clip_grad, ema=ema)]

    def _note(self, text: str) -> None:  # a line under the run's first log line
        self.bar_note += ("\n" if self.bar_note else "") + text

    def _freeze(self, modules: dict) -> dict[str, torch.nn.Module]:
        """Place every module; freeze them all, then unfreeze exactly the trainable ones (by identity)."""
        names = {id(m): name for name, m in modules.items()}
        trainable = {names.get(id(m), f"trainable_{i}"): m
                     for i, m in enumerate(self.stage.trainable_modules())}
        for module in modules.values():
            module.to(self.accelerator.device).requires_grad_(False).eval()
        for module in trainable.values():
            module.to(self.accelerator.device).requires_grad_(True).train()
        return trainable

    def _batches(self):
        acc, cfg = self.accelerator, self.cfg
        sampler = None  # a stage's own sampler, or None for the default stream
        if hasattr(self.stage, "batch_sampler"):
            sampler = self.stage.batch_sampler(self.step, acc.process_index, acc.num_processes,
                                               cfg.grad_accum, cfg.batch_size)
        if sampler is None:
            sampler = StepSampler(len(self.train_data), cfg.batch_size, cfg.seed, start=self.samples_seen,
                                  rank=acc.process_index, world=acc.num_processes)
        loader = DataLoader(
            self.train_data, batch_sampler=sampler, num_workers=cfg.num_workers,
            worker_init_fn=ignore_sigint if cfg.num_workers else None,
            generator=torch.Generator().manual_seed(cfg.seed),  # keeps the global RNG untouched
        )
        return iter(loader)

    # ---- one step ------------------------------------------------------------------------------
    def train_step(self) -> dict:
        """Each active turn over the ``grad_accum`` micro-batches, then its optimizer step."""
        acc, cfg, stage = self.accelerator, self.cfg, self.stage
        slots = [k * acc.num_processes + acc.process_index for k in range(cfg.grad_accum)]
        batches = [send_to_device(next(self.data), acc.device) for _ in slots]  # slot order, as sampled
        if hasattr(stage, "prepare_batch"):
            batches = [stage.prepare_batch(batch, self.step) for batch in batches]
        seed = getattr(stage, "noise_seed", lambda s, step, slot: stream_seed(s, 2, step, slot, 0))
        generators = [torch.Generator().manual_seed(seed(cfg.seed, self.step, slot)) for slot in slots]
        figures: dict = {"terms": {}, "extra": {}}
        for turn in self.turns:
            if turn.active(self.step):
                self.turn_step(turn, batches, generators, figures)
        self.samples_seen += cfg.batch_size * cfg.grad_accum * acc.num_processes
        self.step += 1
        self.updating = False
        return figures

    def turn_step(self, turn: Turn, batches: list, generators: list, figures: dict) -> None:
        turn.optimizer.zero_grad(set_to_none=True)  # e.g. the critic's heads after the generator's turn
        sums: dict[str, torch.Tensor] = {}
        for batch, generator in zip(batches, generators):
            for key, value in self.micro_step(turn, batch, generator).items():
                sums[key] = sums.get(key, 0.0) + value / self.cfg.grad_accum
        figures["terms"].update(sums)
        figures["extra"][turn.norm_key] = self.optimizer_step(turn, sums[turn.total])
        if turn.lr_key:
            figures["extra"][turn.lr_key] = turn.lr(self.step)

    def micro_step(self, turn: Turn, batch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        with self.accelerator.autocast():
            terms = turn.loss(batch, generator, self.step)
        if turn.total not in terms:
            raise ValueError(f"stage '{self.stage.name}' returned no '{turn.total}' term (got {sorted(terms)})")
        self.accelerator.backward(terms[turn.total])
        return {key: torch.as_tensor(value).detach().float() for key, value in terms.items()}

    def optimizer_step(self, turn: Turn, loss: torch.Tensor) -> float:
        """Check, average across processes, clip, step, EMA; weights stay untouched on NaN."""
        acc, params = self.accelerator, [p for _, p in turn.params]
        if self._any(not bool(torch.isfinite(loss))):
            self._non_finite(f"{turn.total} became {float(loss):.4g}", self.step, self.step + 1)
        average_gradients(acc, params)
        if acc.scaler is not None:
            acc.unscale_gradients(turn.optimizer)
        norm = clip_gradients(params, turn.clip)
        if acc.scaler is None and self._any(not math.isfinite(norm)):  # fp16's scaler skips such steps
            self._non_finite(f"gradient norm became {norm:.4g}", self.step, self.step + 1)
        self.confirm_checkpoint()  # the weights of self.step gave a finite loss
        for group in turn.optimizer.param_groups:
            group["lr"] = turn.lr(self.step)
        self.updating = True  # until the step counter catches up: no consistent state to save
        turn.optimizer.step()
        turn.optimizer.zero_grad(set_to_none=True)
        if turn.ema is not None:
            turn.ema.step(params)
        return norm

    def _lr(self, step: int) -> float:
        warm, cfg = self.cfg.warmup_steps, self.cfg
        decay = cfg.lr_gamma ** sum(step >= m for m in cfg.lr_milestones)
        return cfg.lr * decay * (min(1.0, (step + 1) / warm) if warm else 1.0)

    def _any(self, flag: bool) -> bool:
        """True when ``flag`` holds on any process (every process takes the same branch)."""
        return any_process(self.accelerator, flag)

    # ---- after a step --------------------------------------------------------------------------
    def after_step(self, figures: dict) -> None:
        cfg = self.cfg
        self.log_step(figures)
        if cfg.sample_every and self.step % cfg.sample_every == 0:
            self.sample()
        if cfg.eval_every and self.step % cfg.eval_every == 0:
            self.evaluate()
        if (cfg.ckpt_every and self.step % cfg.ckpt_every == 0) or self.step == cfg.max_steps or self.out_of_time():
            self.save_checkpoint()

    def log_step(self, figures: dict) -> None:
        acc, cfg = self.accelerator, self.cfg
        total = self.turns[0].total
        self.bar.set_postfix({total: f"{float(figures['terms'][total]):.4f}"}, refresh=False)
        self.bar.update(1)
        if not cfg.log_every or self.step % cfg.log_every:
            return
        keys = sorted(figures["terms"])
        means = acc.reduce(torch.stack([figures["terms"][k] for k in keys]).to(acc.device), "mean")
        record = {k: float(v) for k, v in zip(keys, means)}
        record.update(figures["extra"])
        acc.log({f"train/{k}": v for k, v in record.items()}, step=self.step)
        self._append_metrics({"step": self.step, "split": "train", **record})

    def _append_metrics(self, record: dict) -> None:
        if self.accelerator.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            with (self.out / "metrics.jsonl").open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")

    @contextmanager
    def _ema_weights(self):
        """EMA weights (if any) in the trained modules, eval mode, every RNG restored afterwards."""
        params, saved = [p for _, p in self.params], rng_state()
        if self.ema is not None:
            self.ema.store(params)
            self.ema.copy_to(params)
        for module in self.trainable.values():
            module.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            for module in self.trainable.values():
                module.train()
            if self.ema is not None:
                self.ema.restore(params)
            set_rng_state(saved)

    def _everyone(self) -> bool:
        """This process samples, evaluates and exports: the main one, and under FSDP every one."""
        return self.accelerator.is_main_process or bool(self.sharded)

    def sample(self) -> None:
        acc = self.accelerator
        if self._everyone():
            with self._ema_weights(), acc.autocast(), main_or_scratch(acc, self.out / "samples") as folder:
                self.stage.sample(folder, self.step)
        acc.wait_for_everyone()

    def evaluate(self) -> dict:
        acc, metrics = self.accelerator, {}
        if self._everyone():
            with self._ema_weights(), acc.autocast():
                metrics = {k: float(v) for k, v in self.stage.evaluate().items()}
        if acc.is_main_process and metrics:  # a stage without evaluation (FDD) logs nothing
            acc.log({f"val/{k}": v for k, v in metrics.items()}, step=self.step)
            self._append_metrics({"step": self.step, "split": "val", **metrics})
            self.bar.write(f"step {self.step}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()),
                           file=sys.stderr)
        acc.wait_for_everyone()
        self.last_eval = (self.step, metrics)
        return metrics

    # ---- the run -------------------------------------------------------------------------------
    def out_of_time(self) -> bool:
        """The ``max_minutes`` budget (equal-time comparisons) is spent, on any process."""
        return self._any(bool(self.cfg.max_minutes) and self.train_time >= 60 * self.cfg.max_minutes)

    def run_steps(self) -> None:
        while self.step < self.cfg.max_steps and not self.out_of_time():
            began = time.perf_counter()
            figures = self.train_step()
            self.train_time += time.perf_counter() - began
            if self.first_step_end is None:
                self.first_step_end = (self.train_time, self.step)
            self.after_step(figures)
            if self._any(self.stop_requested):
                raise KeyboardInterrupt

    def fit(self, resume: bool = False) -> Path:
        """Train to ``max_steps`` (continuing the newest checkpoint if ``resume``); export; return it."""
        began = time.perf_counter()
        self.setup(resume)
        try:
            with sigint_to_flag(self):
                if not resume:  # the initial weights: what a NaN at the first steps falls back to
                    self.save_checkpoint()
                self.run_steps()
            return self.finish(time.perf_counter() - began)
        except KeyboardInterrupt:
            self._save_on_interrupt()
            raise_stop(self)  # SIGTERM: Terminated (exit 143), Ctrl-C: KeyboardInterrupt (130)
        finally:
            self.close()

    def finish(self, wall: float) -> Path:
        """Final evaluation, then the export (EMA weights) with the config and a run summary."""
        metrics = self.last_eval[1] if self.last_eval and self.last_eval[0] == self.step else self.evaluate()
        summary = self.summary(wall, metrics)
        folder, acc = self.out / getattr(self.stage, "export_name", "export"), self.accelerator
        if self._everyone():
            with main_or_scratch(acc, self.out / ".tmp-export") as tmp:
                if acc.is_main_process:
                    shutil.rmtree(tmp, ignore_errors=True)
                    tmp.mkdir(parents=True)
                with self._ema_weights():
                    self.stage.export(tmp)
                if acc.is_main_process:
                    (tmp / "config.yaml").write_text(config_yaml(self.resolved), encoding="utf-8")
                    (tmp / "train_summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
                    publish(tmp, folder)
                    if hasattr(self.stage, "after_export"):
                        self.stage.after_export(self.out, summary)
        acc.wait_for_everyone()
        return folder

    def summary(self, wall: float, metrics: dict) -> dict:
        done = self.step - self.start_step
        steady = None
        if self.first_step_end is not None and self.step > self.first_step_end[1]:
            t0, s0 = self.first_step_end
            steady = (self.step - s0) / max(self.train_time - t0, 1e-9)  # excludes the warm-up step
        return {
            "stage": self.stage.name, "steps": self.step, "steps_this_run": done,
            "wall_time_s": round(wall, 3), "train_time_s": round(self.train_time, 3),
            "steps_per_s": steady, "samples_seen": self.samples_seen,
            "num_processes": self.accelerator.num_processes, "num_machines": self.machines,
            "global_batch": self.global_batch(), "final_eval": metrics,
            "trained_state_mb": trained_state_bytes(  # the main process's
                [p for _, p in self.params], [t.optimizer for t in self.turns], self.ema) / 2**20,
            **({"world": self.stage.world_settings} if getattr(self.stage, "world_settings", None) else {}),
        }

    def close(self) -> None:
        if self.ready:
            self.bar.close()
            self.accelerator.end_training()


def train(stage, cfg: TrainConfig, resolved: dict | None = None, resume: bool = False) -> Path:
    """Train ``stage`` under ``cfg``; returns ``<out>/export``."""
    return Trainer(stage, cfg, resolved).fit(resume)


__all__ = ["NonFiniteLoss", "Trainer", "train"]
