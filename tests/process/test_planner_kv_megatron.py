"""tools/plan.py --rl / --eval: the KV-buffer bytes equal what megatron-core allocates for the same arguments
(a tiny model on the CPU, in a fresh interpreter: the static engine's StaticInferenceContext buffers after a
generation, the dynamic engine's DynamicInferenceContext memory_buffer). Moved from tests/unit/test_planner_rl.py."""

from __future__ import annotations

import json
import sys

import pytest

from megatron_octo import planner as pl
from megatron_octo.models.llama import LlamaArchitecture
from tests.helpers import ROOT, run


@pytest.fixture(scope="module")
def megatron_kv():
    res = run([sys.executable, "tests/scripts/kv_buffer_sizes.py"], timeout=300, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def _arch(seen) -> LlamaArchitecture:
    a = seen["arch"]
    return LlamaArchitecture(num_layers=a["num_layers"], hidden_size=a["kv_channels"] * 4, ffn_hidden_size=8,
                             num_attention_heads=4, num_query_groups=a["num_query_groups"], vocab_size=8,
                             max_position_embeddings=4096, rotary_base=10000, rope_scaling_factor=0.0,
                             tie_embeddings=True)


@pytest.mark.timeout(400)
def test_static_kv_bytes_equal_megatrons_allocation(megatron_kv):
    arch, dtype = _arch(megatron_kv), megatron_kv["dtype_bytes"]
    assert arch.kv_channels == megatron_kv["arch"]["kv_channels"]
    for row in megatron_kv["static"]:
        assert row["bytes"] == pl.kv_static_bytes(arch, tp=1, pp=1, max_batch_size=row["batch"],
                                                  max_sequence_length=row["seq"], dtype_bytes=dtype), row
        assert row["batch_first"], row  # the local spec's generation runs the lean forward
        assert row["shape"] == [row["batch"], arch.num_query_groups, row["seq"], arch.kv_channels], row
        assert row["buffers"] == 2 * arch.num_layers


@pytest.mark.timeout(400)
def test_dynamic_kv_bytes_equal_megatrons_allocation(megatron_kv):
    arch, dtype = _arch(megatron_kv), megatron_kv["dtype_bytes"]
    for row in megatron_kv["dynamic"]:
        assert row["bytes"] == pl.kv_dynamic_bytes(arch, tp=1, pp=1, max_batch_size=row["batch"],
                                                   max_sequence_length=row["seq"], block_size_tokens=row["block"],
                                                   buffer_gib=row["gb"], dtype_bytes=dtype), row
