"""Golden strings for the evaluation and RL prompt protocols (see eval/prompts.py for sources)."""

import hashlib

import pytest

from megatron_octo.eval.prompts import (
    GSM8K_8SHOT_EXEMPLARS,
    MINERVA_4SHOT_EXEMPLARS,
    ORZ_BASE_TEMPLATE,
    PROTOCOLS,
    RL_STOP,
    amc_0shot_prompt,
    build_prompt,
    get_protocol,
    gsm8k_8shot_prompt,
    minerva_4shot_prompt,
    rl_prompt,
)

pytestmark = pytest.mark.timeout(30)

Q = "What is $1+1$?"


def _sha(s: str) -> str:
    return hashlib.sha256(s.encode("utf-8")).hexdigest()


def test_exemplar_blocks_are_pinned():
    # Checked byte for byte against OctoThinker eval/few_shot_prompts/*.py when written.
    assert _sha(GSM8K_8SHOT_EXEMPLARS) == "888f04fedcef6ae118172322e29080f823d9e5f77272d33e12db5721e3c3a04c"
    assert _sha(MINERVA_4SHOT_EXEMPLARS) == "12af77efcdd4c81039a1f5bc0d9f784a2f965d9a8f5c16496e00217baebc59e2"
    assert _sha(ORZ_BASE_TEMPLATE) == "1cea9b072875bda0039f3583f01e3e36014ffff6b37839af938400c63859674e"
    assert GSM8K_8SHOT_EXEMPLARS.count("\nA: ") == 8 and GSM8K_8SHOT_EXEMPLARS.count("The answer is ") == 8
    assert GSM8K_8SHOT_EXEMPLARS.startswith("Q: There are 15 trees in the grove.")
    assert GSM8K_8SHOT_EXEMPLARS.endswith("23 - 15 is 8. The answer is 8.")
    assert MINERVA_4SHOT_EXEMPLARS.count("Problem:\n") == 4
    assert MINERVA_4SHOT_EXEMPLARS.count(". I hope it is correct.") == 4
    assert "Find the domain of the expression $\\frac{\\sqrt{x-2}}{\\sqrt{5-x}}$.}\n" in MINERVA_4SHOT_EXEMPLARS
    assert "30n&=480\\\\\n\\Rightarrow\\qquad n&=480/30=\\boxed{16}" in MINERVA_4SHOT_EXEMPLARS
    assert MINERVA_4SHOT_EXEMPLARS.endswith("Final Answer: The final answer is $-\\frac{2}{3}$. I hope it is correct.\n")


def test_gsm8k_8shot_format():
    p = gsm8k_8shot_prompt(Q)
    assert p == GSM8K_8SHOT_EXEMPLARS + "\n\nQ: What is $1+1$?\nA:"
    assert p.endswith("The answer is 8.\n\nQ: What is $1+1$?\nA:")


def test_minerva_4shot_format():
    p = minerva_4shot_prompt(Q)
    # Three newlines before the test problem: the exemplar block ends with one.
    assert p == MINERVA_4SHOT_EXEMPLARS + "\n\nProblem:\nWhat is $1+1$?\n\nSolution:"
    assert p.endswith("I hope it is correct.\n\n\nProblem:\nWhat is $1+1$?\n\nSolution:")
    assert p.startswith("Problem:\nFind the domain")


def test_amc_0shot_format():
    assert amc_0shot_prompt(Q) == "Q: What is $1+1$?\nA: "


def test_rl_templates():
    assert rl_prompt(Q) == (
        "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
        "The assistant first thinks about the reasoning process in the mind and then provides the user with "
        "the answer. User: You must put your answer inside \\boxed{} and Your final answer will be extracted "
        "automatically by the \\boxed{} tag.\nWhat is $1+1$?\nAssistant:"
    )
    assert rl_prompt(Q, "simple") == "Question:\nWhat is $1+1$?\nAnswer:\n"
    with pytest.raises(ValueError, match="unknown RL template 'chat'"):
        rl_prompt(Q, "chat")


