"""RL faults (python -m megatron_octo.rl, tiny model, 1-2 GRPO steps; megatron_octo/rl/guards.py):

* SIGTERM / SIGUSR1: the current step finishes, a checkpoint is saved, exit 75; the resumed run
  continues the same run (its steps equal an uninterrupted run's).
* non-finite rollout log-probs (injected: OCTO_FAULT_INJECT=step:N=nan): the update is skipped and
  counted (rl.nan_policy=skip), or the run stops, saved, with exit 3 (rl.nan_policy=stop).
* an all-uniform batch (a constant reward): the update is skipped and counted; the weights do not move.
* prompts over rl.max_prompt_length: dropped, counted, logged.
* a custom reward that hangs: bounded by rl.reward_timeout, scored rl.reward_timeout_score, counted;
  the next step's reward works again.
"""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest
import torch

from megatron_octo.rl.custom_reward import RewardWorker, custom_rewards
from megatron_octo.rl.guards import check_rollout
from megatron_octo.rl.reward import RewardResult
from megatron_octo.checkpoint.save_load import latest_checkpoint, read_trainer_state
from megatron_octo.rl import __main__ as rl_cli
from tests.helpers import ROOT, checkpoint_tensors, read_metrics
from tests.megatron_state import run_cli_in_process
from tests.reliability.faultlib import launch, tracker

pytestmark = [pytest.mark.timeout(900)]

RECIPE = str(ROOT / "recipes/tiny/rl_grpo.yaml")
REWARDS = f"{ROOT}/tests/scripts/rl_fault_rewards.py"


@pytest.fixture(scope="module")
def common(tiny_text_checkpoint):
    return ["model.preset=tiny", f"checkpoint.init_from={tiny_text_checkpoint}/ckpt",
            f"rl.reward_fn={REWARDS}:length", "rl.steps=2", "rl.val_interval=0",
            "rl.max_response_length={0: 16}", "rl.lr=1e-3", "rl.prompts_per_step=2", "rl.samples_per_prompt=4",
            "rl.mini_batch_prompts=2"]


def _rl(overrides, fault=None, expect_rc=0, env_extra=None, process=False):
    """The RL CLI with OCTO_FAULT_INJECT=fault: its main in this interpreter (run_cli_in_process), or with ``process``
    in a process of its own (signals; an exception that ends the process)."""
    if process:
        res = launch([sys.executable, "-m", "megatron_octo.rl", "--config", RECIPE, *overrides], fault=fault,
                     timeout=400, env_extra=env_extra)
    else:
        res = run_cli_in_process(rl_cli.main, ["--config", RECIPE, *overrides],
                                 env={"OCTO_FAULT_INJECT": fault or "", **(env_extra or {})})
    assert res.returncode == expect_rc, (f"exit {res.returncode} (expected {expect_rc}), OCTO_FAULT_INJECT={fault}\n"
                                         f"--- stdout\n{res.stdout[-3000:]}\n--- stderr\n{res.stderr[-4000:]}")
    return res


def _steps(save_dir, keep_timing=False):
    out = {}
    for r in read_metrics(save_dir / "tensorboard"):
        if "critic/score/mean" in r:
            out[r["iteration"]] = {k: v for k, v in r.items()
                                   if keep_timing or not k.startswith(("timing/", "perf/", "wall"))}
    return out


@pytest.fixture(scope="module")
def reference(common, tmp_path_factory):
    """An uninterrupted 2-step run."""
    ref = tmp_path_factory.mktemp("rl_ref") / "ref"
    _rl([*common, f"checkpoint.save={ref}"])
    return ref


@pytest.mark.e2e
@pytest.mark.parametrize("sig", ["sigterm", "sigusr1"])
def test_signal_saves_after_the_step_and_the_resumed_run_continues_it(common, reference, tmp_path, sig):
    run = tmp_path / "run"
    if sig == "sigterm":  # injected at the start of step 1
        res = _rl([*common, f"checkpoint.save={run}"], fault="step:1=sigterm", expect_rc=75, process=True)
    else:  # sent by another process (the reward worker) while step 1 is being rewarded
        marker = {"OCTO_TEST_SIGNAL_MARKER": str(tmp_path / "signalled")}
        res = _rl([*common, f"checkpoint.save={run}", f"rl.reward_fn={REWARDS}:sigusr1_once"], expect_rc=75,
                  env_extra=marker, process=True)
    # Step 1 finished, then the save and exit 75.
    assert "rl step     1/2" in res.stdout and "rl step     2/2" not in res.stdout
    assert "signal received: saved" in res.stdout and "exiting with 75" in res.stdout
    assert tracker(run) == 1 and read_trainer_state(latest_checkpoint(str(run))).stage_iteration == 1
    res = _rl([*common, f"checkpoint.save={run}"])
    assert "resumed from" in res.stdout and "RL done: 2 steps" in res.stdout
    assert _steps(run) == _steps(reference)


