"""Generation's lean forward (megatron_octo/models/lean_forward.py) computes megatron's GPTModel forward:
with torch's GEMM (``OCTO_INFERENCE_GEMM=torch``) every generated token and log-prob equals megatron's
path bit for bit on prompts generated alone, and to <= 1e-5 in a left-padded batch (its prefill attends
row by row); with oneDNN's GEMM (the CPU default) the tokens are the same and the log-probs within 1e-5,
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
    assert meg["lean_passes"] == 0 and meg["megatron_passes"] == lean["lean_passes"], (lean, meg)
    for case in ("padded_sampled", "single_greedy"):
        assert lean[case]["tokens"] == meg[case]["tokens"], case
        assert all(len(t) == 16 for t in lean[case]["tokens"]), case
        assert _max_diff(lean[case]["log_probs"], meg[case]["log_probs"]) <= 1e-5, case
    if gemm == "torch":
        assert lean["single_greedy"]["log_probs"] == meg["single_greedy"]["log_probs"]  # bit for bit
        assert lean["onednn_gemms"] == 0, lean
    else:
        assert r["onednn"], "this torch has no oneDNN linear"
        assert lean["onednn_gemms"] > 0 and meg["onednn_gemms"] == 0, (lean["onednn_gemms"], meg["onednn_gemms"])
    assert r["stage_unsupported"] and "pipeline" in r["stage_unsupported"], r
