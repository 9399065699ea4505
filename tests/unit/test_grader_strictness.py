"""The default grader never credits look-alike answers that OctoThinker's symbolic fallback can (its
non-strict LaTeX parse reads "144." + prose as 1*4), judged in-process here, and grading's time limit is
OctoThinker's 15 s. The table is NOT_EQUAL of tests/grader_cases.py; the default grading path and the RL reward,
which grade through worker processes: tests/process/test_grader_strictness_workers.py.
"""

from __future__ import annotations

import pytest

from megatron_octo.config import RLConfig
from megatron_octo.eval import agreement, grader, runner
from megatron_octo.eval.grader import equivalent
from megatron_octo.rl.reward import RewardConfig
from tests.grader_cases import NOT_EQUAL

pytestmark = pytest.mark.timeout(300)


def test_table_size():
    assert len(NOT_EQUAL) >= 40 and len(set(NOT_EQUAL)) == len(NOT_EQUAL)


@pytest.mark.parametrize("pred,gold", NOT_EQUAL)
def test_equivalent_says_unequal(pred, gold):
    assert equivalent(pred, gold) is False
    assert equivalent(gold, pred) is False


def test_grading_timeout_defaults_to_octothinkers_15s():
    assert grader.DEFAULT_TIMEOUT == 15.0
    assert RewardConfig().timeout == 15.0
    assert RLConfig().grade_timeout == 15.0
    assert runner.parse_args(["--checkpoint", "x"]).grade_timeout == 15.0
    for fn in (grader.grade, grader.grade_batch, grader.grade_detailed, grader.grade_octothinker):
        assert fn.__kwdefaults__["timeout"] == 15.0, fn.__name__
    assert agreement.agreement_for_dir.__defaults__ == (15.0,)