@pytest.mark.e2e
def test_nan_log_probs_skip_the_update_and_are_counted(common, tmp_path):
    save = tmp_path / "skip"
    res = _rl([*common, f"checkpoint.save={save}"], fault="step:1=nan")
    assert "RL step 1: non-finite log-probs in the rollout; update skipped (rl.nan_policy=skip)" in res.stdout
    s = _steps(save)
    assert s[1]["fault/nan_steps"] == 1 and s[2]["fault/nan_steps"] == 0
    assert "actor/grad_norm" not in s[1] and s[2]["actor/grad_norm"] > 0  # step 2 updated again
    assert s[1]["fault/skipped_updates"] == 1 and s[2]["fault/skipped_updates"] == 1
    assert read_trainer_state(latest_checkpoint(str(save))).skipped_iterations == 1


@pytest.mark.e2e
def test_nan_log_probs_stop_saves_before_the_step_and_exits_3(common, tmp_path):
    save = tmp_path / "stop"
    res = _rl([*common, "rl.nan_policy=stop", f"checkpoint.save={save}"], fault="step:2=nan", expect_rc=3)
    assert "stopped at RL step 2 on non-finite log-probs (rl.nan_policy=stop)" in res.stdout
    assert "RL step 2: non-finite log-probs in the rollout; stopping without updating" in res.stdout
    # The checkpoint is the state after step 1; step 2 was neither applied nor logged.
    assert tracker(save) == 1 and set(_steps(save)) == {1}


@pytest.mark.e2e
def test_uniform_batch_skips_the_update_and_over_long_prompts_are_dropped(common, tiny_text_checkpoint, tmp_path):
    save = tmp_path / "uniform"
    res = _rl([*common, "rl.steps=1", f"rl.reward_fn={REWARDS}:constant", "rl.max_prompt_length=200",
               f"checkpoint.save={save}"])
    assert "RL step 1: every group's samples scored the same (no learning signal); update skipped" in res.stdout
    s = _steps(save)[1]
    assert s["fault/uniform_steps"] == 1 and s["fault/skipped_updates"] == 1 and "actor/grad_norm" not in s
    # Over-length prompts: counted at set-up, in the start line and as fault/dropped_prompts.
    dropped = [r["fault/dropped_prompts"] for r in read_metrics(save / "tensorboard") if "fault/dropped_prompts" in r]
    assert len(dropped) == 1 and dropped[0] > 0
    assert f"({int(dropped[0])} longer than 200 tokens dropped)" in res.stdout
    # The skipped update left the weights exactly as they were initialised.
    model = ("embedding.", "decoder.", "output_layer.")
    before = checkpoint_tensors(tiny_text_checkpoint / "ckpt" / "iter_0000004", model)
    after = checkpoint_tensors(save / "iter_0000001", model)
    assert before.keys() == after.keys() and all(before[k].equal(after[k]) for k in before)
    # ... and the checkpoint (saved before any real update) resumes.
    res = _rl([*common, f"checkpoint.save={save}"])
    assert "resumed from" in res.stdout and "RL done: 2 steps" in res.stdout


@pytest.mark.e2e
def test_hanging_custom_reward_is_bounded_counted_and_recovers(common, tmp_path):
    save = tmp_path / "hang"
    res = _rl([*common, f"rl.reward_fn={REWARDS}:hang_once", "rl.reward_timeout=3", "rl.reward_timeout_score=-1",
               f"checkpoint.save={save}"], env_extra={"OCTO_TEST_HANG_MARKER": str(tmp_path / "hung")})
    assert (tmp_path / "hung").exists()  # the function did hang
    assert "RL step 1: 8 reward(s) timed out" in res.stdout
    s = _steps(save)
    assert s[1]["fault/reward_timeouts"] == 8 and s[1]["critic/score/mean"] == -1
    assert s[1]["fault/uniform_steps"] == 1  # every response got the time-out score: nothing to learn
    assert s[2]["fault/reward_timeouts"] == 0 and s[2]["critic/score/mean"] > 0  # a new worker, working
    assert s[2]["fault/uniform_steps"] == 0 and s[2]["actor/grad_norm"] > 0


