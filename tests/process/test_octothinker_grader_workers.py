"""OctoThinker's grading rules through the grader's time-limited worker processes: the hand-derived table
(tests/octothinker_table_cases.py), the known false positive's lenient flag, the time limit, and both graders
on every bundled set with the gold answers written as responses.
"""

from __future__ import annotations

import pytest

from megatron_octo.eval import octothinker_grader as og
from megatron_octo.eval.benchmarks import BENCHMARKS, load_benchmark
from megatron_octo.eval.grader import grade_detailed, grade_octothinker
from megatron_octo.eval.prompts import get_protocol
from tests.octothinker_table_cases import CASES, fa, render_gold, rule_of

pytestmark = pytest.mark.timeout(300)


def test_table_through_the_time_limited_workers():
    verdicts = grade_octothinker([c.response for c in CASES], [c.gold for c in CASES], [rule_of(c) for c in CASES],
                                 questions=[c.question for c in CASES], timeout=10)
    wrong = [(c.response, c.gold) for c, v in zip(CASES, verdicts)
             if v.correct is not c.expected or v.lenient is not c.lenient or v.timed_out]
    assert not wrong


def test_lenient_flag_on_the_known_false_positive():
    # The case: OctoThinker's MATH rule credits "144." + prose against a gold of 4 (1*4) and says why.
    response = "The answer is $144$. I hope it is correct."
    correct, extracted, lenient = og.judge_detailed(response, "4", "math")
    assert (correct, extracted, lenient) == (True, ["144.Ihopeitiscorrect"], True)
    # Genuinely correct verdicts are not lenient: by number, by a symbolic equality on whole parses.
    assert og.judge_detailed(fa("144"), "144", "math") == (True, ["144"], False)
    assert og.judge_detailed(fa("\\sqrt{8}"), "2\\sqrt{2}", "math") == (True, ["\\sqrt{8}"], False)
    assert og.judge_detailed(fa("x^2+2x+1"), "(x+1)^2", "math")[2] is False
    # A wrong verdict is never lenient, and the strict re-check leaves no state behind.
    assert og.judge_detailed(response, "144", "math")[2] is False
    assert og.symbolic_equal("144.Ihopeitiscorrect", "4") is True
    # Through the time-limited workers, as the eval CLI grades.
    v = grade_octothinker([response, fa("144")], ["4", "144"], "math", timeout=10)
    assert [(x.correct, x.lenient) for x in v] == [(True, True), (True, False)]


def test_hang_is_cut_off():
    v = grade_octothinker([fa("9^{9^{9^{9}}}-1")], ["9^{9^{9^{9}}}"], "math", timeout=3)[0]
    assert v.timed_out and not v.correct


# ---------------------------------------------------------------------------------------
# Both graders on the bundled sets, gold answers written as responses
# ---------------------------------------------------------------------------------------

# OlympiadBench golds that eval_olympiad_math never credits, even for a response stating exactly the gold
# in the Minerva sentence (with the installed math-verify): bare comma lists ("1,3") parse as a decimal
# (1.3) while the "$1,3$" of the response parses as a set; bare tuples/intervals without "$" give math-verify
# nothing to parse; answers it cannot parse are compared as strings, and the response keeps the "." after
# "$X$". These problems count as wrong in OctoThinker's OlympiadBench numbers whatever the model answers
# in the expected format.
OLYMPIAD_NEVER_CREDITED = {
    "1709", "1782", "1800", "2000", "2012", "2045", "2111", "2193", "2216", "2235", "2238", "2243", "2265", "2268",
    "2277", "2282", "2283", "2301", "2317", "2318", "2319", "2323", "2326", "2330", "2336", "2349", "2356", "2369",
    "2370", "2382", "2391", "2421", "2423", "2443", "2453", "2472", "2521", "2536", "2544", "2684", "2753", "2754",
}


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
@pytest.mark.parametrize("kind", ["base", "rl"])
def test_gold_as_response_both_graders(name, kind):
    spec = BENCHMARKS[name]
    protocol = spec.base_protocol if kind == "base" else spec.rl_protocol
    examples = load_benchmark(name)
    responses = [render_gold(protocol, ex.answer) for ex in examples]
    golds = [ex.answer for ex in examples]
    mv = grade_detailed(responses, golds, style=get_protocol(protocol).answer_style)
    assert [ex.id for ex, v in zip(examples, mv) if not v.correct] == []
    oc = grade_octothinker(responses, golds, og.rule_for(name, protocol), questions=[ex.question for ex in examples])
    missed = {ex.id for ex, v in zip(examples, oc) if not v.correct}
    expected = OLYMPIAD_NEVER_CREDITED if (name, kind) == ("olympiadbench", "base") else set()
    assert missed == expected
    print(f"{name} {protocol}: math_verify {len(examples)}/{len(examples)}, "
          f"octothinker {len(examples) - len(missed)}/{len(examples)}")
