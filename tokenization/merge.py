"""Merge IndexedDataset parts (e.g. the ``--partition k/n`` outputs of a Slurm array) into one.

    python -m tokenization.merge --output-prefix tok/web 'tok/parts/web.part-*'

Parts are ordered by the ``partition`` recorded in their ``.summary.json`` when every part has one
(and then all of ``0..n-1`` must be present, with the same ``n``, tokenizer and dtype); otherwise in
the order given (globs sorted). The merged ``.bin`` is the parts' ``.bin`` files back to back and
the ``.idx`` is rebuilt, so merging the parts of a partitioned run gives byte for byte the files of
the single run. The rejects files are concatenated and a merged summary is written; the output is
published atomically like the preprocessor's (``.idx`` last).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import shutil
import sys
import time
from typing import Optional

import numpy as np

from tokenization.indexed import AtomicOutput, OutputExistsError, index_bytes, read_index

__all__ = ["MergeError", "merge"]


class MergeError(ValueError):
    pass


def _load_summary(prefix: str) -> Optional[dict]:
    path = prefix + ".summary.json"
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _expand(parts: list[str]) -> list[str]:
    out = []
    for p in parts:
        p = p[:-4] if p.endswith((".bin", ".idx")) else p
        if glob.has_magic(p):
            found = sorted({m[:-4] for m in glob.glob(p + ".idx") + glob.glob(p)
                            if m.endswith(".idx")})
            if not found:
                raise MergeError(f"part pattern {p!r} matches no .idx file")
            out.extend(found)
        else:
            out.append(p)
    return list(dict.fromkeys(out))


def order_parts(prefixes: list[str]) -> tuple[list[str], list[Optional[dict]]]:
    summaries = [_load_summary(p) for p in prefixes]
    parts = [s.get("partition") if s else None for s in summaries]
    if prefixes and all(parts):
        ns = {p["n"] for p in parts}
        if len(ns) != 1:
            raise MergeError(f"parts come from different partitionings (n = {sorted(ns)})")
        n = ns.pop()
        ks = [p["k"] for p in parts]
        if sorted(ks) != list(range(n)):
            missing = sorted(set(range(n)) - set(ks))
            dup = sorted({k for k in ks if ks.count(k) > 1})
            raise MergeError(f"incomplete partition set of n={n}: missing parts {missing}"
                             + (f", duplicated parts {dup}" if dup else ""))
        order = sorted(range(len(prefixes)), key=lambda i: ks[i])
        return [prefixes[i] for i in order], [summaries[i] for i in order]
    return prefixes, summaries


def merge(parts: list[str], output_prefix: str, overwrite: bool = False) -> dict:
    t0 = time.perf_counter()
    prefixes = _expand(parts)
    if not prefixes:
        raise MergeError("no parts to merge")
    for p in prefixes:
        for suffix in (".bin", ".idx"):
            if not os.path.isfile(p + suffix):
                raise MergeError(f"part {p}: missing {p + suffix}")
    prefixes, summaries = order_parts(prefixes)
    infos = [read_index(p) for p in prefixes]
    dtypes = {str(d) for d, _, _ in infos}
    if len(dtypes) != 1:
        raise MergeError(f"parts have different token dtypes: {sorted(dtypes)}")
    dtype = infos[0][0]
    toks = {json.dumps({k: v for k, v in (s or {}).get("tokenizer", {}).items() if k != "path"},
                       sort_keys=True) for s in summaries if s}
    if len(toks) > 1:
        raise MergeError("parts were tokenized with different tokenizers (see their summaries)")
    for p, (_, lengths, docs) in zip(prefixes, infos):
        if docs.shape[0] != lengths.shape[0] + 1 or not np.array_equal(
                docs, np.arange(lengths.shape[0] + 1)):
            raise MergeError(f"part {p}: not one sequence per document; cannot merge")
        expect = int(lengths.astype(np.int64).sum()) * dtype.itemsize
        if os.path.getsize(p + ".bin") != expect:
            raise MergeError(f"part {p}: .bin has {os.path.getsize(p + '.bin')} bytes, "
                             f"the index describes {expect}")
    out = AtomicOutput(output_prefix, overwrite=overwrite)
    try:
        h = hashlib.sha256()
        with open(out.tmp(".bin"), "wb") as fo:
            for p in prefixes:
                with open(p + ".bin", "rb") as fi:
                    for block in iter(lambda: fi.read(1 << 22), b""):
                        fo.write(block)
                        h.update(block)
        lengths = np.concatenate([ln for _, ln, _ in infos]) if infos else np.zeros(0, np.int32)
        idx = index_bytes(dtype, lengths)
        with open(out.tmp(".idx"), "wb") as f:
            f.write(idx)
        with open(out.tmp(".rejects.jsonl"), "wb") as fo:
            for p in prefixes:
                if os.path.isfile(p + ".rejects.jsonl"):
                    with open(p + ".rejects.jsonl", "rb") as fi:
                        shutil.copyfileobj(fi, fo)
        skipped: dict[str, int] = {}
        for s in summaries:
            for r, c in ((s or {}).get("skipped") or {}).items():
                skipped[r] = skipped.get(r, 0) + c
        summary = {
            "version": 1,
            "output_prefix": output_prefix,
            "merged_from": prefixes,
            "documents": int(lengths.shape[0]),
            "tokens": int(lengths.astype(np.int64).sum()),
            "records": sum((s or {}).get("records", 0) for s in summaries),
            "skipped": skipped,
            "skipped_total": sum(skipped.values()),
            "dtype": dtype.name,
            "eod_appended": all((s or {}).get("eod_appended", True) for s in summaries),
            "tokenizer": next((s["tokenizer"] for s in summaries if s), None),
            "partition": None,
            "inputs": [i for s in summaries if s for i in s.get("inputs", [])],
            "output": {
                "bin": {"path": output_prefix + ".bin", "sha256": h.hexdigest(),
                        "bytes": int(lengths.astype(np.int64).sum()) * dtype.itemsize},
                "idx": {"path": output_prefix + ".idx", "sha256": hashlib.sha256(idx).hexdigest(),
                        "bytes": len(idx)},
                "rejects": output_prefix + ".rejects.jsonl",
            },
            "elapsed_s": round(time.perf_counter() - t0, 3),
        }
        with open(out.tmp(".summary.json"), "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2, ensure_ascii=False)
            f.write("\n")
        out.commit()
    except BaseException:
        out.abort()
        raise
    return summary


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tokenization.merge", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("parts", nargs="+", help="part prefixes or globs (a .bin/.idx suffix is ignored)")
    p.add_argument("--output-prefix", "-o", required=True)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", "-q", action="store_true")
    args = p.parse_args(argv)
    try:
        summary = merge(args.parts, args.output_prefix, args.overwrite)
    except (MergeError, OutputExistsError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
