"""Stopped sequences cost nothing afterwards, counted in a fresh interpreter (tests/scripts/generation_stop_check.py).

A sequence that ends at EOD or a stop string costs nothing afterwards: the Generator's counted forward
passes and batch rows x positions fed equal what the sequences' own lengths imply (one full prefill, one
decode pass per step while any sequence runs, only the running rows fed), and the stopped sequences'
tokens are the unstopped run's prefixes (tests/scripts/generation_stop_check.py, tiny model). Stop strings
end rows on the fallback paths too: megatron's forward in our loop (pipeline stages) and megatron's static
engine (Transformer Engine layers), whose batch ends once every row has met its stop string."""

from __future__ import annotations

import json
import sys

import pytest

from tests.helpers import run

pytestmark = pytest.mark.timeout(300)


def test_stopped_sequences_generate_no_further_tokens():
    res = run([sys.executable, "tests/scripts/generation_stop_check.py"], timeout=280)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    r = json.loads(next(line[7:] for line in res.stdout.splitlines() if line.startswith("RESULT ")))
    assert r["own_loop"], r
    # Unstopped: 1 prefill + 11 decode passes for 12 tokens, every prompt prefilled in that one pass.
    assert r["full_counts"] == r["full_expected"], r
    for case in ("eod", "stop"):
        c = r[case]
        assert min(c["stops"]) < 12, c  # something did stop early
        assert c["counts"] == c["expected"], (case, c)
        assert c["tokens_are_prefixes"], (case, c)
    assert r["eod"]["reasons"][0] == "eod" and "stop" in r["stop"]["reasons"], r
    for path in ("megatron_forward", "static_engine"):
        c = r[path]
        assert max(c["stops"]) < 12 and c["reasons"] == ["stop"] * 3, (path, c)  # every row met its string
        assert c["tokens_are_prefixes"], (path, c)  # nothing generated after it
        assert c["passes"] == c["expected_passes"] < c["full_passes"], (path, c)  # the batch ended early
    assert r["megatron_forward"]["counts"] == r["megatron_forward"]["expected"], r  # and rows left it
