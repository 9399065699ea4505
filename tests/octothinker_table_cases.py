"""The hand-derived table of OctoThinker's grading verdicts (CASES), read off the original functions, and
responses stating a gold answer as each protocol's exemplars state answers (render_gold). Used by
tests/unit/test_octothinker_grader.py, tests/process/test_octothinker_grader_workers.py and
tests/octothinker_cases.py.

Every expected verdict in CASES was worked out by hand from the OctoThinker / DeepSeekMath source
(function named above each group), not from running megatron_octo.eval.octothinker_grader. Where a
verdict rests on a library the original calls (sympy's LaTeX parser, math-verify), the comment says
which behaviour of that library decides it.
"""

from __future__ import annotations

import collections

from megatron_octo.eval import octothinker_grader as og

# lenient: the verdict is correct only through the non-strict LaTeX parse of symbolic_equal (with sympy's
# parse_latex(strict=True) the same rule says wrong); judge_detailed must flag exactly these.
Case = collections.namedtuple("Case", "benchmark protocol response gold expected question lenient")


def _case(benchmark, protocol):
    def make(response, gold, expected, question="", lenient=False):
        return Case(benchmark, protocol, response, gold, expected, question, lenient)
    return make


gsm = _case("gsm8k", "gsm8k_8shot")
amc = _case("amc23", "amc_0shot")
math = _case("math500", "minerva_4shot")
oly = _case("olympiadbench", "minerva_4shot")
rl = _case("math500", "orz_base")


def fa(x):
    """A response ending in the Minerva exemplars' final-answer sentence."""
    return f"We work it out step by step.\nFinal Answer: The final answer is ${x}$. I hope it is correct."


COMMAS = "Enter all the solutions, separated by commas."
DEEP = "\\frac{\\sqrt{\\frac{1}{\\sqrt{2}}}}{2}"

