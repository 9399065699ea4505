"""QA renderers: the exact text the model sees for question/answer records in mid-training.

The decay branches of the OctoThinker recipe train on math QA data next to web text. A QA record
(question, answer, optional final answer) becomes one plain-text document here; the document is
then tokenized like any web document (EOD appended by the preprocessor, no chat tokens).

Four named templates (``--template`` of ``tokenization.preprocess``):

``long_cot``  (decay_long: long chain-of-thought QA, e.g. OpenR1-Math / AM-distilled traces)::

    User: {question}
    Please reason step by step, and put your final answer within \\boxed{}.
    Assistant: <think>
    {answer}
    </think>
    The final answer is $\\boxed{final_answer}$.

``short_cot`` (decay_short: short CoT QA, e.g. MegaMath-QA / OpenMathInstruct-2 / GSM8K)::

    Question: {question}
    Answer: {answer}
    The final answer is $\\boxed{final_answer}$.

``simple`` (the layout of the RL stage's ``simple`` prompt, ``megatron_octo.eval.prompts.SIMPLE_TEMPLATE``,
with the solution after it; ``make demo`` renders its synthetic QA this way so that a model of ~1M
parameters, which cannot generalise across layouts, is asked at RL time exactly what it was shown)::

    Question:
    {question}
    Answer:
    {answer}
    The final answer is $\\boxed{final_answer}$.

``plain`` (no markup; the question and the answer separated by a blank line)::

    {question}

    {answer}

The ``User:`` / ``Assistant:`` and ``Question:`` / ``Answer:`` markers are the same strings the RL
stage uses as stop strings and the few-shot evaluation uses as prompts, so the mid-trained model
has seen the turn structure it is later asked to follow.

The "final answer" line is added only when a final answer is given *and* the answer does not
already contain a ``\\boxed{`` (MATH solutions box their result; GSM8K's do not). In ``long_cot``
the ``</think>`` line is always written; the final-answer line after it only under the same rule.

Rendering is a pure function of its inputs (no randomness), so preprocessing stays byte-for-byte
reproducible. Leading/trailing whitespace of question and answer is stripped; inner whitespace is
kept verbatim.
"""

from __future__ import annotations

from typing import Callable, Optional

__all__ = ["TEMPLATES", "TemplateError", "canonical_name", "render", "get_template"]

LONG_COT_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


class TemplateError(ValueError):
    """Unknown template name or unusable QA fields."""


def _final_line(answer: str, final_answer: Optional[str]) -> str:
    if final_answer is None:
        return ""
    final_answer = final_answer.strip()
    if not final_answer or "\\boxed{" in answer:
        return ""
    return f"The final answer is $\\boxed{{{final_answer}}}$."


def render_long_cot(question: str, answer: str, final_answer: Optional[str] = None) -> str:
    q, a = question.strip(), answer.strip()
    text = f"User: {q}\n{LONG_COT_INSTRUCTION}\nAssistant: <think>\n{a}\n</think>"
    tail = _final_line(a, final_answer)
    return f"{text}\n{tail}" if tail else text


def render_short_cot(question: str, answer: str, final_answer: Optional[str] = None) -> str:
    q, a = question.strip(), answer.strip()
    text = f"Question: {q}\nAnswer: {a}"
    tail = _final_line(a, final_answer)
    return f"{text}\n{tail}" if tail else text


def render_simple(question: str, answer: str, final_answer: Optional[str] = None) -> str:
    q, a = question.strip(), answer.strip()
    text = f"Question:\n{q}\nAnswer:\n{a}"
    tail = _final_line(a, final_answer)
    return f"{text}\n{tail}" if tail else text


def render_plain(question: str, answer: str, final_answer: Optional[str] = None) -> str:
    q, a = question.strip(), answer.strip()
    text = f"{q}\n\n{a}"
    tail = _final_line(a, final_answer)
    return f"{text}\n{tail}" if tail else text


TEMPLATES: dict[str, Callable[..., str]] = {
    "long_cot": render_long_cot,
    "short_cot": render_short_cot,
    "simple": render_simple,
    "plain": render_plain,
}


def canonical_name(name: str) -> str:
    """``long-CoT``, ``Long_CoT`` and ``long_cot`` all name the same template."""
    key = name.strip().lower().replace("-", "_")
    if key not in TEMPLATES:
        raise TemplateError(
            f"unknown QA template {name!r}; choose one of: {', '.join(sorted(TEMPLATES))}"
        )
    return key


def get_template(name: str) -> Callable[..., str]:
    return TEMPLATES[canonical_name(name)]


def render(name: str, question: str, answer: str, final_answer: Optional[str] = None) -> str:
    """Render one QA record with the named template (see the module docstring for the layouts)."""
    if not isinstance(question, str) or not isinstance(answer, str):
        raise TemplateError("question and answer must be strings")
    if final_answer is not None and not isinstance(final_answer, str):
        raise TemplateError("final_answer must be a string or None")
    return get_template(name)(question, answer, final_answer)
