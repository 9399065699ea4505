"""``--grader octothinker`` gives OctoThinker's verdicts in OctoThinker's own environment, case for case: our grader
through its worker processes, OctoThinker's grading in a separate interpreter.

The project runs OctoThinker's grading on sympy 1.14 with sympy's 4.11-generated LaTeX parser on ANTLR 4.13
(its version check skipped); OctoThinker pins sympy 1.12 and ANTLR 4.11.1. tests/octothinker_env.py installs
those pins into a cached directory outside the venv and runs OctoThinker's grading there in an isolated
interpreter (standard library + that directory only). Every verdict must equal ours, known false positives
included ("The answer is $144$. I hope it is correct." credited for a gold of 4), on the cases of
tests/octothinker_cases.py:

  * the hand-derived table of tests/octothinker_table_cases.py (CASES, over 150 cases);
  * recorded model responses, tests/data/octothinker_responses.jsonl (base few-shot and RL zero-shot
    formats; answers followed by prose, boxes with spaces, fractions, units, truncated boxes);
  * a seeded sample of every bundled benchmark, each problem answered with its own gold and with another
    problem's gold, in the base and RL formats.

Three references:
  * golden (always): tests/reference/octothinker_golden.json, OctoThinker's own functions' verdicts and
    extracted answers on every case, recorded in the pinned environment by
    tests/reference/make_octothinker_golden.py from upstream files at the commits its header names (their
    code is not committed here). Our verdicts, in the venv and (the port) in the pinned environment, must
    equal it case for case; a case missing from it fails, saying how to regenerate it
    (tests/unit/test_octothinker_compat.py).
  * port (always): megatron_octo/eval/octothinker_grader.py alone on the pinned libraries with sympy's own
    ``parse_latex`` (version check intact) and unguarded ``parse_expr`` put back; also compares the
    ``lenient`` flag.
  * upstream (live): OctoThinker's own functions from a checkout named by ``OCTO_OCTOTHINKER_SRC`` (see
    docs/evaluation.md), compared with ours and with the golden file (which must be current); skipped,
    saying so, without one.
A failed install of the environment fails these tests.
"""

from __future__ import annotations

import os

import pytest

from megatron_octo.eval.grader import grade_octothinker
from tests import octothinker_cases, octothinker_env
from tests.octothinker_cases import GOLDEN_NAME, case_key, is_timeout, regenerate_hint

pytestmark = pytest.mark.timeout(1800)

ISSUE = ("The answer is $144$. I hope it is correct.", "4")  # a known false positive, kept on purpose


@pytest.fixture(scope="module")
def cases() -> list[dict]:
    return octothinker_cases.all_cases()


@pytest.fixture(scope="module")
def ours(cases):
    return grade_octothinker([c["response"] for c in cases], [c["gold"] for c in cases], [c["rule"] for c in cases],
                             questions=[c["question"] for c in cases])


@pytest.fixture(scope="module")
def golden() -> dict:
    return octothinker_cases.load_golden()


@pytest.fixture(scope="module")
def port_reference(cases) -> dict:
    return octothinker_env.run_reference(octothinker_cases.request(cases), mode="port")


def _mismatches(cases, ours, reference, with_lenient):
    out = []
    for c, v, ref in zip(cases, ours, reference["results"]):
        if ref["error"] is not None and not is_timeout(ref["error"]):
            out.append((c["source"], c["gold"], "reference error", ref["error"]))
        if v.timed_out or v.correct != ref["correct"] or (with_lenient and v.lenient != ref["lenient"]):
            out.append((c["source"], c["response"][-80:], c["gold"], f"ours {v}", f"reference {ref}"))
    return out


def _golden_mismatches(cases, verdicts, golden) -> list[str]:
    """Each case whose verdict (correct, extracted answer; a time-out counts as a difference) is not the
    golden one, named. ``verdicts``: (correct, extracted, timed_out) per case."""
    records = {r["key"]: r for r in golden["cases"]}
    out = []
    for c, (correct, extracted, timed_out) in zip(cases, verdicts, strict=True):
        g = records.get(case_key(c))
        if g is None:
            continue  # test_golden_file_covers_every_case names it
        if timed_out or correct != g["correct"] or extracted != g["extracted"]:
            out.append(f"{c['source']} [{c['rule']}] response ...{c['response'][-80:]!r} gold {c['gold']!r}: "
                       f"ours correct={correct} extracted={extracted!r}{' (timed out)' if timed_out else ''}, "
                       f"OctoThinker correct={g['correct']} extracted={g['extracted']!r}")
    return out


