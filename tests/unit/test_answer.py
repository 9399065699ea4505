"""Answer extraction and normalisation (pure string functions, no grader workers)."""

import pytest

from megatron_octo.eval.answer import (
    count_boxed,
    extract_answer,
    extract_boxed_all,
    extract_gsm8k_answer,
    extract_minerva_answer,
    gsm8k_gold,
    last_boxed,
    normalize_answer,
    split_top_level,
    truncate_at_stop,
)

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("so the answer is $\\boxed{42}$.", "42"),
        ("first \\boxed{1} then \\boxed{2}", "2"),
        ("\\boxed{\\frac{1}{\\sqrt{2}}}", "\\frac{1}{\\sqrt{2}}"),
        ("\\boxed{x^{2^{3}}+\\left\\{1\\right\\}}", "x^{2^{3}}+\\left\\{1\\right\\}"),
        ("\\boxed{\\{1,2\\}}", "\\{1,2\\}"),
        ("The result: $\\boxed 5$.", "5"),
        ("\\fbox{7} done", "7"),
        ("\\boxed{3} and later \\fbox{4}", "4"),
        ("no box here", None),
        ("\\boxed{3} then truncated \\boxed{4", None),  # last box unterminated: not credited
        ("\\boxedsymbol{3}", None),
    ],
)
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


def test_boxed_all_and_count():
    t = "\\boxed{1} x \\boxed{\\frac{2}{3}} \\fbox{4}"
    assert extract_boxed_all(t) == ["1", "\\frac{2}{3}", "4"]
    assert count_boxed(t) == 2  # the recipe counts the literal "\\boxed" only
    assert count_boxed("no boxes") == 0


def test_minerva_final_answer():
    t = "Work.\nFinal Answer: The final answer is $[2,5)$. I hope it is correct."
    assert extract_minerva_answer(t) == "[2,5)"
    # Generation stopped right after the answer sentence.
    assert extract_minerva_answer("Final Answer: The final answer is $24$.") == "24"
    two = "Final Answer: The final answer is $1$. I hope it is correct.\nFinal Answer: The final answer is $2$. I hope it is correct."
    assert extract_minerva_answer(two) == "2"
    assert extract_minerva_answer("nothing") is None


def test_gsm8k_extraction():
    assert extract_gsm8k_answer("3 + 2 = 5. The answer is 5.") == "5"
    assert extract_gsm8k_answer("So she has 1,234 dollars. The answer is 1,234.") == "1234"
    # Runs past the stop string into the next exemplar: cut at "Q: ".
    assert extract_gsm8k_answer("So 9 in total. The answer is 9.\n\nQ: Tom has 12 apples") == "9"
    assert extract_gsm8k_answer("He pays 3 * 4 = 12 dollars") == "12"
    assert extract_gsm8k_answer("The answer is -3.5.") == "-3.5"
    assert extract_gsm8k_answer("no digits") is None


def test_extract_answer_styles():
    t = "\\boxed{3}\nFinal Answer: The final answer is $4$. I hope it is correct."
    assert extract_answer(t, "boxed") == "3"
    assert extract_answer(t, "minerva") == "4"
    assert extract_answer(t, "auto") == "3"
    assert extract_answer("blah #### 1,000", "auto") == "1000"
    assert extract_answer("The answer is 7.", "auto") == "7"
    assert extract_answer("nothing at all", "boxed") is None
    with pytest.raises(ValueError, match="unknown answer style"):
        extract_answer("x", "nope")


def test_gsm8k_gold():
    assert gsm8k_gold("She makes 9 * 2 = $<<9*2=18>>18.\n#### 18") == "18"
    assert gsm8k_gold("#### 1,000") == "1000"
    with pytest.raises(ValueError, match="####"):
        gsm8k_gold("no marker")


@pytest.mark.parametrize(
    "raw,norm",
    [
        ("\\boxed{\\dfrac{1}{2}}", "\\frac{1}{2}"),
        ("$\\tfrac12$", "\\frac{1}{2}"),
        ("10\\text{ cm}", "10"),
        ("\\frac{1}{2}\\text{ cm}^2", "\\frac{1}{2}"),
        ("5 dollars", "5"),
        ("\\$18", "18"),
        ("30^\\circ", "30"),
        ("x = 5", "5"),
        ("$1,000$", "1000"),
        ("27.0", "27"),
        ("2.50", "2.5"),
        ("\\text{(C)}", "C"),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"),
        (".5", "0.5"),
        ("50\\%", "50%"),
        ("\\sqrt2", "\\sqrt{2}"),
        ("2m", "2m"),  # a single-letter unit outside \text{} is kept: could be a product
    ],
)
def test_normalize_answer(raw, norm):
    assert normalize_answer(raw) == norm


@pytest.mark.parametrize(
    "s,parts",
    [
        ("$69$,$84$", ["69", "84"]),
        ("(1,8,19), (2,7,13)", ["(1,8,19)", "(2,7,13)"]),
        ("\\{1, 2\\}", ["1", "2"]),
        ("1,000", ["1000"]),
        ("[2,5)", ["[2,5)"]),
        ("x=1 \\text{ and } x=2", ["x=1", "x=2"]),
        ("(-\\infty, 0) \\cup \\{1\\}", ["(-\\infty, 0) \\cup \\{1\\}"]),
    ],
)
def test_split_top_level(s, parts):
    assert split_top_level(s) == parts


def test_truncate_at_stop():
    assert truncate_at_stop("abc\n\nQ: next", ["\nQ:", "\nProblem:"]) == "abc\n"
    assert truncate_at_stop("no stop", ["\nQ:"]) == "no stop"


def test_extraction_is_fast_on_huge_input():
    import time

    big = "\\boxed{" + "{" * 50000 + "1" + "}" * 49999  # unterminated deep nesting
    t = time.monotonic()
    assert last_boxed(big) is None
    assert normalize_answer("1" * 200000)
    assert time.monotonic() - t < 5
