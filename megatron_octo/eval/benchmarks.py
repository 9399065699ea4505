"""Benchmark registry: load evaluation sets from JSONL(.gz) into a uniform list of examples.

The bundled sets live in ``data/eval/<name>/test.jsonl.gz`` (origin, licences and checksums in
``data/eval/SOURCES.md``). Any other JSONL file can be loaded with an explicit field mapping,
e.g. ``load_benchmark("my.jsonl", fields="question=problem,answer=solution,extract=boxed")``.

Field-mapping keys:
  question  (required) key of the problem text; dotted keys reach into nested objects
  answer    (required) key of the gold answer
  id        key of an identifier (default: the line number)
  extract   how to turn the answer field into a gold answer:
            plain (default) | gsm8k ("... #### 42") | boxed (last \\boxed{} of a solution) |
            number (27.0 -> "27") | list (a JSON list of answers, joined with ", ")
  multiple  key of a boolean "several answers" flag (OlympiadBench ``is_multiple_answer``)
"""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Union

from megatron_octo.eval.answer import gsm8k_gold, last_boxed

__all__ = [
    "BENCHMARKS",
    "BenchmarkError",
    "BenchmarkSpec",
    "Example",
    "data_root",
    "load_benchmark",
    "parse_field_mapping",
]

EXTRACT_KINDS = ("plain", "gsm8k", "boxed", "number", "list")
_FIELD_KEYS = ("question", "answer", "id", "extract", "multiple")


class BenchmarkError(ValueError):
    """A benchmark file is missing, empty, or does not match its field mapping."""


@dataclass(frozen=True)
class BenchmarkSpec:
    """Where a benchmark's file is and how its records map to :class:`Example`.

    ``base_protocol`` / ``rl_protocol`` name entries of ``megatron_octo.eval.prompts.PROTOCOLS``:
    the few-shot protocol for base models and the zero-shot one for RL models.
    """

    name: str
    relpath: str
    question: str
    answer: str
    extract: str = "plain"
    id: Optional[str] = None
    multiple: Optional[str] = None
    base_protocol: str = "minerva_4shot"
    rl_protocol: str = "orz_base"


@dataclass(frozen=True)
class Example:
    """One evaluation problem. ``answer`` is the gold answer string handed to the grader."""

    id: str
    question: str
    answer: str
    multiple: bool = False
    source: str = ""  # "file:line", for error messages and reports
    meta: Mapping[str, Any] = field(default_factory=dict)


BENCHMARKS: dict[str, BenchmarkSpec] = {
    s.name: s
    for s in (
        BenchmarkSpec("gsm8k", "gsm8k/test.jsonl.gz", "question", "answer", "gsm8k", id="idx", base_protocol="gsm8k_8shot"),
        BenchmarkSpec("math500", "math500/test.jsonl.gz", "problem", "answer", id="unique_id"),
        BenchmarkSpec(
            "olympiadbench", "olympiadbench/test.jsonl.gz", "question", "final_answer", "list", id="id", multiple="is_multiple_answer"
        ),
        BenchmarkSpec("amc23", "amc23/test.jsonl.gz", "question", "answer", "number", id="id", base_protocol="amc_0shot"),
        BenchmarkSpec("aime24", "aime24/test.jsonl.gz", "question", "answer", id="id", base_protocol="amc_0shot"),
        BenchmarkSpec("minerva_math", "minerva_math/test.jsonl.gz", "problem", "solution", "boxed", id="idx"),
        # question_number repeats across books, so the line number is the id.
        BenchmarkSpec("college_math", "college_math/test.jsonl.gz", "question", "answer"),
    )
}


def data_root() -> str:
    """Directory holding the bundled sets: $OCTO_EVAL_DATA, else <repo>/data/eval."""
    env = os.environ.get("OCTO_EVAL_DATA")
    if env:
        return env
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.normpath(os.path.join(here, "..", "..", "data", "eval"))


def parse_field_mapping(spec: Union[str, Mapping[str, str], None]) -> dict[str, str]:
    """``"question=problem,answer=answer"`` (or a dict) -> validated mapping dict."""
    if spec is None:
        return {}
    if isinstance(spec, str):
        out: dict[str, str] = {}
        for part in [p for p in spec.split(",") if p.strip()]:
            if "=" not in part:
                raise BenchmarkError(f"bad field mapping item {part.strip()!r}: expected key=value (e.g. question=problem)")
            k, v = (x.strip() for x in part.split("=", 1))
            out[k] = v
    else:
        out = {str(k): str(v) for k, v in spec.items()}
    unknown = sorted(set(out) - set(_FIELD_KEYS))
    if unknown:
        raise BenchmarkError(f"unknown field mapping key(s) {unknown}; allowed: {list(_FIELD_KEYS)}")
    if "extract" in out and out["extract"] not in EXTRACT_KINDS:
        raise BenchmarkError(f"extract={out['extract']!r} is not one of {list(EXTRACT_KINDS)}")
    return out


