"""The cases `--grader octothinker` is compared with OctoThinker on, and the golden file of OctoThinker's
own verdicts on them.

Used by tests/unit/test_octothinker_compat.py, tests/process/test_octothinker_compat_env.py and
tests/reference/make_octothinker_golden.py:

  * the hand-derived table of tests/octothinker_table_cases.py (CASES, over 150 cases);
  * recorded model responses, tests/data/octothinker_responses.jsonl;
  * a seeded sample of every bundled benchmark, each problem answered with its own gold and with another
    problem's gold, in the base and RL formats.

The golden file (tests/reference/octothinker_golden.json) holds, per case, the verdict of OctoThinker's
own functions run in their pinned environment, and is keyed by the case's content (:func:`case_key`:
response, gold, rule and question), so that a case added or changed anywhere above without regenerating
the file is found (test_golden_file_covers_every_case).
"""

from __future__ import annotations

import hashlib
import json
import random

from megatron_octo.eval import octothinker_grader as og
from megatron_octo.eval.benchmarks import BENCHMARKS, load_benchmark
from tests import octothinker_table_cases
from tests.helpers import ROOT

RESPONSES = ROOT / "tests" / "data" / "octothinker_responses.jsonl"
GOLDEN = ROOT / "tests" / "reference" / "octothinker_golden.json"
GOLDEN_NAME = "tests/reference/octothinker_golden.json"
GENERATOR = ROOT / "tests" / "reference" / "make_octothinker_golden.py"
REGENERATE = ("OCTO_OCTOTHINKER_SRC=/path/to/OctoThinker nice -n 10 env OMP_NUM_THREADS=1 "
              ".venv/bin/python -m tests.reference.make_octothinker_golden")
PER_SET = 12  # problems sampled per bundled benchmark
REQUEST_KEYS = ("response", "gold", "rule", "question")


def table_module():
    return octothinker_table_cases


def table_cases(table=None) -> list[dict]:
    table = table or table_module()
    return [{"source": f"table #{i} ({c.benchmark} {c.protocol})", "response": c.response, "gold": c.gold,
             "rule": table.rule_of(c), "question": c.question, "expected": c.expected, "lenient": c.lenient}
            for i, c in enumerate(table.CASES)]


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


def all_cases() -> list[dict]:
    """Every case, in a fixed order: the table (with its ``expected``/``lenient``), recorded, sampled."""
    table = table_module()
    return table_cases(table) + recorded_cases() + benchmark_cases(table.render_gold)


def request(cases) -> list[dict]:
    return [{k: c[k] for k in REQUEST_KEYS} for c in cases]


def case_key(case: dict) -> str:
    """The case's identity: a hash of what the grading sees (response, gold, rule, question)."""
    text = json.dumps([case[k] for k in REQUEST_KEYS], ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def golden_records(cases, reference: dict) -> list[dict]:
    """One golden record per distinct case (first occurrence), from an "upstream" reference run."""
    out, seen = [], set()
    for c, ref in zip(cases, reference["results"], strict=True):
        key = case_key(c)
        if key in seen:
            continue
        seen.add(key)
        out.append({"key": key, "source": c["source"], "rule": c["rule"], "gold": c["gold"],
                    "response": c["response"], "correct": ref["correct"], "extracted": ref["extracted"],
                    "error": ref["error"]})
    return out


def load_golden() -> dict:
    if not GOLDEN.is_file():
        raise FileNotFoundError(f"{GOLDEN.relative_to(ROOT)} is missing; generate it with: {REGENERATE}")
    return json.loads(GOLDEN.read_text(encoding="utf-8"))


def is_timeout(error) -> bool:
    return error is not None and error.startswith(("TimeoutException", "TimeoutError"))


def regenerate_hint() -> str:
    return f"regenerate {GOLDEN_NAME} from OctoThinker's code with:\n    {REGENERATE}"
