"""The eval CLI's protocol listing and flag errors (a CLI process each), and the runner's report pieces
on both graders' verdicts (grader worker processes)."""

from __future__ import annotations

import sys

import pytest

from megatron_octo.eval import runner
from megatron_octo.eval.benchmarks import Example
from tests.helpers import run

pytestmark = pytest.mark.timeout(120)


def test_list_protocols_cli_needs_no_checkpoint():
    res = run([sys.executable, "-m", "megatron_octo.eval", "--list-protocols"], timeout=100)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.startswith("| benchmark | model | prompt |") and "eval_olympiad_math [eval-config]" in res.stdout


@pytest.mark.parametrize("args,fragment", [
    ([], "--checkpoint"),
    (["--checkpoint", "x", "--grader", "sympy"], "--grader"),
])
def test_bad_flags_exit_2(args, fragment):
    res = run([sys.executable, "-m", "megatron_octo.eval", *args], timeout=100)
    assert res.returncode == 2 and fragment in res.stderr


# ---------------------------------------------------------------------------------------
# Runner pieces (no model): both verdicts per sample, the report
# ---------------------------------------------------------------------------------------

EXAMPLES = [Example("q1", "Ducks lay 16 eggs...", "18"), Example("q2", "2+2?", "4")]
# Sample 0: math-verify reads "The answer is 18"; OctoThinker's GSM rule reads the last number (20).
TEXTS = ["The answer is 18.\nCheck: 18 + 2 = 20.", "The answer is 4."]


def test_grade_both_and_disagreements():
    mv, oc, rule = runner.grade_both(TEXTS, EXAMPLES, 1, "gsm8k", "gsm8k_8shot", "gsm8k", 10.0)
    assert rule == "gsm"
    assert [v.correct for v in mv] == [True, True] and [v.correct for v in oc] == [False, True]
    rows = runner.disagreement_rows("gsm8k", EXAMPLES, 1, mv, oc)
    assert rows == [{"benchmark": "gsm8k", "id": "q1", "sample": 0, "gold": "18", "extracted_math_verify": "18",
                     "correct_math_verify": True, "extracted_octothinker": "20.", "correct_octothinker": False}]


def _result(grader: str) -> runner.BenchResult:
    return runner.BenchResult("gsm8k", "gsm8k_8shot", 2, 0.5 if grader == "octothinker" else 1.0, {"pass@1": 0.5},
                              12.0, 0.0, grader, "gsm", 1.0, 0.5, 1)


def test_results_markdown_names_the_grader_and_lists_disagreements():
    mv, oc, _ = runner.grade_both(TEXTS, EXAMPLES, 1, "gsm8k", "gsm8k_8shot", "gsm8k", 10.0)
    rows = runner.disagreement_rows("gsm8k", EXAMPLES, 1, mv, oc)
    text = runner.results_markdown("Checkpoint `c`", [_result("octothinker")], "octothinker", rows)
    assert "use the `octothinker` grader" in text
    assert "| gsm8k | gsm8k_8shot | 2 | 50.0 | 50.0 | 12.0 | 0.0% | 100.0 | 50.0 (gsm) | 0 | 1 |" in text
    assert "| octothinker | lenient | disagreements |" in text and "`lenient`: responses" in text
    assert "### gsm8k (1)" in text and "| `q1` | `0` | `18` | `18` | `True` | `20.` | `False` |" in text
    plain = runner.results_markdown("Checkpoint `c`", [_result("math_verify")], "math_verify", None)
    assert "use the `math_verify` grader" in plain and "disagree on" not in plain


def test_lenient_octothinker_verdicts_are_marked_and_counted():
    # "144." + prose is read as 1*4 by the non-strict LaTeX parse: OctoThinker's rule credits it for a gold
    # of 4 (as their harness does) and the verdict says it rests on that parse; math-verify says wrong.
    examples = [Example("a", "What is 2+2?", "4"), Example("b", "What is 2+2?", "4")]
    texts = ["The answer is $144$. I hope it is correct.",
             "Final Answer: The final answer is $4$. I hope it is correct."]
    mv, oc, rule = runner.grade_both(texts, examples, 1, "math500", "minerva_4shot", "minerva", 10.0)
    assert rule == "math" and [v.correct for v in mv] == [False, True]
    assert [(v.correct, v.lenient) for v in oc] == [(True, True), (True, False)]
    assert runner.verdict_fields(mv[0], oc[0], "octothinker")["lenient_octothinker"] is True
    assert runner.verdict_fields(mv[1], oc[1], "octothinker")["lenient_octothinker"] is False
    assert runner.lenient_count(oc) == 1
    result = runner.BenchResult("math500", "minerva_4shot", 2, 1.0, {"pass@1": 1.0}, 10.0, 0.0, "octothinker",
                                rule, 0.5, 1.0, 1, lenient_correct=runner.lenient_count(oc))
    assert "| 50.0 | 100.0 (math) | 1 | 1 |" in runner.results_markdown("h", [result], "octothinker")
    assert result.__dict__["lenient_correct"] == 1  # summary.json is written from __dict__
