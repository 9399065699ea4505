"""A synthetic multi-step arithmetic task a tiny model can learn on a CPU in minutes.

    python -m tokenization.synthetic_arith --out runs/demo/data/arith [--seed 0]

It mirrors the OctoThinker data split in miniature:

``arith_web.jsonl.gz``       "web" text: documents that *state facts* (``17 + 5 = 22``, "the sum of
                              17 and 5 is 22") and, as math web pages do, mention worked examples in
                              prose ("To work out (3 - 7) + 8, first 3 - 7 = -4, then -4 + 8 = 4.
                              It gives 4."), but never in a question/answer layout and never with a
                              ``\\boxed{}`` answer -- what the stable stage sees;
``arith_qa_long.jsonl.gz``   QA with a long chain of thought (every step spelled out, digit by digit
                              for the multiplications);
``arith_qa_short.jsonl.gz``  QA with a short chain of thought (one equation per step);
``arith_rl.jsonl.gz``        RL prompts with gold answers (question/answer), disjoint from the QA data;
``arith_heldout.jsonl``      held-out problems for validation and evaluation (question/answer),
                              disjoint from everything above;
``arith_shots.jsonl``        worked short solutions of a few QA problems: the exemplars of few-shot
                              probes (never a terse answer, see ``--terse-share``).

A problem applies ``--ops`` operations (default 2) left to right to a single-digit start, written with
parentheses so the order is explicit: ``Compute (7 + 5) * 3.`` Every question has the same shape, so
the numbers sit at the same token offsets in every prompt and can be copied by position. (Measured
with a ~0.9M-parameter model trained on short-CoT QA alone for 5 CPU-minutes: 48% held-out accuracy
with this shape, 4% with questions of 1-2 operations on starts up to 20.) Answers are integers
(possibly negative).
Everything is a pure function of the seed, so runs are reproducible. The numbers the demo reports
for this task are labelled synthetic: they show the mechanics (mid-training on worked solutions
makes RL work), not math ability.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import sys
from typing import Iterable, Optional

OPS = ("+", "-", "*")
# Values the problems' intermediate results reach with two operations (the first operand of every
# step): the web documents state facts over this range.
FACT_RANGE = (-9, 45)
FILES = ("arith_web.jsonl.gz", "arith_qa_long.jsonl.gz", "arith_qa_short.jsonl.gz", "arith_rl.jsonl.gz",
         "arith_heldout.jsonl", "arith_shots.jsonl")
SHOTS = 8  # worked exemplars for few-shot probes (arith_shots.jsonl)


def _apply(a: int, op: str, b: int) -> int:
    return a + b if op == "+" else a - b if op == "-" else a * b


def _operands(op: str, value: int) -> range:
    """Operands allowed after ``value``: 1-9 for + and -, 2-5 for * while the value is under 20 in
    magnitude (so every intermediate stays within two digits and a product is short to work out)."""
    if op == "*":
        return range(2, 6) if abs(value) < 20 else range(0)
    return range(1, 10)


def all_problems(ops: int = 2) -> list[tuple[int, list[tuple[str, int]]]]:
    """Every problem of the task, in a fixed order: (start 1-9, [(op, operand)] * ops)."""
    problems = [(start, []) for start in range(1, 10)]
    for _ in range(ops):
        grown = []
        for start, steps in problems:
            value, _ = evaluate(start, steps)
            grown += [(start, [*steps, (op, b)]) for op in OPS for b in _operands(op, value)]
        problems = grown
    return problems


def expression(start: int, steps: list[tuple[str, int]]) -> str:
    text = str(start)
    for i, (op, b) in enumerate(steps):
        text = f"({text} {op} {b})" if i < len(steps) - 1 else f"{text} {op} {b}"
    return text


def question(start: int, steps: list[tuple[str, int]]) -> str:
    return f"Compute {expression(start, steps)}."


def evaluate(start: int, steps: list[tuple[str, int]]) -> tuple[int, list[tuple[int, str, int, int]]]:
    """Final value and the (a, op, b, result) chain."""
    chain, value = [], start
    for op, b in steps:
        res = _apply(value, op, b)
        chain.append((value, op, b, res))
        value = res
    return value, chain


def _multiply_long(a: int, b: int) -> str:
    """A worked multiplication by a single digit ``b``, tens and ones separately."""
    m = abs(a)
    if m < 10:
        return f"{a} * {b} = {a * b}."
    tens, ones = divmod(m, 10)
    worked = (f"{tens}0 * {b} = {tens * 10 * b} and {ones} * {b} = {ones * b}, "
              f"so {m} * {b} = {tens * 10 * b} + {ones * b} = {m * b}")
    return worked + ("." if a >= 0 else f", and {a} * {b} = {a * b}.")


def solution_long(start: int, steps: list[tuple[str, int]]) -> str:
    """A long chain of thought: the short solution's steps, then a check of every step worked backwards
    (long-CoT data such as OpenR1-Math is long mostly through verification), multiplications checked
    place by place, then the value in words. The steps open the response exactly as a short solution
    does: a ~1M-parameter model copies the question's numbers by position, and every variant that put
    words before or between the steps ("subtract 7 from 3" after a preamble, the expression restated,
    a check after each step, "First, ... Next, ...") left it at 6.5-7.5% held-out accuracy after the
    decay, against 58% for the short solutions; with the model copying by content (varied web layouts),
    a plan before the steps, a forward re-check or a reflection in words between the steps and the value
    still did worse than this layout (docs/log.md, 2026-12-07)."""
    value, chain = evaluate(start, steps)
    inverse = {"+": "-", "-": "+"}
    work = solution_short(start, steps)
    checks = []
    for a, op, b, res in reversed(chain):
        if op == "*":
            checks.append(f"by place {_multiply_long(a, b)[:-1]}" if abs(a) >= 10 else f"{b} * {a} = {res}")
        else:
            checks.append(f"{res} {inverse[op]} {b} = {a}")
    return "\n".join([work, "To check, we work back: " + ", and ".join(checks) + ".",
                      f"So the value of the expression is {value}."])


def solution_short(start: int, steps: list[tuple[str, int]]) -> str:
    value, chain = evaluate(start, steps)
    return " ".join(f"{a} {op} {b} = {res}." for a, op, b, res in chain)


# How web text states a worked example: the expression, then its steps as equations, then the value in
# prose; never a question/answer layout, never a ``\\boxed{}``. The words between the expression and the
# first step vary from none to a line break and five words: a ~1M-parameter model that only ever saw one
# gap learned to copy the question's numbers by their distance, which the QA layout changes (measured,
# docs/log.md: 152 of 200 long-branch errors were a miscopied first step). Varied gaps make it copy by
# content, the skill that carries over to any layout.
WEB_STYLES = (
    "To work out {expr}: {eqs} It gives {value}.",
    "For {expr} we get {eqs} So {expr} equals {value}.",
    "{expr} is done in two steps. {eqs} The result is {value}.",
    "We evaluate {expr}.\n{eqs}\nThis is {value}.",
    "Take {expr}, so {eqs} That makes {value}.",
    "Working {expr} out step by step, we find {eqs} Hence {value}.",
)


def worked_example(start: int, steps: list[tuple[str, int]], style: int) -> str:
    """A multi-step result as web text states it in passing (``WEB_STYLES[style]``): the steps written
    as the short solutions write them (``3 - 7 = -4. -4 + 8 = 4.``), before the value (an answer-first
    style, or steps joined by "first ... then", left the decay branches at 7% held-out accuracy)."""
    value, chain = evaluate(start, steps)
    eqs = " ".join(f"{a} {op} {b} = {res}." for a, op, b, res in chain)
    return WEB_STYLES[style].format(expr=expression(start, steps), eqs=eqs, value=value)


def fact_document(rng: random.Random, n_facts: int = 12,
                  examples: Optional[list[tuple[int, list[tuple[str, int]]]]] = None,
                  example_share: float = 0.5) -> str:
    """Web-style text stating single-operation facts in varied phrasings and, with probability
    ``example_share`` per sentence, a worked multi-step example drawn from ``examples`` (the QA
    split's problems: never a held-out or RL one)."""
    out = []
    for _ in range(n_facts):
        if examples and rng.random() < example_share:
            start, steps = rng.choice(examples)
            out.append(worked_example(start, steps, rng.randrange(len(WEB_STYLES))))
            continue
        a = rng.randint(*FACT_RANGE)
        op = rng.choice(OPS if abs(a) < 20 else OPS[:2])
        b = rng.choice(_operands(op, a))
        r = _apply(a, op, b)
        style = rng.randrange(4)
        if style == 0:
            out.append(f"{a} {op} {b} = {r}.")
        elif style == 1:
            word = {"+": "sum of", "-": "difference of", "*": "product of"}[op]
            out.append(f"The {word} {a} and {b} is {r}.")
        elif style == 2:
            out.append(f"We know that {a} {op} {b} is {r}.")
        else:
            out.append(f"Note: {a} {op} {b} equals {r}.")
    return " ".join(out)


def _record(start: int, steps: list[tuple[str, int]]) -> tuple[str, int, str, str]:
    value, _ = evaluate(start, steps)
    return question(start, steps), value, solution_long(start, steps), solution_short(start, steps)


def _write_jsonl(path: str, records: Iterable[dict]) -> int:
    tmp = path + ".tmp"
    n = 0
    # mtime=0 keeps the gzip bytes a function of the content only.
    with (gzip.GzipFile(tmp, "wb", mtime=0) if path.endswith(".gz") else open(tmp, "wb")) as raw:
        for rec in records:
            raw.write((json.dumps(rec, ensure_ascii=False) + "\n").encode("utf-8"))
            n += 1
    os.replace(tmp, path)
    return n


# Share of the web documents' sentences that are worked examples (the rest state single facts). The
# stable stage is where the demo's model learns to copy the question's numbers and compute: with half the
# sentences worked examples, 640 stable steps left it at 3% of held-out expressions worked right in the web
# layout; with 90% and 960 steps, 24% (docs/log.md).
EXAMPLE_SHARE = 0.9
# Share of the QA problems whose answer states the value without worked steps, as many answers in real
# QA corpora do. A model cannot work these expressions out in one token, so after the decay it answers some
# prompts tersely (and mostly wrong) and others with steps; RL's reward tells the two apart, which is the
# paper's point: RL elicits the reasoning that mid-training put within the model's reach.
TERSE_SHARE = 0.0


def terse_answer(value: int) -> str:
    """A QA answer that states the value with no worked steps (the final line every solution ends with)."""
    return f"The final answer is $\\boxed{{{value}}}$."


def write_task(out: str, seed: int = 0, web_docs: int = 4000, qa: int = 2400, rl: int = 1000, heldout: int = 200,
               ops: int = 2, example_share: float = EXAMPLE_SHARE, terse_share: float = TERSE_SHARE) -> dict[str, str]:
    """Write the task files under ``out``; returns {name: path}. The problem space is shuffled once
    and cut into held-out, RL and QA problems, so the splits are disjoint by construction."""
    space = all_problems(ops)
    if heldout + rl + qa > len(space):
        raise ValueError(f"--heldout {heldout} + --rl {rl} + --qa {qa} = {heldout + rl + qa} problems, but the "
                         f"task with --ops {ops} has only {len(space)} distinct problems")
    os.makedirs(out, exist_ok=True)
    rng = random.Random(seed)
    rng.shuffle(space)
    chosen = space[:heldout + rl + qa]
    records = [_record(start, steps) for start, steps in chosen]
    heldout_rows = [{"question": q, "answer": str(v)} for q, v, _, _ in records[:heldout]]
    rl_rows = [{"question": q, "answer": str(v)} for q, v, _, _ in records[heldout:heldout + rl]]
    qa_rows = records[heldout + rl:]
    # The same problems are terse in the long and the short file; their own generator keeps the web text
    # independent of the share.
    terse_rng = random.Random(f"terse-{seed}")
    terse = [terse_rng.random() < terse_share for _ in qa_rows]
    shots = [{"question": q, "answer": sh, "final_answer": str(v)} for (q, v, _, sh), t in zip(qa_rows, terse)
             if not t][:SHOTS]
    qa_rows = [(q, v, terse_answer(v), terse_answer(v)) if t else (q, v, lg, sh)
               for (q, v, lg, sh), t in zip(qa_rows, terse)]
    paths = {name.split(".")[0]: os.path.join(out, name) for name in FILES}
    examples = chosen[heldout + rl:]
    _write_jsonl(paths["arith_web"], ({"text": fact_document(rng, examples=examples, example_share=example_share)}
                                      for _ in range(web_docs)))
    _write_jsonl(paths["arith_qa_long"], ({"question": q, "answer": lg, "final_answer": str(v)}
                                          for q, v, lg, _ in qa_rows))
    _write_jsonl(paths["arith_qa_short"], ({"question": q, "answer": sh, "final_answer": str(v)}
                                           for q, v, _, sh in qa_rows))
    _write_jsonl(paths["arith_rl"], rl_rows)
    _write_jsonl(paths["arith_shots"], shots)
    _write_jsonl(paths["arith_heldout"], heldout_rows)
    return paths


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tokenization.synthetic_arith", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--web-docs", type=int, default=4000)
    p.add_argument("--qa", type=int, default=2400, help="worked problems (each rendered long and short)")
    p.add_argument("--rl", type=int, default=1000, help="RL prompts")
    p.add_argument("--heldout", type=int, default=200, help="held-out problems")
    p.add_argument("--ops", type=int, default=2, help="operations per problem (1-3)")
    p.add_argument("--example-share", type=float, default=EXAMPLE_SHARE,
                   help="share of the web documents' sentences that are worked examples in prose (the rest state facts)")
    p.add_argument("--terse-share", type=float, default=TERSE_SHARE,
                   help="share of the QA problems answered with the value alone, no worked steps")
    args = p.parse_args(argv)
    if not 0.0 <= args.terse_share <= 1.0:
        p.error(f"--terse-share must be within [0, 1], got {args.terse_share}")
    if not 1 <= args.ops <= 3:
        p.error("--ops must be 1, 2 or 3")
    if not 0.0 <= args.example_share <= 1.0:
        p.error(f"--example-share must be within [0, 1], got {args.example_share}")
    try:
        paths = write_task(args.out, args.seed, args.web_docs, args.qa, args.rl, args.heldout, args.ops,
                           args.example_share, args.terse_share)
    except ValueError as e:
        p.error(str(e))
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
