"""Helper processes that must not outlive the trainer.

megatron-core's dist-checkpoint writer (0.16.1, ``strategies/filesystem_async.py``) starts a
``multiprocessing`` Manager (spawned) for its results queue the first time a rank saves, and never
stops it. When the trainer is killed (SIGKILL, OOM killer) that Manager, and the resource tracker
holding its pipe, would live on as orphans. :func:`tie_checkpoint_writer_to_parent` creates that
queue first, from a Manager whose server process asks Linux to SIGKILL it when its parent dies.

Without a GPU the Manager is forked rather than spawned: a spawned server is a fresh interpreter that
re-imports the entry point's module (torch included), 2-3 s of CPU per rank at its first save, paid by
every stage of ``make demo`` and every training run of the test suite; megatron spawns because forking a
process that has initialised CUDA is unsafe, and its writer processes are forked from the same rank anyway.
With a GPU the spawn stays, as megatron has it.
"""

from __future__ import annotations

import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this process when its parent dies; exit now if it already has.

    Called first thing in a child: the checkpoint writer's Manager, the reward worker, the preprocessor's
    pool workers. A parent that exits with ``os._exit`` (the preprocessor's SIGTERM path) or is SIGKILLed
    cannot stop its children itself, and a ``multiprocessing.Pool`` may fork a replacement worker between
    the parent's last kill and its exit. Imports nothing but the standard library (tokenization's workers
    must not load torch).
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def tie_checkpoint_writer_to_parent() -> None:
    """Create megatron's write-results queue from a Manager that dies with this process (no-op when
    it exists already, or when megatron-core no longer has it)."""
    try:
        from megatron.core.dist_checkpointing.strategies import filesystem_async as fa
    except ImportError:
        return
    if getattr(fa, "_results_queue", "absent") is not None:
        return
    import multiprocessing as mp
    from multiprocessing.managers import SyncManager

    import torch  # lazy: tokenization's workers import this module and must not load torch

    manager = SyncManager(ctx=mp.get_context("spawn" if torch.cuda.is_available() else "fork"))
    manager.start(initializer=die_with_parent, initargs=(os.getpid(),))
    fa._results_queue = manager.Queue()
