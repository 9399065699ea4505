"""tests/megatron_state.run_cli_in_process, the way the CLIs' option and error-path tests run their ``main``
in the test's interpreter: a training run twice around a megatron test, each leaving the interpreter as found
and giving the same losses; what a run started (processes, handlers, dtype) undone; what cannot be undone
(a torch function mode left on the stack) named in the failure. In this tier because the run saves a
checkpoint (megatron-core's writer starts processes) and the second test starts one on purpose."""

from __future__ import annotations

import pytest
import torch

from tests.megatron_cases import sdpa_against_megatron
from tests.megatron_state import interpreter_state, megatron_in_process, run_cli_in_process, same_state

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def _train_losses(tmp, name):
    from megatron_octo import train
    from tests.helpers import read_metrics, tiny_recipe, write_indexed_dataset

    recipe = tiny_recipe(tmp, write_indexed_dataset(str(tmp / "synthetic"), num_docs=60))
    res = run_cli_in_process(train.main, ["--config", recipe, f"checkpoint.save={tmp / name}",
                                          "checkpoint.save_interval=0", "train.eval_interval=0"])
    assert res.returncode == 0, res.stderr[-3000:]
    assert " iteration       3/      3 |" in res.stdout and "done: 768 tokens" in res.stdout, res.stdout[-2000:]
    return [r["lm loss"] for r in read_metrics(tmp / name / "tensorboard") if "lm loss" in r]


def test_the_training_cli_twice_in_process_with_a_megatron_test_between(tmp_path):
    """run_cli_in_process: the training CLI's main, a megatron test, the CLI again: the same losses both
    times (bitwise), the interpreter as found after each (the runner asserts it), the megatron test's result
    unchanged by the run before it."""
    before = interpreter_state()
    with megatron_in_process(seed=3):
        alone = sdpa_against_megatron()
    first = _train_losses(tmp_path, "a")
    with megatron_in_process(seed=3):
        after_a_run = sdpa_against_megatron()
    second = _train_losses(tmp_path, "b")
    assert len(first) == 3 and first == second
    assert after_a_run == alone
    assert same_state(before, interpreter_state()) == []


def test_the_runner_ends_what_the_run_started_and_names_what_it_cannot_undo():
    import signal
    import subprocess
    import sys

    import psutil
    from torch.overrides import TorchFunctionMode

    started = []

    def leaves_a_process_and_a_handler(argv):
        started.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"]).pid)
        signal.signal(signal.SIGUSR1, lambda *_: None)
        torch.set_default_dtype(torch.float64)
        print("ran", argv)
        return 7

    handler = signal.getsignal(signal.SIGUSR1)
    res = run_cli_in_process(leaves_a_process_and_a_handler, ["--x", 1])
    assert (res.returncode, res.stdout) == (7, "ran ['--x', '1']\n")
    assert not psutil.pid_exists(started[0]) or psutil.Process(started[0]).status() == psutil.STATUS_ZOMBIE
    assert signal.getsignal(signal.SIGUSR1) is handler and torch.get_default_dtype() == torch.float32

    class Passthrough(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            return func(*args, **(kwargs or {}))

    def leaves_a_torch_function_mode(argv):
        Passthrough().__enter__()
        return 0

    with pytest.raises(AssertionError, match="torch_function_mode"):
        run_cli_in_process(leaves_a_torch_function_mode, [])
    torch._C._pop_torch_function_stack()  # noqa: SLF001 - undo what the bad "CLI" left
    assert same_state(interpreter_state(), interpreter_state()) == []
