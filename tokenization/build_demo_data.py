"""Tokenize the shipped bundle and write a mixture for every stage (used by ``make demo``).

    python -m tokenization.build_demo_data --out build/demo_data [--tokenizer data/tokenizer/octo_sp8k.model]

Produces ``<out>/math_web``, ``<out>/qa_long`` (long-CoT template) and ``<out>/qa_short``
(short-CoT template) IndexedDatasets and ``<out>/mixture.yaml``::

    stable:       web 1.0
    decay_long:   web 0.7, qa_long 0.3
    decay_short:  web 0.7, qa_short 0.3
    decay_hybrid: web 0.7, qa_long 0.15, qa_short 0.15

(30% QA in the decay stages, the share the paper reports best). Prefixes in the mixture are
relative to its directory, so the output directory can be moved. Datasets that already exist are
kept unless ``--overwrite``; needs nothing outside the repository.

With ``--arith DIR`` (files from :mod:`tokenization.synthetic_arith`, as ``make demo`` does) the
synthetic arithmetic task joins the bundle: ``arith_web`` (stated facts) in every stage and the
worked problems (``arith_qa_long`` / ``arith_qa_short``) in the decay branches, with the real slices
kept small so the real loaders and templates still run::

    stable:       arith_web 0.9, web 0.1
    decay_long:   arith_web 0.3, web 0.05, arith_qa_long 0.6, qa_long 0.05
    decay_short:  arith_web 0.3, web 0.05, arith_qa_short 0.6, qa_short 0.05
    decay_hybrid: arith_web 0.3, web 0.05, arith_qa_long 0.3, arith_qa_short 0.3,
                  qa_long 0.025, qa_short 0.025

    sft:          arith_qa_short 1.0    (``make rl-demo``: a model trained briefly, then RL)

(65% QA rather than the paper's 30%: a model this small needs the exposure to learn the format
within a few hundred steps.) The synthetic QA is rendered with the ``simple`` template (the RL
stage's ``simple`` prompt layout) in every branch, so the branches differ only in their solutions
(long worked steps, short equations, or both), and RL asks each the same question layout.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional
from tokenization.preprocess import main as preprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLE = os.path.join(ROOT, "data")
DEFAULT_TOKENIZER = os.path.join(BUNDLE, "tokenizer", "octo_sp8k.model")

SLICES = {
    "math_web": ["--input", os.path.join(BUNDLE, "corpus", "math_web.jsonl.gz")],
    "qa_long": ["--input", os.path.join(BUNDLE, "corpus", "qa_long.jsonl.gz"), "--format", "qa",
                "--template", "long_cot", "--final-answer-key", "final_answer"],
    "qa_short": ["--input", os.path.join(BUNDLE, "corpus", "qa_short.jsonl.gz"), "--format", "qa",
                 "--template", "short_cot", "--final-answer-key", "final_answer"],
}

# (name, dataset prefix, weight) per stage; mixture.yaml is written from these tables.
MIXTURE = {
    "stable": [("web", "math_web", 1.0)],
    "decay_long": [("web", "math_web", 0.7), ("qa_long", "qa_long", 0.3)],
    "decay_short": [("web", "math_web", 0.7), ("qa_short", "qa_short", 0.3)],
    "decay_hybrid": [("web", "math_web", 0.7), ("qa_long", "qa_long", 0.15), ("qa_short", "qa_short", 0.15)],
}
ARITH_MIXTURE = {
    "stable": [("arith_web", "arith_web", 0.9), ("web", "math_web", 0.1)],
    "decay_long": [("arith_web", "arith_web", 0.3), ("web", "math_web", 0.05),
                   ("arith_qa_long", "arith_qa_long", 0.6), ("qa_long", "qa_long", 0.05)],
    "decay_short": [("arith_web", "arith_web", 0.3), ("web", "math_web", 0.05),
                    ("arith_qa_short", "arith_qa_short", 0.6), ("qa_short", "qa_short", 0.05)],
    "decay_hybrid": [("arith_web", "arith_web", 0.3), ("web", "math_web", 0.05),
                     ("arith_qa_long", "arith_qa_long", 0.3), ("arith_qa_short", "arith_qa_short", 0.3),
                     ("qa_long", "qa_long", 0.025), ("qa_short", "qa_short", 0.025)],
    # `make rl-demo`'s supervised stage (recipes/demo/sft.yaml): the worked short solutions alone.
    "sft": [("arith_qa_short", "arith_qa_short", 1.0)],
}


def mixture_yaml(stages: dict[str, list[tuple[str, str, float]]], comment: str) -> str:
    lines = [f"# {comment}", "stages:"]
    for stage, parts in stages.items():
        lines.append(f"  {stage}:")
        lines += [f"    - {{name: {name}, prefix: {prefix}, weight: {weight}}}" for name, prefix, weight in parts]
    return "\n".join(lines) + "\n"


def arith_slices(arith_dir: str) -> dict[str, list[str]]:
    qa = ["--format", "qa", "--final-answer-key", "final_answer"]
    return {
        "arith_web": ["--input", os.path.join(arith_dir, "arith_web.jsonl.gz")],
        "arith_qa_long": ["--input", os.path.join(arith_dir, "arith_qa_long.jsonl.gz"), *qa, "--template", "simple"],
        "arith_qa_short": ["--input", os.path.join(arith_dir, "arith_qa_short.jsonl.gz"), *qa, "--template", "simple"],
    }


def build(out: str, tokenizer: str = DEFAULT_TOKENIZER, workers: int = 1,
          overwrite: bool = False, quiet: bool = True, arith_dir: Optional[str] = None) -> str:
    os.makedirs(out, exist_ok=True)
    slices = dict(SLICES, **(arith_slices(arith_dir) if arith_dir else {}))
    for name, args in slices.items():
        prefix = os.path.join(out, name)
        if os.path.exists(prefix + ".idx") and not overwrite:
            continue
        argv = args + ["--output-prefix", prefix, "--tokenizer", tokenizer,
                       "--workers", str(workers), "--no-progress", "--strict"]
        argv += ["--overwrite"] if overwrite else []
        argv += ["--quiet"] if quiet else []
        rc = preprocess(argv)
        if rc != 0:
            raise SystemExit(f"preprocess of {name} failed (exit {rc})")
    path = os.path.join(out, "mixture.yaml")
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(mixture_yaml(ARITH_MIXTURE, "Demo mixture: the synthetic arithmetic task plus small real slices "
                             "(tokenization/build_demo_data.py).") if arith_dir else
                mixture_yaml(MIXTURE, "Demo mixture over the shipped bundle (tokenization/build_demo_data.py); "
                             "30% QA in decay."))
    os.replace(path + ".tmp", path)
    return path


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.path.join("build", "demo_data"))
    p.add_argument("--tokenizer", default=DEFAULT_TOKENIZER)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--arith", default=None, help="directory of tokenization.synthetic_arith files to include")
    args = p.parse_args(argv)
    print(build(args.out, args.tokenizer, args.workers, args.overwrite, arith_dir=args.arith))
    return 0


if __name__ == "__main__":
    sys.exit(main())
