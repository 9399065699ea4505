"""DynamicGenerator (megatron's dynamic engine) against Generator (the static engine) on one tiny model:
megatron set up at world 1, seed 11 (with ``--cuda-graphs``, megatron's graph-safe RNG tracker), then
tests/dynamic_generation_cases.dynamic_against_static (what it checks is described there).

Without a GPU, megatron's dynamic engine cannot run as shipped (megatron_octo/generation_dynamic.py
lists the three failures). This script then replaces, for itself only: pinned-memory requests (a
TorchFunctionMode drops ``pin_memory=True``), NVTX ranges (no-ops) and flash-attn's two paged-KV
kernels (the pure-torch ``_paged_attention``), all from tests/dynamic_engine_cpu.py. With a GPU and
flash-attn nothing is replaced and ``--cuda-graphs`` captures megatron's CUDA graphs (the GPU test in
tests/distributed/test_dynamic_engine_parity.py; its CPU test runs the same function in-process).

Usage: python tests/scripts/dynamic_generation_check.py [--cuda-graphs]; prints one JSON object of what
it observed, which tests/distributed/test_dynamic_engine_parity.py asserts.
"""
import json
import sys
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
import torch  # noqa: E402

sys.path.append(str(Path(__file__).resolve().parents[2]))  # the checkout, whose tests/ is a package
from tests.dynamic_engine_cpu import install_cpu_standins  # noqa: E402
from tests.dynamic_generation_cases import dynamic_against_static  # noqa: E402


def main():
    from megatron_octo.runtime import distributed as rt

    gpu = torch.cuda.is_available()
    graphs = "--cuda-graphs" in sys.argv
    if graphs and not gpu:
        raise SystemExit("--cuda-graphs needs a GPU")
    rt.initialize(1, 1, seed=11, cudagraphable_rng=graphs)
    if not gpu:
        install_cpu_standins()
    print(json.dumps(dynamic_against_static(graphs)))
    rt.shutdown()


if __name__ == "__main__":
    main()
