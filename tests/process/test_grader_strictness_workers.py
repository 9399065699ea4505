"""The default grading path and the RL reward, through the grader's worker processes, never credit
look-alike answers that OctoThinker's symbolic fallback can (its non-strict LaTeX parse reads "144." + prose
as 1*4).

Every pair in NOT_EQUAL (tests/grader_cases.py) is mathematically unequal: numbers sharing digits, answers
followed by prose, products, fractions and other look-alikes. megatron_octo.eval.grader's default path (already
extracted, and extracted from a response) and megatron_octo.rl.reward must judge each of them wrong.
"""

from __future__ import annotations

import pytest

from megatron_octo.eval.grader import grade_detailed
from megatron_octo.rl.reward import RewardConfig, compute_rewards
from tests.grader_cases import NOT_EQUAL

pytestmark = pytest.mark.timeout(300)


def test_default_grading_path_says_unequal():
    # Through the time-limited workers, answers as given and answers extracted from three response formats.
    preds, golds = [p for p, _ in NOT_EQUAL], [g for _, g in NOT_EQUAL]
    verdicts = grade_detailed(preds, golds, extracted=True)
    assert [(p, g) for (p, g), v in zip(NOT_EQUAL, verdicts) if v.correct or v.timed_out] == []
    for style, template in (("auto", "The answer is {}"),
                            ("minerva", "Final Answer: The final answer is ${}$. I hope it is correct."),
                            ("boxed", "So the result is $\\boxed{{{}}}$.")):
        verdicts = grade_detailed([template.format(p) for p in preds], golds, style=style)
        assert [(p, g) for (p, g), v in zip(NOT_EQUAL, verdicts) if v.correct or v.timed_out] == [], style


@pytest.mark.parametrize("variant", ["default", "v2.wformat"])
def test_rl_reward_says_unequal(variant):
    responses = [f"Step by step we get it.\nSo the answer is \\boxed{{{p}}}." for p, _ in NOT_EQUAL]
    results = compute_rewards(responses, [g for _, g in NOT_EQUAL], RewardConfig(variant=variant))
    credited = [(p, g, r.reason) for (p, g), r in zip(NOT_EQUAL, results) if r.correct or r.score > 0]
    assert credited == []
    assert {r.reason for r in results} == {"wrong"}
    # ... while the same responses with the gold answer are rewarded (the table is not wrong by format).
    right = compute_rewards([f"So the answer is \\boxed{{{g}}}." for _, g in NOT_EQUAL], [g for _, g in NOT_EQUAL],
                            RewardConfig(variant=variant))
    assert all(r.correct for r in right)
