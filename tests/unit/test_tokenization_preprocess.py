"""Preprocessor, in-process: round trips, partition + merge, megatron readers (IndexedDataset, GPTDataset),
bad inputs, atomicity. Byte-identical output for any worker count / chunking / start method, and everything
else that starts worker or other processes: tests/process/test_tokenization_preprocess_workers.py."""

import gzip
import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest

from tokenization import preprocess
from tokenization.indexed import OutputExistsError, read_index
from tokenization.merge import MergeError, merge
from tokenization.readers import InputError, partition_files
from tokenization.templates import render
from tests.preprocess_cases import mixed_inputs, tok  # noqa: F401 (module fixtures)
from tests.preprocess_cases import docs_of, file_bytes, run_pp, write_jsonl

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "data" / "corpus"


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


def test_strict_fails_naming_file_and_line_and_leaves_nothing(tmp_path):
    f = write_jsonl(tmp_path / "in.jsonl", [{"text": "fine"}, {"text": "fine"}, {"body": "x"}])
    with pytest.raises(preprocess.PreprocessError, match=rf"{f}:3: missing_key: no key 'text'"):
        run_pp([f], tmp_path / "o", "--strict")
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
