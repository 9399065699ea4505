"""How often the two graders agree on the responses of finished eval runs.

    python tools/grader_agreement.py EVAL_DIR [EVAL_DIR ...] [--show 10]

Reads every per-sample ``<benchmark>.jsonl`` in each directory (the output of
``python -m megatron_octo.eval``). Rows written with both verdicts (``correct_math_verify`` and
``correct_octothinker``) are counted as they are; rows from runs that predate them are graded again
here, with the protocol from the directory's ``summary.json`` (or, without one, recognised from the
prompt).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Optional, Sequence

from megatron_octo.eval.grader import DEFAULT_TIMEOUT, grade_detailed, grade_octothinker
from megatron_octo.eval.octothinker_grader import rule_for
from megatron_octo.eval.prompts import get_protocol

__all__ = ["FileAgreement", "AgreementError", "agreement_for_dir", "format_agreement", "guess_protocol", "main"]


class AgreementError(ValueError):
    """An eval directory is missing, holds no per-sample JSONL, or a row is malformed."""


@dataclass
class FileAgreement:
    path: str
    benchmark: str
    protocol: str
    regraded: bool
    math_verify: list[bool] = field(default_factory=list)
    octothinker: list[bool] = field(default_factory=list)
    disagreements: list[dict] = field(default_factory=list)

    @property
    def samples(self) -> int:
        return len(self.math_verify)

    @property
    def agree(self) -> int:
        return sum(a == b for a, b in zip(self.math_verify, self.octothinker))


def guess_protocol(prompt: str) -> str:
    """The protocol a prompt was built with, from its fixed text (for runs without summary.json)."""
    if prompt.endswith("\nAssistant:"):
        return "orz_base"
    if "\nSolution:" in prompt and prompt.startswith("Problem:"):
        return "minerva_4shot"
    if prompt.startswith("Q: ") and prompt.rstrip().endswith("A:"):
        return "gsm8k_8shot" if prompt.count("\nQ: ") >= 8 else "amc_0shot"
    if prompt.startswith("Question:\n"):
        return "few_shot" if prompt.count("Question:\n") > 1 else "simple"
    raise AgreementError(f"cannot tell the prompt protocol from a prompt starting {prompt[:40]!r}")


def _read_rows(path: str) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise AgreementError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            missing = [k for k in ("response", "gold") if k not in row]
            if missing:
                raise AgreementError(f"{path}:{lineno}: row has no {missing}")
            rows.append(row)
    return rows


def agreement_for_dir(eval_dir: str, timeout: Optional[float] = DEFAULT_TIMEOUT) -> list[FileAgreement]:
    """One :class:`FileAgreement` per per-sample JSONL in ``eval_dir``."""
    if not os.path.isdir(eval_dir):
        raise AgreementError(f"{eval_dir}: not a directory")
    paths = sorted(glob.glob(os.path.join(eval_dir, "*.jsonl")))
    if not paths:
        raise AgreementError(f"{eval_dir}: no per-sample *.jsonl files (is it an eval output directory?)")
    summary_path = os.path.join(eval_dir, "summary.json")
    protocols: dict[str, str] = {}
    if os.path.isfile(summary_path):
        try:
            with open(summary_path, encoding="utf-8") as f:
                benches = json.load(f).get("benchmarks", {})
            protocols = {name: b.get("protocol") for name, b in benches.items() if isinstance(b, dict)}
        except (OSError, json.JSONDecodeError, AttributeError) as e:
            raise AgreementError(f"{summary_path}: unreadable summary ({e})") from None
    out = []
    for path in paths:
        name = os.path.splitext(os.path.basename(path))[0]
        rows = _read_rows(path)
        if not rows:
            continue
        protocol = protocols.get(name) or guess_protocol(rows[0].get("prompt", ""))
        have_both = all("correct_math_verify" in r and "correct_octothinker" in r for r in rows)
        fa = FileAgreement(path, name, protocol, regraded=not have_both)
        if have_both:
            fa.math_verify = [bool(r["correct_math_verify"]) for r in rows]
            fa.octothinker = [bool(r["correct_octothinker"]) for r in rows]
        else:
            responses, golds = [r["response"] for r in rows], [r["gold"] for r in rows]
            # The prompt stands in for the question: its fixed text never contains the MATH rule's
            # "separated by commas" trigger, so the split decision is the same.
            questions = [r.get("question") or r.get("prompt", "") for r in rows]
            mv = grade_detailed(responses, golds, style=get_protocol(protocol).answer_style, timeout=timeout)
            oc = grade_octothinker(responses, golds, rule_for(name, protocol), questions=questions, timeout=timeout)
            fa.math_verify = [v.correct for v in mv]
            fa.octothinker = [v.correct for v in oc]
        for r, a, b in zip(rows, fa.math_verify, fa.octothinker):
            if a != b:
                fa.disagreements.append({"id": r.get("id"), "sample": r.get("sample", 0), "gold": r["gold"],
                                         "math_verify": a, "octothinker": b,
                                         "response_tail": r["response"][-160:]})
        out.append(fa)
    return out


def format_agreement(results: Sequence[FileAgreement], show: int = 0) -> str:
    lines = ["| file | protocol | samples | math_verify correct | octothinker correct | agree | agreement |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        rate = r.agree / r.samples if r.samples else 1.0
        lines.append(f"| {r.path}{' (re-graded)' if r.regraded else ''} | {r.protocol} | {r.samples} | "
                     f"{sum(r.math_verify)} | {sum(r.octothinker)} | {r.agree} | {100 * rate:.1f}% |")
    total = sum(r.samples for r in results)
    agree = sum(r.agree for r in results)
    lines += ["", f"agreement: {agree}/{total} samples = {100 * agree / total if total else 100.0:.1f}%"]
    if show:
        shown = [d | {"file": r.path} for r in results for d in r.disagreements][:show]
        if shown:
            lines += ["", f"disagreements (first {len(shown)}):"]
            lines += [f"  {d['file']} id={d['id']} sample={d['sample']} gold={d['gold']!r} "
                      f"math_verify={d['math_verify']} octothinker={d['octothinker']} "
                      f"response ends {d['response_tail']!r}" for d in shown]
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="tools/grader_agreement.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("eval_dirs", nargs="+", metavar="EVAL_DIR")
    p.add_argument("--show", type=int, default=0, help="list the first N disagreeing samples")
    p.add_argument("--grade-timeout", type=float, default=DEFAULT_TIMEOUT,
                   help="seconds per response when re-grading rows without both verdicts")
    args = p.parse_args(argv)
    try:
        results = [fa for d in args.eval_dirs for fa in agreement_for_dir(d, args.grade_timeout)]
    except AgreementError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(format_agreement(results, args.show))
    return 0
