"""Workloads on megatron-core models for tests that set megatron up in-process (tests/megatron_state.py)."""

from __future__ import annotations

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
