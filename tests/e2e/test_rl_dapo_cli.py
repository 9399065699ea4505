"""DAPO-style settings on the tiny RL CLI (dynamic sampling with refill, overlong penalty, clip-higher,
token-mean) and the rollout-correction metric: the engine's log-probs equal the trainer's on CPU."""

from __future__ import annotations

import pytest

from megatron_octo.checkpoint.save_load import latest_checkpoint, read_trainer_state
from megatron_octo.rl import __main__ as rl_cli
from tests.helpers import ROOT, read_metrics, read_scalars, tiny_rl_overrides
from tests.megatron_state import run_cli_in_process

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

RECIPE = str(ROOT / "recipes/tiny/rl_grpo.yaml")
DAPO = ["rl.steps=2", "rl.clip_high=0.28", "rl.dynamic_sampling=true", "rl.max_sampling_rounds=3",
        "rl.overlong_buffer=8", "rl.overlong_penalty=0.5", "rl.loss_agg_mode=token-mean",
        f"rl.reward_fn={ROOT}/tests/scripts/rl_test_reward.py:has_digit"]


def _rl(overrides):
    """The RL CLI's main in this interpreter (run_cli_in_process): options, not the process."""
    return run_cli_in_process(rl_cli.main, ["--config", RECIPE, *overrides])


def _steps(path):
    return {r["iteration"]: r for r in read_metrics(path / "tensorboard") if "critic/score/mean" in r}


def _variant_steps(dapo_run, name: str, *extra: str) -> tuple[dict, dict]:
    """The fixture run's per-step metrics and those of the same run with ``extra`` overrides."""
    tmp, out, ckpt = dapo_run
    res = _rl([*tiny_rl_overrides(ckpt), *DAPO, *extra, f"checkpoint.save={tmp / name}"])
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return _steps(out), _steps(tmp / name)


@pytest.fixture(scope="module")
def dapo_run(tiny_text_checkpoint, tmp_path_factory):
    """This module's directory, the DAPO run's save directory and the checkpoint it started from."""
    tmp, ckpt = tmp_path_factory.mktemp("dapo"), tiny_text_checkpoint / "ckpt"
    out = tmp / "rl_dapo"
    res = _rl([*tiny_rl_overrides(ckpt), *DAPO, f"checkpoint.save={out}"])
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return tmp, out, ckpt


def test_rollout_logprob_diff_is_logged_and_below_1e_5_on_cpu(dapo_run):
    _, out, _ = dapo_run
    steps = _steps(out)
    assert set(steps) == {1, 2}
    for m in steps.values():
        assert 0 <= m["training/rollout_logprob_diff"] < 1e-5, m
        assert 0 <= m["training/rollout_logprob_diff_max"] < 1e-5, m
    tb = read_scalars(str(out / "tensorboard"))
    assert [s for s, _ in tb["training/rollout_logprob_diff"]] == [1, 2]
    assert all(v < 1e-5 for _, v in tb["training/rollout_logprob_diff_max"])


def test_rollout_logprob_diff_at_temperature_0_7(dapo_run):
    """At rl.temperature=0.7 the engine's log-probs are of softmax(logits / 0.7), as the trainer's: the mean
    difference stays at fp32 rounding (megatron's engines alone recorded the raw logits': ~1e-2 mean)."""
    _, steps = _variant_steps(dapo_run, "rl_t07", "rl.temperature=0.7")
    assert set(steps) == {1, 2}
    for m in steps.values():
        assert 0 <= m["training/rollout_logprob_diff"] <= 1e-5, m
        assert 0 <= m["training/rollout_logprob_diff_max"] < 1e-4, m


def test_dynamic_sampling_refills_and_accounts_for_the_prompts_drawn(dapo_run):
    _, out, _ = dapo_run
    steps = _steps(out)
    rounds = 0
    for m in steps.values():
        assert 1 <= m["dynamic_sampling/rounds"] <= 3
        # The batch is always prompts_per_step groups: useful ones, then masked fillers if short.
        assert m["dynamic_sampling/groups_kept"] + m["dynamic_sampling/groups_short"] == 4
        assert m["groups/removed"] == m["dynamic_sampling/groups_short"]
        if m["dynamic_sampling/rounds"] < 3:  # stopped early: enough useful groups
            assert m["dynamic_sampling/groups_short"] == 0
        rounds += m["dynamic_sampling/rounds"]
    # The refills consume the prompt stream: a resumed run continues after the last prompt drawn.
    st = read_trainer_state(latest_checkpoint(str(out)))
    assert st.consumed_samples == 4 * rounds


def test_rollout_is_tis_is_a_no_op_when_the_engines_agree(dapo_run):
    """On CPU the rollout and training log-probs agree (< 1e-5): TIS weights are 1, and the update
    equals the uncorrected one."""
    a, b = _variant_steps(dapo_run, "rl_dapo_tis", "rl.rollout_is=tis")
    for step in (1, 2):
        for key in ("actor/pg_loss", "actor/grad_norm", "critic/score/mean"):
            if a[step].get(key) is not None:
                assert b[step][key] == pytest.approx(a[step][key], rel=1e-5, abs=1e-6), (step, key)
