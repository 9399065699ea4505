"""Bad steps (a grad-norm spike, a NaN loss) injected through OCTO_FAULT_INJECT: skipped with a
counter under train.nan_policy=skip (the weights and optimizer state are not touched), or the run
stops, saved, with exit code 3 under train.nan_policy=stop."""

from __future__ import annotations

import math

import pytest

from megatron_octo.checkpoint import integrity
from megatron_octo.checkpoint.save_load import read_trainer_state
from tests.reliability.faultlib import (STEPS, TOKENS, assert_same_tensors, checkpoint_tensors, lineage, tracker,
                                       train_in_process)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def test_skip_policy_drops_spiky_and_nan_steps(rel):
    save = rel["tmp"] / "skip"
    res = train_in_process(rel["recipe"], [f"checkpoint.save={save}", "checkpoint.save_interval=1",
                                           "train.nan_policy=skip", "train.grad_norm_spike_threshold=50"],
                           fault="step:5=spike,step:7=nan")
    assert "gradient norm" in res.stdout and "above train.grad_norm_spike_threshold=50 at iteration 5" in res.stdout
    assert "non-finite loss (nan) at iteration 7; update skipped (train.nan_policy=skip; 2 skipped so far)" in res.stdout
    ref, got = lineage(rel["ref"]), lineage(save)
    for it in range(1, 6):  # identical up to the spike; the spike keeps the loss value, scales the grads
        assert got[it]["lm loss"] == ref[it]["lm loss"], it
    assert got[5]["grad-norm"] > 50 > ref[5]["grad-norm"]
    assert math.isnan(got[7]["lm loss"])
    assert all(math.isfinite(got[it]["lm loss"]) for it in (6, 8))
    assert [got[it]["data-crc32"] for it in got] == [ref[it]["data-crc32"] for it in ref]  # data still advances
    # A skipped step changes neither the weights nor the optimizer state.
    assert_same_tensors(checkpoint_tensors(save / "iter_0000004"), checkpoint_tensors(save / "iter_0000005"))
    assert_same_tensors(checkpoint_tensors(save / "iter_0000006"), checkpoint_tensors(save / "iter_0000007"))
    final = read_trainer_state(str(save / f"iter_{STEPS:07d}"))
    assert (final.tokens, final.skipped_iterations) == (TOKENS, 2)
    assert all(bool(t.isfinite().all()) for t in checkpoint_tensors(save / f"iter_{STEPS:07d}").values())


def test_skipped_first_step_still_saves_optimizer_state_and_resumes(rel):
    """A NaN at iteration 1 under nan_policy=skip: the checkpoint saved then holds Adam state (zero
    moments), so a later run resumes from it; the weights are still the initial ones."""
    save = rel["tmp"] / "skip_first"
    train_in_process(rel["recipe"], [f"checkpoint.save={save}", "checkpoint.save_interval=1", "train.nan_policy=skip",
                                     "train.tokens=512"], fault="step:1=nan")
    first = checkpoint_tensors(save / "iter_0000001")
    assert any("exp_avg" in k for k in first), sorted(first)[:10]
    res = train_in_process(rel["recipe"], [f"checkpoint.save={save}", "checkpoint.save_interval=1",
                                           "train.nan_policy=skip"])
    assert "resum" in res.stdout.lower()
    final = read_trainer_state(str(save / f"iter_{STEPS:07d}"))
    assert (final.tokens, final.skipped_iterations) == (TOKENS, 1)


def test_stop_policy_saves_and_exits_3(rel):
    save = rel["tmp"] / "stop"
    res = train_in_process(rel["recipe"], [f"checkpoint.save={save}", "train.nan_policy=stop"], fault="step:4=nan",
                expect_rc=3)
    assert "non-finite loss (nan) at iteration 4; stopping (train.nan_policy=stop)" in res.stdout
    assert "exiting with 3" in res.stdout
    # The last good state (iteration 3, not a save_interval multiple) was saved before exiting.
    assert tracker(save) == 3
    integrity.verify(str(save / "iter_0000003"))
    state = read_trainer_state(str(save / "iter_0000003"))
    assert (state.iteration, state.consumed_samples, state.skipped_iterations) == (3, 24, 1)
    assert_same_tensors(checkpoint_tensors(save / "iter_0000002"), checkpoint_tensors(rel["ref"] / "iter_0000002"))
