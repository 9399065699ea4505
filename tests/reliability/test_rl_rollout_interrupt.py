"""A SIGUSR1 (Slurm's pre-timeout warning) in the middle of a multi-batch RL rollout: the run stops within one
rollout engine batch, keeps the last finished step's checkpoint (the interrupted step's partial rollouts
are discarded) and exits 75; the resumed run redoes that step and its steps equal an uninterrupted run's.

The real CLI (``tests/scripts/rl_probe.py`` runs ``python -m megatron_octo.rl`` in-process and logs every
engine batch it generates); the signal comes from ``OCTO_FAULT_INJECT=rollout:batch:N=sigusr1`` (sent to
the process just before batch N is generated). A signal during a rollout's last batch lets the step finish
(``test_rl_faults.py``)."""

from __future__ import annotations

import json
import sys

import pytest

from megatron_octo.checkpoint.save_load import latest_checkpoint, read_trainer_state
from tests.helpers import ROOT, read_metrics
from tests.reliability.faultlib import launch, tracker

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

RECIPE = str(ROOT / "recipes/tiny/rl_grpo.yaml")
REWARDS = f"{ROOT}/tests/scripts/rl_fault_rewards.py"
BATCHES_PER_STEP = 4  # 4 prompts x 4 samples, 4 sequences (one prompt) per engine batch


@pytest.fixture(scope="module")
def common(tiny_text_checkpoint):
    return ["model.preset=tiny", f"checkpoint.init_from={tiny_text_checkpoint}/ckpt",
            f"rl.reward_fn={REWARDS}:length", "rl.steps=2", "rl.val_interval=0",
            "rl.max_response_length={0: 16}", "rl.lr=1e-3", "rl.prompts_per_step=4", "rl.samples_per_prompt=4",
            "rl.mini_batch_prompts=2", "rl.rollout_batch_size=4"]


def _rl(overrides, log, fault=None, expect_rc=0):
    res = launch([sys.executable, "tests/scripts/rl_probe.py", "--config", RECIPE, *overrides], fault=fault,
                 timeout=400, env_extra={"OCTO_TEST_GENERATE_LOG": str(log)})
    assert res.returncode == expect_rc, (f"exit {res.returncode} (expected {expect_rc}), OCTO_FAULT_INJECT={fault}\n"
                                         f"--- stdout\n{res.stdout[-3000:]}\n--- stderr\n{res.stderr[-4000:]}")
    return res


def _batches(log):
    """The tokens of every engine batch the process generated, in order."""
    return [json.loads(line)["tokens"] for line in log.read_text().splitlines()] if log.exists() else []


def _steps(save_dir):
    return {r["iteration"]: {k: v for k, v in r.items() if not k.startswith(("timing/", "perf/", "wall"))}
            for r in read_metrics(save_dir / "tensorboard") if "critic/score/mean" in r}


def test_sigusr1_mid_rollout_stops_within_one_batch_and_resumes_identically(common, tmp_path):
    ref = tmp_path / "ref"
    _rl([*common, f"checkpoint.save={ref}"], tmp_path / "ref.jsonl")
    ref_batches = _batches(tmp_path / "ref.jsonl")
    assert len(ref_batches) == 2 * BATCHES_PER_STEP

    # The signal arrives as the 2nd batch of step 2's rollout starts: that batch is the last generated.
    run = tmp_path / "run"
    signal_at = BATCHES_PER_STEP + 2
    res = _rl([*common, f"checkpoint.save={run}"], tmp_path / "run.jsonl", fault=f"rollout:batch:{signal_at}=sigusr1",
              expect_rc=75)
    assert len(_batches(tmp_path / "run.jsonl")) == signal_at  # no batch started after the signal's batch
    assert _batches(tmp_path / "run.jsonl") == ref_batches[:signal_at]
    # The last complete state: step 1 saved; step 2 neither applied, logged nor saved.
    assert tracker(run) == 1 and read_trainer_state(latest_checkpoint(str(run))).stage_iteration == 1
    assert set(_steps(run)) == {1}
    assert "during the rollout of RL step 2" in res.stdout

    res = _rl([*common, f"checkpoint.save={run}"], tmp_path / "resumed.jsonl")
    assert "resumed from" in res.stdout and "RL done: 2 steps" in res.stdout
    # The resumed run redid step 2 from its first batch, generating what the uninterrupted run did.
    assert _batches(tmp_path / "resumed.jsonl") == ref_batches[BATCHES_PER_STEP:]
    assert _steps(run) == _steps(ref)  # losses, rewards, lengths, grad norms: every per-step metric


def test_sigusr1_in_the_first_rollout_exits_75_without_a_checkpoint(common, tmp_path):
    run = tmp_path / "first"
    res = _rl([*common, "rl.steps=1", f"checkpoint.save={run}"], tmp_path / "first.jsonl",
              fault="rollout:batch:2=sigusr1", expect_rc=75)
    assert len(_batches(tmp_path / "first.jsonl")) == 2
    # No step finished: nothing to save (the requeued run starts again from checkpoint.init_from).
    assert tracker(run) is None and latest_checkpoint(str(run)) is None
    assert "exiting with 75" in res.stdout
