"""Workloads on megatron-core models for tests that set megatron up in-process (tests/megatron_state.py)."""

from __future__ import annotations

import contextlib

import torch

from tests.helpers import ROOT


def sdpa_against_megatron() -> dict:
    """max |SDPAttention - megatron DotProductAttention| over the output and the q/k/v gradients, for causal,
    explicit, packed-document and KV-cache decode masks."""
    from megatron.core.transformer.dot_product_attention import DotProductAttention
    from megatron.core.transformer.enums import AttnMaskType

    from megatron_octo import config as cfgmod
    from megatron_octo.models import llama
    from megatron_octo.models.sdpa_attention import SDPAttention

    cfg = cfgmod.load(None, ["train.tokens=0", "model.preset=tiny"])
    tc = llama.transformer_config(cfg, llama.resolve_architecture(cfg.model))
    ref = DotProductAttention(tc, 1, AttnMaskType.causal, "self")
    ours = SDPAttention(tc, 1, AttnMaskType.causal, "self")
    s, b, heads, groups, hn = 12, 3, 4, 2, 16
    torch.manual_seed(0)
    worst = {}
    for case in ("causal-none", "causal-mask", "doc-mask", "decode"):
        sq = 3 if case == "decode" else s
        q = torch.randn(sq, b, heads, hn, requires_grad=True)
        k = torch.randn(s, b, groups, hn, requires_grad=True)
        v = torch.randn(s, b, groups, hn, requires_grad=True)
        full = torch.triu(torch.ones(1, 1, s, s, dtype=torch.bool), 1)
        if case == "causal-none":
            mask_ref, mask_ours = full, None
        elif case == "causal-mask":
            mask_ref = mask_ours = full
        elif case == "doc-mask":  # two documents packed in one sequence (reset_attention_mask)
            m = full.clone().expand(b, 1, s, s).clone()
            m[:, :, 6:, :6] = True
            mask_ref = mask_ours = m
        else:
            mask_ref, mask_ours = full[:, :, s - sq:, :], None
        outs = []
        for mod, mask in ((ref, mask_ref), (ours, mask_ours)):
            for t in (q, k, v):
                t.grad = None
            o = mod(q, k, v, mask)
            (o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum().backward()
            outs.append([o.detach().clone()] + [t.grad.clone() for t in (q, k, v)])
        # output and the three input gradients; inf where the shapes differ
        worst[case] = max((a - c).abs().max().item() if a.shape == c.shape else float("inf")
                          for a, c in zip(*outs))
    return worst


def tiny_model_greedy() -> tuple[torch.Tensor, list[list[int]]]:
    """A freshly initialised tiny GPTModel: its logits on a fixed sequence and its greedy continuations."""
    from megatron_octo import config as cfgmod
    from megatron_octo.generation import Generator, SamplingConfig
    from megatron_octo.models import llama
    from megatron_octo.models.llama import load_tokenizer

    cfg = cfgmod.load(None, ["train.tokens=0", "model.preset=tiny", "tokenizer.library=sentencepiece",
                             f"tokenizer.path={ROOT}/data/tokenizer/octo_sp8k.model"])
    tok = load_tokenizer(cfg)
    model = llama.build_gpt_model(cfg, llama.run_architecture(cfg, tok), pre_process=True, post_process=True)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)  # sharper than the initial near-uniform distribution
        seq = torch.arange(1, 17).unsqueeze(0)
        logits = model(seq, torch.arange(16).unsqueeze(0), None).detach().clone()
    gen = Generator(model, tok, max_sequence_length=64, max_batch_size=4, seed=5)
    outs = gen.generate(["Problem: 2 + 2 = ?", "Once upon a time"], SamplingConfig(max_new_tokens=8, temperature=0.0))
    return logits, [g.tokens for per in outs for g in per]


