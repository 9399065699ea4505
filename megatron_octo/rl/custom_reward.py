"""User-supplied reward functions (verl's custom_reward_function), named "module:function" or
"path/to/file.py:function", called as fn(responses, golds) -> list of float scores.

In RL the function runs in a :class:`RewardWorker` (a fresh interpreter, like the grader's
workers: no fork of a process holding torch threads), each call under ``rl.reward_timeout``
seconds: a function that hangs costs that long once, its responses score
``rl.reward_timeout_score`` (reason ``timeout``) and the worker is restarted for the next call.
The worker ignores SIGTERM/SIGUSR1/SIGINT (the trainer decides what a signal means) and dies with
the trainer.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import signal
import subprocess
import sys
import traceback
from typing import Callable, Optional, Sequence

from megatron_octo.rl.reward import RewardResult
from megatron_octo.runtime.procs import die_with_parent


def load_reward_fn(spec: str) -> Callable:
    if ":" not in spec:
        raise ValueError(f"{spec!r} is not 'module:function' or 'file.py:function'")
    target, name = spec.rsplit(":", 1)
    try:
        if target.endswith(".py"):
            if not os.path.isfile(target):
                raise ValueError(f"file not found: {target}")
            mod_spec = importlib.util.spec_from_file_location(f"_octo_reward_{abs(hash(target))}", target)
            module = importlib.util.module_from_spec(mod_spec)
            mod_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except ImportError as exc:
        raise ValueError(f"cannot import {target}: {exc}") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ValueError(f"{target} has no function {name!r}")
    return fn


def custom_rewards(fn: Callable, responses: Sequence[str], golds: Sequence[str],
                   timeout_score: float = 0.0) -> list[RewardResult]:
    """Scores of ``fn`` (a function or a :class:`RewardWorker`; a worker's ``None`` is a time-out)."""
    scores = fn(list(responses), list(golds))
    if scores is None:
        return [RewardResult(score=float(timeout_score), correct=False, extracted=None, reason="timeout")
                for _ in responses]
    scores = list(scores)
    if len(scores) != len(responses):
        raise ValueError(f"custom reward returned {len(scores)} scores for {len(responses)} responses")
    return [RewardResult(score=float(s), correct=float(s) > 0, extracted=None, reason="custom") for s in scores]


class RewardWorker:
    """``fn(responses, golds)`` of reward spec ``spec`` in a worker process, each call limited to
    ``timeout`` seconds: returns the scores, or None on time-out (the worker is then killed and a
    new one started on the next call). An exception in the function is re-raised here."""

    def __init__(self, spec: str, timeout: float, startup_timeout: float = 120.0):
        self.spec, self.timeout, self.startup_timeout = spec, float(timeout), startup_timeout
        self.proc: Optional[subprocess.Popen] = None
        self.send = self.conn = None

    def _start(self) -> None:
        from multiprocessing.connection import Connection

        to_child_r, to_child_w = os.pipe()
        to_parent_r, to_parent_w = os.pipe()
        pkg_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ, OMP_NUM_THREADS="1")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_root, os.getcwd(), env.get("PYTHONPATH")) if p)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "megatron_octo.rl.custom_reward", str(to_child_r), str(to_parent_w),
                 str(os.getpid()), self.spec], pass_fds=(to_child_r, to_parent_w), stdin=subprocess.DEVNULL, env=env)
        finally:
            os.close(to_child_r)
            os.close(to_parent_w)
        self.send, self.conn = Connection(to_child_w, readable=False), Connection(to_parent_r, writable=False)
        reply = self.conn.recv() if self.conn.poll(self.startup_timeout) else ("error", "did not start in time")
        if reply != "ready":
            self.close()
            raise RuntimeError(f"custom reward worker for {self.spec!r}: {reply[1] if isinstance(reply, tuple) else reply}")

    def __call__(self, responses: list, golds: list) -> Optional[list]:
        if self.proc is None:
            self._start()
        try:
            self.send.send((responses, golds))
            ready = self.conn.poll(self.timeout)
            reply = self.conn.recv() if ready else None
        except (EOFError, OSError):  # the worker died (OOM killer, a signal): like a time-out
            reply = None
        if reply is None:
            self.close()
            return None
        kind, value = reply
        if kind == "error":
            raise RuntimeError(f"custom reward {self.spec!r} raised:\n{value}")
        return value

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            for c in (self.send, self.conn):
                c.close()
        self.proc = self.send = self.conn = None


def make_reward_fn(spec: str, timeout: float) -> Callable:
    """The RL trainer's reward callable: a :class:`RewardWorker` when ``timeout`` > 0, else the function."""
    if timeout > 0:
        import atexit

        worker = RewardWorker(spec, timeout)
        atexit.register(worker.close)
        return worker
    return load_reward_fn(spec)


def _worker_main(read_fd: int, write_fd: int, parent_pid: int, spec: str) -> None:
    from multiprocessing.connection import Connection

    die_with_parent(parent_pid)
    for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    rconn, wconn = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    try:
        fn = load_reward_fn(spec)
    except Exception as exc:  # noqa: BLE001 - reported to the trainer
        wconn.send(("error", str(exc)))
        return
    wconn.send("ready")
    while True:
        try:
            responses, golds = rconn.recv()
        except (EOFError, OSError):
            return
        try:
            reply = ("ok", [float(x) for x in fn(responses, golds)])
        except Exception:  # noqa: BLE001 - re-raised in the trainer with the traceback
            reply = ("error", traceback.format_exc())
        wconn.send(reply)


if __name__ == "__main__":
    _worker_main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
