"""DAPO / Dr. GRPO / GSPO / rollout-correction pieces of the RL objective, against hand-computed values:
loss aggregation modes, GSPO's sequence-level ratio, the overlong penalty and filter, dynamic sampling's
group selection, and truncated / masked importance sampling. Dynamic sampling's metrics on rewards graded
through the grader's worker processes: tests/process/test_rl_dapo_rewards.py."""

from __future__ import annotations

import math

import pytest
import torch

from megatron_octo.rl.dynamic_sampling import METRICS, count_useful, select_groups
from megatron_octo.rl.losses import agg_denominator, agg_loss, agg_parts, gspo_log_ratio, policy_loss
from megatron_octo.rl.reward import overlong_penalty
from megatron_octo.rl.rollout_correction import logprob_diff, rollout_is_weights

def close(x: torch.Tensor, expected) -> bool:
    return torch.allclose(x.detach().float(), torch.tensor(expected, dtype=torch.float32), atol=1e-6, rtol=1e-6)


# Three responses: 3 tokens, 1 token, none (a row masked out entirely, e.g. a filtered sample).
LOSS = torch.tensor([[1.0, 2.0, 3.0, 9.0], [4.0, 9.0, 9.0, 9.0], [5.0, 5.0, 5.0, 5.0]])
MASK = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])


@pytest.mark.parametrize("mode,expected", [
    ("token-mean", (1 + 2 + 3 + 4) / 4),  # every token alike: 2.5
    ("seq-mean-token-sum", (6 + 4) / 2),  # per-response sums, mean over the 2 responses with tokens: 5
    ("seq-mean-token-mean", (2 + 4) / 2),  # per-response means (6/3, 4/1), then their mean: 3
    ("seq-mean-token-sum-norm", (6 / 8 + 4 / 8) / 2),  # Dr. GRPO: sums / constant 8, mean: 0.625
])
def test_agg_loss_modes_by_hand(mode, expected):
    assert float(agg_loss(LOSS, MASK, mode, scale_factor=8.0)) == pytest.approx(expected)


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
def test_agg_parts_add_up_over_micro_batches(mode):
    """The trainer sums each micro-batch's numerator and divides by the mini-batch's denominator:
    the same loss as one pass over the mini-batch, in every mode."""
    whole = agg_loss(LOSS, MASK, mode, scale_factor=8.0)
    parts = [agg_parts(LOSS[a:b], MASK[a:b], mode, 8.0) for a, b in ((0, 1), (1, 3))]
    num = sum(p[0] for p in parts)
    assert float(num / agg_denominator(MASK, mode)) == pytest.approx(float(whole))
    assert float(sum(p[1] for p in parts)) == float(agg_denominator(MASK, mode))
    assert float(agg_denominator(MASK, mode)) == (4.0 if mode == "token-mean" else 2.0)


def test_loss_agg_mode_changes_the_gradient_weights():
    """token-mean: each token's gradient weighs 1/#tokens; seq-mean-token-mean: 1/(#seqs * |y_i|)."""
    logp = torch.zeros(2, 4, requires_grad=True)
    adv = torch.tensor([[1.0] * 4, [-1.0] * 4])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    policy_loss(logp, torch.zeros(2, 4), adv, mask, loss_agg_mode="token-mean").loss.backward()
    # ratio = 1 inside the clip range: d(-A * ratio)/dlogp = -A, times 1/4 tokens.
    assert close(logp.grad, [[-0.25, -0.25, -0.25, 0.0], [0.25, 0.0, 0.0, 0.0]])
    logp.grad = None
    policy_loss(logp, torch.zeros(2, 4), adv, mask, loss_agg_mode="seq-mean-token-mean").loss.backward()
    assert close(logp.grad, [[-1 / 6, -1 / 6, -1 / 6, 0.0], [0.5, 0.0, 0.0, 0.0]])


