"""``--grader octothinker`` gives OctoThinker's verdicts in OctoThinker's own environment, case for case.

The project runs OctoThinker's grading on sympy 1.14 with sympy's 4.11-generated LaTeX parser on ANTLR 4.13
(its version check skipped); OctoThinker pins sympy 1.12 and ANTLR 4.11.1. tests/octothinker_env.py installs
those pins into a cached directory outside the venv and runs OctoThinker's grading there in an isolated
interpreter (standard library + that directory only). Every verdict must equal ours, known false positives
included ("The answer is $144$. I hope it is correct." credited for a gold of 4), on:

  * the hand-derived table of tests/unit/test_octothinker_grader.py (CASES, over 150 cases);
  * recorded model responses, tests/data/octothinker_responses.jsonl (base few-shot and RL zero-shot
    formats; answers followed by prose, boxes with spaces, fractions, units, truncated boxes);
  * a seeded sample of every bundled benchmark, each problem answered with its own gold and with another
    problem's gold, in the base and RL formats.

Two references: "port" (always) runs megatron_octo/eval/octothinker_grader.py alone on the pinned libraries
with sympy's own ``parse_latex`` (version check intact) and unguarded ``parse_expr`` put back, and also
compares the ``lenient`` flag; "upstream" runs OctoThinker's own functions from a checkout named by
``OCTO_OCTOTHINKER_SRC`` (see docs/evaluation.md), and is skipped, saying so, without one.
A failed install of the environment fails these tests.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random

import pytest

from megatron_octo.eval import octothinker_grader as og
from megatron_octo.eval.benchmarks import BENCHMARKS, load_benchmark
from megatron_octo.eval.grader import grade_octothinker
from tests import octothinker_env
from tests.helpers import ROOT

pytestmark = pytest.mark.timeout(1800)

RESPONSES = ROOT / "tests" / "data" / "octothinker_responses.jsonl"
PER_SET = 12  # problems sampled per bundled benchmark


def _table_module():
    spec = importlib.util.spec_from_file_location("octothinker_table", ROOT / "tests" / "unit" /
                                                  "test_octothinker_grader.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def recorded_cases() -> list[dict]:
    rows = [json.loads(line) for line in RESPONSES.read_text(encoding="utf-8").splitlines() if line.strip()]
    sets = {name: {ex.id: ex for ex in load_benchmark(name)} for name in {r["benchmark"] for r in rows}}
    cases = []
    for r in rows:
        ex = sets[r["benchmark"]][r["id"]]
        cases.append({"source": f"recorded {r['benchmark']}/{r['id']} ({r['note']})", "response": r["response"],
                      "gold": ex.answer, "rule": og.rule_for(r["benchmark"], r["protocol"]),
                      "question": ex.question})
    return cases


def benchmark_cases(render_gold) -> list[dict]:
    rng = random.Random(20250626)
    cases = []
    for name in sorted(BENCHMARKS):
        examples = load_benchmark(name)
        chosen = rng.sample(examples, min(PER_SET, len(examples)))
        others = rng.sample(examples, len(chosen))
        spec = BENCHMARKS[name]
        for protocol in (spec.base_protocol, spec.rl_protocol):
            for ex, other in zip(chosen, others):
                for answer, label in ((ex.answer, "own gold"), (other.answer, f"gold of {other.id}")):
                    cases.append({"source": f"{name}/{ex.id} {protocol}, answered with the {label}",
                                  "response": render_gold(protocol, str(answer)), "gold": ex.answer,
                                  "rule": og.rule_for(name, protocol), "question": ex.question})
    return cases


@pytest.fixture(scope="module")
def cases() -> list[dict]:
    table = _table_module()
    out = [{"source": f"table #{i}", "response": c.response, "gold": c.gold, "rule": table._rule(c),
            "question": c.question, "expected": c.expected, "lenient": c.lenient} for i, c in enumerate(table.CASES)]
    return out + recorded_cases() + benchmark_cases(table.render_gold)


@pytest.fixture(scope="module")
def ours(cases):
    return grade_octothinker([c["response"] for c in cases], [c["gold"] for c in cases], [c["rule"] for c in cases],
                             questions=[c["question"] for c in cases])


def _request(cases):
    return [{k: c[k] for k in ("response", "gold", "rule", "question")} for c in cases]


def _mismatches(cases, ours, reference, with_lenient):
    out = []
    for c, v, ref in zip(cases, ours, reference["results"]):
        if ref["error"] is not None and not ref["error"].startswith(("TimeoutException", "TimeoutError")):
            out.append((c["source"], c["gold"], "reference error", ref["error"]))
        if v.timed_out or v.correct != ref["correct"] or (with_lenient and v.lenient != ref["lenient"]):
            out.append((c["source"], c["response"][-80:], c["gold"], f"ours {v}", f"reference {ref}"))
    return out


def test_case_mix(cases):
    table = [c for c in cases if "expected" in c]
    assert len(table) >= 150 and len(cases) >= len(table) + 60 + 2 * 2 * PER_SET * (len(BENCHMARKS) - 1)
    assert any(c["lenient"] for c in table)
    assert {c["rule"] for c in cases} == set(og.RULES)


def test_pinned_environment_is_octothinkers():
    result = octothinker_env.run_reference([], mode="port")
    assert result["versions"]["sympy"] == "1.12"
    assert result["versions"]["antlr4-python3-runtime"] == "4.11.1"
    # Isolation: nothing of the venv came along (the port is loaded as a file; its package is a stub).
    assert not {"torch", "omegaconf", "megatron", "megatron_octo.eval.grader"} & set(result["imported"])


def test_port_in_pinned_environment_gives_our_verdicts(cases, ours):
    reference = octothinker_env.run_reference(_request(cases), mode="port")
    assert reference["versions"]["sympy"] == "1.12"
    assert _mismatches(cases, ours, reference, with_lenient=True) == []
    table = [(c, v) for c, v in zip(cases, ours) if "expected" in c]
    assert [(c["source"], c["gold"]) for c, v in table if v.correct != c["expected"] or v.lenient != c["lenient"]] == []
    # The issue's case, in OctoThinker's environment: credited, and flagged as resting on the lenient parse.
    issue = next(i for i, c in enumerate(cases) if c["response"] == "The answer is $144$. I hope it is correct."
                 and c["gold"] == "4")
    assert reference["results"][issue]["correct"] is True and reference["results"][issue]["lenient"] is True


def test_octothinkers_own_functions_give_our_verdicts(cases, ours):
    src = os.environ.get(octothinker_env.SRC_ENV)
    if not src:
        pytest.skip(f"{octothinker_env.SRC_ENV} is not set: no checkout of OctoThinker's eval/ and rl/ to run "
                    "their own functions from (docs/evaluation.md); the port ran in their environment above")
    reference = octothinker_env.run_reference(_request(cases), mode="upstream", src=src)
    assert _mismatches(cases, ours, reference, with_lenient=False) == []