@pytest.mark.e2e
def test_custom_reward_error_is_reported(common, tmp_path):
    res = _rl([*common, f"rl.reward_fn={REWARDS}:boom", f"checkpoint.save={tmp_path / 'boom'}"], expect_rc=1,
              process=True)
    assert "ZeroDivisionError: reward exploded" in res.stderr


# ----- unit level: the guards' decisions and the reward worker, no model ------------------------------

def _check(old, scores, reasons=None, step=0, **kw):
    mask = torch.tensor([[0.0, 1.0, 1.0], [0.0, 1.0, 0.0]])
    batch = SimpleNamespace(old_log_probs=old, ref_log_probs=None, mask=mask)
    rewards = [RewardResult(s, False, None, r) for s, r in zip(scores, reasons or ["custom"] * len(scores))]
    out = check_rollout(step, batch, rewards, 2, **{"grpo": True, "other_loss_terms": False, "nan_policy": "skip", **kw})
    return {k: out[k] for k in ("fault/nan_steps", "fault/uniform_steps", "fault/reward_timeouts", "skip", "stop")}


def test_guard_decisions(monkeypatch):
    monkeypatch.delenv("OCTO_FAULT_INJECT", raising=False)
    old = torch.zeros(2, 3)
    old[1, 2] = float("nan")  # not a response token: ignored
    assert _check(old, [1.0, 0.0]) == {"fault/nan_steps": 0.0, "fault/uniform_steps": 0.0,
                                       "fault/reward_timeouts": 0.0, "skip": False, "stop": False}
    old[1, 1] = float("inf")
    assert _check(old, [1.0, 0.0]) == {"fault/nan_steps": 1.0, "fault/uniform_steps": 0.0,
                                       "fault/reward_timeouts": 0.0, "skip": True, "stop": False}
    assert _check(old, [1.0, 0.0], nan_policy="stop")["stop"] is True
    ok = torch.zeros(2, 3)
    # All samples of the group scored the same: skipped, unless an entropy/KL term remains; PPO never.
    assert _check(ok, [0.5, 0.5])["skip"] and _check(ok, [0.5, 0.5])["fault/uniform_steps"] == 1
    assert not _check(ok, [0.5, 0.5], other_loss_terms=True)["skip"]
    assert _check(ok, [0.5, 0.5], grpo=False) == {"fault/nan_steps": 0.0, "fault/uniform_steps": 0.0,
                                                  "fault/reward_timeouts": 0.0, "skip": False, "stop": False}
    assert _check(ok, [-1.0, 0.0], ["timeout", "custom"])["fault/reward_timeouts"] == 1
    # Test-only injection: OCTO_FAULT_INJECT=step:N=nan poisons RL step N (1-based).
    monkeypatch.setenv("OCTO_FAULT_INJECT", "step:3=nan")
    assert _check(torch.zeros(2, 3), [1.0, 0.0], step=2)["fault/nan_steps"] == 1
    assert _check(torch.zeros(2, 3), [1.0, 0.0], step=1)["fault/nan_steps"] == 0


def test_reward_worker_times_out_restarts_and_reports_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("OCTO_TEST_HANG_MARKER", str(tmp_path / "hung"))
    worker = RewardWorker(f"{REWARDS}:hang_once", timeout=2)
    try:
        res = custom_rewards(worker, ["ab", "abcd"], ["1", "2"], timeout_score=-1.0)
        assert [(r.score, r.reason) for r in res] == [(-1.0, "timeout")] * 2
        assert [r.score for r in custom_rewards(worker, ["ab", "abcd"], ["1", "2"])] == [0.02, 0.04]
    finally:
        worker.close()
    broken = RewardWorker(f"{REWARDS}:boom", timeout=30)
    with pytest.raises(RuntimeError, match="ZeroDivisionError: reward exploded"):
        broken(["x"], ["1"])
    broken.close()
    with pytest.raises(RuntimeError, match="no function 'nope'"):
        RewardWorker(f"{REWARDS}:nope", timeout=30)(["x"], ["1"])
