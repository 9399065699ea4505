"""tools/compare_paper.py and tools/grader_agreement.py run as a user runs them (a subprocess), and
re-grading old rows (grader worker processes), on small eval directories written here."""

from __future__ import annotations

import sys

import pytest

from megatron_octo.eval import agreement
from megatron_octo.eval.prompts import build_prompt
from tests.compare_paper_cases import write_jsonl, write_summary
from tests.helpers import ROOT, run, run_main

pytestmark = pytest.mark.timeout(120)

COMPARE = [sys.executable, str(ROOT / "tools" / "compare_paper.py")]
AGREEMENT = [sys.executable, str(ROOT / "tools" / "grader_agreement.py")]


def test_base_run_is_compared_with_base_rows(tmp_path):
    run_dir = write_summary(tmp_path / "eval" / "base_run")
    res = run([*COMPARE, str(run_dir)], timeout=100)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "## base models, few-shot" in out and "RL models" not in out
    ours = f"| ours: {run_dir / 'summary.json'} | grader octothinker, iteration 100 | 50.0 | 25.0 (n=100) | - | - |"
    assert ours in out
    assert "| paper: OctoThinker-Long-3B-Base | few-shot | 56.1 | 25.8 | 4.7 | 7.5 |" in out
    assert "OctoThinker-Long-3B-Zero" not in out and "re-run with --grader octothinker" not in out


def test_agreement_from_recorded_verdicts(tmp_path):
    d = write_summary(tmp_path / "eval", benchmarks={"math500": {"accuracy": 0.5, "num_examples": 3,
                                                                  "protocol": "minerva_4shot"}})
    rows = [{"id": str(i), "sample": 0, "prompt": "p", "response": f"r{i}", "gold": "1",
             "correct_math_verify": mv, "correct_octothinker": oc}
            for i, (mv, oc) in enumerate([(True, True), (False, False), (True, False)])]
    write_jsonl(d / "math500.jsonl", rows)
    res = run([*AGREEMENT, str(d), "--show", "5"], timeout=100)
    assert res.returncode == 0, res.stderr
    assert "| minerva_4shot | 3 | 2 | 1 | 2 | 66.7% |" in res.stdout
    assert "agreement: 2/3 samples = 66.7%" in res.stdout
    assert "id=2 sample=0 gold='1' math_verify=True octothinker=False response ends 'r2'" in res.stdout


def test_agreement_regrades_old_rows(tmp_path):
    prompt = build_prompt("gsm8k_8shot", "Ducks lay 16 eggs ...")
    rows = [{"id": "0", "prompt": prompt, "response": "The answer is 18.\nCheck: 18 + 2 = 20.", "gold": "18"},
            {"id": "1", "prompt": prompt, "response": "The answer is 4.", "gold": "4"}]
    write_jsonl(tmp_path / "gsm8k.jsonl", rows)  # no summary.json: the protocol comes from the prompt
    res = run_main(agreement.main, [tmp_path])
    assert res.returncode == 0, res.stderr
    assert "(re-graded) | gsm8k_8shot | 2 | 2 | 1 | 1 | 50.0% |" in res.stdout
