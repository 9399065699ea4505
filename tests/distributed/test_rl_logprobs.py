"""Rollout log-probs from megatron's inference engine paths equal the training forward's at temperatures
1.0, 0.7 and 1.3 (the trainer's ``token_log_probs(logits, labels, T)``; top-p: the renormalised nucleus),
so TIS/MIS weights are 1 wherever the two agree; the vocab-parallel log-prob helper equals a dense
log-softmax in values and gradients (<= 1e-5) and so does the entropy, also for few-shot prompts whose
shared prefix the generation forward computes once, and cached-RoPE decoding equals megatron's, at TP=1 and
TP=2; at PP=2 the rollouts, log-probs and entropy equal PP=1's."""

from __future__ import annotations

import pytest
import torch

from tests.megatron_state import megatron_in_process
from tests.rl_cases import pipeline_rollout_logprobs, rollout_logprobs

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(300)]


def _in_process(workload, *args):
    """``workload(*args)`` at TP = PP = 1 in this interpreter, as the scripts' fresh interpreter ran it: megatron set
    up with their seed (which drops earlier GEMM measurements), one thread (OMP_NUM_THREADS=1)."""
    with megatron_in_process(seed=11):
        torch.set_num_threads(1)  # restored after
        return workload(*args)


@pytest.mark.parametrize("tp", [1, 2])
def test_rollout_logprobs_equal_forward(tp, request):
    if tp == 1:  # in this interpreter; TP=2 in the distributed bucket runs the same function (tests/rl_cases.py)
        r = _in_process(rollout_logprobs, tp)
    else:  # rank 0's, as the torchrun script printed it before the bucket
        r = request.getfixturevalue("rank_bucket").result("test_rollout_logprobs_tp2")[0]
    assert r["tp"] == tp and r["tokens"] > 0, r  # something was generated
    assert r["shared_prefix_tokens"] >= 32, r  # the few-shot prompts' prefix was computed once (lean forward)
    assert r["log_prob_length_mismatches"] == [], r  # one engine log-prob per generated token
    assert r["max_dlogp_dense"] <= 1e-5, r  # vocab-parallel log-probs = a dense log-softmax
    assert r["max_dgrad"] <= 1e-5, r  # and their gradients (temperature 1 and 0.7)
    # The engine's log-probs of its samples = the trainer's at the rollout temperature: two fp32 computations
    # (decoding with a KV cache vs one pass over the sequence), a few ulps of the logits, <= 1e-5 with torch's
    # GEMM (the trainer's). oneDNN's GEMM sums in another order: the same stream's log-probs with the two GEMMs
    # differ by what that rounding alone explains ("gemm_only", measured on the tokens both sampled; 2.9e-6 to
    # 6.7e-6 here, log-probs ~ -8), and the oneDNN rollout is within 1e-5 of the trainer plus that.
    temps = r["temperatures"]
    assert set(temps) == {"1.0", "0.7", "1.3"}, r
    for t, row in temps.items():
        assert row["chosen"] in ("torch", "onednn"), row  # the GEMM generation.gemm=auto chose ran first
        assert row["torch"] <= 1e-5, (t, row)
        if "onednn" in row:
            assert row["gemm_only"] <= 2e-5, (t, row)
            assert row["onednn"] <= 1e-5 + row["gemm_only"], (t, row)
    # top-p 0.9 at T=0.7: the nucleus renormalised (vLLM's processed_logprobs) against a float64 reference
    assert r["max_dlogp_top_p"] <= 2e-5 + max(row.get("gemm_only", 0.0) for row in temps.values()), r
    # TIS / MIS weights of these rollouts: exactly 1 where the log-probs agree, within the diff elsewhere
    w = r["is_weights"]
    assert w["equal_tokens"] > 0 and w["tis_one_where_equal"] and w["mis_one_where_equal"], w
    assert w["max_abs_weight_minus_one"] <= 2 * w["max_abs_dlogp"] and w["mis_masked"] == 0, w
    # megatron's forward in our loop (the path of pipeline stages) and megatron's static engine (the path of
    # Transformer Engine layers): the same definition, torch's GEMM
    assert set(r["paths"]) == {"megatron_forward", "static_engine"}, r
    for path, got in r["paths"].items():
        assert got["max_dlogp_t0.7"] <= 1e-5, (path, got)
        assert got["max_dlogp_t1.3_top_p0.9"] <= 2e-5, (path, got)
    assert r["max_dentropy"] <= 1e-4, r
    # Keys rotated once when cached decode as megatron's SelfAttention that re-rotates the cache.
    assert r["cached_rope_layers"] > 0 and r["rope_tokens_equal"] and r["max_dlogp_rope"] <= 1e-5, r


def test_pp2_rollouts_and_logprobs_equal_pp1(tiny_text_checkpoint, rank_bucket):
    """At PP=2 (the last stage's logits broadcast to the first) every rank samples the same tokens as
    PP=1, and the pipeline schedule's log-probs and entropy equal PP=1's (<= 1e-5). PP=1 runs in this
    interpreter, PP=2 in the distributed bucket, the same function (tests/rl_cases.py)."""
    one = _in_process(pipeline_rollout_logprobs, 1, str(tiny_text_checkpoint / "ckpt"))
    two = rank_bucket.result("test_pipeline_rollout_logprobs_pp2")
    assert sorted(r["rank"] for r in two) == [0, 1]
    assert sum(len(t) for t in one["tokens"]) > 0, one  # something was generated
    for r in two:
        assert r["tokens"] == one["tokens"], r["rank"]  # the same rollouts, on both stages
        for key in ("logp", "entropy"):
            for a, b in zip(one[key], r[key]):
                assert a == pytest.approx(b, abs=1e-5), (key, r["rank"])
        # The engine's log-probs of its samples equal the training forward's at the sampling temperature 0.9
        # (as at TP: fp32 rounding).
        assert r["max_dlogp_engine"] <= 2e-5, r["max_dlogp_engine"]
    assert one["max_dlogp_engine"] <= 2e-5, one["max_dlogp_engine"]
