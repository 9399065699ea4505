"""Preprocessor: round trips, byte-identical output for any worker count / chunking / start
method, partition + merge, megatron readers (IndexedDataset, GPTDataset), bad inputs, atomicity."""

import gzip
import hashlib
import io
import json
import os
import random
import socket
from pathlib import Path

import numpy as np
import pytest

from tokenization import preprocess
from tokenization.indexed import OutputExistsError, read_index, remove_stale_tmp
from tokenization.merge import MergeError, merge
from tokenization.readers import InputError, partition_files
from tokenization.templates import render
from tokenization.megatron_wrappers import load_tokenizer

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
SPM = str(ROOT / "data" / "tokenizer" / "octo_sp8k.model")
CORPUS = ROOT / "data" / "corpus"


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(SPM)


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


@pytest.fixture(scope="module")
def mixed_inputs(tmp_path_factory):
    """Plain, gz, zst and parquet inputs with 300 documents in all; returns (files, texts)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = tmp_path_factory.mktemp("inputs")
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


# --- round trips -------------------------------------------------------------------------------

def test_round_trip_every_format_in_order(tmp_path, mixed_inputs, tok):
    files, texts = mixed_inputs
    s = run_pp(files, tmp_path / "out")
    assert s["documents"] == 300 and s["skipped_total"] == 0
    docs = docs_of(tmp_path / "out")
    assert len(docs) == 300
    for d, t in zip(docs, texts):
        assert d[-1] == tok.eod
        assert tok.detokenize(d[:-1].tolist()) == t
    assert s["tokens"] == sum(len(d) for d in docs)
    assert s["dtype"] == "uint16" and docs[0].dtype == np.uint16


def test_round_trip_bundled_qa_long_cot(tmp_path, tok):
    src = CORPUS / "qa_long.jsonl.gz"
    run_pp([src], tmp_path / "qa", "--format", "qa", "--template", "long-CoT",
           "--final-answer-key", "final_answer")
    with gzip.open(src, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f][:300]
    docs = docs_of(tmp_path / "qa")
    for d, r in zip(docs, rows):
        assert tok.detokenize(d[:-1].tolist()) == render("long_cot", r["question"], r["answer"],
                                                         r["final_answer"])


def test_summary_checksums_and_counts(tmp_path, mixed_inputs):
    files, _ = mixed_inputs
    s = run_pp(files, tmp_path / "o")
    for key, suffix in (("bin", ".bin"), ("idx", ".idx")):
        data = Path(str(tmp_path / "o") + suffix).read_bytes()
        assert s["output"][key]["sha256"] == hashlib.sha256(data).hexdigest()
        assert s["output"][key]["bytes"] == len(data)
    for inp, f in zip(s["inputs"], files):
        assert inp["sha256"] == hashlib.sha256(Path(f).read_bytes()).hexdigest()
    assert [i["documents"] for i in s["inputs"]] == [70, 80, 70, 80]
    on_disk = json.loads(Path(str(tmp_path / "o") + ".summary.json").read_text())
    assert on_disk["output"] == s["output"]
    assert s["tokenizer"]["library"] == "sentencepiece" and s["tokenizer"]["eod"] == 2


# --- determinism -------------------------------------------------------------------------------

def test_identical_bytes_across_workers_chunking_and_start_method(tmp_path, mixed_inputs):
    files, _ = mixed_inputs
    run_pp(files, tmp_path / "w1")
    ref = file_bytes(tmp_path / "w1")
    for name, extra in {
        "w2spawn": ["--workers", "2", "--start-method", "spawn", "--chunk-docs", "7"],
        "w2fork": ["--workers", "2", "--start-method", "fork", "--chunk-bytes", "300"],
        "w1small": ["--chunk-docs", "1"],
    }.items():
        run_pp(files, tmp_path / name, *extra)
        assert file_bytes(tmp_path / name) == ref, name
    rej = Path(str(tmp_path / "w1") + ".rejects.jsonl").read_bytes()
    assert Path(str(tmp_path / "w2spawn") + ".rejects.jsonl").read_bytes() == rej


def test_partition_parts_merge_to_single_run(tmp_path, mixed_inputs):
    files, _ = mixed_inputs
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "ok"}, "{broken", {"nope": 1}])
    inputs = [*files, bad]
    run_pp(inputs, tmp_path / "single")
    for n in (2, 3, 7):
        parts = []
        for k in range(n):
            s = run_pp(inputs, tmp_path / f"n{n}.part{k}", "--partition", f"{k}/{n}")
            assert s["partition"] == {"k": k, "n": n, "all_inputs": 5}
            parts.append(str(tmp_path / f"n{n}.part{k}"))
        merged = merge(list(reversed(parts)), str(tmp_path / f"merged{n}"))  # order from summaries
        assert file_bytes(tmp_path / f"merged{n}") == file_bytes(tmp_path / "single")
        assert (Path(str(tmp_path / f"merged{n}") + ".rejects.jsonl").read_bytes()
                == Path(str(tmp_path / "single") + ".rejects.jsonl").read_bytes())
        assert merged["skipped"] == {"bad_json": 1, "missing_key": 1}


def test_partition_files_contiguous_and_complete(tmp_path):
    files = []
    for i, size in enumerate([10, 500, 20, 20, 900, 5, 300]):
        p = tmp_path / f"f{i}.jsonl"
        p.write_bytes(b"x" * size)
        files.append(str(p))
    for n in (1, 2, 3, 4, 10):
        parts = [partition_files(files, k, n) for k in range(n)]
        assert sum(parts, []) == files  # contiguous, ordered, complete, disjoint


def test_merge_refuses_incomplete_or_mixed_parts(tmp_path, mixed_inputs):
    files, _ = mixed_inputs
    run_pp(files, tmp_path / "p0", "--partition", "0/3")
    run_pp(files, tmp_path / "p2", "--partition", "2/3")
    with pytest.raises(MergeError, match=r"incomplete partition set of n=3: missing parts \[1\]"):
        merge([str(tmp_path / "p0"), str(tmp_path / "p2")], str(tmp_path / "m"))
    f = write_jsonl(tmp_path / "ids.jsonl", [{"text": "1 2"}])
    run_pp([f], tmp_path / "i32", "--tokenizer-library", "null", "--vocab-size", "70000", tokenizer="")
    run_pp([f], tmp_path / "u16", "--tokenizer-library", "null", "--vocab-size", "700", tokenizer="")
    with pytest.raises(MergeError, match="different token dtypes"):
        merge([str(tmp_path / "i32"), str(tmp_path / "u16")], str(tmp_path / "m"))
    with pytest.raises(MergeError, match=r"part .*nothere: missing .*nothere\.bin"):
        merge([str(tmp_path / "p0"), str(tmp_path / "nothere")], str(tmp_path / "m"))
    assert not any(p.name.startswith("m.") for p in tmp_path.iterdir())


# --- megatron readers ------------------------------------------------------------------------

def test_gpt_dataset_blend_from_outputs(tmp_path, mixed_inputs, tok):
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

    files, _ = mixed_inputs
    run_pp(files[:2], tmp_path / "web")
    run_pp([CORPUS / "qa_short.jsonl.gz"], tmp_path / "qa", "--format", "qa", "--template",
           "short_cot", "--final-answer-key", "final_answer")
    cfg = GPTDatasetConfig(
        random_seed=1234, sequence_length=64, blend=([str(tmp_path / "web"), str(tmp_path / "qa")],
                                                     [0.7, 0.3]),
        split="100,0,0", path_to_cache=None, tokenizer=tok,
        reset_position_ids=False, reset_attention_mask=False, eod_mask_loss=False,
        mid_level_dataset_surplus=0.005,
    )
    train, _, _ = BlendedMegatronDatasetBuilder(GPTDataset, [200, 0, 0], lambda: True, cfg).build()
    assert len(train) >= 200
    web = np.concatenate(docs_of(tmp_path / "web"))
    qa = np.concatenate(docs_of(tmp_path / "qa"))
    eod = tok.eod
    from_web = checked = 0
    for i in range(200):
        s = train[i]
        toks = np.concatenate([s["tokens"].numpy(), s["labels"].numpy()[-1:]])
        assert toks.shape[0] == 65
        # the piece before the first EOD is a contiguous run of one document of one source
        cut = int(np.flatnonzero(toks == eod)[0]) if (toks == eod).any() else 65
        piece = toks[: min(cut, 12)]
        if len(piece) < 4:
            continue
        in_web, in_qa = _contains(web, piece), _contains(qa, piece)
        assert in_web or in_qa
        from_web += in_web and not in_qa
        checked += 1
    assert checked > 100
    assert 0.5 * checked < from_web < 0.9 * checked  # 70% weight, loosely


def _contains(hay: np.ndarray, needle: np.ndarray) -> bool:
    starts = np.flatnonzero(hay[: len(hay) - len(needle) + 1] == needle[0])
    return any(np.array_equal(hay[s:s + len(needle)], needle) for s in starts)


def test_int32_for_large_vocab_read_by_megatron(tmp_path):
    f = write_jsonl(tmp_path / "ids.jsonl", [{"text": "1 69999 5"}, {"text": "65535 0"}])
    s = run_pp([f], tmp_path / "o", "--tokenizer-library", "null", "--vocab-size", "70000",
               tokenizer="")
    assert s["dtype"] == "int32"
    docs = docs_of(tmp_path / "o")
    assert [d.tolist() for d in docs] == [[1, 69999, 5, 70000], [65535, 0, 70000]]
    assert docs[0].dtype == np.int32
    assert read_index(str(tmp_path / "o"))[0] == np.int32


# --- bad input ---------------------------------------------------------------------------------

BAD_LINES = [
    (b'{"text": "good one"}', None),
    (b"", "blank_line"),
    (b'{"text": "unterminated', "bad_json"),
    (b'{"txt": "wrong key"}', "missing_key"),
    (b'{"text": 42}', "non_string"),
    (b'{"text": null}', "non_string"),
    (b'{"text": ["a"]}', "non_string"),
    (b'{"text": "   \\n "}', "empty_text"),
    (b'{"text": "bad \xff\xfe utf8"}', "invalid_utf8"),
    (b'{"text": "lone \\ud800 surrogate"}', "invalid_unicode"),
    (b'["a", "list"]', "not_object"),
    (b"3.5", "not_object"),
    (b'{"text": "good two"}\r', None),
    (b"[" * 100000, "bad_json"),
    (b'{"text": "good three with \\u00e9 escape"}', None),
]


def test_every_bad_line_is_counted_with_file_and_line(tmp_path, tok):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(line for line, _ in BAD_LINES) + b"\n")
    s = run_pp([path], tmp_path / "o", "--workers", "2", "--start-method", "spawn")
    expected = {}
    for _, reason in BAD_LINES:
        if reason:
            expected[reason] = expected.get(reason, 0) + 1
    assert s["skipped"] == expected
    assert s["documents"] == 3 and s["records"] == len(BAD_LINES)
    rejects = [json.loads(line) for line in Path(str(tmp_path / "o") + ".rejects.jsonl").read_text().splitlines()]
    want = [(n, r) for n, (_, r) in enumerate(BAD_LINES, 1) if r]
    assert [(r["line"], r["reason"]) for r in rejects] == want
    assert all(r["file"] == str(path) for r in rejects)
    details = {(r["reason"], r["detail"]) for r in rejects}
    assert ("missing_key", "no key 'text'") in details
    assert ("non_string", "key 'text' holds int, not a string") in details
    assert ("non_string", "key 'text' holds NoneType, not a string") in details
    assert ("invalid_utf8", "invalid UTF-8 at byte 14") in details
    assert ("not_object", "record is a JSON list, not an object") in details
    assert ("bad_json", "malformed JSON (Unterminated string starting at; column 10)") in details
    assert ("invalid_unicode", "text holds a lone surrogate code point") in details
    docs = docs_of(tmp_path / "o")
    assert [tok.detokenize(d[:-1].tolist()) for d in docs] == [
        "good one", "good two", "good three with é escape"]


def _gz(rows_bytes: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as g:
        g.write(rows_bytes)
    return buf.getvalue()


def test_truncated_gz_keeps_complete_lines_and_names_the_line(tmp_path, tok):
    rows = b"".join(json.dumps({"text": f"document number {i} " * 20}).encode() + b"\n"
                    for i in range(4000))
    data = _gz(rows)
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    s = run_pp([path], tmp_path / "o")
    assert s["skipped"] == {"truncated_input": 1}
    n_ok = s["documents"]
    assert 0 < n_ok < 4000
    rej = json.loads(Path(str(tmp_path / "o") + ".rejects.jsonl").read_text())
    assert rej["line"] == n_ok + 1 and rej["reason"] == "truncated_input" and "gzip" in rej["detail"]
    docs = docs_of(tmp_path / "o")
    assert tok.detokenize(docs[-1][:-1].tolist()) == f"document number {n_ok - 1} " * 20
    assert s["inputs"][0]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_truncated_and_corrupt_zst(tmp_path):
    import zstandard

    rows = b"".join(json.dumps({"text": f"doc {i} " * 30}).encode() + b"\n" for i in range(3000))
    data = zstandard.ZstdCompressor().compress(rows)
    cut = tmp_path / "cut.jsonl.zst"
    cut.write_bytes(data[: len(data) * 2 // 3])
    s = run_pp([cut], tmp_path / "o")
    assert s["skipped"] == {"truncated_input": 1} and 0 < s["documents"] < 3000
    bad = tmp_path / "bad.jsonl.zst"
    bad.write_bytes(b"\x28\xb5\x2f\xfd" + os.urandom(64))
    s = run_pp([bad], tmp_path / "o2")
    assert s["documents"] == 0 and list(s["skipped"]) in (["corrupt_input"], ["truncated_input"])


def test_corrupt_gz_and_two_member_gz(tmp_path):
    bad = tmp_path / "bad.jsonl.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 6 + os.urandom(200))
    s = run_pp([bad], tmp_path / "o")
    assert s["documents"] == 0 and s["skipped"] == {"corrupt_input": 1}
    two = tmp_path / "two.jsonl.gz"
    two.write_bytes(_gz(b'{"text": "a"}\n') + _gz(b'{"text": "b"}\n'))
    assert run_pp([two], tmp_path / "o2")["documents"] == 2


def test_parquet_missing_column_and_nulls(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    p1 = tmp_path / "nulls.parquet"
    pq.write_table(pa.table({"text": ["a b", None, "", "c"]}), p1)
    p2 = tmp_path / "nocol.parquet"
    pq.write_table(pa.table({"body": ["x", "y"]}), p2)
    s = run_pp([p1, p2], tmp_path / "o")
    assert s["documents"] == 2
    assert s["skipped"] == {"missing_key": 2, "non_string": 1, "empty_text": 1}
    p3 = tmp_path / "junk.parquet"
    p3.write_bytes(b"PAR1 not really")
    s = run_pp([p3], tmp_path / "o3")
    assert s["skipped"] == {"corrupt_input": 1}


def test_qa_format_keys_and_dotted_paths(tmp_path, tok):
    f = write_jsonl(tmp_path / "qa.jsonl", [
        {"q": "1+1?", "meta": {"sol": "It is 2."}, "final": 2},
        {"q": "2+2?", "meta": {"sol": "It is 4."}},
        {"q": "no answer"},
        {"q": "x", "meta": {"sol": "y"}, "final": ["list"]},
        {"q": 3, "meta": {"sol": "y"}},
    ])
    s = run_pp([f], tmp_path / "o", "--format", "qa", "--question-key", "q", "--answer-key",
               "meta.sol", "--final-answer-key", "final", "--template", "short_cot")
    assert s["documents"] == 2
    assert s["skipped"] == {"missing_key": 1, "non_string": 2}
    docs = [tok.detokenize(d[:-1].tolist()) for d in docs_of(tmp_path / "o")]
    assert docs == [render("short_cot", "1+1?", "It is 2.", "2"), render("short_cot", "2+2?", "It is 4.")]


def test_fuzzed_lines_never_crash_and_counts_add_up(tmp_path, tok):
    rng = random.Random(7)
    base = [json.dumps({"text": t, "k": i}, ensure_ascii=bool(i % 2)).encode()
            for i, t in enumerate(texts_of(400, seed=3))]
    lines = []
    for line in base:
        op = rng.random()
        b = bytearray(line)
        if op < 0.15:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op < 0.25:
            b = b[: rng.randrange(len(b))]
        elif op < 0.3:
            b.insert(rng.randrange(len(b)), rng.choice(b'"{}[]\\\x00\xc3'))
        elif op < 0.33:
            b = bytearray(rng.randbytes(rng.randrange(1, 40)))
        lines.append(bytes(b).replace(b"\n", b" "))
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")

    expected = []  # independent oracle: which lines are valid documents
    for line in lines:
        try:
            rec = json.loads(line.decode("utf-8"))
            t = rec["text"]
            ok = isinstance(t, str) and t.strip() and t.encode("utf-8")
        except Exception:
            ok = False
        if ok:
            expected.append(t)
    s1 = run_pp([path], tmp_path / "a", "--chunk-docs", "13")
    s2 = run_pp([path], tmp_path / "b", "--workers", "2", "--start-method", "spawn")
    assert file_bytes(tmp_path / "a") == file_bytes(tmp_path / "b")
    assert s1["documents"] == len(expected)
    assert s1["documents"] + s1["skipped_total"] == s1["records"] == len(lines)
    got = [tok.detokenize(d[:-1].tolist()) for d in docs_of(tmp_path / "a")]
    assert got == expected
    n_rejects = len(Path(str(tmp_path / "a") + ".rejects.jsonl").read_text().splitlines())
    assert n_rejects == s1["skipped_total"] > 0


def test_strict_fails_naming_file_and_line_and_leaves_nothing(tmp_path):
    f = write_jsonl(tmp_path / "in.jsonl", [{"text": "fine"}, {"text": "fine"}, {"body": "x"}])
    with pytest.raises(preprocess.PreprocessError, match=rf"{f}:3: missing_key: no key 'text'"):
        run_pp([f], tmp_path / "o", "--strict")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def test_strict_with_workers_reports_first_bad_line(tmp_path):
    rows = [{"text": f"t{i}"} for i in range(50)]
    rows[31] = "{bad"
    rows[44] = {"text": 1}
    f = write_jsonl(tmp_path / "in.jsonl", rows)
    with pytest.raises(preprocess.PreprocessError, match=r"in\.jsonl:32: bad_json"):
        run_pp([f], tmp_path / "o", "--strict", "--workers", "2", "--chunk-docs", "4",
               "--start-method", "spawn")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def test_all_records_bad_gives_valid_empty_dataset(tmp_path):
    f = write_jsonl(tmp_path / "in.jsonl", ["nope", "{}"])
    s = run_pp([f], tmp_path / "o")
    assert s["documents"] == 0 and s["tokens"] == 0
    dtype, lengths, docs = read_index(str(tmp_path / "o"))  # megatron cannot mmap an empty .bin
    assert lengths.shape == (0,) and docs.tolist() == [0]
    assert Path(str(tmp_path / "o") + ".bin").stat().st_size == 0


# --- output safety -----------------------------------------------------------------------------

def test_existing_output_needs_overwrite(tmp_path):
    f = write_jsonl(tmp_path / "in.jsonl", [{"text": "first"}])
    run_pp([f], tmp_path / "o")
    before = file_bytes(tmp_path / "o")
    f2 = write_jsonl(tmp_path / "in2.jsonl", [{"text": "second version"}])
    with pytest.raises(OutputExistsError, match=r"output .*o\.bin exists; pass --overwrite"):
        run_pp([f2], tmp_path / "o")
    assert file_bytes(tmp_path / "o") == before
    run_pp([f2], tmp_path / "o", "--overwrite")
    assert file_bytes(tmp_path / "o") != before


def test_failed_run_publishes_nothing_and_keeps_old_output(tmp_path):
    f = write_jsonl(tmp_path / "in.jsonl", [{"text": "first"}])
    run_pp([f], tmp_path / "o")
    before = file_bytes(tmp_path / "o")
    bad = write_jsonl(tmp_path / "bad.jsonl", ["{"])
    with pytest.raises(preprocess.PreprocessError):
        run_pp([bad], tmp_path / "o", "--overwrite", "--strict")
    assert file_bytes(tmp_path / "o") == before
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_stale_tmp_of_dead_process_removed(tmp_path):
    host = socket.gethostname()
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f"o.bin.tmp-{host}-{dead}"
    live = tmp_path / f"o.idx.tmp-{host}-1"          # pid 1 is alive
    other = tmp_path / f"o.bin.tmp-otherhost-{dead}"  # another machine's: not ours to judge
    for p in (stale, live, other):
        p.write_bytes(b"x")
    assert remove_stale_tmp(str(tmp_path / "o")) == [str(stale)]
    assert live.exists() and other.exists() and not stale.exists()


# --- argument errors ------------------------------------------------------------------------------

def test_input_errors_name_the_input(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"input file not found: .*missing\.jsonl"):
        run_pp([tmp_path / "missing.jsonl"], tmp_path / "o")
    with pytest.raises(InputError, match=r"input pattern '.*\*\.jsonl' matches no file"):
        run_pp([str(tmp_path / "*.jsonl")], tmp_path / "o")
    (tmp_path / "x.csv").write_text("a")
    with pytest.raises(InputError, match=r"unsupported input file '.*x\.csv'"):
        run_pp([tmp_path / "x.csv"], tmp_path / "o")
    f = write_jsonl(tmp_path / "in.jsonl", [{"text": "a"}])
    for bad in ("3/3", "1", "a/b", "-1/2"):
        with pytest.raises(InputError, match="--partition"):
            run_pp([f], tmp_path / "o", f"--partition={bad}")
    with pytest.raises(FileNotFoundError, match="output directory does not exist"):
        run_pp([f], tmp_path / "no" / "such" / "o")


_ORPHAN_SCRIPT = """
import multiprocessing as mp, os, sys, time
from tokenization.worker import init_forked_worker

def stuck():
    init_forked_worker()
    time.sleep(300)  # as a worker blocked on the queue lock of a sibling the parent SIGKILLed

if __name__ == "__main__":
    p = mp.get_context("fork").Process(target=stuck)
    p.start()
    print(p.pid, flush=True)
    time.sleep(float(sys.argv[1]))
    os._exit(143)  # the preprocessor's SIGTERM path: no join, no cleanup
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # an unreaped zombie is dead
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("parent_lives", [0.0, 0.5])
def test_a_pool_worker_dies_with_its_parent(tmp_path, parent_lives):
    """A worker the pool forked just before the parent's os._exit (it replaces killed ones) must not
    live on holding the caller's pipes: the kernel kills it with its parent (PR_SET_PDEATHSIG), also
    when the parent was already gone by the time the worker asked for that."""
    import subprocess
    import sys
    import time

    script = tmp_path / "orphan.py"
    script.write_text(_ORPHAN_SCRIPT)
    res = subprocess.run([sys.executable, str(script), str(parent_lives)], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 143, res.stderr
    pid = int(res.stdout.split()[0])
    deadline = time.time() + 10
    while _alive(pid) and time.time() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        os.kill(pid, 9)
        raise AssertionError("the worker outlived its parent")
