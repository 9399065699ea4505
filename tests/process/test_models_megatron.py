"""Llama-3 presets against megatron-core in a fresh interpreter: parameter counts equal to megatron-core's
(tests/scripts/count_params.py). SDPA attention against megatron's runs in-process: tests/unit/test_models.py."""

from __future__ import annotations

import json
import sys

import pytest

from megatron_octo.models import llama
from tests.helpers import run
from tests.llama_cases import PUBLISHED


@pytest.fixture(scope="module")
def megatron_counts():
    res = run([sys.executable, "tests/scripts/count_params.py", "tiny", *PUBLISHED], timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(300)
@pytest.mark.parametrize("preset", ["tiny", *PUBLISHED])
def test_parameter_count_equals_megatron(megatron_counts, preset):
    for layers in (1, 2):
        row = megatron_counts[f"{preset}:{layers}"]
        assert row["ours"] == row["megatron"], (preset, layers, row)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("preset", list(PUBLISHED))
def test_full_model_matches_published_count(megatron_counts, preset):
    one, two = megatron_counts[f"{preset}:1"]["megatron"], megatron_counts[f"{preset}:2"]["megatron"]
    arch = llama.PRESETS[preset]
    # megatron's count is linear in the number of layers; extrapolate to the real depth.
    full = one + (arch.num_layers - 1) * (two - one)
    assert full == PUBLISHED[preset]
    assert llama.num_parameters(arch) == PUBLISHED[preset]


def test_gqa_and_swiglu_layout(megatron_counts):
    row = megatron_counts["llama3.1-8b:1"]
    assert row["qkv"] == [4096 + 2 * 8 * 128, 4096]  # 32 query heads + 8 KV groups of 128
    assert row["fc1"] == [2 * 14336, 4096]  # fused gate and up projections
    # llama3 rope scaling divides the lowest frequencies by the factor (8 for 3.1, 32 for 3.2).
    base_last = 500000 ** (-126 / 128)
    assert row["inv_freq_last"] == pytest.approx(base_last / 8, rel=1e-5)
    assert megatron_counts["llama3.2-3b:1"]["inv_freq_last"] == pytest.approx(base_last / 32, rel=1e-5)
