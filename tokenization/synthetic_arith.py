"""A synthetic multi-step arithmetic task a tiny model can learn on a CPU in minutes.

    python -m tokenization.synthetic_arith --out runs/demo/data/arith [--seed 0]

It mirrors the OctoThinker data split in miniature:

``arith_web.jsonl.gz``       "web" text: documents that *state facts* (``17 + 25 = 42``, "the sum of
                              17 and 25 is 42", small tables), never a worked multi-step problem and
                              never a ``\\boxed{}`` answer -- what the stable stage sees;
``arith_qa_long.jsonl.gz``   QA with a long chain of thought (every step spelled out, digit by digit
                              for the multiplications), rendered by the decay_long template;
``arith_qa_short.jsonl.gz``  QA with a short chain of thought (one equation per step);
``arith_rl.jsonl.gz``        RL prompts with gold answers (question/answer), disjoint from the QA data;
``arith_heldout.jsonl``      held-out problems for validation and evaluation (question/answer),
                              disjoint from everything above.

A problem chains 1-2 operations (``--max-ops``) on small integers left to right, written with parentheses so
the order is explicit: ``Compute (17 + 5) * 3.`` Answers are integers (possibly negative).
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
FILES = ("arith_web.jsonl.gz", "arith_qa_long.jsonl.gz", "arith_qa_short.jsonl.gz", "arith_rl.jsonl.gz",
         "arith_heldout.jsonl")


def _apply(a: int, op: str, b: int) -> int:
    return a + b if op == "+" else a - b if op == "-" else a * b


def _operand(rng: random.Random, op: str) -> int:
    # Small operands keep the facts a small table (what a ~2M-parameter model learns in minutes);
    # multipliers stay single-digit so a product is short enough to work out place by place.
    return rng.randint(2, 5) if op == "*" else rng.randint(1, 9)


def make_problem(rng: random.Random, max_ops: int = 2) -> tuple[int, list[tuple[str, int]]]:
    """A start value (1-20) and a list of (op, operand) applied left to right. Multiplication only
    applies to values under 20 in magnitude, so every intermediate stays below 100."""
    n_ops = rng.randint(1, max_ops)
    value = start = rng.randint(1, 20)
    steps = []
    for _ in range(n_ops):
        op = rng.choice(OPS if abs(value) < 20 else OPS[:2])
        b = _operand(rng, op)
        steps.append((op, b))
        value = _apply(value, op, b)
    return start, steps


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
    value, chain = evaluate(start, steps)
    lines = ["We work from the innermost parentheses outwards, one operation at a time."]
    names = ("First", "Next", "Then")
    for i, (a, op, b, res) in enumerate(chain):
        word = names[min(i, len(names) - 1)]
        if op == "*":
            lines.append(f"{word}, multiply {a} by {b}: {_multiply_long(a, b)}")
        elif op == "+":
            lines.append(f"{word}, add {b} to {a}: {a} + {b} = {res}.")
        else:
            lines.append(f"{word}, subtract {b} from {a}: {a} - {b} = {res}.")
    lines.append(f"So the value of the expression is {value}.")
    return "\n".join(lines)


def solution_short(start: int, steps: list[tuple[str, int]]) -> str:
    value, chain = evaluate(start, steps)
    return " ".join(f"{a} {op} {b} = {res}." for a, op, b, res in chain)


def fact_document(rng: random.Random, n_facts: int = 12) -> str:
    """Web-style text stating single-operation facts in varied phrasings (no multi-step problems)."""
    out = []
    for _ in range(n_facts):
        op = rng.choice(OPS)
        a = rng.randint(-20, 99)
        b = _operand(rng, op)
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


def _problems(rng: random.Random, count: int, seen: set[str], max_ops: int) -> Iterable[tuple[str, int, str, str]]:
    made = 0
    while made < count:
        start, steps = make_problem(rng, max_ops)
        q = question(start, steps)
        if q in seen:
            continue
        seen.add(q)
        made += 1
        value, _ = evaluate(start, steps)
        yield q, value, solution_long(start, steps), solution_short(start, steps)


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


def write_task(out: str, seed: int = 0, web_docs: int = 4000, qa: int = 4000, rl: int = 1000, heldout: int = 200,
               max_ops: int = 2) -> dict[str, str]:
    """Write the task files under ``out``; returns {name: path}. Held-out problems are drawn first so
    no training split can contain them."""
    os.makedirs(out, exist_ok=True)
    rng = random.Random(seed)
    seen: set[str] = set()
    heldout_rows = [{"question": q, "answer": str(v)} for q, v, _, _ in _problems(rng, heldout, seen, max_ops)]
    rl_rows = [{"question": q, "answer": str(v)} for q, v, _, _ in _problems(rng, rl, seen, max_ops)]
    qa_rows = list(_problems(rng, qa, seen, max_ops))
    paths = {name.split(".")[0]: os.path.join(out, name) for name in FILES}
    _write_jsonl(paths["arith_web"], ({"text": fact_document(rng)} for _ in range(web_docs)))
    _write_jsonl(paths["arith_qa_long"], ({"question": q, "answer": lg, "final_answer": str(v)}
                                          for q, v, lg, _ in qa_rows))
    _write_jsonl(paths["arith_qa_short"], ({"question": q, "answer": sh, "final_answer": str(v)}
                                           for q, v, _, sh in qa_rows))
    _write_jsonl(paths["arith_rl"], rl_rows)
    _write_jsonl(paths["arith_heldout"], heldout_rows)
    return paths


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tokenization.synthetic_arith", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--web-docs", type=int, default=4000)
    p.add_argument("--qa", type=int, default=4000, help="worked problems (each rendered long and short)")
    p.add_argument("--rl", type=int, default=1000, help="RL prompts")
    p.add_argument("--heldout", type=int, default=200, help="held-out problems")
    p.add_argument("--max-ops", type=int, default=2, help="operations per problem (1..max)")
    args = p.parse_args(argv)
    if args.max_ops < 1:
        p.error("--max-ops must be >= 1")
    for name, path in write_task(args.out, args.seed, args.web_docs, args.qa, args.rl, args.heldout,
                                 args.max_ops).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
