"""OctoThinker's grading rules, in-process: the table of verdicts read off the original functions (CASES of
tests/octothinker_table_cases.py, each expected verdict worked out by hand from the OctoThinker / DeepSeekMath
source) and extraction quirks. The table through the time-limited grader workers, their time limit, and both
graders on every bundled set with the gold answers written as responses (worker processes):
tests/process/test_octothinker_grader_workers.py.
"""

from __future__ import annotations

import collections

import pytest

from megatron_octo.eval import octothinker_grader as og
from tests.octothinker_table_cases import CASES, COMMAS, rule_of

pytestmark = pytest.mark.timeout(300)


def test_table_size_and_coverage():
    assert len(CASES) >= 150
    by_rule = collections.Counter(rule_of(c) for c in CASES)
    assert set(by_rule) == set(og.RULES) and min(by_rule.values()) >= 15, by_rule
    assert {c.expected for c in CASES} == {True, False}


@pytest.mark.parametrize("case", CASES, ids=[f"{i}-{c.benchmark}-{c.protocol}" for i, c in enumerate(CASES)])
def test_octothinker_verdict(case):
    correct, _, lenient = og.judge_detailed(case.response, case.gold, rule_of(case), case.question)
    assert correct is case.expected, (case.response, case.gold)
    assert lenient is case.lenient, (case.response, case.gold)
    assert og.judge(case.response, case.gold, rule_of(case), case.question)[0] is correct


# ---------------------------------------------------------------------------------------
# Extraction quirks, function by function
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("text,expected", [
    ("The answer is 1,234.", "234."),
    ("3/4", "4"),
    ("5-3", "-3"),
    ("no digits here", "[invalid]"),
    ("The answer is 6.\n\nQ: 7", "6."),
    ("1.5.2", "2"),  # "1.5", then "2"
])
def test_gsm_extraction(text, expected):
    assert og.extract_gsm_few_shot_cot_answer("", text) == expected


@pytest.mark.parametrize("raw,expected", [
    ("\\dfrac{3}{4}", "\\frac{3}{4}"),
    ("\\frac12", "\\frac{1}{2}"),
    ("\\frac1{72}", "\\frac{1}{72}"),
    ("3/4", "\\frac{3}{4}"),
    ("03/4", "03/4"),  # int round trip fails
    ("\\sqrt2", "\\sqrt{2}"),
    ("10\\text{ cm}", "10"),
    ("\\text{(C)}", "(C)"),
    ("27.0", "27"),
    ("2.50", "2.50"),
    ("2\\cdot3", "23"),
    ("x \\in [1,2]", "x\\in[1,2]"),
    ("3+4j", "3+4i"),
    ("inf", "\\infty"),
    ("\\left( 1, 2 \\right)", "(1,2)"),
    ("5.", "5"),
    ("1,2,", "1,2"),
    (".5", "0.5"),
    ("\\$5", "5"),
    ("50\\%", "50%"),
])
def test_strip_string(raw, expected):
    assert og.strip_string(raw) == expected


def test_extract_answer_branches():
    assert og.extract_answer("The final answer is $7$. I hope it is correct.", exhaust=True) == ["7"]
    assert og.extract_answer("\\boxed{1} and \\boxed{2}", exhaust=True) == ["1", "2"]
    # A "%" right after the box was meant to be kept; the slice keeps the closing brace instead.
    assert og.extract_answer("\\boxed{50}%", exhaust=True) == ["50}"]
    assert og.extract_answer("\\boxed{unclosed", exhaust=True) == []
    assert og.extract_answer("so the answer is 5.\nmore", exhaust=False) == "5"
    assert og.extract_answer("it is -2.5 or 3,000", exhaust=False) == "3000"
    assert og.extract_answer("words only", exhaust=False) == ""


def test_olympiad_extraction():
    text = "Reasoning.\nFinal Answer: The final answer is $6$. I hope it is correct.\nUnrelated."
    assert og.extract_olympiad_math_answer("", text) == ["\\boxed{$6$.}"]
    assert og.extract_olympiad_math_answer("", "no sentence\nat all") == ["\\boxed{no sentenceat all}"]


def test_math_gold_follows_question():
    assert og.gold_for_rule("math", "1, 2", COMMAS) == ["1", "2"]
    assert og.gold_for_rule("math", "(1, 2)", COMMAS) == ["(1,2)"]
    assert og.gold_for_rule("math", "1, 2", "What is x?") == ["1,2"]
    assert og.gold_for_rule("math", "$-9.8 t$") == ["-9.8"]  # college_math golds come in $...$
    assert og.gold_for_rule("gsm", "1,234") == "1234"
    assert og.gold_for_rule("olympiad", ["$1$", "$2$"]) == "$1$"


def test_rule_selection():
    assert og.rule_for("gsm8k", "gsm8k_8shot") == "gsm"
    assert og.rule_for("amc23", "amc_0shot") == "gsm"
    assert og.rule_for("aime24", "amc_0shot") == "gsm"
    assert og.rule_for("math500", "minerva_4shot") == "math"
    assert og.rule_for("my_set", "minerva_4shot") == "math"
    assert og.rule_for("olympiadbench", "minerva_4shot") == "olympiad"
    for template in ("orz_base", "simple", "few_shot"):
        assert og.rule_for("olympiadbench", template) == "rl_boxed"


def test_parse_expr_never_sees_code(monkeypatch):
    # The original's parse_expr fallback would evaluate these; here they never reach it.
    import sympy.parsing.sympy_parser as sympy_parser

    seen = []
    real = sympy_parser.parse_expr
    monkeypatch.setattr(sympy_parser, "parse_expr", lambda s, *a, **k: seen.append(s) or real(s, *a, **k))
    code = ["__import__('os').system('true')", "(exit)()", "open('x')", "x.y", "a[0]", "globals()"]
    for text in code:
        assert og.symbolic_equal(text, "1") is False
    assert not set(seen) & set(code)
    # The LaTeX parser reads a prefix ("2**10" is 2) but fails on a character it has no token for;
    # plain arithmetic then still reaches parse_expr.
    assert og.symbolic_equal("2**10", "1024") is False
    assert og.symbolic_equal("2%3", "2") is True
    assert "2%3" in seen


def test_sympy_latex_parser_is_available():
    # The symbolic fallback silently degrades to "never equal" without it; make that loud.
    assert og.symbolic_equal("\\frac{\\sqrt{8}}{2}", "\\sqrt{2}") is True
