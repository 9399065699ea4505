"""The evaluation CLI on a tiny checkpoint: outputs, TP=2 equals TP=1, clear errors."""

from __future__ import annotations

import json
import sys

import pytest

from megatron_octo.eval import runner
from tests.helpers import read_scalars, run
from tests.megatron_state import run_cli_in_process

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


def test_eval_end_to_end_and_tp2_equals_tp1(checkpoint, tmp_path):
    common = ["--checkpoint", str(checkpoint / "ckpt"), "--benchmarks", "gsm8k,math500,amc23", "--limit", "3",
              "--max-new-tokens", "24"]
    out1, out2 = tmp_path / "ev_tp1", tmp_path / "ev_tp2"
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


def test_rl_protocol_and_sampling(checkpoint, tmp_path):
    out = tmp_path / "ev_rl"
    res = run_cli_in_process(runner.main, [
        "--checkpoint", checkpoint / "ckpt", "--benchmarks", "math500", "--limit", "2", "--max-new-tokens", "16",
        "--protocol", "rl", "--n", "3", "--temperature", "1.0", "--pass-k", "1,3", "--out", out])
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [json.loads(line) for line in open(out / "math500.jsonl")]
    assert len(rows) == 6 and rows[0]["prompt"].endswith("\nAssistant:")
    assert "extracted automatically by the \\boxed{} tag" in rows[0]["prompt"]
    bench = json.loads((out / "summary.json").read_text())["benchmarks"]["math500"]
    assert set(bench["pass_at_k"]) == {"pass@1", "pass@3"} and bench["protocol"] == "orz_base"


def test_octothinker_grader_records_both_verdicts(checkpoint, tmp_path):
    out = tmp_path / "ev_octo"
    res = run_cli_in_process(runner.main, [
        "--checkpoint", checkpoint / "ckpt", "--benchmarks", "gsm8k,olympiadbench", "--limit", "2",
        "--max-new-tokens", "16", "--grader", "octothinker", "--show-disagreements", "--out", out])
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["grader"] == "octothinker"
    assert summary["benchmarks"]["olympiadbench"]["octothinker_rule"] == "olympiad"
    assert all(isinstance(b["lenient_correct"], int) for b in summary["benchmarks"].values())
    for name in ("gsm8k", "olympiadbench"):
        rows = [json.loads(line) for line in open(out / f"{name}.jsonl")]
        assert len(rows) == 2
        for row in rows:
            assert row["grader"] == "octothinker" and row["correct"] == row["correct_octothinker"]
            assert {"correct_math_verify", "extracted_math_verify", "extracted_octothinker"} <= set(row)
            assert isinstance(row["lenient_octothinker"], bool)
    report = (out / "results.md").read_text()
    assert "grader octothinker" in report and "## Samples the graders disagree on" in report
    assert "| octothinker | lenient | disagreements |" in report


@pytest.mark.parametrize("args,fragment", [
    (["--benchmarks", "nosuchbench"], "nosuchbench"),
    (["--benchmarks", "{tmp}/missing.jsonl", "--fields", "question=q,answer=a"], "missing.jsonl"),
    (["--benchmarks", "{tmp}/wrong.jsonl", "--fields", "question=problem,answer=a"], "wrong.jsonl:1"),
    (["--benchmarks", "{tmp}/empty.jsonl", "--fields", "question=q,answer=a"], "empty.jsonl"),
    (["--benchmarks", "gsm8k", "--n", "2", "--pass-k", "4", "--temperature", "1"], "--pass-k"),
    (["--benchmarks", "gsm8k", "--tp", "3"], "parallel.tp"),
])
def test_bad_input_is_a_clear_error(checkpoint, tmp_path, args, fragment):
    """The CLI's main in this interpreter (run_cli_in_process): the error paths, not the process."""
    (tmp_path / "wrong.jsonl").write_text(json.dumps({"q": "1+1?", "a": "2"}) + "\n")
    (tmp_path / "empty.jsonl").write_text("")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    res = run_cli_in_process(runner.main, ["--checkpoint", checkpoint / "ckpt", "--out", tmp_path / "bad", *args])
    assert res.returncode == 2, res.stderr[-2000:]
    assert fragment in res.stderr and res.stderr.startswith("error:")
    assert not (tmp_path / "bad" / "summary.json").exists()


def test_kv_cache_is_sized_for_the_longest_prompt_plus_new_tokens(checkpoint, tmp_path):
    """Without --max-seq-len the static engine's KV buffers (read from megatron's context after the run) hold
    the longest rendered prompt + --max-new-tokens, not max_position_embeddings (4096 for the tiny model)."""
    from megatron_octo.models.llama import PRESETS
    from tokenization.megatron_wrappers import load_tokenizer
    from tests.helpers import ROOT

    out = tmp_path / "ev_kv"
    res = run([sys.executable, "tests/scripts/eval_kv_shape.py", "--checkpoint", str(checkpoint / "ckpt"),
               "--benchmarks", "gsm8k,amc23", "--limit", "2", "--max-new-tokens", "8", "--batch-size", "3",
               "--out", str(out)], timeout=400, cwd=ROOT)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    seen = json.loads(res.stdout.strip().splitlines()[-1])
    assert seen["rc"] == 0
    tok = load_tokenizer(str(ROOT / "data/tokenizer/octo_sp8k.model"), "sentencepiece")
    longest = max(len(tok.tokenize(json.loads(line)["prompt"]))
                  for name in ("gsm8k", "amc23") for line in open(out / f"{name}.jsonl"))
    tiny = PRESETS["tiny"]
    assert longest + 8 < tiny.max_position_embeddings
    assert seen["batch_first"], seen  # the lean forward's buffers: [batch, groups, positions, dim]
    assert seen["shapes"] == [[3, tiny.num_query_groups, longest + 8, tiny.kv_channels]], (seen, longest)
    assert seen["buffers"] == 2 * tiny.num_layers


def test_dp2_shards_prompts_and_writes_what_dp1_writes(checkpoint, tmp_path):
    """Two processes at TP=1 are two data-parallel replicas: each generates every other prompt (3 per
    benchmark: uneven shards), rank 0 gathers them; the per-sample JSONL equals one process's byte for byte."""
    common = ["--checkpoint", str(checkpoint / "ckpt"), "--benchmarks", "gsm8k,amc23", "--limit", "3",
              "--max-new-tokens", "16"]
    one, two = tmp_path / "ev_dp1", tmp_path / "ev_dp2"
    res = run_cli_in_process(runner.main, [*common, "--out", one])  # one process: the CLI's main in this one
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    res = _eval([*common, "--out", str(two)], nproc=2)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    for shard in ("rank 0 of 2: generated 2 of 3", "rank 1 of 2: generated 1 of 3"):
        assert res.stdout.count(f"[eval] data-parallel {shard} prompts") == 2, res.stdout[-3000:]  # per benchmark
    for name in ("gsm8k", "amc23"):
        a, b = (one / f"{name}.jsonl").read_text(), (two / f"{name}.jsonl").read_text()
        assert len(a.splitlines()) == 3 and a == b, name
    assert any(json.loads(line)["response"].strip() for line in (one / "gsm8k.jsonl").read_text().splitlines())
    s1, s2 = (json.loads((d / "summary.json").read_text())["benchmarks"] for d in (one, two))
    assert s1 == s2
