"""Writes tests/reference/octothinker_golden.json: OctoThinker's own verdicts, in OctoThinker's pinned
environment, on every case tests/process/test_octothinker_compat_env.py compares ``--grader octothinker`` with.

    OCTO_OCTOTHINKER_SRC=/path/to/OctoThinker nice -n 10 env OMP_NUM_THREADS=1 \\
        .venv/bin/python -m tests.reference.make_octothinker_golden [--out PATH]

OctoThinker's code is not part of this project and is not committed: its functions are imported only
from the checkout named by ``OCTO_OCTOTHINKER_SRC`` (the layout of tests/scripts/octothinker_reference.py:
``eval/data_processing/answer_extraction.py``, ``eval/eval/{eval_script,eval_utils,ocwcourses_eval_utils}.py``,
``rl/verl/utils/reward_score/{math_verifier,eval}.py``), and run by tests/octothinker_env.py in an isolated
interpreter (``python -I -S``) on sympy 1.12 + antlr4-python3-runtime 4.11.1 (their ``eval/requirements.txt``).
Only the verdicts are kept: per case (tests/octothinker_cases.py; keyed by a hash of response, gold, rule
and question) the upstream ``correct``, the answer the upstream extraction returned (``extracted``) and
any exception (``error``).

The header names where each upstream file came from (UPSTREAM below: repository, path there, commit) with
the sha256 of the file actually used, the library versions of the pinned environment, and the date. If
you regenerate from other commits, edit UPSTREAM (or pass ``--upstream``) so that the header says so.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

from tests import octothinker_cases, octothinker_env  # noqa: E402  (run as -m from the repository root)

# Path in the checkout -> (repository, path in that repository, commit) it was taken from.
UPSTREAM = {
    "eval/data_processing/answer_extraction.py":
        ("marvinfli/OctoThinker", "eval/data_processing/answer_extraction.py",
         "a3f8e4e5adb9a8b6b1f8618061b3b680cfe84ba3"),
    "eval/eval/eval_script.py":
        ("marvinfli/OctoThinker", "eval/eval/eval_script.py", "957dfec4c59c1d4876a81ebec57c7efae45e427d"),
    "eval/eval/eval_utils.py":
        ("marvinfli/OctoThinker", "eval/eval/eval_utils.py", "957dfec4c59c1d4876a81ebec57c7efae45e427d"),
    "eval/eval/ocwcourses_eval_utils.py":
        ("marvinfli/OctoThinker", "eval/eval/ocwcourses_eval_utils.py", "957dfec4c59c1d4876a81ebec57c7efae45e427d"),
    "rl/verl/utils/reward_score/math_verifier.py":
        ("GAIR-NLP/OctoThinker", "rl/verl/utils/reward_score/math_verifier.py",
         "94cdad66c0cce9166cf9a9689cc372c116b80314"),
    # math_verifier.py imports normalize_final_answer from eval.py beside it; OctoThinker's own copy is not
    # public in the index, this is the one of GAIR-NLP's ToRL verl fork (copy rokku-c/ToRL).
    "rl/verl/utils/reward_score/eval.py":
        ("rokku-c/ToRL", "verl/utils/reward_score/eval.py", "51be64b32a3c69ad92d5c9badb0410e2859b40a0"),
}

CALLS = {
    "gsm": "eval_last_single_answer({prediction: extract_gsm_few_shot_cot_answer(q, response, 'gsm8k'), "
           "answer: gold without commas}); extracted None for '[invalid]'",
    "math": "eval_math({prediction: extract_math_few_shot_cot_answer(q, response, 'math'), "
            "answer: extract_math_answer(q, '\\\\boxed{' + gold without $..$ + '}', 'math')})",
    "olympiad": "eval_olympiad_math({prediction: extract_olympiad_math_answer(q, response, 'olympiad'), "
                "answer: gold}); extracted = prediction[0]",
    "rl_boxed": "math_verifier.compute_score(response, gold, 'default') == 1.0; "
                "extracted = boxed_pattern.findall(response)[-1][:-1]",
}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _git_head(src: Path):
    try:
        res = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def upstream_header(src: Path, upstream: dict) -> list[dict]:
    out = []
    for local, (repo, path, commit) in upstream.items():
        f = src / local
        if not f.is_file():
            raise SystemExit(f"{octothinker_env.SRC_ENV}={src}: no {local}")
        out.append({"repo": repo, "path": path, "commit": commit, "file_in_checkout": local, "sha256": _sha256(f)})
    return out


def build(src: Path, upstream: dict = UPSTREAM) -> dict:
    cases = octothinker_cases.all_cases()
    reference = octothinker_env.run_reference(octothinker_cases.request(cases), mode="upstream", src=str(src))
    records = octothinker_cases.golden_records(cases, reference)
    errors = [r for r in records if r["error"] is not None
              and not r["error"].startswith(("TimeoutException", "TimeoutError"))]
    if errors:
        raise SystemExit("OctoThinker's functions raised on these cases (their harness would count them wrong, "
                         "but an exception here means the call is wrong; nothing written):\n" +
                         "\n".join(f"  {r['source']}: {r['error']}" for r in errors))
    by_rule = collections.Counter(r["rule"] for r in records)
    correct = collections.Counter(r["rule"] for r in records if r["correct"])
    return {
        "description": "OctoThinker's own verdicts, in its pinned environment, on the cases of "
                       "tests/unit/test_octothinker_compat.py; compared with --grader octothinker there.",
        "generated_by": "tests/reference/make_octothinker_golden.py",
        "regenerate": octothinker_cases.REGENERATE,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
        "upstream": upstream_header(src, upstream),
        "checkout_git_head": _git_head(src),
        "environment": {"interpreter": "python -I -S, sys.path = standard library + pip --target directory",
                        "versions": reference["versions"]},
        "calls": CALLS,
        "key": "sha256 of json.dumps([response, gold, rule, question]), first 20 hex digits",
        "counts": {rule: {"cases": by_rule[rule], "correct": correct[rule]} for rule in sorted(by_rule)},
        "cases": records,
    }


def dumps(golden: dict) -> str:
    """The header indented, one line per case (readable diffs when a verdict changes)."""
    header = json.dumps({k: v for k, v in golden.items() if k != "cases"}, indent=1, ensure_ascii=False)
    rows = ",\n".join("  " + json.dumps(r, ensure_ascii=False) for r in golden["cases"])
    return header[:-2] + ',\n "cases": [\n' + rows + "\n ]\n}\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(octothinker_cases.GOLDEN))
    parser.add_argument("--upstream", action="append", default=[], metavar="FILE=REPO:PATH@COMMIT",
                        help="override the provenance of one checkout file (repeatable)")
    args = parser.parse_args(argv)
    src = os.environ.get(octothinker_env.SRC_ENV)
    if not src:
        parser.error(f"set {octothinker_env.SRC_ENV} to a checkout of OctoThinker's eval/ and rl/ code")
    upstream = dict(UPSTREAM)
    for spec in args.upstream:
        local, rest = spec.split("=", 1)
        repo_path, commit = rest.rsplit("@", 1)
        repo, path = repo_path.split(":", 1)
        upstream[local] = (repo, path, commit)
    golden = build(Path(src).resolve(), upstream)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(dumps(golden), encoding="utf-8")
    n = len(golden["cases"])
    print(f"wrote {out}: {n} cases, {sum(r['correct'] for r in golden['cases'])} correct upstream; "
          f"sympy {golden['environment']['versions']['sympy']}, "
          f"ANTLR {golden['environment']['versions']['antlr4-python3-runtime']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
