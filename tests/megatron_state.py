"""megatron-core set up inside a test and torn down after it, leaving the interpreter as it found it: the
single-process (world 1, gloo) process group, megatron's parallel state, global memory buffer, RNG tracker
and microbatch calculator, the CUDA->CPU redirect, the Python / numpy / torch random states, the default
dtype, the thread count and the rendezvous variables. The lean forward's GEMM measurements
(``generation.gemm=auto``) are dropped on entry and exit, so every test measures as a fresh process would.
``tests/unit/test_megatron_state.py`` runs two such tests back to back in both orders and checks both the
results and the state left behind."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
from typing import Optional

import numpy as np
import psutil
import torch
import torch.distributed as dist

RENDEZVOUS = ("MASTER_ADDR", "MASTER_PORT")


def interpreter_state() -> dict:
    """What a test may touch and must give back, in comparable form."""
    from megatron.core import parallel_state as ps
    from megatron.core.tensor_parallel import random as mcore_random

    from megatron_octo.runtime import cpu

    return {
        "dist": dist.is_initialized(),
        "model_parallel": ps.model_parallel_is_initialized(),
        "memory_buffer": ps._GLOBAL_MEMORY_BUFFER is not None,  # noqa: SLF001 (megatron's own global)
        "rng_tracker_states": sorted(mcore_random.get_cuda_rng_tracker().get_states()),
        "redirect": cpu.is_active(),
        "cuda_current_device": torch.cuda.current_device,
        "torch_function_mode": torch._C._is_torch_function_mode_enabled(),  # noqa: SLF001
        "env": {k: os.environ.get(k) for k in RENDEZVOUS},
        "dtype": torch.get_default_dtype(),
        "threads": torch.get_num_threads(),
        "torch_rng": torch.get_rng_state().clone(),
        "numpy_rng": np.random.get_state()[1].copy(),
        "python_rng": random.getstate(),
    }


def same_state(a: dict, b: dict) -> list[str]:
    """The keys where two ``interpreter_state()`` snapshots differ."""
    diff = []
    for key in a:
        x, y = a[key], b[key]
        equal = torch.equal(x, y) if isinstance(x, torch.Tensor) else (
            np.array_equal(x, y) if isinstance(x, np.ndarray) else x == y)
        if not equal:
            diff.append(key)
    return diff


@contextlib.contextmanager
def restored_interpreter(bucket: bool = False):
    """Whatever megatron set up in the body (process group unless ``bucket``, parallel state, memory buffer,
    RNG tracker, microbatch calculator, the CPU redirect, the lean forward's GEMM choices) is torn down after
    it, and the random states, default dtype, thread count and rendezvous variables are given back."""
    from megatron.core import num_microbatches_calculator as nmc
    from megatron.core import parallel_state as ps
    from megatron.core.tensor_parallel import random as mcore_random

    from megatron_octo.models import lean_forward
    from megatron_octo.runtime import cpu

    env = {k: os.environ.get(k) for k in RENDEZVOUS}
    redirect_was_active = cpu.is_active()
    rng = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    if not bucket:
        for k in RENDEZVOUS:  # a fresh rendezvous: never a port a previous test's store held
            os.environ.pop(k, None)
    lean_forward.forget_gemm_choices()  # generation.gemm=auto measures afresh, as in a fresh process
    try:
        yield
    finally:
        if ps.model_parallel_is_initialized():
            ps.destroy_model_parallel()
        ps.destroy_global_memory_buffer()
        if dist.is_initialized() and not bucket:
            dist.destroy_process_group()
        mcore_random.get_cuda_rng_tracker().reset()
        lean_forward.forget_gemm_choices()
        nmc.destroy_num_microbatches_calculator()
        if not redirect_was_active:
            cpu.uninstall()
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        random.setstate(rng[0])
        np.random.set_state(rng[1])
        torch.set_rng_state(rng[2])
        torch.set_default_dtype(dtype)
        torch.set_num_threads(threads)


@contextlib.contextmanager
def megatron_in_process(seed: int = 1234, tp: int = 1, pp: int = 1):
    """``runtime.distributed.initialize(tp, pp, seed=seed)`` for the body; everything it set is undone after.

    In a single interpreter (tp = pp = 1) it brings up and tears down the world-1 process group too. Under a
    distributed bucket (``tests/distributed/bucket.py``: torchrun ran pytest on every rank, which holds the
    world's process group for the whole session) it creates this test's model-parallel groups on that world
    and destroys them after, as Megatron-LM's unit tests do."""
    from megatron.core import parallel_state as ps

    from megatron_octo.runtime import distributed as rt

    bucket = dist.is_initialized() and dist.get_world_size() > 1
    if ps.model_parallel_is_initialized() or (dist.is_initialized() and not bucket):
        raise RuntimeError("megatron_in_process: a process group is already up in this interpreter")
    if not bucket and (tp, pp) != (1, 1):
        raise RuntimeError(f"megatron_in_process: TP={tp} PP={pp} needs a distributed bucket (torchrun)")
    with restored_interpreter(bucket):
        rt.initialize(tp, pp, seed=seed)
        yield


def cli_main(module: str):
    """The ``main(argv)`` of the CLI ``python -m <module>`` runs."""
    import importlib

    mod = importlib.import_module(module)
    return mod.main if hasattr(mod, "main") else importlib.import_module(f"{module}.__main__").main


LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS")
SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


def run_cli_in_process(main, argv: list, env: Optional[dict] = None) -> subprocess.CompletedProcess:
    """A megatron CLI's ``main(argv)`` (train, rl, eval) in this interpreter, with what ``tests.helpers.run``
    gives a fresh one (the checkout as working directory, ``OMP_NUM_THREADS=1`` and one torch thread, no
    launcher variables, ``env`` added); its exit code and output as ``run`` returns them. Everything the run
    set up is undone after (``restored_interpreter``, the signal handlers, the environment, the processes it
    started: the grader's and a custom reward's workers), and a run that leaves anything else behind fails
    the test. For the CLIs' options and error paths, where the process is not the subject (each CLI keeps
    its end-to-end tests in a process)."""
    from megatron_octo.eval import grader
    from megatron_octo.runtime import procs
    from tests.helpers import ROOT, run_main

    if dist.is_initialized():
        raise RuntimeError("run_cli_in_process: a process group is already up in this interpreter")
    # megatron-core's checkpoint writer keeps one results-queue server per interpreter for the interpreter's
    # life (runtime/procs.py): started here, not by the run.
    procs.tie_checkpoint_writer_to_parent()
    before = interpreter_state()
    children = {c.pid for c in psutil.Process().children()}
    handlers = {s: signal.getsignal(s) for s in SIGNALS}
    environ, cwd = dict(os.environ), os.getcwd()
    try:
        with restored_interpreter():
            for k in LAUNCH_VARS:
                os.environ.pop(k, None)
            os.environ.update({"OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", **(env or {})})
            torch.set_num_threads(1)
            os.chdir(ROOT)
            result = run_main(main, argv)
    finally:
        os.chdir(cwd)
        grader.shutdown_grader()
        for child in psutil.Process().children():  # e.g. the custom reward's worker: a process exit ends it
            if child.pid not in children:
                child.kill()
                child.wait(30)
        for s, h in handlers.items():
            signal.signal(s, h)
        os.environ.clear()
        os.environ.update(environ)
    left = same_state(before, interpreter_state())
    assert not left, f"{argv}: the in-process run left {left} behind"
    return result
