"""Generation's lean forward generates what megatron's forward generates, checked in a fresh interpreter.

Generation's lean forward (megatron_octo/models/lean_forward.py) computes megatron's GPTModel forward:
with torch's GEMM (``OCTO_INFERENCE_GEMM=torch``) every generated token and log-prob equals megatron's
path bit for bit on prompts generated alone, and to <= 1e-5 in a left-padded batch (its prefill attends
row by row) and on few-shot prompts whose shared prefix it feeds once (counted); with oneDNN's GEMM (forced; the CPU default is the faster one) the tokens are the same and the log-probs within 1e-5,
and the profiler sees oneDNN's GEMMs run. The passes are counted on each path (the lean one really ran,
megatron's module forward did not), and a pipeline stage is left to megatron's forward with the reason
(tests/scripts/lean_forward_check.py, tiny model)."""

from __future__ import annotations

import json
import sys

import pytest

from tests.helpers import env_for_subprocess, run

pytestmark = pytest.mark.timeout(300)


def _check(gemm: str) -> dict:
    env = env_for_subprocess()
    env["OCTO_INFERENCE_GEMM"] = gemm
    res = run([sys.executable, "tests/scripts/lean_forward_check.py"], timeout=280, env=env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return json.loads(next(line[7:] for line in res.stdout.splitlines() if line.startswith("RESULT ")))


def _max_diff(a, b) -> float:
    return max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))


@pytest.mark.parametrize("gemm", ["torch", "onednn"])
def test_lean_forward_generates_what_megatron_forward_generates(gemm):
    r = _check(gemm)
    assert r["unsupported"] is None, r
    lean, meg = r["runs"]["lean"], r["runs"]["megatron"]
    # What ran: every pass through the lean forward, none through GPTModel.forward (and the reverse).
    assert lean["lean_passes"] > 0 and lean["megatron_passes"] == 0, lean
    assert meg["lean_passes"] == 0 and meg["megatron_passes"] == lean["lean_passes"] - 2, (lean, meg)  # the prefixes
    assert lean["shared_prefix_eod"]["reasons"][0] == "eod", lean["shared_prefix_eod"]  # row 0 left first
    for case in ("padded_sampled", "single_greedy", "shared_prefix", "shared_prefix_eod"):
        assert lean[case]["tokens"] == meg[case]["tokens"], case
        assert case.endswith("eod") or all(len(t) == 16 for t in lean[case]["tokens"]), case
        assert _max_diff(lean[case]["log_probs"], meg[case]["log_probs"]) <= 1e-5, case
    # The few-shot prompts' shared prefix fed once, not once per row (2 prompts x 2 samples, 16 tokens each).
    shared = r["shared_prefix_tokens"]
    lengths = lean["shared_prefix"]["prompt_lengths"]
    rows, width = 2 * len(lengths), max(lengths)
    assert shared >= 32, r
    assert meg["shared_prefix"]["positions"] == rows * width + rows * 15, meg["shared_prefix"]
    assert lean["shared_prefix"]["positions"] == shared + rows * (width - shared) + rows * 15, lean["shared_prefix"]
    assert lean["shared_prefix"]["passes"] == meg["shared_prefix"]["passes"] + 1  # the prefix's own pass
    if gemm == "torch":
        assert lean["single_greedy"]["log_probs"] == meg["single_greedy"]["log_probs"]  # bit for bit
        assert lean["onednn_gemms"] == 0, lean
    else:
        assert r["onednn"], "this torch has no oneDNN linear"
        assert lean["onednn_gemms"] > 0 and meg["onednn_gemms"] == 0, (lean["onednn_gemms"], meg["onednn_gemms"])
    assert r["stage_unsupported"] and "pipeline" in r["stage_unsupported"], r
