"""Rebuild the shipped data bundle in ``data/`` from ``../shared/data`` (maintainers only).

    python -m tokenization.build_bundle --shared ../shared/data --out data

Writes (deterministically: fixed row selection, gzip mtime 0):

* ``data/corpus/math_web.jsonl.gz``  ``{"text", "source", "id", "url"}``: every StackMathQA row
  (question and accepted answer, as a forum page) and the sections of six chapters of the HoTT book
  (LaTeX). Stands in for MegaMath-Web-Pro, which is not available here.
* ``data/corpus/qa_long.jsonl.gz``   ``{"question", "answer", "final_answer", "source", "id", ...}``:
  every third MATH train problem with its worked solution (rendered with the ``long_cot`` template).
* ``data/corpus/qa_short.jsonl.gz``  same fields: the first 3000 GSM8K train problems; calculator
  annotations ``<<...>>`` removed and the ``#### N`` line moved to ``final_answer``.
* ``data/tokenizer/octo_sp8k.model`` (+ ``.vocab``): SentencePiece trained on the three files.

A fresh clone never runs this; the outputs are committed with their attribution in
``data/SOURCES.md``.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import re
import sys
from tokenization.train_tokenizer import train
from tokenization.worker import Selection

HOTT_CHAPTERS = ["introduction", "preliminaries", "basics", "logic", "equivalences", "induction"]
GSM8K_ROWS = 3000
MATH_EVERY = 3

_CALC = re.compile(r"<<[^<>]*>>")


def _write_jsonl_gz(path: str, rows: list[dict]) -> None:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9, mtime=0, filename="") as g:
        for r in rows:
            g.write((json.dumps(r, ensure_ascii=False) + "\n").encode("utf-8"))
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(buf.getvalue())
    os.replace(tmp, path)


def _read_jsonl(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def web_rows(shared: str) -> list[dict]:
    rows = []
    for i, r in enumerate(_read_jsonl(os.path.join(shared, "stackmathqa_sample",
                                                   "stackmathqa100k_shards32-127.jsonl"))):
        rows.append({"text": f"{r['Q'].strip()}\n\n{r['A'].strip()}", "source": "stackmathqa",
                     "id": f"stackmathqa/{i}", "url": r["meta"].get("url")})
    books = {r["path"]: r for r in _read_jsonl(os.path.join(shared, "math_tex_text",
                                                             "hott_book_tex.jsonl"))}
    for ch in HOTT_CHAPTERS:
        text = books[f"{ch}.tex"]["text"]
        parts = re.split(r"(?m)^(?=\\section)", text)
        for j, part in enumerate(parts):
            if len(part.strip()) >= 200:
                rows.append({"text": part.strip(), "source": "hott_book", "id": f"hott/{ch}.tex#{j}",
                             "url": "https://github.com/HoTT/book"})
    return rows


def qa_long_rows(shared: str) -> list[dict]:
    rows = []
    for i, r in enumerate(_read_jsonl(os.path.join(shared, "math_train", "train.jsonl"))):
        if i % MATH_EVERY or not r.get("answer"):
            continue
        rows.append({"question": r["problem"], "answer": r["solution"], "final_answer": r["answer"],
                     "source": "math_train", "id": r["unique_id"], "level": r["level"],
                     "subject": r["type"]})
    return rows


def qa_short_rows(shared: str) -> list[dict]:
    rows = []
    for i, r in enumerate(_read_jsonl(os.path.join(shared, "gsm8k_train", "train.jsonl"))):
        if i >= GSM8K_ROWS:
            break
        body, _, final = r["answer"].rpartition("####")
        rows.append({"question": r["question"], "answer": _CALC.sub("", body).strip(),
                     "final_answer": final.strip(), "source": "gsm8k_train", "id": f"gsm8k/train/{i}"})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shared", default=os.path.join("..", "shared", "data"))
    p.add_argument("--out", default="data")
    p.add_argument("--vocab-size", type=int, default=8192)
    p.add_argument("--skip-tokenizer", action="store_true")
    args = p.parse_args(argv)
    corpus = os.path.join(args.out, "corpus")
    os.makedirs(corpus, exist_ok=True)
    outputs = {
        "math_web.jsonl.gz": web_rows(args.shared),
        "qa_long.jsonl.gz": qa_long_rows(args.shared),
        "qa_short.jsonl.gz": qa_short_rows(args.shared),
    }
    for name, rows in outputs.items():
        path = os.path.join(corpus, name)
        _write_jsonl_gz(path, rows)
        print(f"{path}: {len(rows)} rows, {os.path.getsize(path):,} bytes")
    if not args.skip_tokenizer:
        sources = [
            (os.path.join(corpus, "math_web.jsonl.gz"), Selection()),
            (os.path.join(corpus, "qa_long.jsonl.gz"),
             Selection(format="qa", template="long_cot", final_answer_key="final_answer")),
            (os.path.join(corpus, "qa_short.jsonl.gz"),
             Selection(format="qa", template="short_cot", final_answer_key="final_answer")),
        ]
        tok_dir = os.path.join(args.out, "tokenizer")
        model = train(sources, os.path.join(tok_dir, "octo_sp8k"), vocab_size=args.vocab_size)
        print(f"{model}: {os.path.getsize(model):,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
