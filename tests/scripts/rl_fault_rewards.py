"""Custom rewards for tests/reliability/test_rl_faults.py. ``length`` is dense (samples of a
group differ almost surely, so every step updates); the others misbehave once, then score the same."""

import os
import signal
import time


def length(responses, golds):
    return [len(r) / 100 for r in responses]


def constant(responses, golds):
    """Every response scores 0: an all-uniform batch (no learning signal)."""
    return [0.0 for _ in responses]


def _first_call(env_var: str) -> bool:
    marker = os.environ[env_var]
    if os.path.exists(marker):
        return False
    open(marker, "w").close()
    return True


def hang_once(responses, golds):
    """Hangs on its first call (marker file $OCTO_TEST_HANG_MARKER absent)."""
    if _first_call("OCTO_TEST_HANG_MARKER"):
        while True:
            time.sleep(1)
    return length(responses, golds)


def sigusr1_once(responses, golds):
    """On its first call sends SIGUSR1 to the trainer (this worker's parent), as Slurm does before
    the time limit (marker file $OCTO_TEST_SIGNAL_MARKER)."""
    if _first_call("OCTO_TEST_SIGNAL_MARKER"):
        os.kill(os.getppid(), signal.SIGUSR1)
    return length(responses, golds)


def boom(responses, golds):
    raise ZeroDivisionError("reward exploded")
