"""Rollout/eval generation throughput at a realistic shape: our path (:class:`megatron_octo.generation.Generator`
on the training GPTModel) against Hugging Face ``transformers`` ``LlamaForCausalLM.generate`` (KV cache on)
with the same weights and prompts, interleaved in one process with the same thread count.

    python benchmarks/rollout_throughput.py [--preset realistic] [--quick] [--json]

Preset ``realistic`` (the default): a Llama of SmolLM2-135M's shape — 30 layers, hidden 576, 9 heads /
3 KV heads (head dim 64), MLP 1536, vocabulary 49,152, tied embeddings, RoPE theta 1e5 — with random
weights (speed does not depend on them), fp32. Prompts: GSM8K 8-shot (the eval's ``gsm8k_8shot``
protocol on the shipped test set, the bundled SentencePiece tokenizer: 777-875 tokens for the first 16
questions), batch 16. Generated ids beyond the tokenizer's 8K vocabulary are dropped from the *text*
only. Neither side stops early (EOD ignored, no stop strings): both generate exactly N tokens.

Cases, each timed for ours and then transformers, back to back:
  sampled   N new tokens at temperature 1 (rollouts)
  greedy    N new tokens, greedy (eval)
  unshared  as sampled, without feeding the prompts' shared 8-shot prefix once (every row prefills and
            attends to its own copy, as with prompts that share nothing), against the sampled case's
            transformers run (it shares nothing either way)
  long      L new tokens at temperature 1 (long responses)
Each reports prefill tokens/s (prompt tokens / the prompts' forward pass), decode tokens/s
(B * (N - 1) / the time from the second forward pass to the end: every later pass and the sampling;
ours from ``Generator.stats``, transformers' from a forward pre-hook) and the end-to-end generated
tokens/s of the whole call. ``--quick``: 8 prompts x 32 / 64 new tokens (same
model and prompt shape). The logits of both models on one prompt are compared first (same weights).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PRESETS = {
    "realistic": ["model.preset=cpu-10m", "model.num_layers=30", "model.hidden_size=576",
                  "model.ffn_hidden_size=1536", "model.num_attention_heads=9", "model.num_query_groups=3",
                  "model.vocab_size=49152", "model.rotary_base=100000", "model.rope_scaling_factor=0.0",
                  "model.tie_embeddings=true"],
    "cpu-10m": ["model.preset=cpu-10m"],
}


def build(preset: str, seed: int):
    # lazy: torch and megatron-core load after main() sets OMP_NUM_THREADS
    import torch

    from megatron_octo import config as cfgmod
    from megatron_octo.models import llama
    from megatron_octo.runtime import distributed as rt

    cfg = cfgmod.load(None, ["train.tokens=0", "tokenizer.library=sentencepiece",
                             "tokenizer.path=data/tokenizer/octo_sp8k.model", "parallel.tp=1", *PRESETS[preset]])
    rt.initialize(1, 1, seed=seed)
    tok = llama.load_tokenizer(cfg)
    arch = llama.run_architecture(cfg, tok)
    torch.manual_seed(seed)
    model = llama.build_gpt_model(cfg, arch, pre_process=True, post_process=True).eval()
    return model, arch, tok  # ids beyond its 8K (random weights sample them) decode to nothing


def to_hf(model, arch):
    """transformers' LlamaForCausalLM with the megatron model's weights (the export's mapping)."""
    # lazy: torch and megatron-core load after main() sets OMP_NUM_THREADS
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from megatron_octo.models import hf_mapping as hm
    from megatron_octo.models.hf_config import hf_config_from_arch

    cfg = hf_config_from_arch(arch)
    hf = LlamaForCausalLM(LlamaConfig(**cfg)).to(torch.float32).eval()
    state = {}
    for name, p in model.named_parameters():
        src = hm.param_source(name, arch.tie_embeddings)
        names = hm.hf_names_for_layer(src, src.local_layer)
        item = hm.ExportItem(name, src.local_layer, src.kind, tuple((n, ()) for n in names))
        for n, t in zip(names, hm.hf_tensors_from_megatron(item, p.detach(), arch)):
            state[n] = t.clone()
    missing, unexpected = hf.load_state_dict(state, strict=False)
    missing = [m for m in missing if not (arch.tie_embeddings and m == "lm_head.weight")]
    if missing or unexpected:
        raise SystemExit(f"HF weights: missing {missing}, unexpected {unexpected}")
    if arch.tie_embeddings:
        hf.tie_weights()
    return hf


def prompts_gsm8k(n: int) -> list[str]:
    # lazy: torch and megatron-core load after main() sets OMP_NUM_THREADS
    from megatron_octo.eval.benchmarks import load_benchmark
    from megatron_octo.eval.prompts import build_prompt

    return [build_prompt("gsm8k_8shot", ex.question) for ex in load_benchmark("gsm8k", limit=n)]


class Ours:
    def __init__(self, model, tok, max_len: int, batch: int):
        # lazy: torch and megatron-core load after main() sets OMP_NUM_THREADS
        from megatron_octo.generation import Generator, SamplingConfig

        self.SamplingConfig = SamplingConfig
        self.gen = Generator(model, tok, max_sequence_length=max_len, max_batch_size=batch)

    def run(self, prompts, new_tokens: int, greedy: bool, share_prefix: bool = True) -> dict:
        sc = self.SamplingConfig(max_new_tokens=new_tokens, temperature=0.0 if greedy else 1.0, ignore_eod=True)
        self.gen.share_prefix = share_prefix
        before = dict(self.gen.stats)
        t, c = time.perf_counter(), time.process_time()
        out = self.gen.generate(prompts, sc)
        return {"s": time.perf_counter() - t, "cpu_s": time.process_time() - c,
                "tokens": sum(len(g.tokens) + (g.finish_reason == "eod") for per in out for g in per),
                "prefill_s": self.gen.stats["prefill_s"] - before["prefill_s"],
                "decode_s": self.gen.stats["decode_s"] - before["decode_s"]}


class HF:
    """``generate`` timed by a forward pre-hook: the prompts' pass is its first forward, decoding runs from
    the second forward's start to the end (every later pass and sampling), as the Generator's stats split it."""

    def __init__(self, hf, tok, batch: int):
        self.hf, self.tok, self.batch = hf, tok, batch
        self.starts: list[float] = []
        hf.register_forward_pre_hook(lambda *_: self.starts.append(time.perf_counter()))

    def run(self, prompts, new_tokens: int, greedy: bool, share_prefix: bool = True) -> dict:
        import torch

        ids = [self.tok.tokenize(p) for p in prompts]
        pad = self.tok.eod
        kw = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, use_cache=True, pad_token_id=pad,
                  eos_token_id=None)
        kw.update(dict(do_sample=False) if greedy else dict(do_sample=True, temperature=1.0, top_k=0, top_p=1.0))
        t, c = time.perf_counter(), time.process_time()
        n, prefill, decode = 0, 0.0, 0.0
        with torch.no_grad():
            for i in range(0, len(ids), self.batch):
                chunk = ids[i:i + self.batch]
                width = max(map(len, chunk))
                input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in chunk])
                mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in chunk])
                self.starts.clear()
                out = self.hf.generate(input_ids=input_ids, attention_mask=mask, **kw)
                end = time.perf_counter()
                prefill += (self.starts[1] if len(self.starts) > 1 else end) - self.starts[0]
                decode += end - self.starts[1] if len(self.starts) > 1 else 0.0
                n += (out.shape[1] - width) * out.shape[0]
        return {"s": time.perf_counter() - t, "cpu_s": time.process_time() - c, "tokens": n,
                "prefill_s": prefill, "decode_s": decode}


