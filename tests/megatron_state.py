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

import numpy as np
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
def megatron_in_process(seed: int = 1234, tp: int = 1, pp: int = 1):
    """``runtime.distributed.initialize(tp, pp, seed=seed)`` for the body; everything it set is undone after.

    In a single interpreter (tp = pp = 1) it brings up and tears down the world-1 process group too. Under a
    distributed bucket (``tests/distributed/bucket.py``: torchrun ran pytest on every rank, which holds the
    world's process group for the whole session) it creates this test's model-parallel groups on that world
    and destroys them after, as Megatron-LM's unit tests do."""
    from megatron.core import num_microbatches_calculator as nmc
    from megatron.core import parallel_state as ps
    from megatron.core.tensor_parallel import random as mcore_random

    from megatron_octo.models import lean_forward
    from megatron_octo.runtime import cpu
    from megatron_octo.runtime import distributed as rt

    bucket = dist.is_initialized() and dist.get_world_size() > 1
    if ps.model_parallel_is_initialized() or (dist.is_initialized() and not bucket):
        raise RuntimeError("megatron_in_process: a process group is already up in this interpreter")
    if not bucket and (tp, pp) != (1, 1):
        raise RuntimeError(f"megatron_in_process: TP={tp} PP={pp} needs a distributed bucket (torchrun)")
    env = {k: os.environ.get(k) for k in RENDEZVOUS}
    redirect_was_active = cpu.is_active()
    rng = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    if not bucket:
        for k in RENDEZVOUS:  # a fresh rendezvous: never a port a previous test's store held
            os.environ.pop(k, None)
    lean_forward.forget_gemm_choices()  # generation.gemm=auto measures afresh, as in a fresh process
    try:
        rt.initialize(tp, pp, seed=seed)
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