def test_our_verdicts_equal_octothinkers_golden(cases, ours, golden):
    """Our grader in the project's venv (sympy 1.14, ANTLR 4.13) against OctoThinker's recorded verdicts."""
    bad = _golden_mismatches(cases, [(v.correct, v.extracted, v.timed_out) for v in ours], golden)
    assert not bad, (f"{len(bad)} verdict(s) of --grader octothinker differ from OctoThinker's own "
                     f"({GOLDEN_NAME}):\n  " + "\n  ".join(bad))
    # The known false positive is OctoThinker's verdict too, and ours.
    issue = [i for i, c in enumerate(cases) if (c["response"], c["gold"]) == ISSUE]
    assert issue and all(ours[i].correct for i in issue)
    assert {r["correct"] for r in golden["cases"] if (r["response"], r["gold"]) == ISSUE} == {True}


def test_port_in_pinned_environment_equals_octothinkers_golden(cases, port_reference, golden):
    """Our grader (the port alone) on OctoThinker's pinned libraries against their recorded verdicts."""
    assert port_reference["versions"]["sympy"] == "1.12"
    verdicts = [(r["correct"], r["extracted"], is_timeout(r["error"])) for r in port_reference["results"]]
    errors = [(c["source"], r["error"]) for c, r in zip(cases, port_reference["results"])
              if r["error"] is not None and not is_timeout(r["error"])]
    assert errors == []
    bad = _golden_mismatches(cases, verdicts, golden)
    assert not bad, (f"{len(bad)} verdict(s) of the port in the pinned environment differ from OctoThinker's own "
                     f"({GOLDEN_NAME}):\n  " + "\n  ".join(bad))


def test_pinned_environment_is_octothinkers():
    result = octothinker_env.run_reference([], mode="port")
    assert result["versions"]["sympy"] == "1.12"
    assert result["versions"]["antlr4-python3-runtime"] == "4.11.1"
    # Isolation: nothing of the venv came along (the port is loaded as a file; its package is a stub).
    assert not {"torch", "omegaconf", "megatron", "megatron_octo.eval.grader"} & set(result["imported"])


def test_port_in_pinned_environment_gives_our_verdicts(cases, ours, port_reference):
    reference = port_reference
    assert reference["versions"]["sympy"] == "1.12"
    assert _mismatches(cases, ours, reference, with_lenient=True) == []
    table = [(c, v) for c, v in zip(cases, ours) if "expected" in c]
    assert [(c["source"], c["gold"]) for c, v in table if v.correct != c["expected"] or v.lenient != c["lenient"]] == []
    # The issue's case, in OctoThinker's environment: credited, and flagged as resting on the lenient parse.
    issue = next(i for i, c in enumerate(cases) if (c["response"], c["gold"]) == ISSUE)
    assert reference["results"][issue]["correct"] is True and reference["results"][issue]["lenient"] is True


def test_octothinkers_own_functions_give_our_verdicts(cases, ours, golden):
    src = os.environ.get(octothinker_env.SRC_ENV)
    if not src:
        pytest.skip(f"{octothinker_env.SRC_ENV} is not set: no checkout of OctoThinker's eval/ and rl/ to run "
                    f"their own functions from (docs/evaluation.md); their verdicts were compared through "
                    f"{GOLDEN_NAME}")
    reference = octothinker_env.run_reference(octothinker_cases.request(cases), mode="upstream", src=src)
    assert _mismatches(cases, ours, reference, with_lenient=False) == []
    # The golden file is current: the same upstream verdicts, extracted answers and library versions.
    fields = ("correct", "extracted", "error")
    fresh = {r["key"]: {k: r[k] for k in fields} for r in octothinker_cases.golden_records(cases, reference)}
    stored = {r["key"]: {k: r[k] for k in fields} for r in golden["cases"]}
    stale = sorted(k for k in fresh.keys() | stored.keys() if fresh.get(k) != stored.get(k))
    assert not stale, (f"{GOLDEN_NAME} is not current for {len(stale)} case(s) (keys {stale[:10]}); "
                       + regenerate_hint())
    libraries = {k: v for k, v in reference["versions"].items() if k != "python"}
    assert libraries == {k: v for k, v in golden["environment"]["versions"].items() if k != "python"}, \
        regenerate_hint()
