"""Raw corpora -> megatron-core IndexedDataset (.bin/.idx), one document per record, EOD appended.

Usage (see docs/tokenization.md)::

    python -m tokenization.preprocess --input 'raw/web/*.jsonl.zst' --output-prefix tok/web \\
        --tokenizer data/tokenizer/octo_sp8k.model --workers 2
    python -m tokenization.preprocess --input data/corpus/qa_long.jsonl.gz --format qa \\
        --template long_cot --output-prefix tok/qa_long --tokenizer ...

Outputs: ``<prefix>.bin``, ``<prefix>.idx`` (uint16 when the vocabulary has < 65500 ids, else
int32), ``<prefix>.rejects.jsonl`` (one line per skipped record: file, line, reason, detail) and
``<prefix>.summary.json`` (also printed on stdout). All four are written under temporary names and
renamed when complete, ``.idx`` last (see :mod:`tokenization.indexed`).

Pipeline: the main process reads raw lines (decompressing and hashing) and groups them into chunks
of fixed size (``--chunk-docs`` records or ``--chunk-bytes`` bytes, whichever comes first, a rule
that does not depend on the worker count); workers parse, validate, render and batch-encode a
chunk; results come back in submission order (a bounded window of in-flight chunks), so the bytes
written are identical for any ``--workers``. ``--workers 1`` encodes in the main process.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from dataclasses import asdict
from typing import Iterator, Optional

import numpy as np

from tokenization.indexed import (
    ACTIVE_OUTPUTS, PUBLISH_LOCK, AtomicOutput, OutputExistsError, index_bytes,
)
from tokenization.readers import (
    InputError, RecordStream, expand_inputs, parse_partition, partition_files,
)
from tokenization.templates import TEMPLATES, TemplateError, canonical_name
from tokenization.tokenizer import LIBRARIES, EncoderSpec, FastEncoder, TokenizerError, encoder_spec
from tokenization.worker import (
    REASONS, ChunkResult, Selection, clear_worker, encode_chunk, init_forked_worker, init_worker,
    process_chunk,
)

SUMMARY_VERSION = 1


class PreprocessError(RuntimeError):
    """A failed run (``--strict`` reject, bad arguments); the message names the cause."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tokenization.preprocess",
        description="Tokenize JSONL/parquet corpora into a megatron-core IndexedDataset (.bin/.idx).",
    )
    p.add_argument("--input", "-i", nargs="+", required=True, action="extend",
                   help="input files or globs (.jsonl, .jsonl.gz, .jsonl.zst, .parquet); order kept")
    p.add_argument("--output-prefix", "-o", required=True, help="writes <prefix>.bin/.idx/...")
    p.add_argument("--tokenizer", default=None, help="tokenizer.json (or its directory), *.model, *.tiktoken")
    p.add_argument("--tokenizer-library", default="auto", choices=LIBRARIES)
    p.add_argument("--vocab-size", type=int, default=None, help="vocab size for --tokenizer-library null")
    p.add_argument("--eod-token", default=None, help="override the end-of-document token string")
    p.add_argument("--format", choices=("text", "qa"), default="text")
    p.add_argument("--text-key", default="text", help="text field (format text); dotted paths allowed")
    p.add_argument("--question-key", default="question")
    p.add_argument("--answer-key", default="answer")
    p.add_argument("--final-answer-key", default=None,
                   help="optional final-answer field (format qa), boxed if the answer has no \\boxed{}")
    p.add_argument("--template", default="plain",
                   help=f"QA template (format qa): {', '.join(sorted(TEMPLATES))}")
    p.add_argument("--workers", "-j", type=int, default=1, help="encoding processes (1 = in-process)")
    p.add_argument("--chunk-docs", type=int, default=128, help="records per chunk")
    p.add_argument("--chunk-bytes", type=int, default=256 << 10, help="raw bytes per chunk")
    p.add_argument("--start-method", default="auto", choices=("auto", "fork", "spawn"),
                   help="worker start method (auto: fork when safe, else spawn; same output)")
    p.add_argument("--partition", default=None,
                   help="k/n: process only part k (0-based) of n contiguous, size-balanced file groups")
    p.add_argument("--strict", action="store_true", help="fail on the first bad record (names file:line)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output prefix")
    p.add_argument("--progress", dest="progress", action="store_true", default=None)
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--quiet", "-q", action="store_true", help="do not print the summary on stdout")
    return p


def _chunks(streams: list[RecordStream], chunk_docs: int, chunk_bytes: int,
            tally: dict) -> Iterator[tuple[int, list, int]]:
    """(file index, items, on-disk bytes consumed) chunks; a chunk never spans two files.

    A chunk closes at ``chunk_docs`` records or ``chunk_bytes`` bytes of raw record data, a rule
    that depends only on the input, never on the number of workers.
    """
    for fi, stream in enumerate(streams):
        items, size, seen = [], 0, 0
        for number, payload in stream:
            items.append((number, payload))
            if isinstance(payload, bytes):
                size += len(payload) + 1
            elif isinstance(payload, dict):
                size += sum(len(v) for v in payload.values() if isinstance(v, str))
            tally["records"][fi] += 1
            if len(items) >= chunk_docs or size >= chunk_bytes:
                done = stream.bytes_read
                yield fi, items, done - seen
                items, size, seen = [], 0, done
        done = stream.bytes_read
        if items or done > seen:
            yield fi, items, done - seen


