"""OctoThinker's published accuracies, and our eval summaries printed next to them.

    python tools/compare_paper.py runs/demo/eval/rl_long [more runs or summary.json files] [--model NAME]

Base-model rows are few-shot numbers, RL rows zero-shot numbers (see
:mod:`megatron_octo.eval.protocols`); a run is compared with the rows of its own kind (its
summary's ``protocol``: base or rl). Our column names the grader that produced it: only
``octothinker`` applies the paper's own answer rules; ``math_verify`` (the default) differs from
them on some answers (docs/evaluation.md, "Two graders").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

__all__ = ["BENCHMARK_SIZES", "PAPER_BENCHMARKS", "PAPER_RESULTS", "PaperResult", "RunSummary", "SummaryError",
           "compare", "load_summary", "main"]

PAPER_BENCHMARKS = ("gsm8k", "math500", "olympiadbench", "amc23")
BENCHMARK_SIZES = {"gsm8k": 1319, "math500": 500, "olympiadbench": 675, "amc23": 40}

_HEADLINE = ("arXiv 2506.20512 headline results, as recorded in the project's recipe notes "
             "(octothinker-recipe.md, 'Headline numbers'); second-hand, not re-read from the paper's tables")


@dataclass(frozen=True)
class PaperResult:
    """One published row: accuracies in percent (None: not reported)."""

    model: str
    kind: str  # "base" (few-shot) or "rl" (zero-shot)
    setting: str
    scores: Mapping[str, Optional[float]]
    source: str


PAPER_RESULTS: tuple[PaperResult, ...] = (
    PaperResult("Llama-3.2-3B-Base", "base", "few-shot",
                {"gsm8k": None, "math500": 7.4, "olympiadbench": None, "amc23": None}, _HEADLINE),
    PaperResult("OctoThinker-Long-3B-Base", "base", "few-shot",
                {"gsm8k": 56.1, "math500": 25.8, "olympiadbench": 4.7, "amc23": 7.5}, _HEADLINE),
    PaperResult("OctoThinker-Long-3B-Zero", "rl", "zero-shot, RL step 300",
                {"gsm8k": 85.8, "math500": 65.2, "olympiadbench": 27.3, "amc23": 40.0}, _HEADLINE),
    PaperResult("Qwen2.5-3B-Zero", "rl", "zero-shot, RL step 300",
                {"gsm8k": 85.6, "math500": 67.0, "olympiadbench": 29.1, "amc23": 40.0}, _HEADLINE),
    PaperResult("Llama-3.2-3B-Zero", "rl", "zero-shot, RL step 224",
                {"gsm8k": 8.3, "math500": 9.6, "olympiadbench": None, "amc23": None}, _HEADLINE),
)


class SummaryError(ValueError):
    """A path is not an eval summary (missing, unreadable, or without the expected fields)."""


@dataclass(frozen=True)
class RunSummary:
    path: str
    kind: str  # base | rl
    grader: str
    accuracy: Mapping[str, float]  # percent
    problems: Mapping[str, int]
    iteration: Optional[int]
    checkpoint: str


def _summary_paths(path: str) -> list[str]:
    if os.path.isfile(path):
        return [path]
    if os.path.isdir(path):
        direct = os.path.join(path, "summary.json")
        if os.path.isfile(direct):
            return [direct]
        nested = sorted(os.path.join(path, d, "summary.json") for d in os.listdir(path)
                        if os.path.isfile(os.path.join(path, d, "summary.json")))
        if nested:
            return nested
        raise SummaryError(f"{path}: no summary.json in this directory or its subdirectories")
    raise SummaryError(f"{path}: no such file or directory")


def load_summary(path: str) -> RunSummary:
    """Read one ``summary.json`` written by ``python -m megatron_octo.eval``."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError) as e:
        raise SummaryError(f"{path}: cannot read ({e})") from None
    except json.JSONDecodeError as e:
        raise SummaryError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    benches = data.get("benchmarks") if isinstance(data, dict) else None
    if not isinstance(benches, dict):
        raise SummaryError(f"{path}: not an eval summary (no 'benchmarks' object)")
    accuracy, problems = {}, {}
    for name, b in benches.items():
        if not isinstance(b, dict) or not isinstance(b.get("accuracy"), (int, float)):
            raise SummaryError(f"{path}: benchmark {name!r} has no numeric 'accuracy'")
        accuracy[name] = 100.0 * float(b["accuracy"])
        problems[name] = int(b.get("num_examples", 0))
    kind = data.get("protocol", "base")
    if kind not in ("base", "rl"):
        raise SummaryError(f"{path}: protocol {kind!r} is neither 'base' nor 'rl'")
    # Summaries written before --grader existed were graded with math-verify.
    grader = data.get("grader", "math_verify")
    return RunSummary(path, kind, grader, accuracy, problems, data.get("iteration"), str(data.get("checkpoint", "")))


