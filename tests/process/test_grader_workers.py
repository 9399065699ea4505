"""Grader through its time-limited worker processes: labelled equivalence table, benchmark gold
self/shuffle checks, time and memory limits.

Runtime: the shuffled-gold checks use a seeded sample of at most 100 examples per benchmark
(40 for minerva_math and college_math, whose unequal expressions are slow for sympy); the
self-checks use every example. Whole file: about a minute on 2 cores.
"""

import random
import signal
import time

import pytest

from megatron_octo.eval.benchmarks import BENCHMARKS, load_benchmark
from megatron_octo.eval.grader import configure_grader, grade, grade_batch, grade_detailed, shutdown_grader
from tests.grader_cases import EQUIVALENCE_TABLE


@pytest.fixture(scope="module", autouse=True)
def _workers():
    configure_grader(workers=2)
    yield
    shutdown_grader()


@pytest.mark.timeout(120)
def test_equivalence_table():
    assert len(EQUIVALENCE_TABLE) >= 60
    preds = [p for p, _, _ in EQUIVALENCE_TABLE]
    golds = [g for _, g, _ in EQUIVALENCE_TABLE]
    verdicts = grade_detailed(preds, golds, extracted=True, timeout=10)
    wrong = [(p, g, e, v) for (p, g, e), v in zip(EQUIVALENCE_TABLE, verdicts) if v.correct != e]
    assert not wrong, "\n".join(f"pred={p!r} gold={g!r} expected={e} got={v}" for p, g, e, v in wrong)
    assert not any(v.timed_out for v in verdicts)


@pytest.mark.timeout(60)
def test_grade_extracts_from_response():
    assert grade("We get $\\boxed{\\dfrac{1}{2}}$.", "\\frac12")
    assert not grade("We get $\\boxed{\\dfrac{1}{3}}$.", "\\frac12")
    assert grade("Final Answer: The final answer is $[2,5)$. I hope it is correct.", "[2,5)", style="minerva")
    assert grade("3 + 2 = 5. The answer is 5.", "5", style="gsm8k")
    assert not grade("I do not know.", "5", style="boxed")
    assert grade("27", 27.0, extracted=True)  # AMC gold as a float
    assert grade("(1,2), (3,4)", ["$(3,4),(1,2)$"], extracted=True)  # OlympiadBench list gold
    assert grade_batch(["\\boxed{1}", "\\boxed{2}"], ["1", "1"]) == [True, False]
    with pytest.raises(ValueError, match="2 responses but 1 gold"):
        grade_batch(["a", "b"], ["a"])


def _response_for(name: str, gold: str) -> tuple[str, str]:
    # A realistic response in each protocol's format, so extraction is exercised too.
    if name == "gsm8k":
        return f"Let me compute. So the total is {gold}. The answer is {gold}.", "gsm8k"
    if name in ("math500", "olympiadbench", "minerva_math"):
        return f"Work.\nFinal Answer: The final answer is ${gold}$. I hope it is correct.", "minerva"
    return f"Reasoning... so the result is $\\boxed{{{gold}}}$.", "boxed"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_benchmark_golds_self_and_shuffled(name):
    examples = load_benchmark(name)
    golds = [e.answer for e in examples]
    # Every gold, wrapped in a response of its protocol's format, grades as correct.
    if name == "gsm8k" or name == "math500" or name == "olympiadbench" or name == "minerva_math":
        responses, styles = zip(*(_response_for(name, g) for g in golds))
        style = styles[0]
    else:
        responses, style = [_response_for(name, g)[0] for g in golds], "boxed"
    self_ok = grade_batch(list(responses), golds, style=style, timeout=10)
    failed = [g for g, ok in zip(golds, self_ok) if not ok]
    assert not failed, f"{name}: {len(failed)} golds do not match themselves, e.g. {failed[:5]}"
    # Against a shuffled permutation: only coincidences (identical or genuinely equal golds).
    rng = random.Random(0)
    k = 40 if name in ("minerva_math", "college_math") else 100
    idx = rng.sample(range(len(golds)), min(k, len(golds)))
    sample = [golds[i] for i in idx]
    perm = sample[:]
    random.Random(1).shuffle(perm)
    v = grade_detailed(perm, sample, extracted=True, timeout=2)
    hits = sum(x.correct for x in v)
    identical = sum(p == g for p, g in zip(perm, sample))
    assert hits / len(sample) <= 0.08, f"{name}: {hits}/{len(sample)} shuffled golds graded correct"
    assert hits <= identical + max(2, len(sample) // 40), f"{name}: too many non-identical matches ({hits} vs {identical} identical)"


@pytest.mark.timeout(60)
def test_hanging_input_is_cut_off():
    # math-verify never returns on this comparison (it expands the power tower).
    t = time.monotonic()
    v = grade_detailed(["9^{9^{9^{9}}}"], ["1"], extracted=True, timeout=1.5)[0]
    elapsed = time.monotonic() - t
    assert v.correct is False and v.timed_out is True
    assert elapsed < 15, elapsed  # 1.5 s limit + worker restart
    # The pool recovered: the next call works and is fast.
    t = time.monotonic()
    assert grade("\\frac{1}{2}", "0.5", extracted=True, timeout=5)
    assert time.monotonic() - t < 10


@pytest.mark.timeout(60)
def test_an_interrupted_call_leaves_no_stale_answer():
    """A call interrupted mid-grading (Ctrl-C, a caller's timeout) must not hand a busy worker's late
    answer to the next call's task."""
    def interrupt(*_):
        raise KeyboardInterrupt

    # Every worker up first (identical strings are settled without one), so that the tasks go out.
    warm = ["\\frac{1}{2}", "\\frac{1}{4}", "\\frac{3}{4}", "\\frac{1}{8}"]
    assert all(v.correct for v in grade_detailed(warm, ["0.5", "0.25", "0.75", "0.125"], extracted=True, timeout=30))
    old = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 1.0)
    try:
        with pytest.raises(KeyboardInterrupt):
            grade_detailed(["9^{9^{9^{9}}}"] * 4, ["1"] * 4, extracted=True, timeout=30)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    v = grade_detailed(["2", "\\frac{1}{2}", "3"], ["2", "0.5", "4"], extracted=True, timeout=5)
    assert [(x.correct, x.timed_out) for x in v] == [(True, False), (True, False), (False, False)]


@pytest.mark.timeout(60)
def test_hang_in_batch_does_not_block_others():
    preds = ["9^{9^{9^{9}}}", "2", "\\frac{1}{2}", "3"]
    golds = ["1", "2", "0.5", "4"]
    v = grade_detailed(preds, golds, extracted=True, timeout=1.5)
    assert [x.correct for x in v] == [False, True, True, False]
    assert [x.timed_out for x in v] == [True, False, False, False]


@pytest.mark.timeout(60)
def test_huge_input_is_bounded():
    huge = "+".join(["x^{%d}" % i for i in range(3000)])
    t = time.monotonic()
    assert grade(huge, "1", extracted=True, timeout=2) is False
    assert time.monotonic() - t < 15


@pytest.mark.timeout(90)
def test_memory_limit_stops_a_huge_allocation():
    # 10^(10^8) has ~10^8 digits: with a 600 MB address-space cap the worker fails fast
    # (MemoryError -> not equal) or is cut off by the time limit; either way it is False.
    configure_grader(workers=1, memory_mb=600)
    try:
        v = grade_detailed(["10^{10^{9}}"], ["1"], extracted=True, timeout=5)[0]
        assert v.correct is False
        assert grade("2", "2.0", extracted=True)  # the pool still works afterwards
    finally:
        configure_grader(workers=2, memory_mb=2048)
