"""Resuming at another parallel layout (model and optimizer state resharded) continues the same
run: the reference's step-4 checkpoint continues at PP=2; a distributed-optimizer run saved at DP=2
continues at DP=1; both give the reference's losses and state. Switching the optimizer type on
resume is refused, naming the key. (TP=2 -> TP=1: tests/distributed/test_parallel_training.py.)"""

from __future__ import annotations

import pytest

from megatron_octo.checkpoint.save_load import read_trainer_state
from tests.reliability.faultlib import checkpoint_tensors, copy_run, lineage, train, train_in_process

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(900)]


def _same_run(save, ref_dir, iterations, final: int) -> None:
    ref, got = lineage(ref_dir), lineage(save)
    assert sorted(got) == list(iterations)
    for it in got:  # other reduction orders: equal to float32 rounding, not bitwise
        assert got[it]["lm loss"] == pytest.approx(ref[it]["lm loss"], rel=1e-5), it
        assert got[it]["consumed-samples"] == ref[it]["consumed-samples"]
    # Weights and Adam moments after the resharded steps match the single-process run's.
    a, b = checkpoint_tensors(save / f"iter_{final:07d}"), checkpoint_tensors(ref_dir / f"iter_{final:07d}")
    common = a.keys() & b.keys()
    assert any("exp_avg_sq" in k for k in common) and all(k in common for k in b if not k.startswith("optimizer"))
    for k in common:
        # Rounding differences, amplified where Adam divides tiny gradients by tiny second moments,
        # stay below 1e-3 of each tensor's scale; lost moments would differ by ~lr (1e-2 of it).
        assert (a[k] - b[k]).abs().max() <= 1e-3 * b[k].abs().max(), k


def test_resume_at_pp2_from_a_single_process_checkpoint(rel):
    save = copy_run(rel["ref"], rel["tmp"] / "reshard_pp", upto=4)
    res = train(rel["recipe"], [f"checkpoint.save={save}", "parallel.pp=2", f"train.tokens={6 * 256}"], nproc=2)
    assert f"resumed from {save}/iter_0000004" in res.stdout and "pp=2 dp=1" in res.stdout
    _same_run(save, rel["ref"], [5, 6], final=6)
    # PP=2: the logging rank (last stage) reads every micro-batch: the same data as the reference.
    assert [lineage(save)[it]["data-crc32"] for it in (5, 6)] == [lineage(rel["ref"])[it]["data-crc32"] for it in (5, 6)]


def test_distributed_optimizer_saved_at_dp2_resumes_at_dp1(rel):
    save = rel["tmp"] / "reshard_distopt"
    distopt = [f"checkpoint.save={save}", "parallel.use_distributed_optimizer=true"]
    train(rel["recipe"], [*distopt, f"train.tokens={2 * 256}"], nproc=2)
    assert read_trainer_state(str(save / "iter_0000002")).layout["dp"] == 2
    res = train_in_process(rel["recipe"], [*distopt, f"train.tokens={4 * 256}"])
    assert f"resumed from {save}/iter_0000002" in res.stdout and "dp=1" in res.stdout
    _same_run(save, rel["ref"], [1, 2, 3, 4], final=4)
    assert read_trainer_state(str(save / "iter_0000004")).tokens == 4 * 256


def test_switching_the_optimizer_type_on_resume_is_refused(rel):
    save = copy_run(rel["ref"], rel["tmp"] / "switch_opt", upto=4)
    res = train_in_process(rel["recipe"], [f"checkpoint.save={save}", "parallel.use_distributed_optimizer=true"],
                           expect_rc=2)
    assert "saved with parallel.use_distributed_optimizer=false but this run has true" in res.stderr
    assert f"{save}/iter_0000004" in res.stderr
