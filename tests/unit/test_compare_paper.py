"""tools/compare_paper.py and tools/grader_agreement.py on small eval directories written here: each tool
run once as a user runs it (a subprocess), every other case through its ``main(argv)`` in this process."""

from __future__ import annotations

import json
import sys

import pytest

from megatron_octo.eval import agreement, paper
from megatron_octo.eval.agreement import guess_protocol
from megatron_octo.eval.paper import BENCHMARK_SIZES, PAPER_BENCHMARKS, PAPER_RESULTS
from megatron_octo.eval.prompts import PROTOCOLS, build_prompt
from tests.helpers import ROOT, run, run_main

pytestmark = pytest.mark.timeout(120)

COMPARE = [sys.executable, str(ROOT / "tools" / "compare_paper.py")]
AGREEMENT = [sys.executable, str(ROOT / "tools" / "grader_agreement.py")]


def _summary(path, protocol="base", grader="octothinker", benchmarks=None):
    data = {"checkpoint": "runs/x/iter_0000100", "iteration": 100, "protocol": protocol,
            "benchmarks": benchmarks or {"gsm8k": {"accuracy": 0.5, "num_examples": 1319, "protocol": "gsm8k_8shot"},
                                         "math500": {"accuracy": 0.25, "num_examples": 100}}}
    if grader is not None:
        data["grader"] = grader
    path.mkdir(parents=True, exist_ok=True)
    (path / "summary.json").write_text(json.dumps(data))
    return path


def test_paper_table_is_well_formed():
    assert {r.kind for r in PAPER_RESULTS} == {"base", "rl"}
    for r in PAPER_RESULTS:
        assert set(r.scores) == set(PAPER_BENCHMARKS) and r.source
        assert all(v is None or 0 <= v <= 100 for v in r.scores.values())
    assert set(BENCHMARK_SIZES) == set(PAPER_BENCHMARKS)


def test_base_run_is_compared_with_base_rows(tmp_path):
    run_dir = _summary(tmp_path / "eval" / "base_run")
    res = run([*COMPARE, str(run_dir)], timeout=100)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "## base models, few-shot" in out and "RL models" not in out
    ours = f"| ours: {run_dir / 'summary.json'} | grader octothinker, iteration 100 | 50.0 | 25.0 (n=100) | - | - |"
    assert ours in out
    assert "| paper: OctoThinker-Long-3B-Base | few-shot | 56.1 | 25.8 | 4.7 | 7.5 |" in out
    assert "OctoThinker-Long-3B-Zero" not in out and "re-run with --grader octothinker" not in out


def test_rl_runs_from_a_parent_directory_and_old_summaries(tmp_path, capsys):
    _summary(tmp_path / "eval" / "a", protocol="rl", grader=None)
    _summary(tmp_path / "eval" / "b", protocol="rl", grader="octothinker",
             benchmarks={"amc23": {"accuracy": 0.1, "num_examples": 40},
                         "aime24": {"accuracy": 0.0, "num_examples": 30}})
    res = run_main(paper.main, [tmp_path / "eval", "--model", "OctoThinker-Long-3B-Zero"], capsys)
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
def test_compare_bad_input_exits_2_naming_the_path(tmp_path, setup, fragment, capsys):
    setup(tmp_path)
    res = run_main(paper.main, [tmp_path / "missing"], capsys)
    assert res.returncode == 2 and res.stderr.startswith("error:")
    assert str(tmp_path / "missing") in res.stderr and fragment in res.stderr


def test_compare_unknown_model_exits_2(tmp_path, capsys):
    res = run_main(paper.main, [_summary(tmp_path / "r"), "--model", "GPT-5"], capsys)
    assert res.returncode == 2 and "GPT-5" in res.stderr


# ---------------------------------------------------------------------------------------
# grader_agreement
# ---------------------------------------------------------------------------------------


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_agreement_from_recorded_verdicts(tmp_path):
    d = _summary(tmp_path / "eval", benchmarks={"math500": {"accuracy": 0.5, "num_examples": 3,
                                                             "protocol": "minerva_4shot"}})
    rows = [{"id": str(i), "sample": 0, "prompt": "p", "response": f"r{i}", "gold": "1",
             "correct_math_verify": mv, "correct_octothinker": oc}
            for i, (mv, oc) in enumerate([(True, True), (False, False), (True, False)])]
    _write_jsonl(d / "math500.jsonl", rows)
    res = run([*AGREEMENT, str(d), "--show", "5"], timeout=100)
    assert res.returncode == 0, res.stderr
    assert "| minerva_4shot | 3 | 2 | 1 | 2 | 66.7% |" in res.stdout
    assert "agreement: 2/3 samples = 66.7%" in res.stdout
    assert "id=2 sample=0 gold='1' math_verify=True octothinker=False response ends 'r2'" in res.stdout


def test_agreement_regrades_old_rows(tmp_path, capsys):
    prompt = build_prompt("gsm8k_8shot", "Ducks lay 16 eggs ...")
    rows = [{"id": "0", "prompt": prompt, "response": "The answer is 18.\nCheck: 18 + 2 = 20.", "gold": "18"},
            {"id": "1", "prompt": prompt, "response": "The answer is 4.", "gold": "4"}]
    _write_jsonl(tmp_path / "gsm8k.jsonl", rows)  # no summary.json: the protocol comes from the prompt
    res = run_main(agreement.main, [tmp_path], capsys)
    assert res.returncode == 0, res.stderr
    assert "(re-graded) | gsm8k_8shot | 2 | 2 | 1 | 1 | 50.0% |" in res.stdout


@pytest.mark.parametrize("setup,fragment", [
    (lambda p: None, "not a directory"),
    (lambda p: (p / "run").mkdir(), "no per-sample *.jsonl"),
    (lambda p: ((p / "run").mkdir(), (p / "run" / "x.jsonl").write_text('{"response": "a", "gold": "1"}\n{oops\n')),
     "x.jsonl:2"),
    (lambda p: ((p / "run").mkdir(), (p / "run" / "x.jsonl").write_text('{"response": "a"}\n')), "no ['gold']"),
])
def test_agreement_bad_input_exits_2(tmp_path, setup, fragment, capsys):
    setup(tmp_path)
    res = run_main(agreement.main, [tmp_path / "run"], capsys)
    assert res.returncode == 2 and res.stderr.startswith("error:") and fragment in res.stderr


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_protocol_is_recognised_from_its_prompt(name):
    assert guess_protocol(build_prompt(name, "What is 1+1?")) == name
