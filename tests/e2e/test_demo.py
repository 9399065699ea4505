"""The demo CLI (what `make demo` runs) on the built-in data: checkpoints and TensorBoard events."""

from __future__ import annotations

import sys

import pytest

from megatron_octo.training.checkpointing import latest_checkpoint, read_trainer_state
from tests.helpers import read_metrics, read_scalars, run

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

MEGATRON_NAMES = {"lm loss", "learning-rate", "grad-norm", "batch-size", "throughput", "tokens-per-sec", "mfu",
                  "mem-rss-gigabytes", "lm loss validation", "lm loss validation ppl", "lm loss vs tokens"}


def test_demo_stable_then_decay(tmp_path):
    out = tmp_path / "demo"
    res = run([sys.executable, "-m", "megatron_octo.demo", "--out", str(out), "--branches", "long"], timeout=850)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "[3/3] decay branch 'long'" in res.stdout and "tensorboard --logdir" in res.stdout

    stable = read_trainer_state(latest_checkpoint(str(out / "stable")))
    decay = read_trainer_state(latest_checkpoint(str(out / "decay_long")))
    assert (stable.stage, stable.tokens, stable.stage_tokens) == ("stable", 98304, 98304)
    assert (decay.stage, decay.tokens, decay.stage_tokens) == ("decay", 98304 + 32768, 32768)
    assert decay.schedule["start_tokens"] == 98304 and decay.schedule["start_lr"] == pytest.approx(2e-3)
    assert decay.schedule["lr"] < 2e-3

    for stage in ("stable", "decay_long"):
        scalars = read_scalars(str(out / stage / "tensorboard"))
        missing = MEGATRON_NAMES - set(scalars)
        assert not missing, f"{stage}: missing scalars {missing}"
        assert all(v > 0 for _, v in scalars["throughput"])
    loss = [r["lm loss"] for r in read_metrics(out / "stable" / "tensorboard") if "lm loss" in r]
    assert loss[-1] < loss[0] - 1.0, loss  # the tiny model learns the corpus
