"""RL validation (rl.val_*) deals its prompts out over the data-parallel ranks and gathers the responses
(eval's generate_sharded): greedy validation at DP=2 (torchrun, 2 gloo processes) equals DP=1, each rank
generating its share only. DP=1 runs in this interpreter, DP=2 under torchrun, the same function
(tests/rl_cases.rl_validation)."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from megatron_octo.eval import grader
from tests.helpers import ROOT, run
from tests.megatron_state import megatron_in_process
from tests.rl_cases import rl_validation

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(600)]

LIMIT = 5  # uneven: ranks generate 3 and 2


def _overrides(ckpt, save, val):
    return ["model.preset=tiny", f"checkpoint.init_from={ckpt}", f"checkpoint.save={save}",
            f"rl.val_benchmarks={val}", f"rl.val_limit={LIMIT}", "rl.val_max_new_tokens=16",
            "rl.prompts_per_step=2", "rl.mini_batch_prompts=2"]


def _validate_dp2(ckpt, save, val):
    res = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
               "tests/scripts/rl_validate_check.py", "--config", str(ROOT / "recipes/tiny/rl_grpo.yaml"),
               *_overrides(ckpt, save, val)], timeout=280)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return json.loads(next(line[7:] for line in res.stdout.splitlines() if line.startswith("RESULT ")))


def _validate_dp1(ckpt, save, val, monkeypatch):
    """In this interpreter, as the script's fresh one ran it: one thread (OMP_NUM_THREADS=1), no GEMM measurement
    of an earlier test kept, the recipe's relative paths from the checkout; RLTrainer.setup sets megatron up again
    at the recipe's seed (1234). No grader worker is left behind."""
    monkeypatch.chdir(ROOT)
    try:
        with megatron_in_process(seed=1234):
            torch.set_num_threads(1)  # restored after
            return rl_validation(str(ROOT / "recipes/tiny/rl_grpo.yaml"), _overrides(ckpt, save, val))
    finally:
        grader.shutdown_grader()


def test_greedy_validation_at_dp2_equals_dp1(tiny_text_checkpoint, tmp_path, monkeypatch):
    ckpt = tiny_text_checkpoint / "ckpt"
    val = tmp_path / "val.jsonl"  # short problems (math500's longest exceed the tiny recipe's prompt room)
    val.write_text("".join(json.dumps({"question": f"What is {a} + {b}?", "answer": str(a + b)}) + "\n"
                           for a, b in [(2, 3), (10, 7), (41, 1), (6, 6), (123, 877)]))
    one = _validate_dp1(ckpt, tmp_path / "dp1", val, monkeypatch)
    two = _validate_dp2(ckpt, tmp_path / "dp2", val)
    assert one["generated_per_rank"] == [LIMIT]
    assert two["generated_per_rank"] == [3, 2]  # sharded: each replica generated its share only
    assert two["ranks_agree"]  # every rank holds the gathered responses
    assert len(one["responses"][0]) == LIMIT and any(tokens for per in one["responses"][0] for _, tokens in per)
    assert two["responses"] == one["responses"]  # the same greedy text and tokens, in prompt order
    assert two["metrics"] == one["metrics"]
