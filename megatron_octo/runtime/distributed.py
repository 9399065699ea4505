"""Process-group and model-parallel initialisation from torchrun or Slurm.

torchrun sets RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT. Under a bare ``srun`` (one task
per process, no torchrun) the same values are derived from SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID
and the first host of SLURM_JOB_NODELIST. A single process started with plain ``python`` is a world
of one on 127.0.0.1.
"""

from __future__ import annotations

import datetime
import os
import random
import shutil
import subprocess
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from megatron_octo.runtime import cpu, simulated_gpu


@dataclass(frozen=True)
class LaunchEnv:
    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int
    source: str  # torchrun | slurm | single


def _first_slurm_host(nodelist: str) -> str:
    scontrol = shutil.which("scontrol")
    try:
        out = subprocess.run([scontrol, "show", "hostnames", nodelist], capture_output=True,
                             text=True, timeout=30, check=True).stdout.split() if scontrol else []
        if out:
            return out[0]
    except (OSError, subprocess.SubprocessError):
        pass
    # "node[01-04],gpu7" -> "node01": enough for the common single-range case.
    head = nodelist.split(",")[0]
    if "[" in head:
        prefix, rng = head.split("[", 1)
        return prefix + rng.rstrip("]").split(",")[0].split("-")[0]
    return head


def launch_env(environ=None) -> LaunchEnv:
    env = os.environ if environ is None else environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return LaunchEnv(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)),
                         env.get("MASTER_ADDR", "127.0.0.1"), int(env.get("MASTER_PORT", 29500)), "torchrun")
    if "SLURM_PROCID" in env and "SLURM_NTASKS" in env and int(env["SLURM_NTASKS"]) > 1:
        port = int(env.get("MASTER_PORT", 10000 + int(env.get("SLURM_JOB_ID", "0")) % 20000))
        addr = env.get("MASTER_ADDR") or _first_slurm_host(env.get("SLURM_JOB_NODELIST", "127.0.0.1"))
        return LaunchEnv(int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]),
                         int(env.get("SLURM_LOCALID", 0)), addr, port, "slurm")
    return LaunchEnv(0, 1, 0, "127.0.0.1", int(env.get("MASTER_PORT", 0)) or _free_port(), "single")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def install_device_mode() -> bool:
    """The simulated-GPU mode when OCTO_SIMULATE_GPU=1, else the CPU redirect when there is no GPU
    (idempotent). Entry points call it before their checks, so those see the GPU the run will see.
    Returns whether the GPU is simulated."""
    if simulated_gpu.requested():
        simulated_gpu.install()
        return True
    if not torch.cuda.is_available():
        cpu.install()
    return False


def init_process_group(timeout_minutes: float = 10.0) -> LaunchEnv:
    """torch.distributed over nccl with a GPU, gloo without; installs the CPU redirect if no GPU, or
    the simulated-GPU mode (gloo underneath, collectives checked as NCCL would) if OCTO_SIMULATE_GPU=1."""
    le = launch_env()
    simulated = install_device_mode()
    gpu = torch.cuda.is_available()
    if dist.is_initialized():
        return le
    os.environ.setdefault("MASTER_ADDR", le.master_addr)
    os.environ.setdefault("MASTER_PORT", str(le.master_port))
    if gpu:
        torch.cuda.set_device(le.local_rank % torch.cuda.device_count())
    dist.init_process_group(
        backend="nccl" if gpu and not simulated else "gloo",
        init_method=f"tcp://{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}",
        rank=le.rank,
        world_size=le.world_size,
        timeout=datetime.timedelta(minutes=timeout_minutes),
    )
    return le


def init_model_parallel(tp: int, pp: int, cp: int = 1) -> None:
    from megatron.core import parallel_state as ps

    if ps.model_parallel_is_initialized():
        ps.destroy_model_parallel()
    ps.initialize_model_parallel(
        tensor_model_parallel_size=tp,
        pipeline_model_parallel_size=pp,
        context_parallel_size=cp,
    )


def set_seed(seed: int, cudagraphable_rng: bool = False) -> None:
    """Megatron-LM's seeding: the same seed on every rank, offset per pipeline stage, plus the
    model-parallel RNG tracker (distinct TP streams for dropout/initialisation inside TP regions).

    ``cudagraphable_rng``: the tracker keeps graph-safe generator states, which megatron's CUDA-graph
    manager requires (Megatron-LM sets it with --cuda-graph-impl local); the dynamic rollout engine
    with CUDA graphs needs it. The streams are seeded the same way either way."""
    from megatron.core import parallel_state as ps
    from megatron.core.tensor_parallel.random import model_parallel_cuda_manual_seed

    seed = seed + 100 * ps.get_pipeline_model_parallel_rank()
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    model_parallel_cuda_manual_seed(seed, use_cudagraphable_rng=cudagraphable_rng)


def initialize(tp: int = 1, pp: int = 1, cp: int = 1, seed: int = 1234, cudagraphable_rng: bool = False) -> LaunchEnv:
    le = init_process_group()
    init_model_parallel(tp, pp, cp)
    set_seed(seed, cudagraphable_rng)
    return le


def device() -> torch.device:
    """Where this rank's model and the tensors fed to it (or to a collective) live: the current
    GPU, or the CPU without one. Model, data and RL code move tensors here rather than testing
    which of the two it is."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def all_reduce_values(values: list[float], op: str = "sum", group=None) -> list[float]:
    """A few numbers summed (``op="sum"``) or maxed (``"max"``) over ``group`` (default: every rank);
    returned as they are without a process group. On the GPU when there is one: NCCL reduces CUDA
    tensors only."""
    t = torch.tensor(values, dtype=torch.float64, device=device())
    if dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM, group=group)
    return t.tolist()


def any_rank(flag: bool, group=None) -> bool:
    """True on every rank when ``flag`` is true on any (a collective: every rank must call it)."""
    return all_reduce_values([float(flag)], "max", group)[0] > 0


def shutdown() -> None:
    from megatron.core import parallel_state as ps

    if ps.model_parallel_is_initialized():
        ps.destroy_model_parallel()
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
