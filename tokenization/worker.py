"""Worker side of the preprocessor: parse, validate, render and batch-encode one chunk.

Kept light on purpose (stdlib, numpy, the tokenizer library): workers are started with the
``spawn`` method and must not import megatron or torch.

A chunk is a list of ``(number, payload)`` from :mod:`tokenization.readers`; the result holds the
token ids of the accepted documents (EOD appended), their lengths, and the rejects
``(number, reason, detail)`` — all in input order, so the output does not depend on which worker
handled which chunk.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from megatron_octo.runtime.procs import die_with_parent
from tokenization.readers import ReadProblem
from tokenization.templates import get_template
from tokenization.tokenizer import EncoderSpec, FastEncoder

# Reject reasons (stable identifiers used in the summary and the rejects file)
REASONS = (
    "blank_line", "invalid_utf8", "bad_json", "not_object", "missing_key", "non_string",
    "empty_text", "invalid_unicode", "encode_error", "truncated_input", "corrupt_input",
)

_MISSING = object()


@dataclass(frozen=True)
class Selection:
    """How a record becomes text: ``format`` "text" (``text_key``) or "qa" (template)."""

    format: str = "text"
    text_key: str = "text"
    question_key: str = "question"
    answer_key: str = "answer"
    final_answer_key: Optional[str] = None
    template: str = "plain"

    def top_level_columns(self) -> list[str]:
        keys = [self.text_key] if self.format == "text" else [self.question_key, self.answer_key]
        if self.format == "qa" and self.final_answer_key:
            keys.append(self.final_answer_key)
        out = []
        for k in keys:
            out.extend([k, k.split(".", 1)[0]])
        return out


class Reject(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _lookup(rec: dict, key: str) -> Any:
    if key in rec:
        return rec[key]
    if "." in key:
        cur: Any = rec
        for part in key.split("."):
            if not isinstance(cur, dict) or part not in cur:
                return _MISSING
            cur = cur[part]
        return cur
    return _MISSING


def _string_field(rec: dict, key: str, allow_empty: bool = False) -> str:
    value = _lookup(rec, key)
    if value is _MISSING:
        raise Reject("missing_key", f"no key {key!r}")
    if not isinstance(value, str):
        raise Reject("non_string", f"key {key!r} holds {type(value).__name__}, not a string")
    if not allow_empty and not value.strip():
        raise Reject("empty_text", f"key {key!r} is empty")
    return value


def select_text(rec: Any, sel: Selection) -> str:
    """The document text of one decoded record (raises :class:`Reject`)."""
    if not isinstance(rec, dict):
        raise Reject("not_object", f"record is a JSON {type(rec).__name__}, not an object")
    if sel.format == "text":
        return _string_field(rec, sel.text_key)
    q = _string_field(rec, sel.question_key)
    a = _string_field(rec, sel.answer_key)
    final = None
    if sel.final_answer_key:
        v = _lookup(rec, sel.final_answer_key)
        if isinstance(v, bool):
            raise Reject("non_string", f"key {sel.final_answer_key!r} holds bool")
        if isinstance(v, (int, float)):
            v = str(v)
        if v is not _MISSING and v is not None and not isinstance(v, str):
            raise Reject("non_string",
                         f"key {sel.final_answer_key!r} holds {type(v).__name__}, not a string")
        final = None if v is _MISSING else v
    return get_template(sel.template)(q, a, final)


def decode_line(line: bytes, number: int) -> Any:
    if not line.strip():
        raise Reject("blank_line", "blank line")
    try:
        s = line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Reject("invalid_utf8", f"invalid UTF-8 at byte {e.start}") from None
    if number == 1 and s.startswith("\ufeff"):
        s = s[1:]
    try:
        return json.loads(s)
    except json.JSONDecodeError as e:
        raise Reject("bad_json", f"malformed JSON ({e.msg}; column {e.colno})") from None
    except RecursionError:
        raise Reject("bad_json", "malformed JSON (nesting too deep)") from None


@dataclass
class ChunkResult:
    tokens: np.ndarray          # all accepted documents, EOD after each, output dtype
    lengths: np.ndarray         # int32, one per accepted document (EOD included)
    rejects: list               # (number, reason, detail)
    text_bytes: int             # UTF-8 bytes of the accepted documents' text


def prepare_texts(items, sel: Selection):
    """Decoded and validated texts of a chunk: (numbers, texts, rejects, text_bytes)."""
    numbers, texts, rejects, nbytes = [], [], [], 0
    for number, payload in items:
        try:
            if isinstance(payload, ReadProblem):
                raise Reject(payload.reason, payload.detail)
            rec = decode_line(payload, number) if isinstance(payload, bytes) else payload
            text = select_text(rec, sel)
            try:
                nbytes += len(text.encode("utf-8"))
            except UnicodeEncodeError:
                raise Reject("invalid_unicode", "text holds a lone surrogate code point") from None
        except Reject as r:
            rejects.append((number, r.reason, r.detail))
            continue
        numbers.append(number)
        texts.append(text)
    return numbers, texts, rejects, nbytes


def encode_chunk(items, sel: Selection, encoder: FastEncoder, dtype: np.dtype) -> ChunkResult:
    numbers, texts, rejects, nbytes = prepare_texts(items, sel)
    try:
        ids_list = encoder.encode_batch(texts)
    except Exception:
        ids_list = None
    if ids_list is None:  # find the culprit(s) one by one
        ids_list, keep_n, keep_t = [], [], []
        for n, t in zip(numbers, texts):
            try:
                ids_list.append(encoder.encode(t))
            except Exception as e:  # noqa: BLE001 - any tokenizer failure rejects the record
                rejects.append((n, "encode_error", f"tokenizer failed: {type(e).__name__}: {e}"))
                nbytes -= len(t.encode("utf-8"))
                continue
            keep_n.append(n)
            keep_t.append(t)
        rejects.sort(key=lambda r: r[0])
    eod = encoder.spec.eod
    flat: list[int] = []
    lengths = np.empty(len(ids_list), dtype=np.int32)
    for i, ids in enumerate(ids_list):
        flat.extend(ids)
        flat.append(eod)
        lengths[i] = len(ids) + 1
    tokens = np.array(flat, dtype=dtype)
    return ChunkResult(tokens, lengths, rejects, nbytes)


# --- process-pool plumbing --------------------------------------------------------------------


def mp_current_is_child() -> bool:
    import multiprocessing

    return multiprocessing.parent_process() is not None

_STATE: dict = {}


def _worker_signals() -> None:
    import multiprocessing
    import signal

    # The parent's SIGTERM path ends it with os._exit, after killing the workers it knows; a worker
    # the pool forks in between (it replaces dead ones) would live on holding the caller's pipes.
    die_with_parent(multiprocessing.parent_process().pid)

    # the parent creates workers with SIGTERM blocked (see preprocess._ordered_results);
    # Pool.terminate() must end a worker at once
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


def init_worker(spec: EncoderSpec, sel: Selection, dtype_name: str) -> None:
    if mp_current_is_child():
        _worker_signals()
    _STATE["encoder"] = FastEncoder(spec, threads=1)
    _STATE["sel"] = sel
    _STATE["dtype"] = np.dtype(dtype_name)


def init_forked_worker() -> None:
    """Forked workers already hold ``_STATE`` (set by the parent); keep them single-threaded."""
    import os

    _worker_signals()
    os.environ["TOKENIZERS_PARALLELISM"] = "false"


def clear_worker() -> None:
    _STATE.clear()


def process_chunk(items) -> ChunkResult:
    return encode_chunk(items, _STATE["sel"], _STATE["encoder"], _STATE["dtype"])
