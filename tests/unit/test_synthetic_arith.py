"""The demo's synthetic arithmetic task: correct answers, disjoint splits, reproducible bytes."""

from __future__ import annotations

import gzip
import json
import random

from tokenization import synthetic_arith as sa
from megatron_octo.eval.answer import extract_answer


def _rows(path):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_solutions_agree_with_python_arithmetic():
    rng = random.Random(3)
    for _ in range(500):
        start, steps = sa.make_problem(rng, max_ops=3)
        value, chain = sa.evaluate(start, steps)
        expr = sa.expression(start, steps)
        assert eval(expr) == value  # test-only: the expression is our own generated text
        short = sa.solution_short(start, steps)
        assert short.endswith(f"= {value}.") and short.count("=") == len(steps)
        long = sa.solution_long(start, steps)
        assert long.endswith(f"is {value}.")
        for a, op, b, res in chain:
            assert f"{a} {op} {b} = " in long and f"= {res}." in long  # every step is stated in full


def test_multiplication_is_worked_place_by_place():
    assert sa._multiply_long(13, 4) == "10 * 4 = 40 and 3 * 4 = 12, so 13 * 4 = 40 + 12 = 52."
    assert sa._multiply_long(-13, 4).endswith("and -13 * 4 = -52.")
    assert sa._multiply_long(7, 3) == "7 * 3 = 21."


def test_write_task_splits_are_disjoint_and_reproducible(tmp_path):
    a = sa.write_task(str(tmp_path / "a"), seed=5, web_docs=50, qa=300, rl=100, heldout=50)
    b = sa.write_task(str(tmp_path / "b"), seed=5, web_docs=50, qa=300, rl=100, heldout=50)
    for name in a:
        with open(a[name], "rb") as fa, open(b[name], "rb") as fb:
            assert fa.read() == fb.read(), name
    held = {r["question"] for r in _rows(a["arith_heldout"])}
    rl = {r["question"] for r in _rows(a["arith_rl"])}
    qa = _rows(a["arith_qa_long"])
    assert len(held) == 50 and len(rl) == 100 and len(qa) == 300
    assert not held & rl and not held & {r["question"] for r in qa} and not rl & {r["question"] for r in qa}
    for r in _rows(a["arith_heldout"]):
        assert str(eval(r["question"][len("Compute "):-1])) == r["answer"]
    # "web" documents state facts only: no worked problems, no boxed answers
    for r in _rows(a["arith_web"]):
        assert "Compute" not in r["text"] and "\\boxed" not in r["text"]


def test_rendered_qa_ends_in_a_gradable_boxed_answer(tmp_path):
    from tokenization.templates import render

    paths = sa.write_task(str(tmp_path), seed=1, web_docs=1, qa=20, rl=1, heldout=1)
    for r in _rows(paths["arith_qa_short"]):
        text = render("short_cot", r["question"], r["answer"], r["final_answer"])
        assert extract_answer(text, "boxed") == r["final_answer"]
