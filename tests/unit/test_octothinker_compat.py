"""The cases ``--grader octothinker`` is compared with OctoThinker on (tests/octothinker_cases.py) and the golden
file of OctoThinker's own verdicts on them (tests/reference/octothinker_golden.json): the mix of cases, a golden
verdict for every case and none stale, and the header naming OctoThinker's pinned libraries and upstream files.
The comparisons themselves (our grader's workers, OctoThinker's pinned environment in its own interpreter):
tests/process/test_octothinker_compat_env.py.
"""

from __future__ import annotations

import pytest

from megatron_octo.eval import octothinker_grader as og
from megatron_octo.eval.benchmarks import BENCHMARKS
from tests import octothinker_cases, octothinker_env
from tests.octothinker_cases import GOLDEN_NAME, PER_SET, case_key, is_timeout, regenerate_hint

pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="module")
def cases() -> list[dict]:
    return octothinker_cases.all_cases()


@pytest.fixture(scope="module")
def golden() -> dict:
    return octothinker_cases.load_golden()


def test_case_mix(cases):
    table = [c for c in cases if "expected" in c]
    assert len(table) >= 150 and len(cases) >= len(table) + 60 + 2 * 2 * PER_SET * (len(BENCHMARKS) - 1)
    assert any(c["lenient"] for c in table)
    assert {c["rule"] for c in cases} == set(og.RULES)


def test_golden_file_covers_every_case(cases, golden):
    have = {r["key"] for r in golden["cases"]}
    want = {case_key(c): c["source"] for c in cases}
    missing = [f"{source} (key {key})" for key, source in want.items() if key not in have]
    stale = [f"{r['source']} (key {r['key']})" for r in golden["cases"] if r["key"] not in want]
    assert not missing, (f"{len(missing)} case(s) have no OctoThinker verdict in {GOLDEN_NAME} (added or changed "
                         "without regenerating it):\n  " + "\n  ".join(missing) + "\n" + regenerate_hint())
    assert not stale, (f"{len(stale)} case(s) of {GOLDEN_NAME} are no longer compared (removed or changed):\n  "
                       + "\n  ".join(stale) + "\n" + regenerate_hint())


def test_golden_file_header(golden):
    versions = golden["environment"]["versions"]
    assert versions["sympy"] == octothinker_env.OCTOTHINKER_PINS["sympy"] == "1.12"
    assert versions["antlr4-python3-runtime"] == octothinker_env.OCTOTHINKER_PINS["antlr4-python3-runtime"] == "4.11.1"
    sources = {u["file_in_checkout"]: u for u in golden["upstream"]}
    assert set(sources) == {"eval/data_processing/answer_extraction.py", "eval/eval/eval_script.py",
                            "eval/eval/eval_utils.py", "eval/eval/ocwcourses_eval_utils.py",
                            "rl/verl/utils/reward_score/math_verifier.py", "rl/verl/utils/reward_score/eval.py"}
    for u in sources.values():
        assert u["repo"] and u["path"] and len(u["commit"]) == 40 and len(u["sha256"]) == 64, u
    assert golden["date"] and {r["rule"] for r in golden["cases"]} == set(og.RULES)
    assert all(r["error"] is None or is_timeout(r["error"]) for r in golden["cases"])
