"""Several processes (CPU, gloo): a 2-process run equals a 1-process one at the same global batch.

The 2-process run is started exactly as the README says, ``accelerate launch --cpu --num_processes 2
$(which evedit) train t2i ...``; an audit hook (a ``sitecustomize`` on ``PYTHONPATH``) records, per
process, every file operation under the run's folder that Python itself performs.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from evedit.cli import main

TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny"
BIN = Path(sys.executable).parent

AUDIT = '''
import atexit, json, os, sys
_out, _dir = os.environ.get("EVEDIT_AUDIT_OUT"), os.environ.get("EVEDIT_AUDIT_DIR")
if _out and _dir:
    _seen = set()
    _write = os.O_WRONLY | os.O_RDWR | os.O_CREAT
    def _hook(event, args):
        if event == "open":
            mode, flags = (list(args) + [None, 0])[1:3]
            if not ((isinstance(mode, str) and set(mode) & set("wax+")) or (flags or 0) & _write):
                return
            paths = args[:1]
        elif event in ("os.mkdir", "os.rename", "os.remove", "os.rmdir", "shutil.rmtree", "os.truncate"):
            paths = args[:2] if event == "os.rename" else args[:1]
        else:
            return
        for p in paths:
            if isinstance(p, (str, bytes, os.PathLike)) and os.path.abspath(os.fsdecode(p)).startswith(_out):
                _seen.add((event, os.fsdecode(p)))
    sys.addaudithook(_hook)
    def _dump():
        with open(os.path.join(_dir, f"{os.getpid()}.json"), "w") as f:
            json.dump({"rank": os.environ.get("RANK"), "events": sorted(_seen)}, f)
    atexit.register(_dump)
'''


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread


def cli(*args) -> int:
    try:
        return main(["train", *map(str, args)])
    except SystemExit as exc:
        return exc.code


def t2i_recipe(folder: Path, vae: Path, grad_accum: int) -> Path:
    """The tiny t2i recipe: batch 2, ``grad_accum`` micro-batches, 3 steps, checkpoints at 2 and 3."""
    text = (TINY / "t2i.yaml").read_text().replace("runs/tiny/codec/export/vae", str(vae))
    text = text.replace("max_steps: 2", "max_steps: 3").replace("ckpt_every: 2", "ckpt_every: 2\n"
                                                                 f"  grad_accum: {grad_accum}")
    text = text.replace("sample_every: 2", "sample_every: 3").replace("eval_every: 2", "eval_every: 3")
    path = folder / f"t2i-accum{grad_accum}.yaml"
    path.write_text(text)
    return path


def records(out: Path) -> dict[int, dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r for r in map(json.loads, lines) if r["split"] == "train"}


def weights(out: Path, step: int, name: str = "trainable") -> dict[str, torch.Tensor]:
    return load_file(str(out / "checkpoints" / f"step_{step:06d}" / f"{name}.safetensors"))


def assert_close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst < 1e-5, worst


def audited_launch(root: Path, args: list, out: Path, audit: Path) -> subprocess.CompletedProcess:
    """``accelerate launch --cpu --num_processes 2 $(which evedit) ARGS --out OUT`` as the README
    says, each process's file writes under ``out`` recorded into ``audit`` (the AUDIT hook)."""
    audit.mkdir()
    (root / "site").mkdir(exist_ok=True)
    (root / "site" / "sitecustomize.py").write_text(AUDIT)
    env = {**os.environ, "PYTHONPATH": str(root / "site"), "EVEDIT_AUDIT_OUT": str(out),
           "EVEDIT_AUDIT_DIR": str(audit), "OMP_NUM_THREADS": "1"}
    cmd = [str(BIN / "accelerate"), "launch", "--cpu", "--num_processes", "2", str(BIN / "evedit"),
           *map(str, args), "--out", str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("mp")
    assert cli("codec", "--config", TINY / "codec.yaml", "--out", root / "codec") == 0
    vae = root / "codec" / "export" / "vae"
    out2, audit = root / "two", root / "audit"
    done = audited_launch(root, ["train", "t2i", "--config", t2i_recipe(root, vae, 1)], out2, audit)
    out1 = root / "one"
    assert cli("t2i", "--config", t2i_recipe(root, vae, 2), "--out", out1) == 0
    return {"root": root, "vae": vae, "two": out2, "one": out1, "audit": audit, "stderr": done.stderr}


def test_two_processes_train_as_one_at_the_same_global_batch(runs):
    two, one = runs["two"], runs["one"]
    for step in (1, 2, 3):
        assert records(two)[step]["loss"] == pytest.approx(records(one)[step]["loss"], rel=1e-5, abs=1e-7)
    for step in (2, 3):
        assert_close(weights(two, step), weights(one, step))
        assert_close(weights(two, step, "ema"), weights(one, step, "ema"))
    assert not torch.equal(weights(two, 3)["unet.conv_in.weight"], weights(two, 2)["unet.conv_in.weight"])


def test_the_run_says_how_many_processes_and_machines(runs):
    assert "t2i: 2 processes on 1 machine" in runs["stderr"]
    summary = json.loads((runs["two"] / "export" / "train_summary.json").read_text())
    assert (summary["num_processes"], summary["num_machines"]) == (2, 1)
    assert summary["global_batch"] == "2 x 1 x 2 = 4"
    state = json.loads((runs["two"] / "checkpoints" / "step_000003" / "state.json").read_text())
    assert state["num_processes"] == 2
    assert {p.name for p in (runs["two"] / "checkpoints" / "step_000003").glob("rng_*.json")} == {
        "rng_0.json", "rng_1.json"}


def test_only_the_main_process_writes_files(runs):
    reports = [json.loads(p.read_text()) for p in runs["audit"].glob("*.json")]
    ranks = {r["rank"] for r in reports}
    assert {"0", "1"} <= ranks  # both training processes reported
    writers = {r["rank"] for r in reports if r["events"]}
    assert writers == {"0"}, [(r["rank"], r["events"][:3]) for r in reports if r["rank"] != "0" and r["events"]]
    written = {Path(p).name for r in reports for _, p in r["events"]}
    assert {"metrics.jsonl", "manifest.json"} <= written


def test_a_two_process_checkpoint_resumes_in_one_process(runs, capsys):
    resumed = runs["root"] / "resumed"
    shutil.copytree(runs["two"], resumed)
    shutil.rmtree(resumed / "checkpoints" / "step_000003")
    shutil.rmtree(resumed / "export")
    recipe = t2i_recipe(runs["root"], runs["vae"], 2)
    assert cli("t2i", "--config", recipe, "--out", resumed, "--resume") == 0
    assert "saved by 2 process(es)" in capsys.readouterr().err
    assert records(resumed)[3]["loss"] == pytest.approx(records(runs["two"])[3]["loss"], rel=1e-5, abs=1e-7)
    assert_close(weights(resumed, 3), weights(runs["two"], 3))


def test_deepspeed_launches_are_refused_in_one_sentence():
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from evedit.errors import EveditError
    from evedit.training.distributed import refuse_sharding

    for kind in (DistributedType.MULTI_GPU, DistributedType.FSDP):  # FSDP: tests/test_fsdp.py
        refuse_sharding(SimpleNamespace(distributed_type=kind))
    with pytest.raises(EveditError, match="fsdp-zero2.yaml"):
        refuse_sharding(SimpleNamespace(distributed_type=DistributedType.DEEPSPEED))


def test_accelerate_config_files_load():
    from accelerate.commands.config.config_args import load_config_from_file

    folder = Path(__file__).resolve().parents[1] / "configs" / "accelerate"
    kinds = {p.stem: load_config_from_file(str(p)).distributed_type.value for p in folder.glob("*.yaml")}
    assert kinds == {"cpu": "NO", "ddp": "MULTI_GPU", "fsdp": "FSDP", "fsdp-zero2": "FSDP",
                     "deepspeed-zero2": "DEEPSPEED"}


def align_recipe(folder: Path, grad_accum: int) -> Path:
    """The tiny align recipe: 3 steps (1 SDS-only, 2 with the critic), 1 clip per micro-batch."""
    text = (TINY / "align.yaml").read_text().replace("steps_adv: 1", "steps_adv: 2")
    path = folder / f"align-accum{grad_accum}.yaml"
    path.write_text(text + f"grad_accum: {grad_accum}\n")
    return path


def align_cli(*args) -> int:
    try:
        return main(["align", *map(str, args)])
    except SystemExit as exc:
        return exc.code


@pytest.fixture(scope="module")
def align_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("mp-align")
    out2 = root / "two"
    cmd = [str(BIN / "accelerate"), "launch", "--cpu", "--num_processes", "2", str(BIN / "evedit"),
           "align", "--config", str(align_recipe(root, 1)), "--out", str(out2), "--quiet"]
    done = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    out1 = root / "one"
    assert align_cli("--config", align_recipe(root, 2), "--out", out1, "--quiet") == 0
    return {"root": root, "two": out2, "one": out1, "stderr": done.stderr}


def test_two_processes_align_as_one_at_the_same_global_batch(align_runs):
    two, one = align_runs["two"], align_runs["one"]
    assert "align: 2 processes on 1 machine" in align_runs["stderr"]
    for step in (1, 2, 3):
        for key in ("g_total", "g_grad_norm") + (("d_total", "d_grad_norm") if step > 1 else ()):
            assert records(two)[step][key] == pytest.approx(records(one)[step][key], rel=1e-5, abs=1e-7), key
    for step in (2, 3):  # the LoRA and the critic's heads, both averaged over the processes
        assert_close(weights(two, step), weights(one, step))
    assert any(k.startswith("d_edit.") for k in weights(two, 3))
    summary = json.loads((two / "align_summary.json").read_text())
    assert summary["num_processes"] == 2 and (two / "model" / "evedit_model.json").is_file()


def test_a_two_process_align_checkpoint_resumes_in_one_process(align_runs):
    resumed = align_runs["root"] / "resumed"
    shutil.copytree(align_runs["two"], resumed)
    shutil.rmtree(resumed / "checkpoints" / "step_000003")
    shutil.rmtree(resumed / "model")
    assert align_cli("--config", align_recipe(align_runs["root"], 2), "--out", resumed, "--resume", "--quiet") == 0
    assert records(resumed)[3]["g_total"] == pytest.approx(records(align_runs["two"])[3]["g_total"], rel=1e-5)
    assert_close(weights(resumed, 3), weights(align_runs["two"], 3))
