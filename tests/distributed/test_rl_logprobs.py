"""Rollout log-probs from megatron's inference engine equal the training forward's (<= 2e-5, fp32
rounding of two computations), the vocab-parallel log-prob helper equals a dense log-softmax in values
and gradients (<= 1e-5) and so does the entropy, and cached-RoPE decoding equals megatron's, at TP=1
and TP=2."""

from __future__ import annotations

import sys

import pytest

from tests.helpers import run

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(300)]


@pytest.mark.parametrize("tp", [1, 2])
def test_rollout_logprobs_equal_forward(tp):
    launcher = [sys.executable] if tp == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                  "--nproc-per-node=2"]
    res = run([*launcher, "tests/scripts/rl_logprob_check.py", str(tp)], timeout=280)
    assert res.returncode == 0 and f"OK tp={tp}" in res.stdout, res.stdout[-2000:] + res.stderr[-3000:]