def choose_start_method(requested: str = "auto") -> str:
    """``fork`` when it is safe (the CLI: no torch, no other threads), else ``spawn``.

    A forked worker inherits the tokenizer the main process already loaded (loading Qwen's
    tokenizer.json costs ~1.5 s per process); a spawned one loads it again. The output is the same.
    """
    if requested != "auto":
        return requested
    if "fork" not in mp.get_all_start_methods():
        return "spawn"
    others = [t for t in threading.enumerate()
              if t is not threading.main_thread() and t.name != _WATCHER_NAME]
    if "torch" in sys.modules or others:
        return "spawn"
    return "fork"


def _make_pool(ctx, method: str, workers: int, spec: EncoderSpec, sel: Selection, dtype: np.dtype):
    if method != "fork":
        return ctx.Pool(workers, initializer=init_worker, initargs=(spec, sel, dtype.name))
    # forked workers inherit the state; the parent itself never encodes in this mode
    saved = os.environ.get("TOKENIZERS_PARALLELISM")
    init_worker(spec, sel, dtype.name)
    try:
        return ctx.Pool(workers, initializer=init_forked_worker)
    finally:
        if saved is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = saved


def _ordered_results(chunks, workers: int, spec: EncoderSpec, sel: Selection, dtype: np.dtype,
                     start_method: str = "auto"):
    """Chunk results in submission order; a bounded window of work in flight."""
    if workers <= 1:
        encoder = FastEncoder(spec, threads=None)
        for fi, items, size in chunks:
            yield fi, size, encode_chunk(items, sel, encoder, dtype)
        return
    method = choose_start_method(start_method)
    ctx = mp.get_context(method)
    pool = _make_pool(ctx, method, workers, spec, sel, dtype)
    window: collections.deque = collections.deque()
    try:
        for fi, items, size in chunks:
            window.append((fi, size, pool.apply_async(process_chunk, (items,))))
            if len(window) >= 2 * workers + 1:
                f, s, res = window.popleft()
                yield f, s, res.get()
        while window:
            f, s, res = window.popleft()
            yield f, s, res.get()
        pool.close()
        pool.join()
    finally:
        pool.terminate()
        clear_worker()


