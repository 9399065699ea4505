"""tools/compare_paper.py and tools/grader_agreement.py on small eval directories written here, each case
through its ``main(argv)`` in this process. The tools run as a user runs them (a subprocess) and re-grading
(grader workers): tests/process/test_compare_paper_tools.py."""

from __future__ import annotations

import json

import pytest

from megatron_octo.eval import agreement, paper
from megatron_octo.eval.agreement import guess_protocol
from megatron_octo.eval.paper import BENCHMARK_SIZES, PAPER_BENCHMARKS, PAPER_RESULTS
from megatron_octo.eval.prompts import PROTOCOLS, build_prompt
from tests.compare_paper_cases import write_summary
from tests.helpers import run_main

pytestmark = pytest.mark.timeout(120)


def test_paper_table_is_well_formed():
    assert {r.kind for r in PAPER_RESULTS} == {"base", "rl"}
    for r in PAPER_RESULTS:
        assert set(r.scores) == set(PAPER_BENCHMARKS) and r.source
        assert all(v is None or 0 <= v <= 100 for v in r.scores.values())
    assert set(BENCHMARK_SIZES) == set(PAPER_BENCHMARKS)


def test_rl_runs_from_a_parent_directory_and_old_summaries(tmp_path):
    write_summary(tmp_path / "eval" / "a", protocol="rl", grader=None)
    write_summary(tmp_path / "eval" / "b", protocol="rl", grader="octothinker",
                  benchmarks={"amc23": {"accuracy": 0.1, "num_examples": 40},
                              "aime24": {"accuracy": 0.0, "num_examples": 30}})
    res = run_main(paper.main, [tmp_path / "eval", "--model", "OctoThinker-Long-3B-Zero"])
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "## RL models, zero-shot" in out and "grader math_verify" in out and "grader octothinker" in out
    assert "| paper: OctoThinker-Long-3B-Zero | zero-shot, RL step 300 | 85.8 | 65.2 | 27.3 | 40.0 |" in out
    assert "Qwen2.5-3B-Zero" not in out  # --model keeps one paper row
    assert "a/summary.json: graded with math_verify" in out and "not shown): aime24" in out
    assert "| - | - | - | 10.0 |" in out


@pytest.mark.parametrize("setup,fragment", [
    (lambda p: None, "missing"),
    (lambda p: (p / "missing").write_text("{not json"), "not valid JSON"),
    (lambda p: (p / "missing").write_text(json.dumps({"loss": 1})), "no 'benchmarks'"),
    (lambda p: (p / "missing").mkdir(), "no summary.json"),
    (lambda p: (p / "missing").write_text(json.dumps({"benchmarks": {"gsm8k": {}}})), "no numeric 'accuracy'"),
])
def test_compare_bad_input_exits_2_naming_the_path(tmp_path, setup, fragment):
    setup(tmp_path)
    res = run_main(paper.main, [tmp_path / "missing"])
    assert res.returncode == 2 and res.stderr.startswith("error:")
    assert str(tmp_path / "missing") in res.stderr and fragment in res.stderr


def test_compare_unknown_model_exits_2(tmp_path):
    res = run_main(paper.main, [write_summary(tmp_path / "r"), "--model", "GPT-5"])
    assert res.returncode == 2 and "GPT-5" in res.stderr


# ---------------------------------------------------------------------------------------
# grader_agreement
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("setup,fragment", [
    (lambda p: None, "not a directory"),
    (lambda p: (p / "run").mkdir(), "no per-sample *.jsonl"),
    (lambda p: ((p / "run").mkdir(), (p / "run" / "x.jsonl").write_text('{"response": "a", "gold": "1"}\n{oops\n')),
     "x.jsonl:2"),
    (lambda p: ((p / "run").mkdir(), (p / "run" / "x.jsonl").write_text('{"response": "a"}\n')), "no ['gold']"),
])
def test_agreement_bad_input_exits_2(tmp_path, setup, fragment):
    setup(tmp_path)
    res = run_main(agreement.main, [tmp_path / "run"])
    assert res.returncode == 2 and res.stderr.startswith("error:") and fragment in res.stderr


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_protocol_is_recognised_from_its_prompt(name):
    assert guess_protocol(build_prompt(name, "What is 1+1?")) == name
