"""Prompt protocols: few-shot prompts for base models, zero-shot templates for RL models.

Every string here is copied from the harness that produced the OctoThinker numbers, so that
results stay comparable; tests pin them byte for byte (tests/unit/test_prompts.py).

Sources (read from public repositories):
* GSM8K 8-shot "Q:/A:" -- the 8 chain-of-thought exemplars of Wei et al. (2022), as in
  OctoThinker ``eval/few_shot_prompts/cot_gsm_8_shot.py`` (the DeepSeekMath harness; identical
  text to lm-evaluation-harness ``gsm8k-cot``). Prompt = exemplars + "\\n\\nQ: {q}\\nA:".
* Minerva 4-shot "Problem:/Solution:" -- the 4 exemplars of Lewkowycz et al. (2022), as in
  OctoThinker ``eval/few_shot_prompts/cot_minerva_math_4_shot.py``. Kept exactly, including
  the stray "}" after the first problem (present in every public copy) and the blank-line
  quirk of that file: the exemplar block ends with a newline and the template adds
  "\\n\\nProblem:", so three newlines precede the test problem. lm-evaluation-harness
  ``minerva_math`` differs in whitespace only (line breaks inside two solutions).
* AMC 0-shot -- OctoThinker ``cot_amc_0_shot.py``: "Q: {q}\\nA: " (the trailing space is in
  the original: that template strips only leading newlines).
* RL "orz_base" -- ``template_type=orz_base`` of OctoThinker's verl fork
  (``verl/utils/dataset/rl_dataset.py``, selected by ``data.template_type=orz_base`` in
  ``rl/scripts/llama_3b_long.sh``): the Open-Reasoner-Zero style preamble, "\\n", the question,
  "\\nAssistant:".
* RL "simple" -- ``cpt_base`` of the same file: "Question:\\n{q}\\nAnswer:\\n". The paper's
  "simple template" ablation is this plain Question/Answer format (the RL stop strings
  "Question:"/"Answer:" exist for it).

Stop strings: the few-shot harness stops at "\\nQ:" (GSM8K, AMC) and "\\nProblem:" (Minerva)
plus the tokenizer's EOS; the RL rollouts stop at "User:", "Assistant:", "Question:",
"Answer:" plus EOS. The runner adds EOS itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from tokenization.templates import render_simple

__all__ = [
    "AMC_0SHOT_STOP",
    "GSM8K_8SHOT_EXEMPLARS",
    "MINERVA_4SHOT_EXEMPLARS",
    "ORZ_BASE_TEMPLATE",
    "PROTOCOLS",
    "Protocol",
    "RL_STOP",
    "SIMPLE_TEMPLATE",
    "amc_0shot_prompt",
    "build_prompt",
    "get_protocol",
    "gsm8k_8shot_prompt",
    "minerva_4shot_prompt",
    "rl_prompt",
    "rl_stop",
]

GSM8K_8SHOT_EXEMPLARS = """Q: There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they are done, there will be 21 trees. How many trees did the grove workers plant today?
A: There are 15 trees originally. Then there were 21 trees after some more were planted. So there must have been 21 - 15 = 6. The answer is 6.

Q: If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?
A: There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. The answer is 5.

Q: Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they have left in total?
A: Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = 74. After eating 35, they had 74 - 35 = 39. The answer is 39.

Q: Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How many lollipops did Jason give to Denny?
A: Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave Denny 20 - 12 = 8. The answer is 8.

Q: Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How many toys does he have now?
A: Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 more toys. 5 + 4 = 9. The answer is 9.

Q: There were nine computers in the server room. Five more computers were installed each day, from monday to thursday. How many computers are now in the server room?
A: There were originally 9 computers. For each of 4 days, 5 more computers were added. So 5 * 4 = 20 computers were added. 9 + 20 is 29. The answer is 29.

Q: Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 more. How many golf balls did he have at the end of wednesday?
A: Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35. After losing 2 more, he had 35 - 2 = 33 golf balls. The answer is 33.

Q: Olivia has $23. She bought five bagels for $3 each. How much money does she have left?
A: Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she has 23 - 15 dollars left. 23 - 15 is 8. The answer is 8."""

MINERVA_4SHOT_EXEMPLARS = r"""Problem:
Find the domain of the expression $\frac{\sqrt{x-2}}{\sqrt{5-x}}$.}

