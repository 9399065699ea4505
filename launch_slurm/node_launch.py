"""torchrun for one Slurm task, keeping the trainer's exit code (used by launch_slurm/common.sh).

    python launch_slurm/node_launch.py <torchrun arguments> -m megatron_octo.train --config ...

The same as ``torchrun`` with three differences that preemption needs:

* Stop requests go to the workers only. When the file ``$OCTO_STOP_FILE`` appears (the batch
  script creates it on its preemption signal, on the shared filesystem), this agent sends SIGUSR1
  to its own worker processes — not to their helpers — and repeats it every
  ``$OCTO_SIGNAL_REPEAT`` seconds (default 10) until they exit; the trainers save at the end of
  the current step and exit 75. Slurm's own signalling (``scancel --signal``, ``--signal`` without
  ``B:``) reaches every process of the step, including the writer processes that megatron's
  checkpoint save starts, and a signal landing during a save kills the save; the scripts therefore
  signal the batch shell only (``--signal=B:USR1@N``).
* SIGUSR1 sent to this agent is ignored (its default action would kill the agent and orphan the
  workers). The workers inherit "ignore" until the trainer installs its own handler, so a request
  that comes during start-up is not lost: the repeat delivers it once the handler is in place.
* When workers fail, torchrun exits 1 whatever their exit codes were. Here, if any worker exited
  75 (checkpoint saved after SIGTERM/SIGUSR1), this process exits 75 (after ``$OCTO_STORE_LINGER``
  seconds, default 10, so that an agent hosting the rendezvous store does not vanish under the
  others), and ``srun`` and the batch script can tell "saved, requeue me" from a crash; other
  failures keep the worker's exit code.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

EXIT_SIGNALLED = 75


def _forward_stop_requests(stop_file: str, every: float) -> None:
    import psutil

    me = psutil.Process()
    announced = False
    while True:
        if os.path.exists(stop_file):
            children = me.children(recursive=False)
            if not announced:
                print(f"[node_launch] {stop_file} exists: SIGUSR1 to workers {[c.pid for c in children]}",
                      file=sys.stderr, flush=True)
                announced = True
            for child in children:
                try:
                    child.send_signal(signal.SIGUSR1)
                except psutil.Error:
                    pass
            time.sleep(every)
        else:
            time.sleep(1.0)


def main(argv=None) -> int:
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    stop_file = os.environ.get("OCTO_STOP_FILE")
    if stop_file:
        every = float(os.environ.get("OCTO_SIGNAL_REPEAT", "10"))
        threading.Thread(target=_forward_stop_requests, args=(stop_file, every), daemon=True).start()
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun_main

    try:
        torchrun_main(sys.argv[1:] if argv is None else argv)
    except ChildFailedError as exc:
        codes = sorted(f.exitcode for f in exc.failures.values())
        print(f"[node_launch] workers exited with {codes}", file=sys.stderr, flush=True)
        if EXIT_SIGNALLED in codes:
            # This agent may host the c10d store the other agents are still polling: stay up a
            # little so they see their own workers' exit 75 instead of a lost store connection.
            time.sleep(float(os.environ.get("OCTO_STORE_LINGER", "10")))
            return EXIT_SIGNALLED
        positive = [c for c in codes if c > 0]
        return positive[-1] if positive else 1
    except SignalException as exc:
        print(f"[node_launch] agent stopped by {exc.sigval.name}", file=sys.stderr, flush=True)
        return 128 + int(exc.sigval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
