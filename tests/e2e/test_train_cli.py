"""The training CLI: clean errors before anything starts (its main in this interpreter: run_cli_in_process
undoes the CPU redirect main installs before it checks), signals (a process: the signal comes from outside);
--print-config: tests/unit/test_train_print_config.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from megatron_octo import train
from megatron_octo.checkpoint.save_load import latest_checkpoint, read_trainer_state
from tests.helpers import (ROOT, env_for_subprocess, read_metrics, run_train, tiny_recipe, train_cmd,
                           write_indexed_dataset)
from tests.megatron_state import run_cli_in_process

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def _train(recipe, overrides):
    return run_cli_in_process(train.main, ["--config", recipe, *overrides])


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    return tmp, tiny_recipe(tmp, write_indexed_dataset(str(tmp / "ds")))


def test_bad_config_fails_fast_with_the_key(recipe):
    tmp, path = recipe
    t = time.perf_counter()
    res = _train(path, ["parallel.tp=3"])
    assert res.returncode == 2
    assert "'parallel.tp'" in res.stderr and "num_attention_heads=4" in res.stderr
    res = _train(path, ["train.tokenz=1"])
    assert res.returncode == 2 and "'train.tokenz'" in res.stderr
    res = _train(path, [f"checkpoint.init_from={tmp}/nope"])
    assert res.returncode == 2 and "checkpoint.init_from" in res.stderr and f"{tmp}/nope" in res.stderr
    assert time.perf_counter() - t < 60
    assert not (tmp / "ckpt").exists(), "a failed validation must not write anything"


def test_not_a_checkpoint_is_reported_with_its_path(recipe):
    tmp, path = recipe
    bogus = tmp / "bogus"
    bogus.mkdir(exist_ok=True)
    res = _train(path, [f"checkpoint.init_from={bogus}", f"checkpoint.save={tmp}/x"])
    assert res.returncode == 2 and str(bogus) in res.stderr and "not a checkpoint" in res.stderr


def test_sigusr1_saves_and_exits_75_then_resume_matches(recipe):
    tmp, path = recipe
    steps = 12
    tokens = steps * 8 * 32
    ref = tmp / "uninterrupted"
    run_train(path, [f"train.tokens={tokens}", f"checkpoint.save={ref}"], in_process=True)
    out = tmp / "signalled"
    proc = subprocess.Popen(train_cmd(path, [f"train.tokens={tokens}", f"checkpoint.save={out}"]), cwd=ROOT,
                            env=env_for_subprocess(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        for line in proc.stdout:
            if line.startswith(" iteration") and "iteration       2/" in line:
                proc.send_signal(signal.SIGUSR1)
                break
        out_rest, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 75, err[-2000:]
    assert "signal received" in out_rest
    state = read_trainer_state(latest_checkpoint(str(out)))
    assert 2 <= state.iteration < steps
    run_train(path, [f"train.tokens={tokens}", f"checkpoint.save={out}"], in_process=True)
    final = read_trainer_state(latest_checkpoint(str(out)))
    assert final.iteration == steps and final.tokens == tokens
    losses = lambda d: {r["iteration"]: r["lm loss"] for r in read_metrics(d / "tensorboard") if "lm loss" in r}
    assert losses(out) == losses(ref)
