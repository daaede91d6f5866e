"""The checkpoint half of the training loop (:class:`~evedit.training.loop.Trainer` mixes it in).

Saving: every checkpoint is written under a temporary name, sealed with its manifest (sizes and
sha256, :mod:`evedit.training.resume`) and renamed into place; a fresh run first saves its initial
weights as ``step_000000``. Weights that are not all finite are never saved.

Resuming: the newest intact checkpoint is loaded (damaged ones are reported in one sentence and
skipped), and ``metrics.jsonl`` loses the records logged after it.

NaN: a checkpoint becomes *good* once the loss computed from its weights (the next step's) is
finite. When a loss or gradient norm turns NaN or infinite at step ``S + 1``, the weights of step
``S`` produced it, so the checkpoint of step ``S`` (if any) is deleted and the newest older one,
good by construction, is what ``--resume`` continues (with a lower learning rate, say).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch

from ..errors import EveditError
from .checkpoint import (
    checkpoint_step, drop_poisoned, latest_checkpoint, list_checkpoints, load_tree, prune_checkpoints, publish,
    save_tree, step_dir, temp_dir,
)
from .distributed import gather_rng
from .sharding import local
from .config import config_yaml
from .resume import load_newest_intact, trim_metrics, warn, write_manifest


class NonFiniteLoss(EveditError):
    """The loss (or gradient norm) became NaN or infinite."""


class Checkpointing:
    """Checkpoint steps of the Trainer: uses its accelerator, state, params, step and paths."""

    last_saved: Path | None = None  # newest checkpoint written or loaded by this run
    last_good: Path | None = None  # newest checkpoint whose weights gave a finite loss

    def _check_out_dir(self, resume: bool) -> None:
        latest = latest_checkpoint(self.ckpt_root)
        if resume and latest is None:
            raise EveditError(f"Nothing to resume: '{self.ckpt_root}' holds no checkpoint.")
        if not resume and latest is not None:
            raise EveditError(
                f"'{self.out}' already holds checkpoints of an earlier run; pass --resume to "
                "continue it or choose another --out."
            )

    def save_checkpoint(self) -> Path:
        """Write ``checkpoints/step_XXXXXX`` atomically (temporary folder, manifest, then rename)."""
        acc = self.accelerator
        if self._any(not all(bool(torch.isfinite(local(p)).all()) for _, p in self.params)):
            self._non_finite("weights became non-finite", self.step, self.step)
        tmp, final = temp_dir(self.ckpt_root, self.step), step_dir(self.ckpt_root, self.step)
        rngs = gather_rng(acc)  # every process's, written by the main process alone
        whole = self.state.collect()  # FSDP: every process gathers the sharded tensors
        if acc.is_main_process:
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
            for rank, state in enumerate(rngs):
                save_tree(tmp, f"rng_{rank}", state)
            meta = {"stage": self.stage.name, "step": self.step, "samples_seen": self.samples_seen,
                    "seed": self.cfg.seed, "num_processes": acc.num_processes,
                    "num_machines": getattr(self, "machines", 1), "global_batch": self.global_batch()}
            self.state.save(tmp, meta, config_yaml(self.resolved), whole)
            write_manifest(tmp)
            publish(tmp, final)
            prune_checkpoints(self.ckpt_root, self.cfg.keep_checkpoints, protect=self.last_good)
        acc.wait_for_everyone()
        self.last_saved = final
        return final

    def load_checkpoint(self, folder: Path) -> dict:
        """Restore weights, EMA, optimizer, scaler and position; returns the RNG state to apply last."""
        meta = self.state.load(folder, self.stage.name)
        rank = self.accelerator.process_index
        rng = load_tree(folder, f"rng_{rank}" if (folder / f"rng_{rank}.json").is_file() else "rng_0")
        self.step = self.start_step = int(meta["step"])
        self.samples_seen = int(meta["samples_seen"])
        self.saved_layout = (meta.get("num_processes"), meta.get("global_batch"))
        return rng

    def resume_newest(self) -> dict:
        """Load the newest intact checkpoint (falling back past damaged ones); returns its RNG state."""
        main = self.accelerator.is_main_process
        folder, rng = load_newest_intact(self.ckpt_root, self.load_checkpoint, say=warn if main else None)
        self.last_saved = folder
        older = [p for p in list_checkpoints(self.ckpt_root) if checkpoint_step(p) < self.step]
        self.last_good = older[-1] if older else None  # trained past, so its next loss was finite
        self._note(f"Resuming from '{folder}' (step {self.step}).")
        processes, batch = getattr(self, "saved_layout", (None, None))
        if processes is not None and (processes, batch) != (self.accelerator.num_processes, self.global_batch()):
            self.bar_note += (f" It was saved by {processes} process(es) at global batch {batch}; the data "
                              f"stream continues at the same position at global batch {self.global_batch()}.")
        if main:
            trim_metrics(self.out / "metrics.jsonl", self.step)
        return rng

    def confirm_checkpoint(self) -> None:
        """The loss from the weights of ``self.step`` was finite: their checkpoint (if any) is good."""
        if self.last_saved is not None and self.last_saved.name == step_dir(self.ckpt_root, self.step).name:
            self.last_good = self.last_saved

    def _non_finite(self, what: str, weights_of: int, at: int) -> None:
        """Stop at step ``at``: delete the checkpoint of the weights of step ``weights_of`` (they gave
        ``what``) and name the newest older one, which ``--resume`` continues."""
        removed, kept = None, self.last_good
        if self.accelerator.is_main_process:
            removed, kept = drop_poisoned(self.ckpt_root, weights_of)
        gone = f"; checkpoint '{removed}', whose weights gave it, was deleted" if removed else ""
        if kept is not None:
            tail = (f" and the last good checkpoint '{kept}' is kept "
                    "(lower lr or set clip_grad, then continue with --resume).")
        else:
            tail = " and no good checkpoint is left (lower lr or set clip_grad, then start again)."
        raise NonFiniteLoss(f"The {what} at step {at}, so training stopped{gone}{tail}")

    def _save_on_interrupt(self) -> None:
        if not self.ready:
            return
        if self.updating:  # a second Ctrl-C inside a weight update: weights and step disagree
            self.bar.write(f"Stopped during a weight update; the last checkpoint is '{self.last_saved}'.",
                           file=sys.stderr)
            return
        if self.last_saved is None or self.last_saved != step_dir(self.ckpt_root, self.step):
            self.save_checkpoint()
        if self.accelerator.is_main_process:
            self.bar.write(f"Training stopped at step {self.step}; checkpoint saved to '{self.last_saved}'; "
                           "continue with --resume.", file=sys.stderr)