CASES = [
    # --- GSM8K: extract_gsm_few_shot_cot_answer (cut at the first "Q: ", last match of -?\d+\.?\d*, no
    # clean-up) + eval_last_single_answer -> is_correct (|float(p) - float(g)| < 1e-3 after removing commas,
    # then p == g, then math_equal: numbers within abs 1e-3 of g, g/100 or g*100).
    gsm("She sells 16 - 3 - 4 = 9 eggs for $2 each: 9 * 2 = 18. The answer is 18.", "18", True),
    gsm("The answer is 18.\n\nQ: Tom has 42 apples. How many?", "18", True),  # cut at "Q: "
    gsm("The answer is 18.\nQ:42 more", "18", False),  # "Q:" without the space is not cut: last number 42
    gsm("Q: restated question. The answer is 18.", "18", False),  # text before the first "Q: " is empty
    gsm("The total is 1,234 dollars. The answer is 1,234.", "1234", False),  # last match "234."
    gsm("The answer is 1234.", "1234", True),
    gsm("She pays $18 dollars.", "18", True),
    gsm("It costs $18.00.", "18", True),  # "18.00" -> float 18
    gsm("The answer is 2.5.", "2.5", True),
    gsm("The answer is 3/4.", "0.75", False),  # last match "4."
    gsm("The answer is 3/4.", "4", True),  # ... which equals a gold of 4
    gsm("It fell to -5 degrees. The answer is -5.", "-5", True),
    gsm("So 20-12 = 8.", "8", True),  # matches "20", "-12", "8."
    gsm("The answer is 10-2", "8", False),  # last match "-2"
    gsm("The answer is 1800.", "18", True),  # math_equal accepts gold*100 (percent rule)
    gsm("The answer is 0.18.", "18", True),  # ... and gold/100
    gsm("The answer is 180.", "18", False),
    gsm("The answer is 18.0004.", "18", True),  # within 1e-3
    gsm("The answer is 18.002.", "18", False),  # 0.002 apart: outside both tolerances
    gsm("I don't know.", "18", False),  # "[invalid]"
    gsm("", "18", False),
    gsm("The answer is eighteen.", "18", False),
    gsm("Step 1: she sells 9 eggs at $2 each, 18 in total. Step 2 done.", "18", False),  # last number is 2
    gsm("The answer is 18. Check: 18 + 2 = 20.", "18", False),  # "The answer is" is not preferred
    gsm("The answer is 7.", "7", True),
    gsm("The answer is .5", "0.5", False),  # the regex needs a digit first: "5"
    gsm("The answer is 007.", "7", True),
    gsm("The answer is 1e3.", "1000", False),  # matches "1", "3."
    gsm("The answer is 1 000.", "1000", False),  # last match "000."
    gsm("A: The answer is 5.\nQ: Next one. A: The answer is 6.", "5", True),
    gsm("The answer is 1000000.", "1000000", True),
    gsm("The answer is 5,000.", "5000", False),  # last match "000."
    gsm("The answer is 5000.5", "5000.5", True),
    gsm("He has 3.5 apples, so 7 halves. The answer is 7", "7", True),
    gsm("The answer is 12.50", "12.5", True),
    gsm("The answer is 0", "0", True),
    gsm("x = -4", "-4", True),
    gsm("The answer is \u22124.", "-4", False),  # a Unicode minus is not "-": "4." is compared with -4
    gsm("The answer is 18%.", "18", True),
    gsm("The answer is 25 and 2 more", "25", False),
    # --- AMC23: the same pair (config "amc-cot"); process_amc passes str(answer), e.g. "27.0".
    amc("They meet 27 miles from A. The answer is 27.", "27.0", True),
    amc("The answer is \\boxed{27}", "27", True),
    amc("so the answer is $\\frac{1}{2}$", "0.5", False),  # last match "2"
    amc("The answer is (C) 36", "36", True),
    amc("The answer is 2\\sqrt{2}", "2.828", False),  # last match "2"
    amc("The answer is 2023.", "2023", True),
    amc("There are 5 cases, so the count is 5 + 4 = 9", "9.0", True),
    amc("The answer is 9.\n\nQ: 10", "9.0", True),
    # --- MATH500: extract_math_few_shot_cot_answer (cut at "Problem:"; first "final answer is $X$. I hope",
    # else every box, else after the last "he answer is", else program output, else the last number;
    # each strip_string-ed; split at commas if the question says "separated by commas") + eval_math (gold
    # list de-duplicated, last len(gold) predictions kept) -> is_correct -> math_equal -> symbolic_equal
    # (sympy parse_latex, simplify(a - b) == 0, or N(a), N(b) within abs 1e-3).
    math(fa("\\frac{3}{4}"), "\\frac{3}{4}", True),
    math(fa("\\dfrac{3}{4}"), "\\frac{3}{4}", True),  # strip_string: dfrac -> frac
    math(fa("0.75"), "\\frac{3}{4}", True),  # symbolic: 0.75 - 3/4 simplifies to 0
    math(fa("\\frac12"), "\\frac{1}{2}", True),  # _fix_fracs
    math(fa("1/2"), "\\frac{1}{2}", True),  # _fix_a_slash_b
    math(fa("10\\text{ cm}"), "10", True),  # trailing \text{...} dropped
    math(fa("10 cm"), "10", False),  # a bare unit word stays: "10cm" parses as 10*c*m
    math(fa("10\\mbox{ cm}"), "10", True),  # \mbox{...} deleted
    math(fa("10 \\mathrm{cm}"), "10", True),  # \mathrm deleted, then "{cm}" removed
    math(fa("30^\\circ"), "30", True),
    math(fa("30\u00b0"), "30", False),  # the degree sign is not removed and does not parse
    math(fa("\\$5"), "5", True),
    math(fa("50\\%"), "50", True),  # "50%" reads as 0.5 = gold/100
    math(fa("0.5"), "50\\%", True),
    math(fa("[2,5)"), "[2,5)", True),
    math(fa("[2,5]"), "[2,5)", True),  # bracketed pairs compare element-wise: bracket kinds ignored
    math(fa("(2,5)"), "[2,5)", True),
    math(fa("(3,\\frac{\\pi}{2})"), "\\left( 3, \\frac{\\pi}{2} \\right)", True),  # \left/\right, spaces go
    math(fa("(3,\\pi)"), "(3,\\frac{\\pi}{2})", False),
    math("First \\boxed{3}. Actually \\boxed{5}.", "5", True),  # the last len(gold) boxes count
    math("First \\boxed{3}. Actually \\boxed{5}.", "3", False),
    math("We get \\boxed{4}.\n" + fa("5").split("\n", 1)[1], "5", True),  # the sentence beats boxes
    math("We get \\boxed{4}.\n" + fa("5").split("\n", 1)[1], "4", False),
    math("Thus the answer is 7.", "7", True),
    math("so \\boxed 7. The answer is 7.", "7", False),  # "boxed" present: box branch, which finds none
    math("We find x equals 12", "12", True),  # last number
    math("so the total comes to 1,000", "1000", True),  # commas removed before the number search
    math(fa("5") + "\n\nProblem:\nFind y.\n\nSolution:\n" + fa("6").split("\n", 1)[1], "5", True),
    math("The final answer is $3$. I hope it is correct. Final Answer: The final answer is $5$. I hope it "
         "is correct.", "5", False),  # the first "final answer is $" wins
    math(fa("1, 2"), "1, 2", True, COMMAS),
    math(fa("2, 1"), "1, 2", True, COMMAS),  # split, then matched in any order
    math(fa("1"), "1, 2", False, COMMAS),  # the gold item 2 is unmatched
    math(fa("1, 1.0001, 5"), "1, 5, 5.0001", True, COMMAS),  # each side covered, though not one-to-one
    math(fa("2,1"), "1,2", False),  # without the phrase: read as the numbers 21 and 12
    math(fa("1,000"), "1000", True),  # is_correct drops commas before float()
    math(fa("x=1 \\text{ and } x=2"), "x=2 \\text{ and } x=1", True),  # split at \text{and}
    math(fa("3+4j"), "3+4i", True),  # "j" becomes "i" when there is no "i"
    math(fa("2\\cdot 3"), "6", False),  # \cdot deleted: "23"
    math(fa("3\\cdot 10^6"), "3000000", False),  # "310^6"
    math(fa("27.0"), "27", True),
    math(fa("2.50"), "2.5", True),
    math(fa("2\\sqrt2"), "2\\sqrt{2}", True),  # _fix_sqrt
    math(fa("\\sqrt{8}"), "2\\sqrt{2}", True),  # symbolic
    math(fa("x^2+2x+1"), "(x+1)^2", True),  # symbolic
    math(fa("x^2+1"), "(x+1)^2", False),
    math(fa("x = 5"), "5", True),  # left side of at most 2 characters is dropped
    math(fa("y=7"), "5", False),
    math(fa("f(x)=2x+1"), "2x+1", False),  # "f(x)" is longer than 2 characters
    math(fa("y=2x+3"), "2x+3=y", True),  # equations: lhs - (rhs), up to sign
    math(fa("\\begin{pmatrix}0.5\\\\2\\end{pmatrix}"), "\\begin{pmatrix}\\frac{1}{2}\\\\2\\end{pmatrix}", True),
    math(fa("\\{2,1\\}"), "\\{1,2\\}", False),  # sets: no element-wise rule, and "\{2,1\}" does not parse
    math(fa("\\{1,2\\}"), "\\{1,2\\}", True),
    math(fa("(1,\\infty)\\cup(-\\infty,0)"), "(-\\infty,0)\\cup(1,\\infty)", True),  # split at \cup, any order
    math(fa("(-\\infty,0]\\cup(1,\\infty)"), "(-\\infty,0)\\cup(1,\\infty)", True),  # closedness ignored
    math(fa("infinity"), "\\infty", True),
    math(fa("inf"), "\\infty", True),
    math(fa("\\text{Monday}"), "\\text{Monday}", True),
    math(fa("\\text{(C)}"), "\\text{(C)}", True),
    math(fa("C"), "\\text{(C)}", True),  # symbolic: both parse as the symbol C
    math(fa("(B)"), "(C)", False),
    math(fa(""), "5", False),  # an empty prediction is never equal
    math("I am not sure how to proceed.", "5", False),  # nothing extracted
    math("\\boxed{\\boxed{3}}", "3", True),  # split at "boxed{": the inner box
    math("so \\boxed{\\frac{1}{2}}", "\\frac12", True),
    math(fa("0.33"), "\\frac{1}{3}", False),  # 0.0033 apart
    math(fa("0.3333"), "\\frac{1}{3}", True),  # within 1e-3
    math(fa("3.14"), "\\pi", False),
    math(fa("3.1416"), "\\pi", False),  # sympy's LaTeX parser reads \pi as a plain symbol named pi, so N()
    # has no number to compare with
    math(fa("\\frac{1}{2}\\pi"), "\\frac{\\pi}{2}", True),  # ... but symbolic simplification still works
    math(fa("10^6"), "1000000", True),  # symbolic: 10**6
    math(fa("2\\frac{1}{2}"), "\\frac{5}{2}", False),  # no mixed numbers: 2 * 1/2
    math(fa("(3,4),(1,2)"), "(1,2),(3,4)", False, COMMAS),  # brackets: no split; element-wise fails
    math(fa("x \\in [1,2]"), "[1,2]", False),  # "x\in" is only removed without a space
    math(fa("x\\in[1,2]"), "[1,2]", True),
    math(fa("1\\!000"), "1000", True),
    math(fa("4 t"), "4", True),  # a "t" after a digit at the end is dropped
    math(fa("\\frac{a}{b}"), "a/b", True),  # symbolic
    math(fa("-\\frac{2}{3}"), "\\frac{-2}{3}", True),
    math(fa("\\frac{2}{3}"), "-\\frac{2}{3}", False),
    math("Therefore it equals -3", "-3", True),
    math("```output\n42\n```", "42", True),  # program output
    math("The answer is $\\boxed{12}$.", "12", True),
    # Answers followed by prose, through the "he answer is" branch: strip_string deletes the spaces and "$",
    # and sympy's non-strict parse_latex reads a prefix of what is left (its lexer splits the digits before
    # a "."): "144.Ihopeitiscorrect" parses as 1*4, "36.Ihope..." as 3. OctoThinker's environment (sympy
    # 1.12, ANTLR 4.11.1) credits these too; the strict re-check flags them.
    math("The answer is $144$. I hope it is correct.", "4", True, lenient=True),
    math("The answer is $144$. I hope it is correct.", "144", False),
    math("The answer is $36$. I hope it is correct.", "3", True, lenient=True),
    math("The answer is $123$. I hope it is correct.", "2", True, lenient=True),  # 1*2
    math("The answer is 12. That is all.", "1", True, lenient=True),
    math("The answer is 12. That is all.", "12", False),
    math("The answer is 10, because 2 times 5 is 10.", "10", True, lenient=True),  # the prefix "10"
    math(fa("2\\sqrt{2}, approximately 2.83"), "2\\sqrt{2}", True, lenient=True),
    math("The answer is 7 apples. I hope it is correct.", "7", False),  # does not parse at all
    # --- OlympiadBench: extract_olympiad_math_answer (after the last "Final Answer:", "The final answer is "
    # removed, cut at "I hope it is correct.", newlines removed, wrapped as \boxed{...}) + eval_olympiad_math
    # (math-verify parse() with its default extraction on both, verify(pred, gold); any error is False).
    oly(fa("2"), "2", True),
    oly(fa("2^{1009}"), "$2^{1009}$", True),
    oly(fa("\\frac{1}{2}"), "0.5", True),
    oly(fa("3"), "2", False),
    oly("No idea.", "7", False),  # no "Final Answer:": the whole text is boxed, and holds no 7
    oly(fa("3") + "\n" + fa("4").split("\n", 1)[1], "4", True),  # the last "Final Answer:"
    oly(fa("3") + "\n" + fa("4").split("\n", 1)[1], "3", False),
    oly("Final Answer: $5$", "5", True),
    oly(fa("1,3"), "1,3", False),  # math-verify reads the bare gold "1,3" as the decimal 1.3 ...
    oly(fa("1.3"), "1,3", True),  # ... so 1.3 is credited
    oly(fa("[2,5)"), "$[2,5)$", True),
    oly(fa("[2,5]"), "$[2,5)$", False),
    oly(fa("m_{\\max }=n^{2}-n-1"), "$m_{\\max }=n^{2}-n-1$", False),  # unparsed: compared as strings, and
    # the prediction keeps the "." that follows "$X$"
    oly(fa("\\frac{1}{2 n+2}"), "$\\frac{1}{2 n+2}$", True),
    oly(fa("\\frac{1}{2(n+1)}"), "$\\frac{1}{2 n+2}$", True),  # symbolic
    oly(fa("\\sqrt{8}"), "$2\\sqrt{2}$", True),
    oly(fa("x=5"), "5", True),  # math-verify compares the right side of a prediction "x = 5" with a number
    oly("Final Answer: The final answer is $6$", "6", True),  # no closing sentence needed
    oly("", "5", False),
    oly(fa("(2,1)"), "$(1,2)$", False),
    # --- RL zero-shot: math_verifier.correctness_score_default (last boxed_pattern match, up to 3 nested
    # brace levels) + is_equiv (equal ignoring case and outer spaces; else math-verify on
    # normalize_final_answer of both, verify(pred, gold)).
    rl("... so the answer is \\boxed{18}.", "18", True),
    rl("The answer is 18.", "18", False),  # no box
    rl("\\boxed{3} ... no, \\boxed{5}", "5", True),
    rl("\\boxed{3} ... no, \\boxed{5}", "3", False),
    rl("\\boxed{Monday}", "monday", True),  # case-insensitive string match
    rl("\\boxed{\\frac{1}{2}}", "0.5", True),
    rl("\\boxed{\\dfrac{3}{4}}", "\\frac{3}{4}", True),
    rl("\\boxed{10 \\text{ cm}}", "10", True),  # normalize_final_answer drops "cm" and the empty \text{}
    rl("\\boxed{50%}", "50", True),  # "%" removed
    rl("\\boxed{" + DEEP + "}", DEEP, False),  # 4 nested brace levels: the pattern finds no box
    rl("\\boxed{}", "5", False),
    rl("\\boxed 5", "5", False),
    rl("\\fbox{5}", "5", False),
    rl("\\boxed{x=5}", "5", True),  # math-verify: the right side of an assignment
    rl("\\boxed{1,000}", "1000", True),  # "1,000" -> "1000"
    rl("\\boxed{[2,5)}", "[2,5)", True),  # identical strings
    rl("\\boxed{[2, 5)}", "[2,5)", False),  # not identical; a bare interval gives math-verify nothing to parse
    rl("\\boxed{\\{1,2\\}}", "\\{2,1\\}", False),  # a bare set without "$" gives math-verify nothing to parse
    rl("\\boxed{\\{1,2\\}}", "\\{1,2\\}", True),  # identical strings
    rl("\\boxed{7} then 2 more", "7", True),  # text after the box is ignored
]


def rule_of(case: Case) -> str:
    return og.rule_for(case.benchmark, case.protocol)


def render_gold(protocol: str, gold: str) -> str:
    """A response stating the gold as the protocol's exemplars state answers."""
    if protocol in ("gsm8k_8shot", "amc_0shot"):
        return f"Working it out step by step. The answer is {gold}."
    if protocol == "minerva_4shot":
        shown = gold if gold.startswith("$") and gold.endswith("$") else f"${gold}$"  # OlympiadBench golds come in $
        return f"Working it out step by step.\nFinal Answer: The final answer is {shown}. I hope it is correct."
    return f"Working it out step by step, the answer is \\boxed{{{gold}}}."
