"""Preprocessor with worker processes (spawned and forked pools) or beside other processes: byte-identical
output for any worker count / chunking / start method, bad lines counted across workers, a stale temporary file
of a dead process, and a pool worker dying with its parent."""

import json
import os
import random
import socket
from pathlib import Path

import pytest

from tokenization import preprocess
from tokenization.indexed import remove_stale_tmp
from tests.helpers import ROOT
from tests.preprocess_cases import mixed_inputs, tok  # noqa: F401 (module fixtures)
from tests.preprocess_cases import docs_of, file_bytes, run_pp, texts_of, write_jsonl

pytestmark = pytest.mark.timeout(120)


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


def test_strict_with_workers_reports_first_bad_line(tmp_path):
    rows = [{"text": f"t{i}"} for i in range(50)]
    rows[31] = "{bad"
    rows[44] = {"text": 1}
    f = write_jsonl(tmp_path / "in.jsonl", rows)
    with pytest.raises(preprocess.PreprocessError, match=r"in\.jsonl:32: bad_json"):
        run_pp([f], tmp_path / "o", "--strict", "--workers", "2", "--chunk-docs", "4",
               "--start-method", "spawn")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


# --- output safety -----------------------------------------------------------------------------

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


# --- a pool worker and its parent ------------------------------------------------------------------

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
