"""Dynamic sampling's group filter (DAPO) on rewards graded through the grader's worker processes."""

from __future__ import annotations

import pytest

from megatron_octo.rl.dynamic_sampling import METRICS, metric_values, select_groups, useful_groups


def test_dynamic_sampling_metric_on_an_all_wrong_group_of_varied_lengths():
    """rl_dapo.yaml's setting: cap 8192, overlong buffer 1638. Group 0 answers wrong four times, in 6000,
    7000, 7500 and 8192 tokens: the overlong penalty makes its rewards differ (0, -0.27, -0.58, -1 added
    to -1), its correctness does not. Under acc (DAPO's filter_groups.metric) it is filtered; under
    seq_reward (the rewards themselves) it is kept; under score (the grader's reward before the penalty,
    as verl's) filtered too. Group 1 (2 right, 2 wrong) is kept under every metric."""
    from megatron_octo.rl.reward import RewardConfig, add_overlong_penalty, compute_rewards

    texts = [r"so \boxed{5}"] * 4 + [r"\boxed{6}", r"\boxed{7}", r"\boxed{6}", r"\boxed{8}"]
    golds = ["4"] * 4 + ["6"] * 4
    lengths = [6000, 7000, 7500, 8192, 100, 200, 300, 400]
    rewards = add_overlong_penalty(compute_rewards(texts, golds, RewardConfig()), lengths, 8192, 1638, 1.0)
    assert [x.grader_score for x in rewards[:4]] == [-1.0] * 4
    assert len({x.score for x in rewards[:4]}) == 4  # varied rewards: nonzero GRPO advantages
    kept = {m: useful_groups(metric_values(rewards, m), 4) for m in METRICS}
    assert kept == {"acc": [False, True], "score": [False, True], "seq_reward": [True, True],
                    "seq_final_reward": [True, True]}
    assert select_groups([metric_values(rewards, "acc")], 4, 1) == [(0, 1, True)]
    assert select_groups([metric_values(rewards, "seq_reward")], 4, 1) == [(0, 0, True)]
    # score differs from acc when the grader's own rewards differ: v2.wformat scores a boxed wrong answer
    # -0.5 and a missing box -1, both wrong.
    wformat = compute_rewards([r"\boxed{5}", "five", r"\boxed{5}", r"\boxed{5}"], ["4"] * 4,
                              RewardConfig(variant="v2.wformat"))
    assert useful_groups(metric_values(wformat, "acc"), 4) == [False]
    assert useful_groups(metric_values(wformat, "score"), 4) == [True]
    with pytest.raises(ValueError, match="metric"):
        metric_values(rewards, "accuracy")
