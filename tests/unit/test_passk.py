import math
from itertools import combinations

import pytest

from megatron_octo.eval.passk import mean_at_n, pass_at_k, pass_at_k_problem

pytestmark = pytest.mark.timeout(30)


def _brute(n, c, k):
    # Fraction of k-subsets of the n samples that contain a correct one.
    flags = [True] * c + [False] * (n - c)
    subsets = list(combinations(range(n), k))
    return sum(any(flags[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n,c,k", [(1, 0, 1), (1, 1, 1), (5, 2, 1), (5, 2, 3), (6, 1, 6), (8, 3, 4), (10, 0, 5), (10, 9, 2)])
def test_matches_enumeration(n, c, k):
    assert math.isclose(pass_at_k_problem(n, c, k), _brute(n, c, k), rel_tol=1e-12, abs_tol=1e-12)


def test_closed_forms_and_large_n():
    assert pass_at_k_problem(16, 4, 1) == pytest.approx(4 / 16)  # pass@1 = c/n
    assert pass_at_k_problem(1000, 1, 1000) == 1.0
    v = pass_at_k_problem(10000, 37, 100)
    assert 0 < v < 1 and v == pytest.approx(1 - math.comb(10000 - 37, 100) / math.comb(10000, 100))


def test_aggregates():
    correct = [[True, False, False, False], [True, True, True, True], [False] * 4]
    assert mean_at_n(correct) == pytest.approx((0.25 + 1 + 0) / 3)
    assert pass_at_k(correct, 1) == pytest.approx(mean_at_n(correct))
    assert pass_at_k(correct, 4) == pytest.approx(2 / 3)


def test_bad_inputs():
    with pytest.raises(ValueError, match="exceeds"):
        pass_at_k_problem(3, 1, 4)
    with pytest.raises(ValueError, match="outside"):
        pass_at_k_problem(3, 4, 1)
    with pytest.raises(ValueError, match="no problems"):
        mean_at_n([])
    with pytest.raises(ValueError, match="problem 1 has no samples"):
        mean_at_n([[True], []])
