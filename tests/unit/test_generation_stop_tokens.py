"""Stopped sequences cost nothing afterwards.

A sequence that ends at EOD or a stop string costs nothing afterwards: the Generator's counted forward
passes and batch rows x positions fed equal what the sequences' own lengths imply (one full prefill, one
decode pass per step while any sequence runs, only the running rows fed), and the stopped sequences'
tokens are the unstopped run's prefixes (tests/generation_cases.generation_stop_counts, tiny model, megatron
set up in-process). Stop strings end rows on the fallback paths too: megatron's forward in our loop
(pipeline stages) and megatron's static engine (Transformer Engine layers), whose batch ends once every row
has met its stop string."""

from __future__ import annotations

import pytest
import torch

from tests.generation_cases import generation_stop_counts
from tests.megatron_state import megatron_in_process

pytestmark = pytest.mark.timeout(300)


def test_stopped_sequences_generate_no_further_tokens():
    with megatron_in_process(seed=11):
        torch.set_num_threads(1)  # as the fresh interpreter it ran in had it (OMP_NUM_THREADS=1); restored after
        r = generation_stop_counts()
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
