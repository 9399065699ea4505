"""Rollout generation throughput: our path (megatron-core static inference engine on the training
GPTModel) against Hugging Face ``transformers`` ``generate`` (KV cache on) on the same weights and
prompts, measured in one run with the same thread count.

    python benchmarks/rollout_throughput.py [--preset cpu-10m] [--prompts 16] [--new-tokens 64] [--json]

Steps: a checkpoint of the preset (random weights, the bundled SentencePiece tokenizer) is written
with the trainer (train.tokens=0), exported with tools/convert_to_hf.py, then both sides generate
``--new-tokens`` tokens for every prompt (sampling at temperature 1, no early stop: EOD is not
special for either side's count; tokens/s counts generated tokens).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(cmd, env):
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    if res.returncode != 0:
        sys.stderr.write(res.stdout[-2000:] + res.stderr[-4000:])
        raise SystemExit(f"failed: {' '.join(cmd)}")


def ours(ckpt: str, prompts: list[str], new_tokens: int, batch: int) -> tuple[float, int]:
    from megatron_octo.generation import Generator, SamplingConfig
    from megatron_octo.models.from_checkpoint import load_for_inference
    from megatron_octo.runtime import distributed as rt

    lm = load_for_inference(ckpt)
    prompt_len = max(len(lm.tokenizer.tokenize(p)) for p in prompts)
    gen = Generator(lm.model, lm.tokenizer, max_sequence_length=prompt_len + new_tokens + 8, max_batch_size=batch)
    sc = SamplingConfig(max_new_tokens=new_tokens, temperature=1.0)
    gen.generate(prompts[:2], SamplingConfig(max_new_tokens=4, temperature=1.0))  # warm-up
    t = time.perf_counter()
    out = gen.generate(prompts, sc)
    dt = time.perf_counter() - t
    n = sum(len(g.tokens) + (1 if g.finish_reason == "eod" else 0) for per in out for g in per)
    rt.shutdown()
    return n / dt, n


def hf(hf_dir: str, prompts: list[str], new_tokens: int, batch: int) -> tuple[float, int]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(hf_dir)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=True, temperature=1.0, top_k=0,
                  use_cache=True, pad_token_id=tok.pad_token_id)
    with torch.no_grad():
        enc = tok(prompts[:2], return_tensors="pt", padding=True)
        model.generate(**enc, **dict(kwargs, max_new_tokens=4, min_new_tokens=4))  # warm-up
        t = time.perf_counter()
        n = 0
        for i in range(0, len(prompts), batch):
            enc = tok(prompts[i:i + batch], return_tensors="pt", padding=True)
            out = model.generate(**enc, **kwargs)
            n += (out.shape[1] - enc["input_ids"].shape[1]) * out.shape[0]
        dt = time.perf_counter() - t
    return n / dt, n


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu-10m")
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ.setdefault("TQDM_DISABLE", "1")
    warnings.filterwarnings("ignore")
    import torch

    torch.set_num_threads(args.threads)
    env = dict(os.environ, PYTHONWARNINGS="ignore", PYTHONPATH=ROOT)
    questions = ["What is the sum of the first ten positive integers?", "Simplify (x^2 - 1)/(x - 1).",
                 "How many primes are less than 30?", "Solve 3x + 5 = 20 for x."]
    from megatron_octo.eval.prompts import rl_prompt

    prompts = [rl_prompt(questions[i % len(questions)]) for i in range(args.prompts)]
    with tempfile.TemporaryDirectory() as tmp:
        _run([sys.executable, "-m", "megatron_octo.train", "--config", "recipes/tiny/stable.yaml",
              f"model.preset={args.preset}", "data.mock=true", "data.mixture=null", "train.tokens=0",
              f"checkpoint.save={tmp}/ckpt", f"data.cache_dir={tmp}/cache"], env)
        _run([sys.executable, "tools/convert_to_hf.py", f"{tmp}/ckpt", "--out", f"{tmp}/hf"], env)
        ours_tps, ours_n = ours(f"{tmp}/ckpt", prompts, args.new_tokens, args.batch)
        hf_tps, hf_n = hf(f"{tmp}/hf", prompts, args.new_tokens, args.batch)
    result = {"preset": args.preset, "prompts": args.prompts, "new_tokens": args.new_tokens, "threads": args.threads,
              "ours_tokens_per_s": round(ours_tps, 1), "hf_generate_tokens_per_s": round(hf_tps, 1),
              "ratio": round(ours_tps / hf_tps, 3), "ours_tokens": ours_n, "hf_tokens": hf_n}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"rollout_throughput: {args.preset}, {args.prompts} prompts x {args.new_tokens} new tokens, "
              f"{args.threads} threads")
        print(f"  megatron static engine (ours)   {result['ours_tokens_per_s']} tokens/s")
        print(f"  transformers generate (KV cache) {result['hf_generate_tokens_per_s']} tokens/s")
        print(f"  ours / transformers              {result['ratio']}   (aim: >= 2)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
