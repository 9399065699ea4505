"""pass@k (unbiased estimator of Chen et al. 2021, "Evaluating Large Language Models Trained on
Code", eq. 1) and mean@n (average accuracy over n samples per problem)."""

from __future__ import annotations

from typing import Sequence

__all__ = ["mean_at_n", "pass_at_k", "pass_at_k_problem"]


def pass_at_k_problem(n: int, c: int, k: int) -> float:
    """P(at least one of k samples drawn without replacement from n, c of them correct, is correct)
    = 1 - C(n-c, k) / C(n, k), computed as a running product so large n does not overflow."""
    if n < 1 or k < 1:
        raise ValueError(f"need n >= 1 and k >= 1, got n={n}, k={k}")
    if not 0 <= c <= n:
        raise ValueError(f"correct count c={c} outside [0, n={n}]")
    if k > n:
        raise ValueError(f"k={k} exceeds the number of samples n={n}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def pass_at_k(correct: Sequence[Sequence[bool]], k: int) -> float:
    """Mean pass@k over problems; ``correct[i]`` holds the flags of problem i's samples."""
    if not correct:
        raise ValueError("no problems")
    return sum(pass_at_k_problem(len(row), sum(bool(x) for x in row), k) for row in correct) / len(correct)


def mean_at_n(correct: Sequence[Sequence[bool]]) -> float:
    """Mean over problems of the fraction of correct samples (avg@n / mean@n)."""
    if not correct:
        raise ValueError("no problems")
    for i, row in enumerate(correct):
        if len(row) == 0:
            raise ValueError(f"problem {i} has no samples")
    return sum(sum(bool(x) for x in row) / len(row) for row in correct) / len(correct)
