"""The evaluation CLI on a tiny checkpoint: outputs, TP=2 equals TP=1, clear errors."""

from __future__ import annotations

import json
import sys

import pytest

from tests.helpers import read_scalars, run

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def checkpoint(tiny_text_checkpoint):
    return tiny_text_checkpoint


def _eval(args, nproc=1, timeout=400):
    launcher = [sys.executable] if nproc == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                     f"--nproc-per-node={nproc}"]
    return run([*launcher, "-m", "megatron_octo.eval", *args], timeout=timeout)


def _responses(path):
    return [json.loads(line)["response"] for line in open(path)]


def test_eval_end_to_end_and_tp2_equals_tp1(checkpoint):
    common = ["--checkpoint", str(checkpoint / "ckpt"), "--benchmarks", "gsm8k,math500,amc23", "--limit", "3",
              "--max-new-tokens", "24"]
    out1, out2 = checkpoint / "ev_tp1", checkpoint / "ev_tp2"
    res = _eval([*common, "--out", str(out1)])
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    summary = json.loads((out1 / "summary.json").read_text())
    assert summary["iteration"] == 4 and set(summary["benchmarks"]) == {"gsm8k", "math500", "amc23"}
    assert summary["benchmarks"]["gsm8k"]["protocol"] == "gsm8k_8shot"
    assert summary["benchmarks"]["math500"]["protocol"] == "minerva_4shot"
    rows = [json.loads(line) for line in open(out1 / "gsm8k.jsonl")]
    assert len(rows) == 3 and rows[0]["prompt"].startswith("Q: There are 15 trees in the grove.")
    assert {"prompt", "response", "extracted", "gold", "correct"} <= set(rows[0])
    assert rows[0]["gold"] == "18"  # Janet's ducks
    assert "| gsm8k | gsm8k_8shot | 3 |" in (out1 / "results.md").read_text()
    assert "eval/gsm8k/accuracy" in read_scalars(str(out1 / "tensorboard"))

    res = _eval([*common, "--out", str(out2), "--tp", "2"], nproc=2)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    for name in ("gsm8k", "math500", "amc23"):
        a, b = _responses(out1 / f"{name}.jsonl"), _responses(out2 / f"{name}.jsonl")
        assert a == b, name
        assert any(r.strip() for r in a), "greedy decoding produced nothing to compare"


def test_rl_protocol_and_sampling(checkpoint):
    out = checkpoint / "ev_rl"
    res = _eval(["--checkpoint", str(checkpoint / "ckpt"), "--benchmarks", "math500", "--limit", "2",
                 "--max-new-tokens", "16", "--protocol", "rl", "--n", "3", "--temperature", "1.0",
                 "--pass-k", "1,3", "--out", str(out)])
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [json.loads(line) for line in open(out / "math500.jsonl")]
    assert len(rows) == 6 and rows[0]["prompt"].endswith("\nAssistant:")
    assert "extracted automatically by the \\boxed{} tag" in rows[0]["prompt"]
    bench = json.loads((out / "summary.json").read_text())["benchmarks"]["math500"]
    assert set(bench["pass_at_k"]) == {"pass@1", "pass@3"} and bench["protocol"] == "orz_base"


def test_octothinker_grader_records_both_verdicts(checkpoint):
    out = checkpoint / "ev_octo"
    res = _eval(["--checkpoint", str(checkpoint / "ckpt"), "--benchmarks", "gsm8k,olympiadbench", "--limit", "2",
                 "--max-new-tokens", "16", "--grader", "octothinker", "--show-disagreements", "--out", str(out)])
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["grader"] == "octothinker"
    assert summary["benchmarks"]["olympiadbench"]["octothinker_rule"] == "olympiad"
    for name in ("gsm8k", "olympiadbench"):
        rows = [json.loads(line) for line in open(out / f"{name}.jsonl")]
        assert len(rows) == 2
        for row in rows:
            assert row["grader"] == "octothinker" and row["correct"] == row["correct_octothinker"]
            assert {"correct_math_verify", "extracted_math_verify", "extracted_octothinker"} <= set(row)
    report = (out / "results.md").read_text()
    assert "grader octothinker" in report and "## Samples the graders disagree on" in report


@pytest.mark.parametrize("args,fragment", [
    (["--benchmarks", "nosuchbench"], "nosuchbench"),
    (["--benchmarks", "{tmp}/missing.jsonl", "--fields", "question=q,answer=a"], "missing.jsonl"),
    (["--benchmarks", "{tmp}/wrong.jsonl", "--fields", "question=problem,answer=a"], "wrong.jsonl:1"),
    (["--benchmarks", "{tmp}/empty.jsonl", "--fields", "question=q,answer=a"], "empty.jsonl"),
    (["--benchmarks", "gsm8k", "--n", "2", "--pass-k", "4", "--temperature", "1"], "--pass-k"),
    (["--benchmarks", "gsm8k", "--tp", "3"], "parallel.tp"),
])
def test_bad_input_is_a_clear_error(checkpoint, args, fragment):
    (checkpoint / "wrong.jsonl").write_text(json.dumps({"q": "1+1?", "a": "2"}) + "\n")
    (checkpoint / "empty.jsonl").write_text("")
    args = [a.replace("{tmp}", str(checkpoint)) for a in args]
    res = _eval(["--checkpoint", str(checkpoint / "ckpt"), "--out", str(checkpoint / "bad"), *args], timeout=120)
    assert res.returncode == 2, res.stderr[-2000:]
    assert fragment in res.stderr and res.stderr.startswith("error:")
    assert not (checkpoint / "bad" / "summary.json").exists()
