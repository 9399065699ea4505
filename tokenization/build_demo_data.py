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
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

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

MIXTURE = """\
# Demo mixture over the shipped bundle (tokenization/build_demo_data.py); 30% QA in decay.
stages:
  stable:
    - {name: web, prefix: math_web, weight: 1.0}
  decay_long:
    - {name: web, prefix: math_web, weight: 0.7}
    - {name: qa_long, prefix: qa_long, weight: 0.3}
  decay_short:
    - {name: web, prefix: math_web, weight: 0.7}
    - {name: qa_short, prefix: qa_short, weight: 0.3}
  decay_hybrid:
    - {name: web, prefix: math_web, weight: 0.7}
    - {name: qa_long, prefix: qa_long, weight: 0.15}
    - {name: qa_short, prefix: qa_short, weight: 0.15}
"""


def build(out: str, tokenizer: str = DEFAULT_TOKENIZER, workers: int = 1,
          overwrite: bool = False, quiet: bool = True) -> str:
    from tokenization.preprocess import main as preprocess

    os.makedirs(out, exist_ok=True)
    for name, args in SLICES.items():
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
        f.write(MIXTURE)
    os.replace(path + ".tmp", path)
    return path


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.path.join("build", "demo_data"))
    p.add_argument("--tokenizer", default=DEFAULT_TOKENIZER)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    print(build(args.out, args.tokenizer, args.workers, args.overwrite))
    return 0


if __name__ == "__main__":
    sys.exit(main())
