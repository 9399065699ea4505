"""Megatron logits of a converted checkpoint against transformers' logits of the HF model: megatron set up at
TP = WORLD_SIZE, seed 0, then tests/hf_cases.hf_logits (the single-process runs of tests/e2e/test_hf_roundtrip.py
call it in-process).

    [torchrun --nproc-per-node TP] python tests/scripts/hf_logits.py HF_DIR CKPT [--greedy N] [--control]

Prints ``max_abs_diff=<x>`` (and ``greedy_match=<bool>`` with --greedy) on rank 0; exit 1 when the
difference exceeds 1e-4.
"""
import argparse
import os
import sys
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")

sys.path.append(str(Path(__file__).resolve().parents[2]))  # the checkout, whose tests/ is a package
from megatron_octo.runtime import distributed as rt  # noqa: E402
from tests.hf_cases import hf_logits  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("hf_dir")
    p.add_argument("ckpt")
    p.add_argument("--greedy", type=int, default=0)
    p.add_argument("--control", action="store_true",
                   help="also print the difference to the same HF weights without llama3 RoPE scaling")
    args = p.parse_args()
    tp = int(os.environ.get("WORLD_SIZE", "1"))
    rt.initialize(tp, 1, seed=0)
    rc, lines = hf_logits(args.hf_dir, args.ckpt, args.greedy, args.control)
    for key, text in lines.items():
        print(f"{key}={text}", flush=True)
    rt.shutdown()
    return rc


if __name__ == "__main__":
    sys.exit(main())