def _get(rec: Mapping[str, Any], dotted: str, where: str) -> Any:
    cur: Any = rec
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            keys = sorted(rec.keys()) if isinstance(rec, Mapping) else []
            raise BenchmarkError(f"{where}: record has no key {dotted!r} (available keys: {keys})")
        cur = cur[part]
    return cur


def _gold(value: Any, kind: str, where: str, key: str) -> str:
    if value is None:
        raise BenchmarkError(f"{where}: gold answer {key!r} is null")
    if kind == "plain":
        return str(value).strip()
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise BenchmarkError(f"{where}: {key!r} should be a number, got {type(value).__name__}")
        try:
            f = float(value)
        except ValueError:
            return str(value).strip()
        return str(int(f)) if f.is_integer() else repr(f)
    if kind == "gsm8k":
        try:
            return gsm8k_gold(str(value))
        except ValueError as e:
            raise BenchmarkError(f"{where}: {key!r}: {e}") from None
    if kind == "boxed":
        b = last_boxed(str(value))
        if b is None:
            raise BenchmarkError(f"{where}: {key!r} has no \\boxed{{}} answer")
        return b.strip()
    if kind == "list":
        if isinstance(value, str):
            return value.strip()
        if not isinstance(value, (list, tuple)) or not value:
            raise BenchmarkError(f"{where}: {key!r} should be a non-empty list of answers")
        return ", ".join(str(v).strip() for v in value)
    raise BenchmarkError(f"unknown extract kind {kind!r}")


def _open_lines(path: str):
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, "r", encoding="utf-8")


def _resolve(name_or_path: str, root: Optional[str]) -> tuple[str, Optional[BenchmarkSpec]]:
    spec = BENCHMARKS.get(name_or_path)
    if spec is not None:
        path = os.path.join(root or data_root(), spec.relpath)
        if not os.path.exists(path) and path.endswith(".gz") and os.path.exists(path[:-3]):
            path = path[:-3]
        if not os.path.exists(path):
            raise BenchmarkError(f"benchmark {spec.name!r}: data file not found: {path}")
        return path, spec
    if not os.path.exists(name_or_path):
        looks_like_path = os.sep in name_or_path or name_or_path.endswith((".jsonl", ".gz", ".json"))
        if looks_like_path:
            raise BenchmarkError(f"benchmark file not found: {name_or_path}")
        raise BenchmarkError(f"unknown benchmark {name_or_path!r}; known: {sorted(BENCHMARKS)} (or pass a JSONL path with a field mapping)")
    return name_or_path, None


def load_benchmark(
    name_or_path: str,
    *,
    fields: Union[str, Mapping[str, str], None] = None,
    limit: Optional[int] = None,
    root: Optional[str] = None,
) -> list[Example]:
    """Load a registered benchmark by name, or any JSONL(.gz) file with a field mapping.

    ``fields`` overrides the registered mapping key by key (for a plain path it must name at
    least ``question`` and ``answer``; without it a plain path reads the keys ``question`` and
    ``answer``). ``limit`` keeps the first N examples. Raises
    :class:`BenchmarkError` naming the file (and line and key) on any problem.
    """
    path, spec = _resolve(name_or_path, root)
    mapping = parse_field_mapping(fields)
    if spec is not None:
        base = {"question": spec.question, "answer": spec.answer, "extract": spec.extract}
        if spec.id:
            base["id"] = spec.id
        if spec.multiple:
            base["multiple"] = spec.multiple
        base.update(mapping)
        mapping = base
    elif not mapping:
        # A plain JSONL without a mapping: the common question/answer keys.
        mapping = {"question": "question", "answer": "answer"}
    missing = [k for k in ("question", "answer") if k not in mapping]
    if missing:
        raise BenchmarkError(f"{path}: field mapping must name {missing} (e.g. fields='question=problem,answer=answer')")
    kind = mapping.get("extract", "plain")
    out: list[Example] = []
    with _open_lines(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise BenchmarkError(f"{where}: not valid JSON ({e.msg})") from None
            if not isinstance(rec, dict):
                raise BenchmarkError(f"{where}: expected a JSON object, got {type(rec).__name__}")
            q = _get(rec, mapping["question"], where)
            if not isinstance(q, str) or not q.strip():
                raise BenchmarkError(f"{where}: question field {mapping['question']!r} is empty or not a string")
            gold = _gold(_get(rec, mapping["answer"], where), kind, where, mapping["answer"])
            ex_id = str(_get(rec, mapping["id"], where)) if "id" in mapping else str(lineno)
            multiple = bool(_get(rec, mapping["multiple"], where)) if "multiple" in mapping else False
            meta = {k: v for k, v in rec.items() if k not in (mapping["question"], mapping["answer"])}
            out.append(Example(id=ex_id, question=q, answer=gold, multiple=multiple, source=where, meta=meta))
            if limit is not None and len(out) >= limit:
                break
    if not out:
        raise BenchmarkError(f"{path}: no examples (file is empty)")
    return out
