"""Slurm's pre-timeout signal (SIGUSR1) and SIGTERM as a flag the training loops poll, so a step
finishes, the run saves and exits 75 (requeue) instead of dying mid-write."""

from __future__ import annotations

import signal
from typing import Optional

from megatron_octo.runtime.distributed import any_rank


class SignalFlag:
    """SIGTERM/SIGUSR1 (Slurm's pre-timeout signal) ask for a save and a clean exit."""

    def __init__(self):
        self.received: Optional[int] = None
        self._previous = {}
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass

    def _handle(self, signum, frame):
        self.received = signum

    def any_rank(self) -> bool:
        return any_rank(self.received is not None)

    def restore(self):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