Solution:
The expressions inside each square root must be non-negative.
Therefore, $x-2 \ge 0$, so $x\ge2$, and $5 - x \ge 0$, so $x \le 5$.
Also, the denominator cannot be equal to zero, so $5-x>0$, which gives $x<5$.
Therefore, the domain of the expression is $\boxed{[2,5)}$.
Final Answer: The final answer is $[2,5)$. I hope it is correct.

Problem:
If $\det \mathbf{A} = 2$ and $\det \mathbf{B} = 12,$ then find $\det (\mathbf{A} \mathbf{B}).$

Solution:
We have that $\det (\mathbf{A} \mathbf{B}) = (\det \mathbf{A})(\det \mathbf{B}) = (2)(12) = \boxed{24}.$
Final Answer: The final answer is $24$. I hope it is correct.

Problem:
Terrell usually lifts two 20-pound weights 12 times. If he uses two 15-pound weights instead, how many times must Terrell lift them in order to lift the same total weight?

Solution:
If Terrell lifts two 20-pound weights 12 times, he lifts a total of $2\cdot 12\cdot20=480$ pounds of weight.  If he lifts two 15-pound weights instead for $n$ times, he will lift a total of $2\cdot15\cdot n=30n$ pounds of weight.  Equating this to 480 pounds, we can solve for $n$: \begin{align*}
30n&=480\\
\Rightarrow\qquad n&=480/30=\boxed{16}
\end{align*}
Final Answer: The final answer is $16$. I hope it is correct.

Problem:
If the system of equations

\begin{align*}
6x-4y&=a,\\
6y-9x &=b.
\end{align*}has a solution $(x, y)$ where $x$ and $y$ are both nonzero, find $\frac{a}{b},$ assuming $b$ is nonzero.

Solution:
If we multiply the first equation by $-\frac{3}{2}$, we obtain

$$6y-9x=-\frac{3}{2}a.$$Since we also know that $6y-9x=b$, we have

