"""The FDD training loop: named steps per iteration, checkpoints, resume, logs, export."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from torch.utils.data import default_collate
from tqdm.auto import tqdm

from ...errors import EveditError
from ...models import save_model
from ..checkpoint import latest_checkpoint
from ..data import stream_seed
from .config import FDDConfig
from .run import alignment_data, batch_indices, build_state, load_checkpoint, save_checkpoint, _cfg_dict
from .samples import write_samples
from .steps import FDDState, critic_phase, critic_step, generator_step
from .teachers import TeacherBank, encode_batch


class Aligner:
    def __init__(self, cfg: FDDConfig, resume: bool = False, teacher=None, progress: bool = True):
        self.cfg = cfg.effective()
        self.out = Path(self.cfg.out)
        self._check_out(resume)
        self.state: FDDState = build_state(self.cfg, teacher)
        self.data = alignment_data(self.cfg, self.state.teacher)
        self.bank = TeacherBank(self.state.teacher, self.cfg)
        self.step = 0
        if resume:
            self.step = load_checkpoint(self.state, latest_checkpoint(self.out / "checkpoints"))
        self.writer = _tensorboard(self.out)
        self.progress = progress
        self.log_path = self.out / "metrics.jsonl"

    def _check_out(self, resume: bool) -> None:
        latest = latest_checkpoint(self.out / "checkpoints")
        if resume and latest is None:
            raise EveditError(f"Nothing to resume: '{self.out / 'checkpoints'}' holds no checkpoint.")
        if not resume and latest is not None:
            raise EveditError(f"'{self.out}' already holds an alignment run; pass --resume or choose another --out.")
        self.out.mkdir(parents=True, exist_ok=True)

    # ---- named steps --------------------------------------------------------------------------
    def load_batch(self, step: int):
        indices = batch_indices(self.cfg, step, len(self.data))
        batch = default_collate([self.data[i] for i in indices])
        ab = encode_batch(self.state.teacher, batch)
        return batch, self.bank.fill(ab, indices, step, with_reals=critic_phase(self.state, step))

    def iteration(self, step: int) -> dict[str, float]:
        self.state.generator.manual_seed(stream_seed(self.cfg.seed, 11, step))
        batch, ab = self.load_batch(step)
        logs, fake = generator_step(self.state, ab, step)
        if critic_phase(self.state, step):
            logs.update(critic_step(self.state, ab, fake))
        bad = [k for k, v in logs.items() if not math.isfinite(v)]
        if bad:
            raise EveditError(f"FDD stopped at step {step}: {bad[0]} became {logs[bad[0]]}; the last good "
                              f"checkpoint in '{self.out / 'checkpoints'}' is kept.")
        self._last = (batch, ab, fake)
        return logs

    def after_step(self, step: int, logs: dict[str, float], bar) -> None:
        cfg, done = self.cfg, step + 1
        if done % cfg.log_every == 0 or done == cfg.total_steps:
            for key, value in logs.items():
                self.writer.add_scalar(f"align/{key}", value, done)
            with self.log_path.open("a") as handle:
                handle.write(json.dumps({"step": done, **logs}) + "\n")
            bar.set_postfix({k: f"{v:.3g}" for k, v in logs.items() if k in ("g_total", "d_total")})
        if cfg.sample_every and (done % cfg.sample_every == 0 or done == cfg.total_steps):
            write_samples(self.state, *self._last, self.out / "samples", done)
        if done % cfg.ckpt_every == 0 or done == cfg.total_steps:
            save_checkpoint(self.state, self.out, done)

    # ---- run ----------------------------------------------------------------------------------
    def fit(self) -> Path:
        cfg, start = self.cfg, time.time()
        bar = tqdm(total=cfg.total_steps, initial=self.step, desc=f"align[{cfg.ablation}]", unit="it",
                   disable=not self.progress, dynamic_ncols=True)
        step = self.step
        try:
            for step in range(self.step, cfg.total_steps):
                logs = self.iteration(step)
                self.after_step(step, logs, bar)
                bar.update(1)
        except KeyboardInterrupt:
            if step > self.step:
                path = save_checkpoint(self.state, self.out, step)
                raise EveditError(f"Interrupted; saved '{path}', continue with --resume.") from None
            raise EveditError("Interrupted before the first step; nothing saved.") from None
        finally:
            bar.close()
            self.writer.flush()
        return self.export(time.time() - start)

    def export(self, seconds: float) -> Path:
        """The aligned model folder (teacher parts + LoRA, or the student's own for random-init)."""
        folder = save_model(self.state.student, self.out / "model")
        summary = {"steps": self.cfg.total_steps, "seconds": round(seconds, 1),
                   "config": _cfg_dict(self.cfg)}
        (self.out / "align_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        return folder


def _tensorboard(out: Path):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(out / "tensorboard"))


def align(cfg: FDDConfig, resume: bool = False, teacher=None, progress: bool = True) -> Path:
    """Run FDD with ``cfg``; returns the aligned model folder."""
    return Aligner(cfg, resume=resume, teacher=teacher, progress=progress).fit()
