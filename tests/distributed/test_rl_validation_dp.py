"""RL validation (rl.val_*) deals its prompts out over the data-parallel ranks and gathers the responses
(eval's generate_sharded): greedy validation at DP=2 (2 gloo processes) equals DP=1, each rank generating its
share only. DP=1 runs in this interpreter, DP=2 in the distributed bucket (tests/distributed/bucket.py), the
same function (tests/rl_cases.rl_validation) on the same problems."""

from __future__ import annotations

import pytest
import torch

from megatron_octo.eval import grader
from tests.helpers import ROOT
from tests.megatron_state import megatron_in_process
from tests.rl_cases import RL_RECIPE, VALIDATION_LIMIT as LIMIT, rl_validation, validation_overrides, \
    write_validation_problems

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(600)]


def _validate_dp1(ckpt, save, val, monkeypatch):
    """In this interpreter, as the script's fresh one ran it: one thread (OMP_NUM_THREADS=1), no GEMM measurement
    of an earlier test kept, the recipe's relative paths from the checkout; RLTrainer.setup sets megatron up again
    at the recipe's seed (1234). No grader worker is left behind."""
    monkeypatch.chdir(ROOT)
    try:
        with megatron_in_process(seed=1234):
            torch.set_num_threads(1)  # restored after
            return rl_validation(RL_RECIPE, validation_overrides(ckpt, save, val))
    finally:
        grader.shutdown_grader()


def test_greedy_validation_at_dp2_equals_dp1(tiny_text_checkpoint, rank_bucket, tmp_path, monkeypatch):
    ckpt = tiny_text_checkpoint / "ckpt"
    one = _validate_dp1(ckpt, tmp_path / "dp1", write_validation_problems(tmp_path / "val.jsonl"), monkeypatch)
    two = rank_bucket.result("test_rl_validation_dp2")[0]  # rank 0's
    assert one["generated_per_rank"] == [LIMIT]
    assert two["generated_per_rank"] == [3, 2]  # sharded: each replica generated its share only
    assert two["ranks_agree"]  # every rank holds the gathered responses
    assert len(one["responses"][0]) == LIMIT and any(tokens for per in one["responses"][0] for _, tokens in per)
    assert two["responses"] == one["responses"]  # the same greedy text and tokens, in prompt order
    assert two["metrics"] == one["metrics"]