def check_same_weights(model, hf, tok, prompt: str) -> float:
    import torch

    ids = torch.tensor([tok.tokenize(prompt)[:64]])
    pos = torch.arange(ids.shape[1]).unsqueeze(0)
    with torch.no_grad():
        a = model(ids, pos, None)[0]
        b = hf(input_ids=ids).logits[0]
    return (a[..., :b.shape[-1]] - b).abs().max().item()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="realistic", choices=sorted(PRESETS))
    p.add_argument("--prompts", type=int, default=None, help="default 16 (8 with --quick)")
    p.add_argument("--batch", type=int, default=None, help="default: --prompts")
    p.add_argument("--new-tokens", type=int, default=None, help="sampled and greedy cases (default 128, quick 32)")
    p.add_argument("--long-tokens", type=int, default=None, help="long case (default 1024, quick 64; 0 = skip)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--quick", action="store_true", help="fewer prompts and tokens, same model and prompt shape")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    n_prompts = args.prompts or (8 if args.quick else 16)
    batch = args.batch or n_prompts
    new = args.new_tokens or (32 if args.quick else 128)
    long_new = args.long_tokens if args.long_tokens is not None else (64 if args.quick else 1024)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ.setdefault("TQDM_DISABLE", "1")
    warnings.filterwarnings("ignore")
    import torch

    torch.set_num_threads(args.threads)
    model, arch, tok = build(args.preset, args.seed)
    hf_model = to_hf(model, arch)
    prompts = prompts_gsm8k(n_prompts)
    lengths = [len(tok.tokenize(x)) for x in prompts]
    max_diff = check_same_weights(model, hf_model, tok, prompts[0])
    ours = Ours(model, tok, max(lengths) + max(new, long_new) + 8, batch)
    theirs = HF(hf_model, tok, batch)
    for side in (ours, theirs):  # warm-up
        side.run(prompts[:2], 2, False)

    cases = [("sampled", new, False, True), ("greedy", new, True, True), ("unshared", new, False, False)]
    if long_new:
        cases.append(("long", long_new, False, True))
    res: dict = {}
    for name, n, greedy, share in cases:
        for label, side in (("ours", ours), ("hf", theirs)):
            if label == "hf" and not share:  # transformers shares nothing either way: the sampled case's run
                res[f"{name}_hf"] = res["sampled_hf"]
                continue
            r = side.run(prompts, n, greedy, share)
            res[f"{name}_{label}"] = {k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}
            print(f"[rollout_throughput] {name:8s} {label:4s} {n:5d} new tokens: {r['s']:8.2f} s wall "
                  f"(prefill {r['prefill_s']:.2f}, decode {r['decode_s']:.2f}), {r['cpu_s']:8.2f} CPU-s, "
                  f"{r['tokens']} tokens", file=sys.stderr, flush=True)
    prompt_tokens = sum(lengths)
    summary: dict = {}
    # Prefill: the prompts' pass (prompt tokens/s); decode: every later pass and the sampling (generated
    # tokens after the first per second); end to end: generated tokens per wall second of the whole call.
    for label in ("ours", "hf"):
        s = {}
        for name, n, *_ in cases:
            r = res[f"{name}_{label}"]
            s[f"{name}_prefill_tokens_per_s"] = prompt_tokens / r["prefill_s"]
            s[f"{name}_decode_tokens_per_s"] = n_prompts * (n - 1) / r["decode_s"] if n > 1 else None
            s[f"{name}_tokens_per_s"] = r["tokens"] / r["s"]
        summary[label] = {k: None if v is None else round(v, 1) for k, v in s.items()}
    ratios = {k: None if summary["ours"][k] is None or summary["hf"][k] is None
              else round(summary["ours"][k] / summary["hf"][k], 3) for k in summary["ours"]}
    result = {"preset": args.preset, "prompts": n_prompts, "batch": batch, "new_tokens": new,
              "long_tokens": long_new, "threads": args.threads, "prompt_tokens": [min(lengths), max(lengths)],
              "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
              "max_logit_diff": max_diff, "ours": summary["ours"], "hf": summary["hf"], "ratio": ratios,
              "times": res}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"rollout_throughput: {args.preset} ({result['params_M']}M params), {n_prompts} GSM8K 8-shot prompts "
              f"({min(lengths)}-{max(lengths)} tokens), batch {batch}, {args.threads} threads; "
              f"max |logit diff| ours vs HF {max_diff:.1e}")
        print(f"  {'figure':42s} {'ours':>10s} {'transformers':>13s} {'ratio':>7s}")
        show = lambda v, w, f: f"{'n/a':>{w}s}" if v is None else f"{v:{w}.{f}f}"  # noqa: E731
        for k in summary["ours"]:
            print(f"  {k:42s} {show(summary['ours'][k], 10, 1)} {show(summary['hf'][k], 13, 1)} {show(ratios[k], 7, 2)}")
        print("  (aim: ratio >= 2)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