class _Progress:
    def __init__(self, enabled: bool, total_bytes: int):
        self.bar = None
        self.t0 = time.perf_counter()
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total_bytes or None, unit="B", unit_scale=True,
                            desc="tokenize", file=sys.stderr, dynamic_ncols=True)

    def update(self, nbytes: int, docs: int, tokens: int, text_bytes: int) -> None:
        if self.bar is None:
            return
        self.bar.update(nbytes)
        dt = max(time.perf_counter() - self.t0, 1e-9)
        self.bar.set_postfix_str(
            f"{docs / dt:,.0f} docs/s, {tokens / dt:,.0f} tok/s, {text_bytes / dt / 1e6:.2f} MB/s text",
            refresh=False,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run(args: argparse.Namespace) -> dict:
    """Run the preprocessor; returns the summary dict. Raises on failure (nothing published)."""
    t0 = time.perf_counter()
    if args.workers < 1:
        raise PreprocessError("--workers must be >= 1")
    if args.chunk_docs < 1 or args.chunk_bytes < 1:
        raise PreprocessError("--chunk-docs and --chunk-bytes must be >= 1")
    template = canonical_name(args.template) if args.format == "qa" else None
    sel = Selection(format=args.format, text_key=args.text_key, question_key=args.question_key,
                    answer_key=args.answer_key, final_answer_key=args.final_answer_key,
                    template=template or "plain")
    partition = parse_partition(args.partition)
    all_files = expand_inputs(args.input)
    files = partition_files(all_files, *partition) if partition else all_files
    t_load = time.perf_counter()
    spec = encoder_spec(args.tokenizer, args.tokenizer_library, args.vocab_size, args.eod_token)
    load_s = time.perf_counter() - t_load
    dtype = np.dtype(spec.dtype_name)

    out = AtomicOutput(args.output_prefix, overwrite=args.overwrite)
    prefix = args.output_prefix
    columns = sel.top_level_columns()
    streams = [RecordStream(f, columns=columns) for f in files]
    tally = {"records": [0] * len(files), "docs": [0] * len(files), "tokens": [0] * len(files)}
    skipped: collections.Counter = collections.Counter()
    n_docs = n_tokens = text_bytes = 0
    lengths_parts: list[np.ndarray] = []
    total_bytes = sum(os.path.getsize(f) for f in files if os.path.isfile(f))
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    progress = _Progress(show, total_bytes)
    bin_hash = hashlib.sha256()
    try:
        bin_f = open(out.tmp(".bin"), "wb")
        rej_f = open(out.tmp(".rejects.jsonl"), "w", encoding="utf-8")
        with bin_f, rej_f:
            chunks = _chunks(streams, args.chunk_docs, args.chunk_bytes, tally)
            for fi, size, res in _ordered_results(chunks, args.workers, spec, sel, dtype,
                                                   args.start_method):
                res: ChunkResult
                fname = files[fi]
                for number, reason, detail in res.rejects:
                    if args.strict:
                        raise PreprocessError(f"{fname}:{number}: {reason}: {detail}")
                    skipped[reason] += 1
                    rej_f.write(json.dumps({"file": fname, "line": number, "reason": reason,
                                            "detail": detail}, ensure_ascii=False) + "\n")
                data = res.tokens.tobytes()
                bin_f.write(data)
                bin_hash.update(data)
                lengths_parts.append(res.lengths)
                nd, nt = int(res.lengths.shape[0]), int(res.tokens.shape[0])
                n_docs += nd
                n_tokens += nt
                text_bytes += res.text_bytes
                tally["docs"][fi] += nd
                tally["tokens"][fi] += nt
                progress.update(size, n_docs, n_tokens, text_bytes)
        progress.close()
        lengths = np.concatenate(lengths_parts) if lengths_parts else np.zeros(0, np.int32)
        idx = index_bytes(dtype, lengths)
        with open(out.tmp(".idx"), "wb") as f:
            f.write(idx)
        elapsed = time.perf_counter() - t0
        summary = {
            "version": SUMMARY_VERSION,
            "output_prefix": prefix,
            "documents": n_docs,
            "tokens": n_tokens,
            "records": sum(tally["records"]),
            "skipped": {r: skipped[r] for r in REASONS if skipped[r]},
            "skipped_total": sum(skipped.values()),
            "dtype": dtype.name,
            "eod_appended": True,
            "tokenizer": spec.describe(),
            "selection": asdict(sel),
            "partition": {"k": partition[0], "n": partition[1], "all_inputs": len(all_files)}
            if partition else None,
            "inputs": [
                {"path": f, "sha256": s.sha256, "bytes": s.nbytes, "records": tally["records"][i],
                 "documents": tally["docs"][i], "tokens": tally["tokens"][i]}
                for i, (f, s) in enumerate(zip(files, streams))
            ],
            "output": {
                "bin": {"path": prefix + ".bin", "sha256": bin_hash.hexdigest(),
                        "bytes": n_tokens * dtype.itemsize},
                "idx": {"path": prefix + ".idx", "sha256": hashlib.sha256(idx).hexdigest(),
                        "bytes": len(idx)},
                "rejects": prefix + ".rejects.jsonl",
            },
            "workers": args.workers,
            "elapsed_s": round(elapsed, 3),
            "tokenizer_load_s": round(load_s, 3),
            "throughput": {
                "docs_per_s": round(n_docs / elapsed, 1),
                "tokens_per_s": round(n_tokens / elapsed, 1),
                "text_mb_per_s": round(text_bytes / elapsed / 1e6, 3),
            },
        }
        with open(out.tmp(".summary.json"), "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2, ensure_ascii=False)
            f.write("\n")
        out.commit()
    except BaseException:
        progress.close()
        out.abort()
        raise
    return summary


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        summary = run(args)
    except (PreprocessError, InputError, TemplateError, TokenizerError, OutputExistsError,
            FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; no output written", file=sys.stderr)
        return 130
    if not args.quiet:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
    if summary["documents"] == 0:
        print(f"warning: no documents written to {args.output_prefix}", file=sys.stderr)
    return 0


# --- SIGTERM (Slurm preemption, `kill`) ------------------------------------------------------------
# A Python-level handler is not reliable here: while the pool's helper threads run, CPython 3.11
# can leave a pending signal unhandled if the main thread is blocked in a read (a FIFO, a slow
# file system). So the command line blocks SIGTERM in every thread and a watcher thread takes it
# with sigwait: it deletes the temporary files of the run (under the same lock as the final
# renames, so a completed run is never touched), kills the worker processes and exits with 143.

_WATCHER_NAME = "preprocess-sigterm"


def _sigterm_watcher() -> None:
    signal.sigwait({signal.SIGTERM})
    with PUBLISH_LOCK:
        for out in list(ACTIVE_OUTPUTS):
            out.abort()
        for child in mp.active_children():
            child.kill()
        os.write(2, b"terminated by SIGTERM; no output written\n")
        os._exit(128 + signal.SIGTERM)


def cli() -> int:
    if hasattr(signal, "pthread_sigmask") and hasattr(signal, "sigwait"):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        threading.Thread(target=_sigterm_watcher, name=_WATCHER_NAME, daemon=True).start()
    return main()


if __name__ == "__main__":
    sys.exit(cli())