$$-\frac{3}{2}a=b\Rightarrow\frac{a}{b}=\boxed{-\frac{2}{3}}.$$
Final Answer: The final answer is $-\frac{2}{3}$. I hope it is correct.
"""

ORZ_BASE_TEMPLATE = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with "
    "the answer. User: You must put your answer inside \\boxed{} and Your final answer will be extracted "
    "automatically by the \\boxed{} tag.\n[PROMPT]\nAssistant:"
)
SIMPLE_TEMPLATE = "Question:\n[PROMPT]\nAnswer:\n"
# "few_shot": the simple template after four worked examples (the first four GSM8K chain-of-thought
# exemplars above, each ending in a boxed answer), so a base model that has never seen the RL format
# can still produce a gradable answer; generation stops at the next "Question:".
FEW_SHOT_EXEMPLARS = "".join(
    f"Question:\n{q}\nAnswer:\n{a} The answer is \\boxed{{{n}}}.\n\n" for q, a, n in (
        ("There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they are done, "
         "there will be 21 trees. How many trees did the grove workers plant today?",
         "There are 15 trees originally. Then there were 21 trees after some more were planted. So there must have "
         "been 21 - 15 = 6.", "6"),
        ("If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?",
         "There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5.", "5"),
        ("Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they have left in total?",
         "Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = 74. After eating 35, "
         "they had 74 - 35 = 39.", "39"),
        ("Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How many lollipops did "
         "Jason give to Denny?",
         "Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave Denny 20 - 12 = 8.",
         "8"),
    ))
FEW_SHOT_TEMPLATE = FEW_SHOT_EXEMPLARS + SIMPLE_TEMPLATE

RL_STOP = ("User:", "Assistant:", "Question:", "Answer:")
# Stop strings per RL template (the runner and the RL rollouts add EOS).
RL_TEMPLATE_STOP = {"orz_base": RL_STOP, "simple": RL_STOP, "few_shot": RL_STOP}
RL_TEMPLATES = tuple(RL_TEMPLATE_STOP)
GSM8K_8SHOT_STOP = ("\nQ:",)
MINERVA_4SHOT_STOP = ("\nProblem:",)
AMC_0SHOT_STOP = ("\nQ:",)


def gsm8k_8shot_prompt(question: str) -> str:
    # Original: f"{few_shot}\n\nQ: {q}\nA: {output}".rstrip() with an empty output.
    return f"{GSM8K_8SHOT_EXEMPLARS}\n\nQ: {question}\nA: ".rstrip()


def minerva_4shot_prompt(problem: str) -> str:
    # Original: f"{few_shot}\n\nProblem:\n{q}\n\nSolution:\n{output}".rstrip() with an empty output.
    return f"{MINERVA_4SHOT_EXEMPLARS}\n\nProblem:\n{problem}\n\nSolution:\n".rstrip()


def amc_0shot_prompt(question: str) -> str:
    # Original: f"{''}\n\nQ: {q}\nA: {output}".lstrip("\n"): only leading newlines go.
    return f"\n\nQ: {question}\nA: ".lstrip("\n")


def rl_prompt(question: str, template: str = "orz_base") -> str:
    """RL prompt (also used to evaluate RL models). ``template``: orz_base | simple | few_shot."""
    if template == "orz_base":
        return ORZ_BASE_TEMPLATE.replace("[PROMPT]", question)
    if template == "simple":
        return SIMPLE_TEMPLATE.replace("[PROMPT]", question)
    if template == "few_shot":
        return FEW_SHOT_TEMPLATE.replace("[PROMPT]", question)
    raise ValueError(f"unknown RL template {template!r}; expected one of {', '.join(RL_TEMPLATES)}")


def rl_stop(template: str) -> tuple[str, ...]:
    return RL_TEMPLATE_STOP[template]


@dataclass(frozen=True)
class Protocol:
    """How to prompt a model and read its answer.

    ``answer_style`` is the :func:`megatron_octo.eval.answer.extract_answer` style for the
    response; ``stop`` excludes EOS (the runner adds the tokenizer's).
    """

    name: str
    build: Callable[[str], str]
    stop: tuple[str, ...]
    answer_style: str
    max_new_tokens: int = 1024
    greedy: bool = True


PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol("gsm8k_8shot", gsm8k_8shot_prompt, GSM8K_8SHOT_STOP, "gsm8k"),
        Protocol("minerva_4shot", minerva_4shot_prompt, MINERVA_4SHOT_STOP, "minerva"),
        Protocol("amc_0shot", amc_0shot_prompt, AMC_0SHOT_STOP, "gsm8k"),
        # RL models are evaluated with their training template and the same boxed reward
        # extraction; generation length is the run's max response length, set by the runner.
        Protocol("orz_base", lambda q: rl_prompt(q, "orz_base"), RL_STOP, "boxed", max_new_tokens=8192),
        Protocol("simple", lambda q: rl_prompt(q, "simple"), RL_STOP, "boxed", max_new_tokens=8192),
        Protocol("few_shot", lambda q: rl_prompt(q, "few_shot"), RL_STOP, "boxed", max_new_tokens=8192),
    )
}


def exemplar_protocol(exemplars: Sequence[tuple[str, str, str]], template: str = "simple") -> Protocol:
    """A few-shot probe of a base model in an RL template's layout: each exemplar (question, worked
    solution, final answer) as the mid-training QA renders it (``render_simple``: the solution, then
    "The final answer is $\\boxed{..}$."), a blank line after each, then the question as ``template`` asks it.

    The paper evaluates mid-trained base models few-shot (Minerva/GSM8K exemplars); a model of ~1M
    parameters cannot read those, so the demo's probe takes its exemplars from its own QA split. Graded
    like ``template`` (the name ``<template>+<k>shot``: :func:`rl_template_of`).
    """
    if template != "simple":
        raise ValueError(f"exemplar probes are rendered in the 'simple' layout only, got template {template!r}")
    if not exemplars:
        raise ValueError("an exemplar probe needs at least one exemplar")
    shots = "".join(render_simple(q, a, f) + "\n\n" for q, a, f in exemplars)
    return Protocol(f"{template}+{len(exemplars)}shot", lambda q: shots + rl_prompt(q, template), RL_STOP, "boxed")


def rl_template_of(protocol: str) -> str | None:
    """The RL template a protocol name prompts with (``simple+4shot`` -> ``simple``), or None."""
    base = protocol.split("+", 1)[0]
    return base if base in RL_TEMPLATES else None


def get_protocol(name: str) -> Protocol:
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"unknown protocol {name!r}; known: {sorted(PROTOCOLS)}") from None


def build_prompt(protocol: str, question: str) -> str:
    return get_protocol(protocol).build(question)
