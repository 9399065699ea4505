"""The GRPO CLI on a tiny checkpoint: runs, resumes to the same numbers, TP=2 and PP=2 (also with token-budget
micro-batches) equal TP=1."""

from __future__ import annotations

import json
import sys

import pytest

from megatron_octo.checkpoint.save_load import latest_checkpoint, read_trainer_state
from megatron_octo.rl import __main__ as rl_cli
from tests.conftest import grpo_overrides
from tests.helpers import ROOT, read_metrics, run
from tests.megatron_state import run_cli_in_process

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

RECIPE = str(ROOT / "recipes/tiny/rl_grpo.yaml")


def _rl(overrides, nproc=1, timeout=400):
    """One process: the CLI's main in this interpreter (run_cli_in_process; the GRPO family's run is the CLI in a
    process of its own); ``nproc`` > 1: under torchrun."""
    if nproc == 1:
        return run_cli_in_process(rl_cli.main, ["--config", RECIPE, *overrides])
    return run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                "-m", "megatron_octo.rl", "--config", RECIPE, *overrides], timeout=timeout)


@pytest.fixture(scope="module")
def setup(tiny_text_checkpoint, tmp_path_factory):
    """A directory for this module's runs and the GRPO family's overrides (tests/conftest.py)."""
    return tmp_path_factory.mktemp("rl"), grpo_overrides(tiny_text_checkpoint / "ckpt")


def _steps(path):
    keep = lambda r: {k: v for k, v in r.items() if not k.startswith(("timing/", "perf/"))}
    return {r["iteration"]: keep(r) for r in read_metrics(path / "tensorboard") if "critic/score/mean" in r}


def test_grpo_runs_learns_and_resumes_identically(setup, grpo_run):
    tmp, common = setup
    full = grpo_run["save"]  # the GRPO family's run: these overrides, a checkpoint after each step
    assert "rl step     2/2" in grpo_run["stdout"]
    st = read_trainer_state(latest_checkpoint(str(full)))
    assert st.stage == "rl" and st.stage_iteration == 2 and st.consumed_samples == 8
    a = _steps(full)
    assert set(a) == {1, 2}
    # A real update happened: non-zero advantages moved the policy.
    assert any(m["actor/grad_norm"] > 0 for m in a.values()), a
    assert all(m["response_length/mean"] <= 24 for m in a.values())

    split = tmp / "rl_split"
    assert _rl([*common, "rl.steps=1", f"checkpoint.save={split}"]).returncode == 0
    res = _rl([*common, f"checkpoint.save={split}"])
    assert res.returncode == 0 and "resumed from" in res.stdout, res.stderr[-3000:]
    b = _steps(split)
    assert a == b


def test_tp2_rl_step_equals_tp1(setup, grpo_run):
    tmp, common = setup
    two = tmp / "rl_tp2"
    # TP=1: step 1 of the GRPO family's run (a 1-step run logs the same step 1: the resume test above)
    res = _rl([*common, "rl.steps=1", "parallel.tp=2", f"checkpoint.save={two}"], nproc=2)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    a, b = _steps(grpo_run["save"])[1], _steps(two)[1]
    for key in ("critic/score/mean", "response_length/mean", "response_length/max", "groups/removed"):
        assert a[key] == b[key], key
    for key in ("actor/pg_loss", "actor/entropy", "actor/grad_norm", "actor/ppo_kl"):
        assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key


def test_pp2_rl_steps_equal_pp1(setup):
    """Two steps at PP=2 (rollouts with the last stage's logits broadcast, old and reference log-probs
    and the update through megatron's pipeline schedule) equal PP=1: step 2 samples from the updated
    weights."""
    tmp, common = setup
    one, two = tmp / "rl_pp1", tmp / "rl_pp2"
    common = [*common, "rl.kl_coef=0.1"]  # a frozen reference model, pipelined as the actor
    assert _rl([*common, f"checkpoint.save={one}"]).returncode == 0
    res = _rl([*common, "parallel.pp=2", f"checkpoint.save={two}"], nproc=2)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    a, b = _steps(one), _steps(two)
    assert set(a) == set(b) == {1, 2}
    for step in (1, 2):
        for key in ("critic/score/mean", "response_length/mean", "response_length/max", "groups/removed"):
            assert a[step][key] == b[step][key], (step, key)
        for key in ("actor/pg_loss", "actor/entropy", "actor/grad_norm", "actor/ppo_kl", "actor/kl_loss",
                    "training/rollout_logprob_diff"):
            assert a[step][key] == pytest.approx(b[step][key], rel=1e-5, abs=1e-5), (step, key)


def test_pp2_token_budget_update_equals_pp1(setup):
    """rl.micro_batch_tokens at PP=2: micro-batches of different rows and widths cross the pipeline stages
    (each activation's shape sent ahead of it) and the update equals PP=1's with the same budget."""
    tmp, common = setup
    one, two = tmp / "rl_pack_pp1", tmp / "rl_pack_pp2"
    common = [*common, "rl.steps=1", "rl.micro_batch_tokens=100"]
    assert _rl([*common, f"checkpoint.save={one}"]).returncode == 0
    res = _rl([*common, "parallel.pp=2", f"checkpoint.save={two}"], nproc=2)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    a, b = _steps(one)[1], _steps(two)[1]
    for key in ("critic/score/mean", "response_length/mean", "response_length/max"):
        assert a[key] == b[key], key
    for key in ("actor/pg_loss", "actor/entropy", "actor/grad_norm", "actor/ppo_kl"):
        assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-5), key


@pytest.mark.parametrize("override,fragment", [
    ("rl.prompts=/nope/p.jsonl", "'rl.prompts'"),
    ("rl.mini_batch_prompts=3", "'rl.mini_batch_prompts'"),
    ("rl.max_response_length={0: 0}", "'rl.max_response_length'"),
    ("rl.temperature=0", "'rl.temperature'"),
    (("parallel.pp=2", "rl.algorithm=ppo"), "'parallel.pp'"),  # PPO's critic: PP=1 only
])
def test_bad_rl_config(setup, override, fragment):
    tmp, common = setup
    overrides = [override] if isinstance(override, str) else list(override)
    res = _rl([*common, f"checkpoint.save={tmp}/bad", *overrides])
    assert res.returncode == 2 and fragment in res.stderr, res.stderr[-2000:]
    assert not (tmp / "bad").exists()


def test_bad_reward_fn(setup):
    tmp, common = setup
    res = _rl([*common, f"checkpoint.save={tmp}/bad2", "rl.reward_fn=tests/scripts/rl_test_reward.py:nope"])
    assert res.returncode == 2 and "'rl.reward_fn'" in res.stderr and "nope" in res.stderr
