"""Several processes for ``evedit train`` and ``evedit align``: launching them and what they share.

Launch: ``accelerate launch --num_processes N [--num_machines M --machine_rank R --main_process_ip
IP --main_process_port P] $(which evedit) train STAGE ...`` (``--multi_gpu`` on GPUs). On CPUs,
``accelerate launch --cpu --num_processes N`` starts a single process and expects MPI (its
``--mpirun_hostfile``) to start the others; without a hostfile :func:`relaunch_cpu_processes`
notices (one process, no rank, accelerate's ``MASTER_ADDR`` set only for N > 1, accelerate's
``launch`` arguments in the parent process) and starts the N processes itself with
``torch.distributed.run``, which then meet over gloo. ``accelerate launch --multi_gpu
--num_processes N`` on a machine without GPUs does the same directly.

Shared state: :func:`any_process` (every process takes the same branch), :func:`average_gradients`
(one all-reduce of every trained gradient not sharded by FSDP; the loop calls stages' own modules,
not DDP wrappers),
:func:`gather_rng` (every process's RNG states, for the main process to write), and
:func:`count_machines` (one local rank 0 per machine).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from accelerate.utils import gather_object

from ..errors import EveditError
from .checkpoint import rng_state
from .sharding import is_sharded

RANK_VARS = ("WORLD_SIZE", "RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def _accelerate_launch_args() -> list[str] | None:
    """The arguments after ``launch`` of this process's parent ``accelerate`` command, if it is one."""
    try:
        words = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    words = [w.decode(errors="replace") for w in words if w]
    names = [Path(w).name for w in words]
    if "launch" not in words or not any(n.startswith("accelerate") for n in names[: words.index("launch")]):
        return None
    return words[words.index("launch") + 1:]


def cpu_launch_request() -> dict | None:
    """``{"processes", "machines", "machine_rank", "addr", "port"}`` when ``accelerate launch --cpu
    --num_processes N`` (N > 1, no MPI) started this one process in place of N; else None."""
    env = os.environ
    if any(v in env for v in RANK_VARS) or env.get("ACCELERATE_USE_CPU", "").lower() not in ("true", "1"):
        return None
    if "MASTER_ADDR" not in env:  # accelerate sets it only for more than one process
        return None
    args = _accelerate_launch_args()
    if args is None:
        return None
    from accelerate.commands.launch import launch_command_parser

    try:
        parsed, _ = launch_command_parser().parse_known_args(args)
    except SystemExit:
        return None
    processes, machines = int(parsed.num_processes or 1), int(parsed.num_machines or 1)
    if processes <= 1 or parsed.mpirun_hostfile:
        return None
    return {"processes": processes, "machines": machines, "machine_rank": int(parsed.machine_rank or 0),
            "addr": env["MASTER_ADDR"], "port": env.get("MASTER_PORT", "29500")}


def _own_command() -> list[str]:
    """This process's command without the interpreter: ``[script, args...]`` or ``[-m, module, args...]``."""
    argv = list(getattr(sys, "orig_argv", []))[1:]
    while argv and argv[0].startswith("-") and argv[0] != "-m":  # interpreter flags (-u, -X ...)
        argv = argv[2:] if argv[0] in ("-X", "-W") else argv[1:]
    return argv or list(sys.argv)


def relaunch_cpu_processes() -> None:
    """Start the N CPU processes ``accelerate launch --cpu --num_processes N`` asked for (see the
    module text) and exit with their status; return at once when this process is one of them."""
    request = cpu_launch_request()
    if request is None:
        return
    n, m = request["processes"], request["machines"]
    print(f"accelerate launch --cpu started one process without MPI; starting {n // m} CPU processes "
          f"on this machine with torch.distributed.run ({n} on {m} machine(s)).", file=sys.stderr, flush=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={n // m}", f"--nnodes={m}",
           f"--node_rank={request['machine_rank']}", f"--master_addr={request['addr']}",
           f"--master_port={request['port']}", *_own_command()]
    child = subprocess.Popen(cmd)
    forward = lambda signum, _frame: child.send_signal(signum)  # noqa: E731 - Ctrl-C reaches them anyway
    previous = {s: signal.signal(s, forward if s == signal.SIGTERM else signal.SIG_IGN)
                for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = child.wait()
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
    raise SystemExit(code if code >= 0 else 128 - code)


# ---- inside a run ------------------------------------------------------------------------------
def is_main_launch_process() -> bool:
    """True in the launcher's rank-0 process, or without a launcher: where the CLI prints its
    closing line (every process returns the same export path; one line is enough)."""
    return os.environ.get("RANK", "0") == "0"


def any_process(acc, flag: bool) -> bool:
    """True when ``flag`` holds on any process (so every process takes the same branch)."""
    if acc.num_processes == 1:
        return flag
    return bool(acc.reduce(torch.tensor([float(flag)], device=acc.device), "sum") > 0)


def average_gradients(acc, params: list[torch.nn.Parameter]) -> None:
    """Replace each gradient by its mean over the processes (one all-reduce; missing ones count 0)."""
    params = [p for p in params if not is_sharded(p)]  # FSDP's arrive averaged
    if acc.num_processes == 1 or not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = acc.reduce(torch.cat([g.reshape(-1) for g in grads]), "mean")  # (total params,)
    offset = 0
    for p, g in zip(params, grads):
        p.grad = flat[offset: offset + g.numel()].view_as(p).clone()
        offset += g.numel()


def broadcast_parameters(acc, params: list[torch.nn.Parameter]) -> None:
    """Give every process rank 0's values of ``params`` (as DDP does when it wraps a model)."""
    if acc.num_processes == 1:
        return
    import torch.distributed as dist

    with torch.no_grad():
        for p in params:
            if not is_sharded(p):  # FSDP's shards were cut from rank 0's values
                dist.broadcast(p.data, src=0)


def gather_rng(acc) -> list[dict]:
    """Every process's RNG states, by rank (the main process writes them all)."""
    if acc.num_processes == 1:
        return [rng_state()]
    return list(gather_object([rng_state()]))


def count_machines(acc) -> int:
    """Machines in the run: each has exactly one local main process."""
    if acc.num_processes == 1:
        return 1
    return int(acc.reduce(torch.tensor([float(acc.is_local_main_process)], device=acc.device), "sum"))


def refuse_sharding(acc) -> None:
    """DeepSpeed and Megatron need the trained modules wrapped by their engines, which the loop does
    not do (it calls the stages' own modules; FSDP shards them in place, :mod:`.sharding`): stop in
    one sentence rather than run unsharded."""
    kind = acc.distributed_type.value
    if kind in ("DEEPSPEED", "MEGATRON_LM"):
        raise EveditError(f"evedit's training loop cannot shard under {kind}; launch with "
                          "configs/accelerate/fsdp-zero2.yaml (FSDP sharding gradients and optimizer state, "
                          "as ZeRO-2 does) or configs/accelerate/ddp.yaml instead.")


def describe(acc, machines: int, global_batch: str) -> str:
    """The run's first log line: processes, machines, device, precision, batch."""
    n, kind = acc.num_processes, acc.distributed_type.value.lower()
    where = acc.device.type if kind == "no" else f"{acc.device.type}, {kind}"
    return (f"{n} process{'es' if n > 1 else ''} on {machines} machine{'s' if machines > 1 else ''} "
            f"({where}, mixed precision {acc.mixed_precision}); global batch {global_batch}.")
