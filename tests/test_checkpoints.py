"""Training that survives damaged checkpoints, NaN and SIGTERM (issue 21, training side).

Checkpoints carry a manifest (sizes, sha256) checked on resume, with a one-sentence fallback past
damaged ones; a NaN stop keeps only checkpoints whose weights gave a finite loss; SIGTERM stops like
Ctrl-C with a checkpoint; a resumed run logs no step twice.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from evedit.cli import main
from evedit.errors import EveditError
from evedit.training.checkpoint import list_checkpoints
from evedit.training.resume import MANIFEST, load_newest_intact, trim_metrics, verify
from evedit.training.signals import stop_on_signals

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny"


def cli(*args) -> int:
    try:
        return main(["train", *map(str, args)])
    except SystemExit as exc:
        return exc.code


def recipe(folder: Path, name: str = "codec.yaml", **train) -> Path:
    """The tiny codec recipe with some ``train:`` fields replaced."""
    lines = (TINY / "codec.yaml").read_text().splitlines()
    for key, value in train.items():
        lines = [f"  {key}: {value}" if line.startswith(f"  {key}:") else line for line in lines]
        if not any(line.startswith(f"  {key}:") for line in lines):
            lines.insert(lines.index("train:") + 1, f"  {key}: {value}")
    path = folder / name
    path.write_text("\n".join(lines) + "\n")
    return path


def train_steps(out: Path, split: str = "train") -> list[int]:
    rows = map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
    return [r["step"] for r in rows if r.get("split", "train") == split]


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def flip_bytes(path: Path) -> None:
    """Overwrite 8 bytes inside the tensor data (same size, valid header): silent drift if unchecked."""
    data = bytearray(path.read_bytes())
    where = len(data) - 64
    data[where:where + 8] = bytes(b ^ 0x5A for b in data[where:where + 8])
    path.write_bytes(bytes(data))


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    """A 4-step tiny codec run: checkpoints at steps 0 (initial weights), 2 and 4."""
    folder = tmp_path_factory.mktemp("base")
    assert cli("codec", "--config", recipe(folder, eval_every=0, sample_every=0), "--out", folder / "run",
               "--max-steps", 4) == 0
    return folder / "run"


@pytest.fixture
def run(base_run, tmp_path) -> Path:
    """A private copy of the base run to damage."""
    shutil.copytree(base_run, tmp_path / "run")
    return tmp_path / "run"


def test_every_checkpoint_has_a_manifest_that_verifies(base_run):
    found = list_checkpoints(base_run / "checkpoints")
    assert [p.name for p in found] == ["step_000000", "step_000002", "step_000004"]
    for folder in found:
        entries = json.loads((folder / MANIFEST).read_text())["files"]
        optimizer = {"optimizer.safetensors"} if folder.name != "step_000000" else set()  # no state yet
        assert {"trainable.safetensors", "optimizer.json", "ema.safetensors", "rng_0.safetensors",
                "rng_0.json", "state.json", *optimizer} <= set(entries)
        assert entries["trainable.safetensors"]["size"] == (folder / "trainable.safetensors").stat().st_size
        assert verify(folder) is None


def test_a_truncated_trainable_resumes_from_the_checkpoint_before(run, capsys):
    truncate(run / "checkpoints" / "step_000004" / "trainable.safetensors")
    config = recipe(run.parent, eval_every=0, sample_every=0)
    assert cli("codec", "--config", config, "--out", run, "--max-steps", 6, "--resume") == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "damaged" in line]
    assert len(warnings) == 1, err
    assert "step_000004" in warnings[0] and "'trainable.safetensors' is truncated" in warnings[0]
    assert "resumes from" in warnings[0] and "step_000002" in warnings[0]
    assert "Traceback" not in err
    summary = json.loads((run / "export" / "train_summary.json").read_text())
    assert summary["steps"] == 6 and summary["steps_this_run"] == 4  # resumed at step 2
    # the resumed run re-logged steps 3 and 4: each step is in metrics.jsonl once
    assert train_steps(run) == [1, 2, 3, 4, 5, 6]
    assert verify(run / "checkpoints" / "step_000004") is None  # rewritten by the resumed run


@pytest.mark.parametrize("damage,expected", [
    (lambda f: truncate(f / "optimizer.safetensors", 0.9), "'optimizer.safetensors' is truncated"),
    (lambda f: truncate(f / "ema.safetensors", 0.1), "'ema.safetensors' is truncated"),
    (lambda f: flip_bytes(f / "trainable.safetensors"), "'trainable.safetensors' does not match its recorded sha256"),
    (lambda f: (f / "rng_0.safetensors").unlink(), "'rng_0.safetensors' is missing"),
    (lambda f: (f / MANIFEST).unlink(), f"'{MANIFEST}' is missing"),
    (lambda f: (f / "state.json").write_text("{"), "'state.json' is truncated"),
])
def test_each_kind_of_damage_is_named_and_skipped(run, damage, expected):
    newest = run / "checkpoints" / "step_000004"
    damage(newest)
    assert expected in verify(newest)
    said = []
    folder, loaded = load_newest_intact(run / "checkpoints", lambda f: f.name, say=said.append)
    assert folder.name == loaded == "step_000002"
    assert len(said) == 1 and "step_000004" in said[0] and expected in said[0]


def test_flipped_bytes_keep_a_loadable_file(run):
    """The overwritten bytes leave a file safetensors reads without complaint: only the hash sees it."""
    weights = run / "checkpoints" / "step_000004" / "trainable.safetensors"
    before = {k: v.clone() for k, v in load_file(str(weights)).items()}
    flip_bytes(weights)
    after = load_file(str(weights))
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert "sha256" in verify(weights.parent)


def test_checkpoints_without_a_manifest_from_before_still_resume(run):
    for folder in list_checkpoints(run / "checkpoints"):  # as written before manifests existed
        (folder / MANIFEST).unlink()
        state = json.loads((folder / "state.json").read_text())
        del state["format"]
        (folder / "state.json").write_text(json.dumps(state))
    assert all(verify(f) is None for f in list_checkpoints(run / "checkpoints"))
    truncate(run / "checkpoints" / "step_000004" / "trainable.safetensors")  # unverified: loading fails
    said = []
    folder, weights = load_newest_intact(run / "checkpoints", lambda f: load_file(str(f / "trainable.safetensors")),
                                         say=said.append)
    assert folder.name == "step_000002" and weights
    assert len(said) == 1 and "step_000004" in said[0] and "cannot be loaded" in said[0]


def test_no_intact_checkpoint_is_one_line_and_exit_1(run, capsys):
    for folder in list_checkpoints(run / "checkpoints"):
        truncate(folder / "trainable.safetensors")
    config = recipe(run.parent, eval_every=0, sample_every=0)
    assert cli("codec", "--config", config, "--out", run, "--max-steps", 6, "--resume") == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "No intact checkpoint" in err and "step_000004" in err and "trainable.safetensors" in err
    assert "Traceback" not in err
    with pytest.raises(EveditError, match="Nothing to resume"):
        load_newest_intact(run / "nowhere", lambda f: f)


def test_a_nan_run_keeps_only_finite_weights_and_resumes_with_a_lower_lr(tmp_path, capsys):
    out = tmp_path / "run"
    huge = recipe(tmp_path, "huge.yaml", lr="1.0e+6", ckpt_every=1, eval_every=0, sample_every=0)
    assert cli("codec", "--config", huge, "--out", out, "--max-steps", 6) == 1
    err = capsys.readouterr().err
    assert "became" in err and "is kept" in err and "Traceback" not in err
    kept = list_checkpoints(out / "checkpoints")
    # lr 1e6 sends the weights to ~1e6 at step 1 and the loss from them is NaN: the step-1
    # checkpoint is deleted, the initial weights' one kept
    assert "step_000001', whose weights gave it, was deleted" in err
    assert [f.name for f in kept] == ["step_000000"] and verify(kept[0]) is None
    for folder in kept:
        weights = load_file(str(folder / "trainable.safetensors"))
        assert all(bool(torch.isfinite(w).all()) and float(w.abs().max()) < 1e3 for w in weights.values())
    newest = int(kept[-1].name.split("_")[1])
    small = recipe(tmp_path, "small.yaml", lr="1.0e-4", ckpt_every=2, eval_every=0, sample_every=0)
    assert cli("codec", "--config", small, "--out", out, "--max-steps", newest + 3, "--resume") == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["split"] == "train"]
    resumed = [r for r in rows if r["step"] > newest]
    assert [r["step"] for r in resumed] == [newest + 1, newest + 2, newest + 3]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in resumed)
    assert [r["step"] for r in rows] == list(range(1, newest + 4))  # no step twice


def test_sigterm_during_train_saves_a_checkpoint(tmp_path):
    out = tmp_path / "run"
    config = recipe(tmp_path, eval_every=0, sample_every=0, ckpt_every=1000)
    cmd = [sys.executable, "-c", "from evedit.cli import _entry; _entry()", "train", "codec",
           "--config", str(config), "--out", str(out), "--max-steps", "100000"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        metrics = out / "metrics.jsonl"
        while proc.poll() is None and not (metrics.is_file() and metrics.read_text().count("\n") >= 2):
            try:
                proc.wait(0.2)
            except subprocess.TimeoutExpired:
                pass
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err  # 128 + SIGTERM, after the checkpoint
    assert "Traceback" not in err and "SIGTERM" in err and "continue with --resume" in err
    found = list_checkpoints(out / "checkpoints")
    stopped = int(found[-1].name.split("_")[1])
    assert stopped >= 2 and verify(found[-1]) is None
    assert train_steps(out)[-1] == stopped
    assert cli("codec", "--config", config, "--out", out, "--max-steps", stopped + 1, "--resume") == 0
    assert train_steps(out) == list(range(1, stopped + 2))


class Owner:
    stop_requested = False


def test_sigterm_and_sigint_set_the_stop_flag_then_stop_at_once():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    owner, said = Owner(), []
    with pytest.raises(KeyboardInterrupt):
        with stop_on_signals(owner, said.append):
            os.kill(os.getpid(), signal.SIGTERM)
            assert owner.stop_requested and "SIGTERM" in said[0]
            os.kill(os.getpid(), signal.SIGINT)
    assert {s: signal.getsignal(s) for s in before} == before


def test_trim_metrics_drops_what_a_resume_logs_again(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2, "split": "val"}\n{"step": 3}\n{"step": 4, "lo')
    trim_metrics(path, 2)
    assert path.read_text() == '{"step": 1}\n{"step": 2, "split": "val"}\n'


def test_align_resume_falls_back_past_a_damaged_checkpoint(minilm, tmp_path, capsys):
    from model_utils import tiny_model

    from evedit.training.fdd import FDDConfig, align
    from evedit.world import TASKS

    tiny = dict(steps_sds=2, steps_adv=0, batch_size=1, real_steps=1, bank_per_item=1, k=2,
                data={"kind": "shapeworld", "length": 4, "frames": 2}, sample_every=0, ckpt_every=1,
                log_every=1, disc_dim=16, out=str(tmp_path / "align"))
    align(FDDConfig(**tiny), teacher=tiny_model(text_encoder=minilm, num_tasks=len(TASKS)), progress=False)
    root = tmp_path / "align" / "checkpoints"
    assert [p.name for p in list_checkpoints(root)] == ["step_000001", "step_000002"]
    assert all(verify(f) is None for f in list_checkpoints(root))
    truncate(root / "step_000002" / "trainable.safetensors")
    capsys.readouterr()
    teacher = tiny_model(text_encoder=minilm, num_tasks=len(TASKS))
    align(FDDConfig(**{**tiny, "steps_sds": 3}), resume=True, teacher=teacher, progress=False)
    err = capsys.readouterr().err
    assert "step_000002" in err and "'trainable.safetensors' is truncated" in err and "step_000001" in err
    steps = [json.loads(line)["step"] for line in (tmp_path / "align" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


def test_sigterm_during_align_saves_a_checkpoint_and_raises_terminated(minilm, tmp_path, monkeypatch, capsys):
    from model_utils import tiny_model

    from evedit.errors import Terminated
    from evedit.training.fdd import FDDConfig
    from evedit.training.fdd import FDDStage
    from evedit.training.fdd.stage import train_config
    from evedit.training.loop import Trainer
    from evedit.world import TASKS

    cfg = FDDConfig(steps_sds=3, steps_adv=0, batch_size=1, real_steps=1, bank_per_item=1, k=2,
                    data={"kind": "shapeworld", "length": 4, "frames": 2}, sample_every=0, ckpt_every=100,
                    log_every=1, disc_dim=16, out=str(tmp_path / "align"))
    turn = FDDStage.generator_turn

    def killed_during_the_first(self, prepared, generator, step):
        if step == 0:
            os.kill(os.getpid(), signal.SIGTERM)
        return turn(self, prepared, generator, step)

    monkeypatch.setattr(FDDStage, "generator_turn", killed_during_the_first)
    handler = signal.getsignal(signal.SIGTERM)
    stage = FDDStage(cfg, teacher=tiny_model(text_encoder=minilm, num_tasks=len(TASKS)))
    with pytest.raises(Terminated):
        Trainer(stage, train_config(stage.cfg), progress=False).fit()
    assert "continue with --resume" in capsys.readouterr().err
    found = list_checkpoints(tmp_path / "align" / "checkpoints")  # the initial weights', then step 1's
    assert [f.name for f in found] == ["step_000000", "step_000001"] and all(verify(f) is None for f in found)
    assert signal.getsignal(signal.SIGTERM) == handler  # restored
