"""The default grader and the RL reward never credit look-alike answers that OctoThinker's symbolic fallback
can (its non-strict LaTeX parse reads "144." + prose as 1*4), and grading's time limit is OctoThinker's 15 s.

Every pair in NOT_EQUAL is mathematically unequal: numbers sharing digits, answers followed by prose,
products, fractions and other look-alikes. megatron_octo.eval.grader's default path (already extracted, and
extracted from a response) and megatron_octo.rl.reward must judge each of them wrong.
"""

from __future__ import annotations

import pytest

from megatron_octo.config import RLConfig
from megatron_octo.eval import agreement, grader, runner
from megatron_octo.eval.grader import equivalent, grade_detailed
from megatron_octo.rl.reward import RewardConfig, compute_rewards

pytestmark = pytest.mark.timeout(300)

NOT_EQUAL = [
    # numbers sharing digits
    ("144", "4"), ("144", "14"), ("14", "4"), ("41", "14"), ("12", "1"), ("123", "2"), ("36", "3"),
    ("10", "1"), ("100", "10"), ("2", "20"), ("0.5", "5"), ("1.5", "15"), ("3.14", "314"), ("1,000", "1"),
    ("1,234", "234"), ("-4", "4"), ("4.5", "45"),
    # answers followed by prose
    ("144. I hope it is correct.", "4"), ("144.Ihopeitiscorrect", "4"), ("$144$. I hope it is correct.", "4"),
    ("36. I hope it is correct.", "3"), ("123.Ihopeitiscorrect", "2"), ("12. That is all.", "1"),
    ("10, because 2 times 5 is 10", "1"), ("17 apples. I hope it is correct.", "7"), ("5, since 2+3=5", "2"),
    ("2\\sqrt{2}, approximately 2.83", "2"),
    # products
    ("2\\cdot 3", "23"), ("23", "2\\cdot 3"), ("2 \\times 3", "23"), ("1 \\cdot 4", "14"), ("2\\cdot 3", "5"),
    ("3 \\cdot 10^6", "310^6"), ("2 \\times 2", "22"),
    # fractions
    ("\\frac{1}{2}", "\\frac{2}{1}"), ("1/2", "12"), ("\\frac{3}{4}", "34"), ("\\frac12", "12"), ("3/4", "4"),
    ("\\frac{1}{3}", "0.33"), ("\\frac{1}{2}", "\\frac{1}{4}"), ("-\\frac{1}{2}", "\\frac{1}{2}"),
    ("\\frac{144}{4}", "144"),
    # other look-alikes
    ("1,2", "12"), ("(1,2)", "(2,1)"), ("[2,5]", "[2,5)"), ("\\sqrt{2}", "2"), ("2\\sqrt{2}", "\\sqrt{2}"),
    ("x+1", "x-1"), ("10^6", "106"), ("2^{10}", "210"), ("\\pi", "3"),
]


def test_table_size():
    assert len(NOT_EQUAL) >= 40 and len(set(NOT_EQUAL)) == len(NOT_EQUAL)


@pytest.mark.parametrize("pred,gold", NOT_EQUAL)
def test_equivalent_says_unequal(pred, gold):
    assert equivalent(pred, gold) is False
    assert equivalent(gold, pred) is False


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


def test_grading_timeout_defaults_to_octothinkers_15s():
    assert grader.DEFAULT_TIMEOUT == 15.0
    assert RewardConfig().timeout == 15.0
    assert RLConfig().grade_timeout == 15.0
    assert runner.parse_args(["--checkpoint", "x"]).grade_timeout == 15.0
    for fn in (grader.grade, grader.grade_batch, grader.grade_detailed, grader.grade_octothinker):
        assert fn.__kwdefaults__["timeout"] == 15.0, fn.__name__
    assert agreement.agreement_for_dir.__defaults__ == (15.0,)
