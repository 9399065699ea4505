"""torchrun for one Slurm task, keeping the trainer's exit code (used by launch_slurm/common.sh).

    python launch_slurm/node_launch.py <torchrun arguments> -m megatron_octo.train --config ...

The same as ``torchrun`` with two differences that preemption needs:

* SIGUSR1 is ignored by this agent process (Slurm's ``scancel --signal=USR1`` and
  ``--signal=USR1@N`` reach every process of the step, agent included; the default action would kill
  the agent and orphan the workers mid-save). The workers inherit "ignore" until the trainer
  installs its own handler.
* When workers fail, torchrun exits 1 whatever their exit codes were. Here, if any worker exited
  75 (checkpoint saved after SIGTERM/SIGUSR1), this process exits 75, so ``srun`` and the batch
  script can tell "saved, requeue me" from a crash; other failures keep the worker's exit code.
"""

from __future__ import annotations

import signal
import sys

EXIT_SIGNALLED = 75


def main(argv=None) -> int:
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun_main

    try:
        torchrun_main(sys.argv[1:] if argv is None else argv)
    except ChildFailedError as exc:
        codes = sorted(f.exitcode for f in exc.failures.values())
        print(f"[node_launch] workers exited with {codes}", file=sys.stderr, flush=True)
        if EXIT_SIGNALLED in codes:
            return EXIT_SIGNALLED
        positive = [c for c in codes if c > 0]
        return positive[-1] if positive else 1
    except SignalException as exc:
        print(f"[node_launch] agent stopped by {exc.sigval.name}", file=sys.stderr, flush=True)
        return 128 + int(exc.sigval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
