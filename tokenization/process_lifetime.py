"""Child processes that must not outlive their parent (lowest layer: tokenization's workers and
megatron_octo's helper processes both use it; imports nothing of ours, no torch)."""

from __future__ import annotations

import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this process when its parent dies; exit now if it already has.

    Called first thing in the child. A parent that exits with ``os._exit`` (the preprocessor's
    SIGTERM path) or is SIGKILLed cannot stop its children itself, and a ``multiprocessing.Pool``
    may fork a replacement worker between the parent's last kill and its exit.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
