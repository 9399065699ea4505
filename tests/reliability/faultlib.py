"""Helpers of the reliability suite: runs with injected faults, run lineages, checkpoint tensors."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import psutil

from tests.helpers import ROOT, env_for_subprocess, read_metrics, train_cmd

STEPS = 8  # the reference run: 8 steps of 8 x 32 tokens, a checkpoint every 2 steps
TOKENS = STEPS * 8 * 32
COMMON = ["checkpoint.save_interval=2", "train.log_interval=1", "logging.peak_flops_per_device=1e12",
          f"train.tokens={TOKENS}"]


def launch(cmd: list[str], fault: Optional[str] = None, timeout: float = 240,
           env_extra: Optional[dict] = None) -> subprocess.CompletedProcess:
    """Run ``cmd`` in its own session with ``OCTO_FAULT_INJECT=fault``; afterwards kill whatever
    that session left behind (children of a SIGKILLed process), and only that."""
    env = env_for_subprocess()
    env.pop("OCTO_FAULT_INJECT", None)
    if fault:
        env["OCTO_FAULT_INJECT"] = fault
    env.update(env_extra or {})
    # Files, not pipes: a leftover child holding a pipe would block reading until it exits.
    with tempfile.TemporaryFile("w+") as fout, tempfile.TemporaryFile("w+") as ferr:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fout, stderr=ferr, text=True, start_new_session=True)
        survivors = []
        try:
            proc.wait(timeout=timeout)
            timed_out = False
            survivors = session_processes(proc.pid)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
        fout.seek(0)
        ferr.seek(0)
        out, err = fout.read(), ferr.read()
    if timed_out:
        raise AssertionError(f"timed out after {timeout}s: {' '.join(cmd)}\n{out[-3000:]}\n{err[-3000:]}")
    res = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    res.survivors = survivors
    return res


def session_processes(sid: int, grace: float = 5.0) -> list[str]:
    """The command lines of the processes still alive in session ``sid`` ``grace`` seconds after its leader
    ended (children a process leaves behind; a child tied to it with PR_SET_PDEATHSIG is gone by then)."""
    def alive():
        found = []
        for p in psutil.process_iter(["pid", "cmdline", "status"]):
            try:
                if os.getsid(p.pid) == sid and p.info["status"] != psutil.STATUS_ZOMBIE:
                    found.append(" ".join(p.info["cmdline"] or []))
            except (ProcessLookupError, PermissionError, psutil.Error):
                pass
        return found

    t_end = time.time() + grace
    while (left := alive()) and time.time() < t_end:
        time.sleep(0.1)
    return left


def train(recipe: str, overrides: list[str], fault: Optional[str] = None, expect_rc: int = 0, nproc: int = 1,
          timeout: float = 240) -> subprocess.CompletedProcess:
    res = launch(train_cmd(recipe, [*COMMON, *overrides], nproc), fault=fault, timeout=timeout)
    assert res.returncode == expect_rc, (
        f"exit {res.returncode} (expected {expect_rc}) with OCTO_FAULT_INJECT={fault}\n"
        f"--- stdout\n{res.stdout[-3000:]}\n--- stderr\n{res.stderr[-5000:]}")
    return res


def train_in_process(recipe: str, overrides: list[str], fault: Optional[str] = None,
                     expect_rc: int = 0) -> subprocess.CompletedProcess:
    """``train`` through the training CLI's main in this interpreter (tests/megatron_state.run_cli_in_process),
    for the faults that raise or exit (``enospc``, corrupt or refused checkpoints) rather than kill."""
    from megatron_octo import train as train_cli
    from tests.megatron_state import run_cli_in_process

    res = run_cli_in_process(train_cli.main, ["--config", recipe, *COMMON, *overrides],
                             env={"OCTO_FAULT_INJECT": fault or ""})
    assert res.returncode == expect_rc, (
        f"exit {res.returncode} (expected {expect_rc}) with OCTO_FAULT_INJECT={fault}\n"
        f"--- stdout\n{res.stdout[-3000:]}\n--- stderr\n{res.stderr[-5000:]}")
    return res


def tracker(save_dir: Path) -> Optional[int]:
    p = Path(save_dir) / "latest_checkpointed_iteration.txt"
    return int(p.read_text()) if p.exists() else None


def lineage(save_dir: Path) -> dict[int, dict]:
    """The metrics.jsonl record of each iteration from the last process that logged it: after
    restarts, that is the history the final weights descend from."""
    return {int(r["iteration"]): r for r in read_metrics(Path(save_dir) / "tensorboard") if "lm loss" in r}


def checkpoint_tensors(ckpt_dir: Path) -> dict:
    """Every tensor of a dist checkpoint (model and optimizer state), as saved."""
    from megatron_octo.models.hf_io import DistCheckpointReader

    reader = DistCheckpointReader(str(ckpt_dir))
    return {k: reader.read(k) for k in reader.tensor_keys()}


def assert_same_tensors(a: dict, b: dict) -> None:
    import torch

    assert a.keys() == b.keys()
    diff = [k for k in a if not torch.equal(a[k], b[k])]
    assert not diff, f"tensors differ: {diff[:5]}"


def copy_run(src: Path, dst: Path, upto: Optional[int] = None) -> Path:
    """A copy of a save directory (without TensorBoard), its tracker set to ``upto`` and later
    checkpoints dropped."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("tensorboard"))
    if upto is not None:
        for d in dst.glob("iter_*"):
            if int(d.name[5:12]) > upto:
                shutil.rmtree(d)
        (dst / "latest_checkpointed_iteration.txt").write_text(str(upto))
    return dst


def python_cmd(*args: str) -> list[str]:
    return [sys.executable, *args]
