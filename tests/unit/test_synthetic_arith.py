"""The demo's synthetic arithmetic task: correct answers, disjoint splits, reproducible bytes."""

from __future__ import annotations

import gzip
import json
import random
import re

from tokenization import synthetic_arith as sa
from megatron_octo.eval.answer import extract_answer


def _rows(path):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_solutions_agree_with_python_arithmetic():
    for ops in (1, 2, 3):
        problems = sa.all_problems(ops)
        assert len(problems) == len({sa.question(st, steps) for st, steps in problems})  # all distinct
        for start, steps in random.Random(ops).sample(problems, 150):
            assert 1 <= start <= 9 and len(steps) == ops
            value, chain = sa.evaluate(start, steps)
            expr = sa.expression(start, steps)
            assert eval(expr) == value  # test-only: the expression is our own generated text
            for a, op, b, res in chain:
                assert abs(a) < 20 or op != "*"  # products only of values under 20: two-digit intermediates
                assert (2 <= b <= 5) if op == "*" else (1 <= b <= 9)
            short = sa.solution_short(start, steps)
            assert short.endswith(f"= {value}.") and short.count("=") == len(steps)
            long = sa.solution_long(start, steps)
            assert long.endswith(f"is {value}.")
            for a, op, b, res in chain:
                assert f"{a} {op} {b} = " in long and f"= {res}." in long  # every step is stated in full


def test_questions_of_a_task_share_one_token_layout():
    """Single-digit operands: every question has the same length, so numbers sit at fixed offsets."""
    assert len({len(sa.question(st, steps)) for st, steps in sa.all_problems(2)}) == 1


def test_too_many_problems_requested_is_a_clear_error(tmp_path):
    import pytest

    with pytest.raises(ValueError, match="only 198 distinct problems"):
        sa.write_task(str(tmp_path), ops=1, qa=100, rl=100, heldout=10)
    assert not list(tmp_path.iterdir())  # nothing written


def test_cli_rejects_bad_sizes_with_a_message(tmp_path, capsys):
    import pytest

    for argv, message in ((["--ops", "1", "--qa", "500"], "only 198 distinct problems"),
                          (["--ops", "4"], "--ops must be 1, 2 or 3")):
        with pytest.raises(SystemExit) as exc:
            sa.main(["--out", str(tmp_path / "x"), *argv])
        assert exc.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


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
    # "web" documents state facts and worked examples in prose, never a QA layout or a boxed answer,
    # and their examples are QA-split problems only (never a held-out or RL one)
    qa_exprs = {r["question"][len("Compute "):-1] for r in qa}
    seen_examples = 0
    for r in _rows(a["arith_web"]):
        text = r["text"]
        assert "Compute" not in text and "Question" not in text and "\\boxed" not in text
        for expr in re.findall(r"\(\d \S \d\) \S \d", text):
            assert expr in qa_exprs, expr
            seen_examples += 1
    assert seen_examples > 0


def test_web_examples_vary_the_words_between_expression_and_steps(tmp_path):
    """Every layout occurs, and the gap before the first step takes as many forms as there are layouts
    (one fixed gap taught the model to copy by distance)."""
    paths = sa.write_task(str(tmp_path), seed=2, web_docs=200, qa=300, rl=10, heldout=10)
    gaps = set()
    for r in _rows(paths["arith_web"]):
        for m in re.finditer(r"\((\d) (\S) (\d)\) \S \d([^\d]*?)(\d) (\S) (\d) = ", r["text"]):
            assert m.group(5, 6, 7) == m.group(1, 2, 3)  # the first step restates the inner operation
            gaps.add(m.group(4))
    assert len(gaps) == len(sa.WEB_STYLES), gaps


def test_terse_share_answers_without_steps_the_same_problems_in_both_files(tmp_path):
    from tokenization.templates import render

    paths = sa.write_task(str(tmp_path / "t"), seed=3, web_docs=20, qa=400, rl=20, heldout=20, terse_share=0.5)
    plain = sa.write_task(str(tmp_path / "p"), seed=3, web_docs=20, qa=400, rl=20, heldout=20)
    long, short = _rows(paths["arith_qa_long"]), _rows(paths["arith_qa_short"])
    terse = [r["answer"] == sa.terse_answer(int(r["final_answer"])) for r in short]
    assert terse == [r["answer"] == sa.terse_answer(int(r["final_answer"])) for r in long]
    assert 150 < sum(terse) < 250
    for r, t in zip(short, terse):
        text = render("simple", r["question"], r["answer"], r["final_answer"])
        assert text.count("\\boxed") == 1 and extract_answer(text, "boxed") == r["final_answer"]
        assert ("=" in r["answer"]) != t
    # the share changes the QA answers only: the web text, the RL prompts and the held-out set are the same
    for name in ("arith_web", "arith_rl", "arith_heldout"):
        with open(paths[name], "rb") as a, open(plain[name], "rb") as b:
            assert a.read() == b.read(), name
    assert [r["question"] for r in short] == [r["question"] for r in _rows(plain["arith_qa_short"])]
    # few-shot exemplars are worked solutions of QA problems, never terse ones
    shots = _rows(paths["arith_shots"])
    worked = {r["question"]: r["answer"] for r, t in zip(short, terse) if not t}
    assert len(shots) == sa.SHOTS and all(worked.get(r["question"]) == r["answer"] for r in shots)


def test_rendered_qa_ends_in_a_gradable_boxed_answer(tmp_path):
    from tokenization.templates import render

    paths = sa.write_task(str(tmp_path), seed=1, web_docs=1, qa=20, rl=1, heldout=1)
    for r in _rows(paths["arith_qa_short"]):
        text = render("simple", r["question"], r["answer"], r["final_answer"])
        assert extract_answer(text, "boxed") == r["final_answer"]