def test_protocol_registry():
    assert set(PROTOCOLS) == {"gsm8k_8shot", "minerva_4shot", "amc_0shot", "orz_base", "simple", "few_shot"}
    assert get_protocol("gsm8k_8shot").stop == ("\nQ:",)
    assert get_protocol("minerva_4shot").stop == ("\nProblem:",)
    assert get_protocol("amc_0shot").stop == ("\nQ:",)
    assert get_protocol("orz_base").stop == RL_STOP == ("User:", "Assistant:", "Question:", "Answer:")
    assert get_protocol("orz_base").answer_style == "boxed"
    assert get_protocol("minerva_4shot").answer_style == "minerva"
    assert get_protocol("gsm8k_8shot").max_new_tokens == 1024 and get_protocol("gsm8k_8shot").greedy
    assert build_prompt("orz_base", Q) == rl_prompt(Q)
    with pytest.raises(ValueError, match="unknown protocol 'nope'"):
        get_protocol("nope")


def test_few_shot_rl_template():
    from megatron_octo.eval.answer import extract_answer
    from megatron_octo.eval.prompts import FEW_SHOT_EXEMPLARS, rl_stop

    p = rl_prompt("What is 2 + 2?", "few_shot")
    assert p == FEW_SHOT_EXEMPLARS + "Question:\nWhat is 2 + 2?\nAnswer:\n"
    blocks = FEW_SHOT_EXEMPLARS.strip().split("\n\n")
    assert len(blocks) == 4 and all(b.startswith("Question:\n") for b in blocks)
    assert [extract_answer(b, "boxed") for b in blocks] == ["6", "5", "39", "8"]
    assert "Question:" in rl_stop("few_shot")  # the next exemplar never gets generated
    with pytest.raises(ValueError, match="few_shot"):
        rl_prompt("q", "nope")


def test_exemplar_probe_renders_the_qa_layout_then_the_question(tmp_path):
    """`eval --protocol base --shots-from FILE --shots k`: k exemplars as the QA data renders them, then the
    `simple` prompt; graded like the RL template; bad use is refused naming the flag."""
    import argparse
    import gzip
    import json

    from megatron_octo.eval.octothinker_grader import rule_for
    from megatron_octo.eval.prompts import exemplar_protocol, rl_prompt
    from megatron_octo.eval.runner import _check_args, shot_protocol
    from megatron_octo.eval.benchmarks import BenchmarkError

    path = tmp_path / "qa.jsonl.gz"
    rows = [{"question": f"Compute {i} + 1.", "answer": f"{i} + 1 = {i + 1}.", "final_answer": str(i + 1)}
            for i in range(3)]
    with gzip.open(path, "wt") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
    proto = shot_protocol(str(path), 2)
    assert proto.name == "simple+2shot" and proto.answer_style == "boxed"
    assert proto.build("Compute 7 + 1.") == (
        "Question:\nCompute 0 + 1.\nAnswer:\n0 + 1 = 1.\nThe final answer is $\\boxed{1}$.\n\n"
        "Question:\nCompute 1 + 1.\nAnswer:\n1 + 1 = 2.\nThe final answer is $\\boxed{2}$.\n\n"
        + rl_prompt("Compute 7 + 1.", "simple"))
    assert rule_for("arith", proto.name) == "rl_boxed" and rule_for("math500", "minerva_4shot") == "math"
    with pytest.raises(BenchmarkError, match="--shots 4 but the file has 3 records"):
        shot_protocol(str(path), 4)
    with pytest.raises(ValueError, match="--shots must be >= 1"):
        shot_protocol(str(path), 0)
    with pytest.raises(ValueError, match="exemplar"):
        exemplar_protocol([])
    args = argparse.Namespace(pass_k="1", n=1, temperature=0.0, limit=None, shots_from=str(path), protocol="rl")
    with pytest.raises(ValueError, match="--shots-from .* --protocol base"):
        _check_args(args)
