"""The one training loop, on accelerate, shared by every stage.

A stage (:class:`~evedit.training.stage.Stage`) owns its parts, data and loss; the loop owns the
rest: placement and precision (accelerate), freezing by module identity, AdamW over exactly the
parameters of ``stage.trainable_modules()``, gradient accumulation and clipping, EMA, logging
(progress bar, TensorBoard, ``metrics.jsonl``), samples, evaluation, checkpoints and exact resume,
Ctrl-C and NaN handling, and the final export. One step of the loop is a sequence of named steps::

    train_step      grad_accum x micro_step (loss, backward), then optimizer_step
    after_step      log_step, sample, evaluate, save_checkpoint at their intervals

Randomness: the generator handed to ``stage.loss`` is a CPU generator seeded by (seed, step,
micro-batch, rank), and the data order is a function of (seed, samples seen) (see
:mod:`evedit.training.data`), so a resumed run draws exactly what an uninterrupted one would.
Evaluation and sampling restore every RNG afterwards, so they do not change the training draws.

Multi-process (``torchrun``/``accelerate launch --multi_gpu``): stages call their own modules, so
the loop does not wrap them in DDP; it averages the gradients itself at each optimizer step.
On CPU the Accelerator is created with ``cpu=True``, without which torchrun processes silently
train unsynchronised (dependency probe).
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

from ..errors import EveditError
from .checkpoint import (
    TrainState, latest_checkpoint, load_tree, prune_checkpoints, publish, rng_state,
    save_tree, set_rng_state, step_dir, temp_dir,
)
from .config import TrainConfig, config_dict, config_yaml, hparams
from .data import StepSampler, stream_seed
from .signals import ignore_sigint, sigint_to_flag


class NonFiniteLoss(EveditError):
    """The loss (or gradient norm) became NaN or infinite."""


class Trainer:
    """Runs one stage under one :class:`TrainConfig`; ``fit()`` returns the export folder."""

    def __init__(self, stage, cfg: TrainConfig, resolved: dict | None = None):
        self.stage, self.cfg = stage, cfg
        self.resolved = resolved or config_dict(stage.name, cfg, getattr(stage, "config", {}))
        self.out = Path(cfg.out)
        self.ckpt_root = self.out / "checkpoints"
        self.step, self.samples_seen, self.start_step = 0, 0, 0
        self.stop_requested, self.ready, self.updating = False, False, False
        self.last_good: Path | None = None
        self.last_eval: tuple[int, dict] | None = None
        self.train_time, self.first_step_end = 0.0, None
        self.bar_note = ""

    # ---- setup ---------------------------------------------------------------------------------
    def setup(self, resume: bool) -> None:
        cfg = self.cfg
        self.last_good = self._check_out_dir(resume)
        cuda = torch.cuda.is_available()
        self.accelerator = acc = Accelerator(
            cpu=not cuda, mixed_precision=cfg.mixed_precision if cuda else "no",
            gradient_accumulation_steps=cfg.grad_accum, log_with="tensorboard", project_dir=str(self.out),
        )
        self.trainable = self._freeze(self.stage.modules())
        unique = {id(p): (f"{name}.{key}", p) for name, m in self.trainable.items()
                  for key, p in m.named_parameters()}  # a module listed twice is trained once
        self.params = list(unique.values())
        optimizer = torch.optim.AdamW([p for _, p in self.params], lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.optimizer = acc.prepare(optimizer)
        self.ema = EMAModel([p for _, p in self.params], decay=cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.state = TrainState(self.trainable, self.params, self.optimizer, self.ema, acc.scaler)
        self.train_data = self.stage.dataset("train")
        saved_rng = self.load_checkpoint(self.last_good) if resume else None
        self.data = self._batches()
        if saved_rng is not None:  # last, so building the loader cannot shift the restored streams
            set_rng_state(saved_rng)
        acc.init_trackers("tensorboard", config=hparams(self.resolved))
        self.bar = tqdm(total=cfg.max_steps, initial=self.step, desc=self.stage.name, unit="step",
                        disable=not acc.is_local_main_process, dynamic_ncols=True)
        if self.bar_note and acc.is_main_process:
            self.bar.write(self.bar_note, file=sys.stderr)
        self.ready = True

    def _check_out_dir(self, resume: bool) -> Path | None:
        latest = latest_checkpoint(self.ckpt_root)
        if resume and latest is None:
            raise EveditError(f"Nothing to resume: '{self.ckpt_root}' holds no checkpoint.")
        if not resume and latest is not None:
            raise EveditError(
                f"'{self.out}' already holds checkpoints of an earlier run; pass --resume to "
                "continue it or choose another --out."
            )
        return latest

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
        sampler = StepSampler(len(self.train_data), cfg.batch_size, cfg.seed, start=self.samples_seen,
                              rank=acc.process_index, world=acc.num_processes)
        loader = DataLoader(
            self.train_data, batch_sampler=sampler, num_workers=cfg.num_workers,
            worker_init_fn=ignore_sigint if cfg.num_workers else None,
            generator=torch.Generator().manual_seed(cfg.seed),  # keeps the global RNG untouched
        )
        return iter(loader)

    # ---- one step ------------------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        """``grad_accum`` micro-batches, then one optimizer step; returns the logged figures."""
        acc, cfg = self.accelerator, self.cfg
        sums: dict[str, torch.Tensor] = {}
        finite, grad_norm = True, float("nan")
        for k in range(cfg.grad_accum):
            batch = send_to_device(next(self.data), acc.device)
            generator = torch.Generator().manual_seed(stream_seed(cfg.seed, 2, self.step, k, acc.process_index))
            with acc.accumulate(*self.trainable.values()):
                terms = self.micro_step(batch, generator)
                finite &= bool(torch.isfinite(terms["loss"]))
                for key, value in terms.items():
                    sums[key] = sums.get(key, 0.0) + value / cfg.grad_accum
                if acc.sync_gradients:
                    grad_norm = self.optimizer_step(finite, sums["loss"])
        self.samples_seen += cfg.batch_size * cfg.grad_accum * acc.num_processes
        self.step += 1
        self.updating = False
        return {"terms": sums, "grad_norm": grad_norm, "lr": self._lr(self.step - 1)}

    def micro_step(self, batch: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
        with self.accelerator.autocast():
            terms = self.stage.loss(batch, generator)
        if "loss" not in terms:
            raise ValueError(f"stage '{self.stage.name}' returned no 'loss' term (got {sorted(terms)})")
        self.accelerator.backward(terms["loss"])
        return {key: value.detach().float() for key, value in terms.items()}

    def optimizer_step(self, finite: bool, loss: torch.Tensor) -> float:
        """Check, average across processes, clip, step, EMA; weights stay untouched on NaN."""
        acc, params = self.accelerator, [p for _, p in self.params]
        if self._any(not finite):
            self._non_finite(f"loss became {float(loss):.4g}")
        self._average_gradients()
        max_norm = self.cfg.clip_grad if self.cfg.clip_grad > 0 else float("inf")
        norm = float(acc.clip_grad_norm_(params, max_norm))
        if acc.scaler is None and self._any(not math.isfinite(norm)):  # fp16's scaler skips such steps
            self._non_finite(f"gradient norm became {norm:.4g}")
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr(self.step)
        self.updating = True  # until the step counter catches up: no consistent state to save
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.step(params)
        return norm

    def _lr(self, step: int) -> float:
        warm, cfg = self.cfg.warmup_steps, self.cfg
        decay = cfg.lr_gamma ** sum(step >= m for m in cfg.lr_milestones)
        return cfg.lr * decay * (min(1.0, (step + 1) / warm) if warm else 1.0)

    def _any(self, flag: bool) -> bool:
        """True when ``flag`` holds on any process (every process takes the same branch)."""
        acc = self.accelerator
        if acc.num_processes == 1:
            return flag
        return bool(acc.reduce(torch.tensor([float(flag)], device=acc.device), "sum") > 0)

    def _average_gradients(self) -> None:
        acc = self.accelerator
        if acc.num_processes == 1:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for _, p in self.params]
        flat = acc.reduce(torch.cat([g.reshape(-1) for g in grads]), "mean")  # (total params,)
        offset = 0
        for (_, p), g in zip(self.params, grads):
            p.grad = flat[offset: offset + g.numel()].view_as(p).clone()
            offset += g.numel()

    def _non_finite(self, what: str) -> None:
        kept = f"the last good checkpoint '{self.last_good}' is kept" if self.last_good else "no checkpoint was written yet"
        raise NonFiniteLoss(
            f"The {what} at step {self.step + 1}, so training stopped and {kept} "
            "(lower lr or set clip_grad, then continue with --resume)."
        )

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
        loss = float(figures["terms"]["loss"])
        self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        self.bar.update(1)
        if not cfg.log_every or self.step % cfg.log_every:
            return
        keys = sorted(figures["terms"])
        means = acc.reduce(torch.stack([figures["terms"][k] for k in keys]).to(acc.device), "mean")
        record = {k: float(v) for k, v in zip(keys, means)}
        record.update(lr=figures["lr"], grad_norm=figures["grad_norm"])
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

    def sample(self) -> None:
        acc = self.accelerator
        if acc.is_main_process:
            with self._ema_weights(), acc.autocast():
                self.stage.sample(self.out / "samples", self.step)
        acc.wait_for_everyone()

    def evaluate(self) -> dict:
        acc, metrics = self.accelerator, {}
        if acc.is_main_process:
            with self._ema_weights(), acc.autocast():
                metrics = {k: float(v) for k, v in self.stage.evaluate().items()}
            acc.log({f"val/{k}": v for k, v in metrics.items()}, step=self.step)
            self._append_metrics({"step": self.step, "split": "val", **metrics})
            self.bar.write(f"step {self.step}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()),
                           file=sys.stderr)
        acc.wait_for_everyone()
        self.last_eval = (self.step, metrics)
        return metrics

    # ---- checkpoints ---------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        """Write ``checkpoints/step_XXXXXX`` atomically (temporary folder, then rename)."""
        acc = self.accelerator
        tmp, final = temp_dir(self.ckpt_root, self.step), step_dir(self.ckpt_root, self.step)
        if acc.is_main_process:
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        save_tree(tmp, f"rng_{acc.process_index}", rng_state())
        if acc.is_main_process:
            meta = {"stage": self.stage.name, "step": self.step, "samples_seen": self.samples_seen,
                    "seed": self.cfg.seed}
            self.state.save(tmp, meta, config_yaml(self.resolved))
        acc.wait_for_everyone()
        if acc.is_main_process:
            publish(tmp, final)
            prune_checkpoints(self.ckpt_root, self.cfg.keep_checkpoints)
        acc.wait_for_everyone()
        self.last_good = final
        return final

    def load_checkpoint(self, folder: Path) -> dict:
        """Restore weights, EMA, optimizer, scaler and position; returns the RNG state to apply last."""
        meta = self.state.load(folder, self.stage.name, self.accelerator.device)
        self.step = self.start_step = int(meta["step"])
        self.samples_seen = int(meta["samples_seen"])
        self.bar_note = f"Resuming from '{folder}' (step {self.step})."
        rank = self.accelerator.process_index
        return load_tree(folder, f"rng_{rank}" if (folder / f"rng_{rank}.json").is_file() else "rng_0")

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
                self.run_steps()
            return self.finish(time.perf_counter() - began)
        except KeyboardInterrupt:
            self._save_on_interrupt()
            raise
        finally:
            self.close()

    def _save_on_interrupt(self) -> None:
        if not self.ready:
            return
        if self.updating:  # a second Ctrl-C inside a weight update: weights and step disagree
            self.bar.write(f"Stopped during a weight update; the last checkpoint is '{self.last_good}'.",
                           file=sys.stderr)
            return
        if self.last_good is None or self.last_good != step_dir(self.ckpt_root, self.step):
            self.save_checkpoint()
        if self.accelerator.is_main_process:
            self.bar.write(f"Training stopped at step {self.step}; checkpoint saved to '{self.last_good}'; "
                           "continue with --resume.", file=sys.stderr)

    def finish(self, wall: float) -> Path:
        """Final evaluation, then the export (EMA weights) with the config and a run summary."""
        metrics = self.last_eval[1] if self.last_eval and self.last_eval[0] == self.step else self.evaluate()
        summary = self.summary(wall, metrics)
        folder, acc = self.out / "export", self.accelerator
        if acc.is_main_process:
            tmp = self.out / ".tmp-export"
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
            with self._ema_weights():
                self.stage.export(tmp)
            (tmp / "config.yaml").write_text(config_yaml(self.resolved), encoding="utf-8")
            (tmp / "train_summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
            publish(tmp, folder)
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
            "num_processes": self.accelerator.num_processes, "final_eval": metrics,
        }

    def close(self) -> None:
        if self.ready:
            self.bar.close()
            self.accelerator.end_training()


def train(stage, cfg: TrainConfig, resolved: dict | None = None, resume: bool = False) -> Path:
    """Train ``stage`` under ``cfg``; returns ``<out>/export``."""
    return Trainer(stage, cfg, resolved).fit(resume)


__all__ = ["NonFiniteLoss", "Trainer", "train"]
