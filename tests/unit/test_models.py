"""Llama-3 presets: exact published architectures. Their parameter counts equal to megatron-core's and
SDPA attention against megatron's (fresh interpreters): tests/process/test_models_megatron.py."""

from __future__ import annotations

import pytest

from megatron_octo import config as cfgmod
from megatron_octo.models import llama
from tests.llama_cases import PUBLISHED
from tests.megatron_cases import sdpa_against_megatron
from tests.megatron_state import megatron_in_process


def test_presets_encode_published_configs():
    p = llama.PRESETS
    assert (p["llama3.2-3b"].hidden_size, p["llama3.2-3b"].num_layers, p["llama3.2-3b"].num_attention_heads,
            p["llama3.2-3b"].num_query_groups, p["llama3.2-3b"].ffn_hidden_size) == (3072, 28, 24, 8, 8192)
    assert p["llama3.2-3b"].tie_embeddings and p["llama3.2-1b"].tie_embeddings
    assert not p["llama3.1-8b"].tie_embeddings
    for name in PUBLISHED:
        assert p[name].vocab_size == 128256 and p[name].rotary_base == 500000


def test_overrides_and_precision_selection():
    cfg = cfgmod.load(None, ["train.tokens=0", "model.preset=llama3.2-1b", "model.num_layers=2"])
    arch = llama.resolve_architecture(cfg.model, vocab_size=1000)
    # The tokenizer's vocabulary sizes the embedding unless model.vocab_size is set.
    assert arch.num_layers == 2 and arch.vocab_size == 1000
    cfg = cfgmod.load(None, ["train.tokens=0", "model.preset=tiny", "model.vocab_size=600"])
    assert llama.resolve_architecture(cfg.model, vocab_size=1000).vocab_size == 600
    # No GPU here: fp32 params and megatron's local (non-Transformer-Engine) layers.
    assert llama.params_dtype(cfg.model).is_floating_point and str(llama.params_dtype(cfg.model)) == "torch.float32"
    assert not llama.use_transformer_engine(cfg.model)
    with pytest.raises(cfgmod.ConfigError, match="'model.num_query_groups'"):
        llama.resolve_architecture(cfgmod.load(None, ["train.tokens=0", "model.num_query_groups=3"]).model)


def test_padded_vocab_matches_megatron_lm_rule():
    assert llama.padded_vocab_size(128256, 128, 1) == 128256
    assert llama.padded_vocab_size(128256, 128, 8) == 129024
    assert llama.padded_vocab_size(8000, 128, 2) == 8192


def test_flops_per_token_formula():
    arch = llama.PRESETS["llama3.1-8b"]
    # Megatron-Bridge: Llama-3-8B FP8 on 8 H100, seq 8192: 14,451 tokens/s/GPU is 744 TFLOP/s/GPU.
    assert llama.flops_per_token(arch, 8192) * 14451 / 1e12 == pytest.approx(744, rel=0.03)
    # Full (non-causal) attention counting adds 6*L*s*h per token.
    extra = llama.flops_per_token(arch, 8192, causal=False) - llama.flops_per_token(arch, 8192)
    assert extra == 6 * 32 * 8192 * 4096


@pytest.mark.timeout(120)
def test_sdpa_attention_matches_megatron_dot_product_attention():
    """Outputs and input gradients, for causal, explicit, packed-document and KV-cache decode masks
    (in-process; moved from tests/process/test_models_megatron.py with its fresh-interpreter script)."""
    with megatron_in_process(seed=3):
        worst = sdpa_against_megatron()
    assert set(worst) == {"causal-none", "causal-mask", "doc-mask", "decode"}
    for case, diff in worst.items():
        assert diff < 1e-5, (case, diff)