def test_gspo_sequence_ratio_and_gradient_by_hand():
    old = torch.zeros(1, 3)
    logp = torch.tensor([[0.1, 0.3, 0.7]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    # s = exp(mean(0.1, 0.3)) = exp(0.2) on every token; the masked token's 0.7 does not count.
    assert close(gspo_log_ratio(logp, old, mask), [[0.2, 0.2, 0.2]])
    s = math.exp(0.2)  # 1.2214
    # A = -1: -min(s * A, clip(s, 0.8, 1.2) * A) = max(s, 1.2) = s, seq-mean-token-mean -> s.
    out = policy_loss(logp, old, -torch.ones(1, 3), mask, kind="gspo", loss_agg_mode="seq-mean-token-mean")
    assert float(out.loss) == pytest.approx(s)
    assert float(out.clip_fraction) == 0.0
    out.loss.backward()
    # d s / d logp_t = s / |y| = s / 2 for each response token (GSPO's s * grad log s), 0 off-mask.
    assert close(logp.grad, [[s / 2, s / 2, 0.0]])
    # PPO's token ratios instead: exp(0.1) = 1.105 and exp(0.3) = 1.350 (each unclipped for A < 0).
    ppo = policy_loss(logp, old, -torch.ones(1, 3), mask, loss_agg_mode="seq-mean-token-mean")
    assert float(ppo.loss) == pytest.approx((math.exp(0.1) + math.exp(0.3)) / 2)


def test_gspo_clips_the_sequence_not_the_tokens():
    old = torch.zeros(1, 2)
    mask = torch.ones(1, 2)
    adv = torch.ones(1, 2)
    # Token log-ratios +0.5 / -0.5: PPO clips the +0.5 token (ratio 1.65 > 1.2, A > 0): clip fraction 1/2.
    logp = torch.tensor([[0.5, -0.5]], requires_grad=True)
    assert float(policy_loss(logp, old, adv, mask).clip_fraction) == 0.5
    # GSPO: the sequence ratio exp(0) = 1 is inside [0.8, 1.2]: nothing clipped, loss -1, gradient flows.
    out = policy_loss(logp, old, adv, mask, kind="gspo", loss_agg_mode="seq-mean-token-mean")
    assert float(out.clip_fraction) == 0.0 and float(out.loss) == pytest.approx(-1.0)
    # Both tokens +0.3: sequence ratio exp(0.3) = 1.35 > 1.2 with A > 0: clipped, loss -1.2, no gradient.
    logp2 = torch.tensor([[0.3, 0.3]], requires_grad=True)
    out = policy_loss(logp2, old, adv, mask, kind="gspo", loss_agg_mode="seq-mean-token-mean")
    assert float(out.loss) == pytest.approx(-1.2) and float(out.clip_fraction) == 1.0
    out.loss.backward()
    assert logp2.grad.tolist() == [[0.0, 0.0]]


def test_overlong_penalty_by_hand():
    # DAPO eq. 13 with cap 20, buffer 4: 0 up to 16 tokens, then -1/4 per token, -1 at the cap.
    got = [overlong_penalty(n, cap=20, buffer=4, penalty=1.0) for n in (10, 16, 17, 18, 20)]
    assert got == [0.0, 0.0, -0.25, -0.5, -1.0]
    assert overlong_penalty(19, cap=20, buffer=4, penalty=0.5) == -0.375
    assert overlong_penalty(20, cap=20, buffer=0) == 0.0  # off


def test_dynamic_sampling_selects_useful_groups_in_draw_order():
    # group size 2; round 0: groups (1,1) uniform, (0,1) useful, (0,0) uniform;
    # round 1: (1,0) useful, (1,1) uniform, (0,1) useful.
    rounds = [[1, 1, 0, 1, 0, 0], [1, 0, 1, 1, 0, 1]]
    assert count_useful(rounds, 2) == 3
    assert select_groups(rounds, 2, 3) == [(0, 1, True), (1, 0, True), (1, 2, True)]
    assert select_groups(rounds, 2, 2) == [(0, 1, True), (1, 0, True)]  # extra useful groups dropped
    # Short after the last round: filled with the first removed groups, flagged not useful.
    assert select_groups(rounds, 2, 5) == [(0, 1, True), (1, 0, True), (1, 2, True), (0, 0, False), (0, 2, False)]
    with pytest.raises(ValueError):
        select_groups(rounds[:1], 2, 4)


def test_dynamic_sampling_metrics_are_the_configs():
    from megatron_octo import config as cfgmod

    assert cfgmod.DYNAMIC_SAMPLING_METRICS == METRICS
    assert cfgmod.RLConfig().dynamic_sampling_metric == "acc"  # DAPO's (verl recipe/dapo: metric=acc)


def test_removed_rows_leave_the_loss_unlike_zero_advantage_rows():
    """Dynamic sampling's filler rows (mask 0) change neither loss nor gradient; rl.remove_uniform_groups'
    rows (advantage 0, still in the mask) stay in the token-mean denominator and shrink both."""
    logp = torch.zeros(2, 2, requires_grad=True)
    useful = dict(advantages=torch.tensor([[1.0, 1.0]]), mask=torch.ones(1, 2))
    alone = policy_loss(logp[:1], torch.zeros(1, 2), useful["advantages"], useful["mask"]).loss
    adv = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    masked = policy_loss(logp, torch.zeros(2, 2), adv, torch.tensor([[1.0, 1.0], [0.0, 0.0]])).loss
    zero_adv = policy_loss(logp, torch.zeros(2, 2), adv, torch.ones(2, 2)).loss
    assert float(alone) == float(masked) == -1.0
    assert float(zero_adv) == -0.5  # the uniform group's 2 tokens in the denominator halve it


def test_rollout_is_tis_and_mis_by_hand():
    old = torch.zeros(1, 4)
    rollout = torch.tensor([[0.0, -math.log(3.0), math.log(4.0), 0.0]])  # ratios pi_old/pi_rollout: 1, 3, 1/4, 1
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    w, m = rollout_is_weights(old, rollout, mask, "none", 2.0)
    assert w is None and m is mask
    w, m = rollout_is_weights(old, rollout, mask, "tis", 2.0)
    assert close(w, [[1.0, 2.0, 0.25, 1.0]]) and m.tolist() == mask.tolist()
    w, m = rollout_is_weights(old, rollout, mask, "mis", 2.0)
    # Only ratio 1 lies in [1/2, 2]: the others are out of the loss and its denominator.
    assert close(w, [[1.0, 0.0, 0.0, 1.0]]) and m.tolist() == [[1.0, 0.0, 0.0, 0.0]]
    # The weights multiply each token's surrogate: A = 1, ratio 1 -> token loss -1 x (1, 2, 1/4).
    w, m = rollout_is_weights(old, rollout, mask, "tis", 2.0)
    out = policy_loss(torch.zeros(1, 4), old, torch.ones(1, 4), m, is_weights=w)
    assert float(out.loss) == pytest.approx(-(1 + 2 + 0.25) / 3)
    s, mx = logprob_diff(old, rollout, mask)
    assert float(s) == pytest.approx(math.log(3.0) + math.log(4.0)) and float(mx) == pytest.approx(math.log(4.0))


def test_packing_plan_by_token_budget_by_hand():
    from megatron_octo.rl.packing import plan_micro_batches, row_lengths

    # Labels of 8-token rows: responses end at labels 6, 2, 4, none, 6 -> rows of 8, 4, 6, 0, 8 tokens.
    mask = torch.zeros(5, 7)
    for row, (a, b) in enumerate([(3, 7), (1, 3), (2, 5), (0, 0), (5, 7)]):
        mask[row, a:b] = 1.0
    lengths = row_lengths(mask)
    assert lengths == [8, 4, 6, 0, 8]
    # Longest first (8, 8, 6, 4); budget 16 padded tokens: [8, 8] (2 x 8), [6, 4] (2 x 6); row 3 has no
    # loss token and is left out.
    assert plan_micro_batches(lengths, 16) == [[0, 4], [2, 1]]
    assert plan_micro_batches(lengths, 7) == [[0], [4], [2], [1]]  # rows over the budget go alone
    assert plan_micro_batches(lengths, 100) == [[0, 4, 2, 1]]
    assert plan_micro_batches([0, 0], 16) == [[0]]  # nothing to learn: one micro-batch still runs


def test_rl_cli_print_config_prints_the_merged_config_and_exits(capsys):
    from omegaconf import OmegaConf

    from megatron_octo.rl.__main__ import main
    from tests.helpers import ROOT

    recipe = str(ROOT / "recipes/octothinker/llama3.2-3b/rl_dapo.yaml")
    assert main(["--config", recipe, "--print-config", "rl.rollout_is=tis", "rl.micro_batch_tokens=4096"]) == 0
    r = OmegaConf.create(capsys.readouterr().out).rl
    assert (r.dynamic_sampling, r.max_sampling_rounds, r.overlong_buffer, r.overlong_penalty) == (True, 10, 1638, 1.0)
    assert (r.overlong_filter, r.loss_agg_mode, r.loss_scale_factor, r.policy_loss) == (False, "token-mean", 0, "ppo")
    assert (r.rollout_is, r.rollout_is_threshold, r.micro_batch_tokens, r.clip_high) == ("tis", 2.0, 4096, 0.28)
    assert main(["--config", recipe, "--print-config", "rl.nope=1"]) == 2  # a bad key: exit 2, nothing printed
    assert "rl.nope" in capsys.readouterr().err


def test_overlong_filter_masks_truncated_rows_out_of_the_loss():
    from megatron_octo.rl.losses import rows_in_loss

    truncated = torch.tensor([False, True, False, True])
    useful = torch.tensor([True, True, False, False])
    assert rows_in_loss(None, truncated, False).tolist() == [True] * 4  # the defaults change nothing
    assert rows_in_loss(None, truncated, True).tolist() == [True, False, True, False]
    assert rows_in_loss(useful, truncated, False).tolist() == [True, True, False, False]
    assert rows_in_loss(useful, truncated, True).tolist() == [True, False, False, False]
    # The effect: a truncated row with a large negative advantage no longer pulls the loss (token-mean
    # over the remaining row only: -1 x advantage 1 = -1, instead of (-1 - 1 + 3 + 3) / 4 = 1).
    adv = torch.tensor([[1.0, 1.0], [-3.0, -3.0]])
    mask = torch.ones(2, 2)
    keep = rows_in_loss(None, torch.tensor([False, True]), True)
    assert float(policy_loss(torch.zeros(2, 2), torch.zeros(2, 2), adv, mask).loss) == 1.0
    assert float(policy_loss(torch.zeros(2, 2), torch.zeros(2, 2), adv, mask * keep.view(-1, 1)).loss) == -1.0