def parameter_counts(presets) -> dict:
    """megatron-core's parameter count of each preset at 1 and 2 layers (weights allocated, not initialised),
    against ``llama.num_parameters``, with layer 0's fused QKV and FC1 shapes and RoPE's last inverse
    frequency: ``{"<preset>:<layers>": {"megatron", "ours", "qkv", "fc1", "rope_base", "inv_freq_last"}}``."""
    from megatron.core.models.gpt.gpt_model import GPTModel

    from megatron_octo import config as cfgmod
    from megatron_octo.models import llama

    out = {}
    for preset in presets:
        for layers in (1, 2):
            cfg = cfgmod.load(None, ["train.tokens=0", f"model.preset={preset}", f"model.num_layers={layers}"])
            arch = llama.resolve_architecture(cfg.model)
            tc = llama.transformer_config(cfg, arch)
            tc.perform_initialization = False  # sizes only: skip random init of 0.5B-entry embeddings
            model = GPTModel(config=tc, transformer_layer_spec=llama.layer_spec(cfg.model),
                             vocab_size=llama.padded_vocab_size(arch.vocab_size, 128, 1),
                             max_sequence_length=arch.max_position_embeddings,
                             share_embeddings_and_output_weights=arch.tie_embeddings,
                             position_embedding_type="rope", rotary_base=arch.rotary_base,
                             rope_scaling=arch.rope_scaling_factor > 0,
                             rope_scaling_factor=arch.rope_scaling_factor or 8.0)
            n = sum(p.numel() for p in model.parameters())
            out[f"{preset}:{layers}"] = {
                "megatron": n, "ours": llama.num_parameters(arch, llama.padded_vocab_size(arch.vocab_size, 128, 1)),
                "qkv": list(model.decoder.layers[0].self_attention.linear_qkv.weight.shape),
                "fc1": list(model.decoder.layers[0].mlp.linear_fc1.weight.shape),
                "rope_base": model.rotary_pos_emb.inv_freq.numel() if hasattr(model, "rotary_pos_emb") else None,
                "inv_freq_last": float(model.rotary_pos_emb.inv_freq[-1])}
            del model
    return out


KV_STATIC = [(3, 40), (5, 97)]  # (max_batch_size, max_sequence_length)
KV_DYNAMIC = [(3, 40, 16, 0.0), (6, 97, 32, 0.0), (5, 200, 16, 0.001)]  # (+ block_size_tokens, kv_cache_gb)


def kv_buffer_sizes() -> dict:
    """The KV buffers megatron-core itself allocates for given engine arguments (tiny model, CPU): the static
    engine's StaticInferenceContext buffers after a generation (allocated on the first forward; by the
    Generator's lean forward, batch first, where it covers the model) and the dynamic engine's
    DynamicInferenceContext memory_buffer, built under the CPU stand-ins of tests/dynamic_engine_cpu.py
    (without a GPU; undone afterwards). ``{"arch", "dtype_bytes", "static": [...], "dynamic": [...]}``."""
    from megatron_octo import config as cfgmod
    from megatron_octo.generation import Generator, SamplingConfig
    from megatron_octo.generation_dynamic import DynamicGenerator
    from megatron_octo.models import llama
    from tests.dynamic_engine_cpu import cpu_standins

    cfg = cfgmod.load(None, ["train.tokens=0", "model.preset=tiny", "tokenizer.library=sentencepiece",
                             f"tokenizer.path={ROOT}/data/tokenizer/octo_sp8k.model"])
    with contextlib.nullcontext() if torch.cuda.is_available() else cpu_standins():
        tok = llama.load_tokenizer(cfg)
        arch = llama.run_architecture(cfg, tok)
        model = llama.build_gpt_model(cfg, arch, pre_process=True, post_process=True)
        out = {"arch": {"num_layers": arch.num_layers, "num_query_groups": arch.num_query_groups,
                        "kv_channels": arch.kv_channels},
               "dtype_bytes": model.config.params_dtype.itemsize, "static": [], "dynamic": []}
        for batch, seq in KV_STATIC:
            gen = Generator(model, tok, max_sequence_length=seq, max_batch_size=batch, seed=1)
            gen.generate(["Problem: 2 + 2 = ?"], SamplingConfig(max_new_tokens=2, temperature=0.0))
            memory = gen.context.key_value_memory_dict
            bufs = [t for kv in memory.values() for t in kv]
            out["static"].append({"batch": batch, "seq": seq,
                                  "bytes": sum(t.numel() * t.element_size() for t in bufs),
                                  "shape": list(bufs[0].shape), "buffers": len(bufs),
                                  # megatron's [positions, batch, ...] or the lean forward's batch-first tagged ones
                                  "batch_first": all(isinstance(tag, tuple) for tag in memory)})
        for batch, seq, block, gb in KV_DYNAMIC:
            gen = DynamicGenerator(model, tok, max_sequence_length=seq, max_batch_size=batch, seed=1,
                                   cuda_graphs=False, kv_cache_gb=gb, block_size_tokens=block)
            buf = gen.context.memory_buffer
            out["dynamic"].append({"batch": batch, "seq": seq, "block": block, "gb": gb,
                                   "bytes": buf.numel() * buf.element_size(), "shape": list(buf.shape)})
    return out
