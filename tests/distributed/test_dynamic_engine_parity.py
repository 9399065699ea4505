"""The dynamic-engine generator against the static engine on a tiny model (tests/scripts/
dynamic_generation_check.py): greedy tokens, texts, finish reasons and log-probs equal, also with a KV
buffer small enough to make megatron pause and evict; sampled log-probs equal a forward pass's; an
in-place weight update reaches the next rollout; training runs after a rollout.

Without a GPU the check replaces megatron's three CUDA-only dependencies with test-only stand-ins (no
pinned memory, no-op NVTX, a pure-torch paged attention) — what the CPU test covers is this project's
generator and megatron's dynamic scheduling, paging, eviction and sampling, not flash-attn or CUDA
graphs. The GPU tests run the real kernels, with and without CUDA graphs; no GPU has run them yet."""

from __future__ import annotations

import sys

import pytest
import torch

from tests.helpers import run

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(600)]

SCRIPT = "tests/scripts/dynamic_generation_check.py"


def _gpu_with_flash_attn() -> bool:
    from megatron_octo.generation_dynamic import flash_attn_for_dynamic_engine

    return torch.cuda.is_available() and flash_attn_for_dynamic_engine()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU stand-ins are for machines without a GPU")
def test_dynamic_equals_static_on_cpu_with_standins():
    res = run([sys.executable, SCRIPT], timeout=300)
    assert res.returncode == 0 and "OK gpu=False" in res.stdout, res.stdout[-2000:] + res.stderr[-3000:]


@pytest.mark.skipif(not _gpu_with_flash_attn(), reason="needs a CUDA GPU and flash-attn >= 2.7.3 (or 3)")
@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_dynamic_equals_static_on_gpu(cuda_graphs):
    res = run([sys.executable, SCRIPT, *(["--cuda-graphs"] if cuda_graphs else [])], timeout=500)
    assert res.returncode == 0 and f"OK gpu=True cuda_graphs={cuda_graphs}" in res.stdout, \
        res.stdout[-2000:] + res.stderr[-3000:]
