"""QA renderers: exact layouts of the decay-branch text (tokenization/templates.py)."""

import pytest

from tokenization.templates import TEMPLATES, TemplateError, canonical_name, render

pytestmark = pytest.mark.timeout(30)

Q = "  What is $2+3$?\n"
A = "We add: $2+3=5$.\n\n"


def test_long_cot_layout_with_final_answer():
    assert render("long_cot", Q, A, "5") == (
        "User: What is $2+3$?\n"
        "Please reason step by step, and put your final answer within \\boxed{}.\n"
        "Assistant: <think>\nWe add: $2+3=5$.\n</think>\n"
        "The final answer is $\\boxed{5}$."
    )


def test_long_cot_without_final_answer_ends_with_think_close():
    text = render("long_cot", Q, A)
    assert text.endswith("We add: $2+3=5$.\n</think>")
    assert "final answer is" not in text


def test_short_cot_layout():
    assert render("short_cot", Q, A, " 5 ") == (
        "Question: What is $2+3$?\nAnswer: We add: $2+3=5$.\nThe final answer is $\\boxed{5}$."
    )


def test_plain_layout():
    assert render("plain", Q, A) == "What is $2+3$?\n\nWe add: $2+3=5$."
    assert render("plain", Q, A, "5") == "What is $2+3$?\n\nWe add: $2+3=5$.\nThe final answer is $\\boxed{5}$."


def test_simple_layout_is_the_rl_simple_prompt_followed_by_the_solution():
    from megatron_octo.eval.prompts import rl_prompt

    text = render("simple", Q, A, "5")
    assert text == "Question:\nWhat is $2+3$?\nAnswer:\nWe add: $2+3=5$.\nThe final answer is $\\boxed{5}$."
    prompt = rl_prompt("What is $2+3$?", "simple")
    assert text.startswith(prompt) and text[len(prompt):].startswith("We add")


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_no_second_box_when_answer_already_boxed(name):
    text = render(name, "Find x.", "So $x=\\boxed{4}$.", "4")
    assert text.count("\\boxed{4}") == 1
    assert "final answer is" not in text


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_empty_final_answer_adds_nothing(name):
    assert render(name, "q", "a", "  ") == render(name, "q", "a")


def test_inner_whitespace_kept_verbatim():
    ans = "line 1\n\n  indented  line\n"
    assert "line 1\n\n  indented  line" in render("short_cot", "q", ans)


@pytest.mark.parametrize("alias,canon", [("long-CoT", "long_cot"), ("Short_CoT", "short_cot"),
                                         (" plain ", "plain"), ("LONG-COT", "long_cot")])
def test_aliases(alias, canon):
    assert canonical_name(alias) == canon


def test_unknown_template_names_the_choices():
    with pytest.raises(TemplateError, match=r"unknown QA template 'medium_cot'.*long_cot, plain, short_cot"):
        render("medium_cot", "q", "a")


def test_non_string_fields_rejected():
    with pytest.raises(TemplateError, match="question and answer must be strings"):
        render("plain", "q", 5)
    with pytest.raises(TemplateError, match="final_answer must be a string"):
        render("plain", "q", "a", 5)


def test_rendering_is_deterministic():
    assert render("long_cot", Q, A, "5") == render("long_cot", Q, A, "5")