def _cell(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.1f}"


def compare(runs: Sequence[RunSummary], model: Optional[str] = None) -> str:
    """Markdown: for each kind of run present, our rows then the paper's rows of that kind."""
    if model is not None and not any(r.model == model for r in PAPER_RESULTS):
        raise ValueError(f"unknown paper model {model!r}; known: {[r.model for r in PAPER_RESULTS]}")
    out: list[str] = []
    for kind in ("base", "rl"):
        ours = [r for r in runs if r.kind == kind]
        if not ours:
            continue
        theirs = [r for r in PAPER_RESULTS if r.kind == kind and (model is None or r.model == model)]
        label = "base models, few-shot" if kind == "base" else "RL models, zero-shot"
        out += [f"## {label}", "", "| model | grader / setting | " + " | ".join(PAPER_BENCHMARKS) + " |",
                "|---|---|" + "---|" * len(PAPER_BENCHMARKS)]
        notes = []
        for r in ours:
            cells = []
            for b in PAPER_BENCHMARKS:
                if b not in r.accuracy:
                    cells.append("-")
                    continue
                full = r.problems.get(b, 0) >= BENCHMARK_SIZES[b]
                cells.append(_cell(r.accuracy[b]) + ("" if full else f" (n={r.problems.get(b, 0)})"))
            it = f", iteration {r.iteration}" if r.iteration is not None else ""
            out.append(f"| ours: {r.path} | grader {r.grader}{it} | " + " | ".join(cells) + " |")
            if r.grader != "octothinker":
                notes.append(f"{r.path}: graded with {r.grader}, not the paper's rules; re-run with "
                             "--grader octothinker for a like-for-like number.")
            if any(r.problems.get(b, 0) < BENCHMARK_SIZES[b] for b in PAPER_BENCHMARKS if b in r.accuracy):
                notes.append(f"{r.path}: (n=...) marks a benchmark evaluated on a subset (--limit).")
        for p in theirs:
            scores = " | ".join(_cell(p.scores.get(b)) for b in PAPER_BENCHMARKS)
            out.append(f"| paper: {p.model} | {p.setting} | {scores} |")
        extra = sorted({b for r in ours for b in r.accuracy} - set(PAPER_BENCHMARKS))
        if extra:
            notes.append(f"not in the paper's tables (not shown): {', '.join(extra)}")
        out += [""] + [f"* {n}" for n in notes] + ([""] if notes else [])
    if not out:
        return "no runs to compare\n"
    sources = sorted({p.source for p in PAPER_RESULTS})
    out += ["Paper numbers: " + "; ".join(sources)]
    return "\n".join(out) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="tools/compare_paper.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="RUN_OR_SUMMARY",
                   help="an eval output directory, a directory of them, or a summary.json")
    p.add_argument("--model", default=None, help="show only this paper model (default: every row of the run's kind)")
    args = p.parse_args(argv)
    try:
        summaries = [load_summary(s) for path in args.runs for s in _summary_paths(path)]
        sys.stdout.write(compare(summaries, args.model))
    except (SummaryError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
