"""Eval directories for the tests of tools/compare_paper.py and tools/grader_agreement.py: a run's
summary.json and per-sample JSONL files, written as the eval CLI writes them."""

from __future__ import annotations

import json


def write_summary(path, protocol="base", grader="octothinker", benchmarks=None):
    data = {"checkpoint": "runs/x/iter_0000100", "iteration": 100, "protocol": protocol,
            "benchmarks": benchmarks or {"gsm8k": {"accuracy": 0.5, "num_examples": 1319, "protocol": "gsm8k_8shot"},
                                         "math500": {"accuracy": 0.25, "num_examples": 100}}}
    if grader is not None:
        data["grader"] = grader
    path.mkdir(parents=True, exist_ok=True)
    (path / "summary.json").write_text(json.dumps(data))
    return path


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
