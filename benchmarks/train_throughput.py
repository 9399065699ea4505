"""Training throughput on CPU: the real trainer step against this machine's GEMM peak.

    python benchmarks/train_throughput.py [--preset cpu-40m] [--steps 8] [--threads 2]

Runs the trainer (megatron-core GPTModel, DDP, optimizer, schedule; mock data so the tokenizer and
disk are out of the picture) in this process, then measures a large fp32 matmul with the same
thread count, and prints tokens/s and achieved FLOP/s / matmul FLOP/s. FLOPs per token follow
Megatron-LM's accounting (megatron_octo.models.llama.flops_per_token: 6 x matmul parameters
incl. the output layer + attention scores/values; the input embedding lookup is not a matmul).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def gemm_flops(n: int = 2048, repeats: int = 6) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return repeats * 2 * n**3 / (time.perf_counter() - t)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu-40m")
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--micro-batch", type=int, default=8)
    p.add_argument("--micro-batches", type=int, default=2)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup-steps", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true", help="print one JSON line instead of the table")
    args = p.parse_args(argv)

    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    warnings.filterwarnings("ignore")
    import torch

    torch.set_num_threads(args.threads)
    # lazy: torch loads only after main() sets OMP_NUM_THREADS
    from megatron_octo import config as cfgmod
    from megatron_octo.models import llama
    from megatron_octo.runtime import distributed as rt
    from megatron_octo.training.trainer import Trainer

    gbs = args.micro_batch * args.micro_batches
    tokens = args.steps * gbs * args.seq
    with tempfile.TemporaryDirectory() as tmp:
        cfg = cfgmod.load(None, [
            f"model.preset={args.preset}", f"model.seq_length={args.seq}", "tokenizer.library=null", "data.mock=true",
            f"train.tokens={tokens}", f"train.micro_batch_size={args.micro_batch}", f"train.global_batch_size={gbs}",
            "train.log_interval=1", "logging.peak_flops_per_device=1e12", f"logging.tensorboard_dir={tmp}/tb",
            f"data.cache_dir={tmp}/cache", "schedule.lr=1e-4",
        ])
        trainer = Trainer(cfg)
        trainer.setup()
        peak_before = gemm_flops()
        trainer.train()
        with open(os.path.join(tmp, "tb", "metrics.jsonl")) as f:
            records = [json.loads(line) for line in f if "iteration-time" in line]
        arch, padded = trainer.arch, trainer.padded_vocab
        rt.shutdown()

    timed = records[args.warmup_steps:]
    step_time = sum(r["iteration-time"] for r in timed) / len(timed)
    tps = gbs * args.seq / step_time
    achieved = llama.flops_per_token(arch, args.seq, padded) * tps
    # The machine is shared and noisy: the GEMM is measured just before and just after the run.
    peak = (peak_before + gemm_flops()) / 2
    result = {
        "preset": args.preset, "params_M": round(llama.num_parameters(arch, padded) / 1e6, 1),
        "threads": args.threads, "seq": args.seq, "global_batch": gbs, "tokens_per_s": round(tps),
        "achieved_GFLOPs": round(achieved / 1e9, 1), "gemm_GFLOPs": round(peak / 1e9, 1),
        "ratio_vs_gemm": round(achieved / peak, 3),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"train_throughput: {result['preset']} ({result['params_M']}M params), {args.threads} threads, "
              f"seq {args.seq}, batch {gbs}")
        print(f"  tokens/s                      {result['tokens_per_s']}")
        print(f"  achieved GFLOP/s              {result['achieved_GFLOPs']}")
        print(f"  fp32 GEMM GFLOP/s (same run)  {result['gemm_GFLOPs']}")
        print(f"  achieved / GEMM               {result['ratio_vs_gemm']}   (a prototype reached 0.64)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
