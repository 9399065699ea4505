"""Inputs and runs of the preprocessor (tokenization.preprocess) for its tests: the bundled SentencePiece
model, JSONL / zst / mixed-format inputs, an in-process run, and what a run wrote."""

import gzip
import json
import random
from pathlib import Path

import numpy as np
import pytest

from tokenization import preprocess
from tests.helpers import ROOT

SPM = str(ROOT / "data" / "tokenizer" / "octo_sp8k.model")


def run_pp(inputs, prefix, *extra, **kw):
    argv = ["--input", *map(str, inputs), "--output-prefix", str(prefix), "--tokenizer",
            kw.pop("tokenizer", SPM), "--no-progress", "--quiet", *map(str, extra)]
    return preprocess.run(preprocess.build_parser().parse_args(argv))


def docs_of(prefix):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    ds = IndexedDataset(str(prefix))
    # copies: the arrays are views of ds's mmap, which closes when ds is collected
    return [np.array(ds[i]) for i in range(len(ds))]


def file_bytes(prefix):
    return Path(str(prefix) + ".bin").read_bytes(), Path(str(prefix) + ".idx").read_bytes()


def write_jsonl(path, rows, opener=open):
    """dict rows are JSON-encoded; str/bytes rows are written verbatim; one per line."""
    with opener(path, "wb") as f:
        for r in rows:
            if isinstance(r, dict):
                r = json.dumps(r, ensure_ascii=False)
            f.write((r.encode() if isinstance(r, str) else r) + b"\n")
    return path


def write_zst(path, data: bytes):
    import zstandard

    Path(path).write_bytes(zstandard.ZstdCompressor().compress(data))
    return path


def texts_of(n, seed=0):
    rng = random.Random(seed)
    words = ["integral", "prime", "$x^2$", "lemma", "ünï", "数学", "proof", "\\frac{1}{2}", "  ", "\n"]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(1, 60))) + f" #{i}" for i in range(n)]


def write_mixed_inputs(d):
    """Plain, gz, zst and parquet inputs in directory ``d`` with 300 documents in all; returns (files, texts)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = texts_of(300)
    chunks = [texts[:70], texts[70:150], texts[150:220], texts[220:]]
    f1 = write_jsonl(d / "a.jsonl", [{"text": t, "id": i} for i, t in enumerate(chunks[0])])
    f2 = d / "b.jsonl.gz"
    with gzip.open(f2, "wb") as g:
        for t in chunks[1]:
            g.write((json.dumps({"text": t}) + "\n").encode())
    f3 = write_zst(d / "c.jsonl.zst", b"".join((json.dumps({"text": t}) + "\n").encode() for t in chunks[2]))
    f4 = d / "d.parquet"
    pq.write_table(pa.table({"text": chunks[3], "n": list(range(len(chunks[3])))}), f4, row_group_size=17)
    return [f1, f2, f3, f4], texts


@pytest.fixture(scope="module")
def tok():
    from tokenization.megatron_wrappers import load_tokenizer

    return load_tokenizer(SPM)


@pytest.fixture(scope="module")
def mixed_inputs(tmp_path_factory):
    return write_mixed_inputs(tmp_path_factory.mktemp("inputs"))
