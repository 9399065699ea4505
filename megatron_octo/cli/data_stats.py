#!/usr/bin/env python
"""Tokens per source of a mixture, and how many epochs of each source a token budget implies.

    python tools/data_stats.py --mixture build/demo_data/mixture.yaml --stage decay_long --tokens 20B
    python tools/data_stats.py --mixture m.yaml                   # every stage, OctoThinker budgets
    python tools/data_stats.py --prefix tok/web tok/qa_long      # plain token counts

For each stage: budget B (``--tokens`` for all stages, ``--budget STAGE=N`` per stage, else the
OctoThinker default: 200B for ``stable``, 20B for the decay stages), each source's weight share
w_i = weight_i / sum(weights), the tokens it contributes ``w_i * B`` and the implied epochs
``w_i * B / tokens_i`` (tokens counted from the ``.idx``, EOD included). Megatron blends equal-length
samples by weight, so weight shares are token shares. A source drawn more than ``--max-epochs``
times (default 4) gets a WARNING line; ``--fail-on-warning`` turns warnings into exit status 1.
Numbers accept suffixes K, M, B (or G), T: ``20B`` = 2e10.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Optional


from megatron_octo.data.mixture import (
    MixtureError, Source, load_mixture, load_mixture_file, normalized_weights,
)
from tokenization.indexed import IndexFormatError, read_index

DEFAULT_BUDGETS = {"stable": 200e9, "decay_long": 20e9, "decay_short": 20e9, "decay_hybrid": 20e9}
DEFAULT_DECAY_BUDGET = 20e9
_SUFFIX = {"": 1, "K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12}


def parse_tokens(text: str) -> float:
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([KMBGT]?)\s*", text, re.I)
    if not m:
        raise argparse.ArgumentTypeError(f"not a token count: {text!r} (e.g. 20B, 500M, 2e10)")
    value = float(m.group(1)) * _SUFFIX[m.group(2).upper()]
    if value <= 0:
        raise argparse.ArgumentTypeError(f"token count must be positive: {text!r}")
    return value


def human(n: float) -> str:
    for unit, div in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return f"{n:.0f}"


def source_counts(prefix: str) -> tuple[int, int]:
    """(documents, tokens) of an IndexedDataset prefix."""
    _, lengths, docs = read_index(prefix)
    return int(docs.shape[0] - 1), int(lengths.astype("int64").sum())


def stage_report(stage: str, sources: list[Source], budget: float, max_epochs: float) -> dict:
    rows, warnings = [], []
    for s, share in zip(sources, normalized_weights(sources)):
        docs, tokens = source_counts(s.prefix)
        drawn = share * budget
        epochs = drawn / tokens if tokens else float("inf")
        rows.append({"name": s.name, "prefix": s.prefix, "weight": s.weight, "share": share,
                     "documents": docs, "tokens": tokens, "drawn_tokens": drawn, "epochs": epochs})
        if epochs > max_epochs:
            warnings.append(f"WARNING {stage}/{s.name}: {human(drawn)} tokens drawn from "
                            f"{human(tokens)} available = {epochs:,.1f} epochs "
                            f"(> --max-epochs {max_epochs:g})")
    return {"stage": stage, "budget": budget, "sources": rows, "warnings": warnings}


def format_report(rep: dict) -> str:
    lines = [f"stage {rep['stage']}: budget {human(rep['budget'])} tokens"]
    header = f"  {'source':<16}{'weight':>8}{'share':>8}{'docs':>10}{'tokens':>10}{'drawn':>10}{'epochs':>12}"
    lines.append(header)
    for r in rep["sources"]:
        lines.append(f"  {r['name']:<16}{r['weight']:>8g}{r['share'] * 100:>7.1f}%{r['documents']:>10,}"
                     f"{human(r['tokens']):>10}{human(r['drawn_tokens']):>10}{r['epochs']:>12,.2f}")
    lines.extend("  " + w for w in rep["warnings"])
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mixture", help="mixture YAML (megatron_octo/data/mixture.py)")
    p.add_argument("--stage", action="append", default=None, help="stage(s) to report (default: all)")
    p.add_argument("--tokens", type=parse_tokens, default=None, help="token budget for every stage")
    p.add_argument("--budget", action="append", default=[], metavar="STAGE=N",
                   help="token budget of one stage, e.g. decay_long=20B")
    p.add_argument("--max-epochs", type=float, default=4.0)
    p.add_argument("--prefix", nargs="+", default=None, help="just count these dataset prefixes")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--fail-on-warning", action="store_true")
    args = p.parse_args(argv)

    try:
        if args.prefix:
            out = []
            for prefix in args.prefix:
                docs, tokens = source_counts(prefix)
                out.append({"prefix": prefix, "documents": docs, "tokens": tokens})
            if args.json:
                print(json.dumps(out, indent=2))
            else:
                for r in out:
                    print(f"{r['prefix']}: {r['documents']:,} documents, {r['tokens']:,} tokens")
            return 0
        if not args.mixture:
            p.error("give --mixture (or --prefix)")
        budgets = {}
        for item in args.budget:
            stage, sep, value = item.partition("=")
            if not sep:
                p.error(f"--budget wants STAGE=N, got {item!r}")
            budgets[stage] = parse_tokens(value)
        all_stages = load_mixture_file(args.mixture, check_files=False)
        stages = args.stage or list(all_stages)
        reports = []
        for stage in stages:
            sources = load_mixture(args.mixture, stage, check_files=True)
            budget = budgets.get(stage) or args.tokens or DEFAULT_BUDGETS.get(stage, DEFAULT_DECAY_BUDGET)
            reports.append(stage_report(stage, sources, budget, args.max_epochs))
    except (MixtureError, IndexFormatError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(reports, indent=2))
    else:
        print("\n\n".join(format_report(r) for r in reports))
    warnings = [w for r in reports for w in r["warnings"]]
    if args.json:
        for w in warnings:
            print(w, file=sys.stderr)
    return 1 if warnings and args.fail_on_warning else 0


if __name__ == "__main__":
    sys.exit(main())
