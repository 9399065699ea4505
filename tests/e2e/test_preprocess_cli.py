"""The data command-line tools as a user runs them: preprocess (progress, summary, kill -9, SIGTERM),
Slurm-style partition + merge, train_tokenizer, build_demo_data and data_stats. Preprocess's exit codes and
messages, in-process: tests/unit/test_preprocess_exit_codes.py."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import ROOT, env_for_subprocess, run

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

PY = sys.executable
SPM = str(ROOT / "data" / "tokenizer" / "octo_sp8k.model")
QA_SHORT = str(ROOT / "data" / "corpus" / "qa_short.jsonl.gz")
WEB = str(ROOT / "data" / "corpus" / "math_web.jsonl.gz")


def pp(*args, timeout=60):
    return run([PY, "-m", "tokenization.preprocess", "--tokenizer", SPM, *map(str, args)], timeout=timeout)


def test_preprocess_progress_and_summary(tmp_path):
    res = pp("--input", WEB, "--output-prefix", tmp_path / "web", "--workers", "2", "--progress")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["documents"] == 1057 and summary["skipped_total"] == 0
    assert summary["output"]["bin"]["bytes"] == (tmp_path / "web.bin").stat().st_size
    for unit in ("docs/s", "tok/s", "MB/s"):
        assert unit in res.stderr
    assert json.loads((tmp_path / "web.summary.json").read_text())["tokens"] == summary["tokens"]


def test_preprocess_runs_as_a_file_too(tmp_path):
    env = env_for_subprocess()
    env.pop("PYTHONPATH", None)
    res = subprocess.run([PY, str(ROOT / "tokenization" / "preprocess.py"), "--input", QA_SHORT,
                          "--format", "qa", "--template", "short_cot", "--tokenizer", SPM,
                          "--output-prefix", str(tmp_path / "qa"), "-j", "2", "-q"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "qa.summary.json").read_text())["documents"] == 3000


def _start_on_fifo(tmp_path):
    """A 2-worker preprocess reading a FIFO, fed until it has written tokens; returns (proc, w)."""
    fifo = tmp_path / "stream.jsonl"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [PY, "-X", "faulthandler", "-m", "tokenization.preprocess", "--tokenizer", SPM, "--input", str(fifo),
         "--output-prefix", str(tmp_path / "out"), "--workers", "2", "--chunk-docs", "16", "-q"],
        cwd=ROOT, env=env_for_subprocess(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True)
    w = open(fifo, "w")  # blocks until the preprocessor opens the FIFO
    line = json.dumps({"text": "a line of mathematical text, $x^2 + y^2 = z^2$. " * 20}) + "\n"
    deadline = time.time() + 60
    while time.time() < deadline:
        w.write(line * 50)
        w.flush()
        tmp_bins = [p for p in tmp_path.iterdir() if p.name.startswith("out.bin.tmp-")]
        if tmp_bins and tmp_bins[0].stat().st_size > 0:
            return proc, w
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError("preprocess never wrote")


FINAL = ("out.bin", "out.idx", "out.summary.json", "out.rejects.jsonl")


def test_kill_9_leaves_no_file_under_the_final_name(tmp_path):
    proc, w = _start_on_fifo(tmp_path)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the preprocessor and its workers, mid-run
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        try:
            w.close()
        except BrokenPipeError:
            pass
    assert proc.returncode == -signal.SIGKILL
    names = sorted(p.name for p in tmp_path.iterdir())
    assert not set(FINAL) & set(names)
    assert any(".tmp-" in n for n in names)

    # the next run on the same prefix cleans the dead run's temporaries and completes
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"text": "hello"}) + "\n")
    res = pp("--input", good, "--output-prefix", tmp_path / "out", "-q")
    assert res.returncode == 0, res.stderr
    names = sorted(p.name for p in tmp_path.iterdir())
    assert not any(".tmp-" in n for n in names)
    assert set(FINAL) <= set(names)


def test_sigterm_cleans_up_and_stops_workers(tmp_path):
    proc, w = _start_on_fifo(tmp_path)
    try:
        proc.send_signal(signal.SIGTERM)  # the main process only, as Slurm's first signal
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)  # faulthandler: dump where it hangs
            _, err = proc.communicate(timeout=30)
            raise AssertionError(err.decode()[-5000:])
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        try:
            w.close()
        except BrokenPipeError:
            pass
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert b"no output written" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stream.jsonl"]
    deadline = time.time() + 10
    while time.time() < deadline:  # the workers went with it
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError("worker processes outlived the terminated preprocessor")


def test_slurm_array_partitions_then_merge_equal_single_run(tmp_path):
    inputs = []
    for i in range(5):  # shards of different sizes, like a real corpus split into files
        p = tmp_path / f"shard{i}.jsonl"
        p.write_text("".join(json.dumps({"text": f"shard {i} doc {j} " * (i + 1)}) + "\n"
                             for j in range(40 * (i + 1))))
        inputs.append(str(p))
    glob_ = str(tmp_path / "shard*.jsonl")
    assert pp("--input", glob_, "--output-prefix", tmp_path / "single", "-q").returncode == 0
    (tmp_path / "parts").mkdir()
    for k in range(3):  # what `sbatch --array=0-2` runs, one task each
        res = pp("--input", glob_, "--output-prefix", tmp_path / "parts" / f"web.part-{k}",
                 "--partition", f"{k}/3", "-q")
        assert res.returncode == 0, res.stderr
    res = run([PY, "-m", "tokenization.merge", "--output-prefix", str(tmp_path / "merged"),
               str(tmp_path / "parts" / "web.part-*")], timeout=60)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["documents"] == sum(40 * (i + 1) for i in range(5))
    for suffix in (".bin", ".idx"):
        assert (tmp_path / f"merged{suffix}").read_bytes() == (tmp_path / f"single{suffix}").read_bytes()
    res = run([PY, "-m", "tokenization.merge", "--output-prefix", str(tmp_path / "m2"),
               str(tmp_path / "parts" / "web.part-0"), str(tmp_path / "parts" / "web.part-2")], timeout=60)
    assert res.returncode == 2 and "missing parts [1]" in res.stderr


def test_train_tokenizer_cli(tmp_path):
    res = run([PY, "-m", "tokenization.train_tokenizer", "--input-qa", f"{QA_SHORT}:short_cot",
               "--vocab-size", "800", "--output", str(tmp_path / "sp")], timeout=90)
    assert res.returncode == 0, res.stderr
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "sp.model"))
    assert sp.get_piece_size() == 800 and sp.eos_id() == 2
    text = "Question: Tom has 3  apples.\nAnswer: 3 + 4 = 7 ünï\t!"
    assert sp.decode(sp.encode(text)) == text


def test_build_demo_data_then_data_stats(tmp_path):
    out = tmp_path / "demo"
    res = run([PY, "-m", "tokenization.build_demo_data", "--out", str(out)], timeout=90)
    assert res.returncode == 0, res.stderr
    mixture = out / "mixture.yaml"
    assert res.stdout.strip() == str(mixture)
    res = run([PY, "tools/data_stats.py", "--mixture", str(mixture), "--stage", "decay_long",
               "--tokens", "20B"], timeout=60)
    assert res.returncode == 0, res.stderr
    assert "stage decay_long: budget 20.00B tokens" in res.stdout
    assert "WARNING decay_long/qa_long: 6.00B tokens drawn" in res.stdout
    res = run([PY, "tools/data_stats.py", "--mixture", str(mixture), "--tokens", "1M",
               "--fail-on-warning"], timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr  # 1M tokens: no source repeats 4 times
    for stage in ("stable", "decay_long", "decay_short", "decay_hybrid"):
        assert f"stage {stage}:" in res.stdout


SHARED = ROOT.parent / "shared" / "data"


@pytest.mark.skipif(not (SHARED / "math_train" / "train.jsonl").exists(),
                    reason="../shared/data not present (fresh clone)")
def test_bundle_is_reproducible(tmp_path):
    """data/corpus and the demo tokenizer are exactly what tokenization.build_bundle makes."""
    res = run([PY, "-m", "tokenization.build_bundle", "--shared", str(SHARED), "--out",
               str(tmp_path)], timeout=110)
    assert res.returncode == 0, res.stderr
    for rel in ("corpus/math_web.jsonl.gz", "corpus/qa_long.jsonl.gz", "corpus/qa_short.jsonl.gz",
                "tokenizer/octo_sp8k.model", "tokenizer/octo_sp8k.vocab"):
        assert (tmp_path / rel).read_bytes() == (ROOT / "data" / rel).read_bytes(), rel
    sources = (ROOT / "data" / "SOURCES.md").read_text()
    import hashlib

    for rel in ("corpus/math_web.jsonl.gz", "tokenizer/octo_sp8k.model"):
        assert hashlib.sha256((ROOT / "data" / rel).read_bytes()).hexdigest() in sources
