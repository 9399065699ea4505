"""Llama-3 presets: exact published architectures. Against megatron-core set up in-process
(tests/megatron_state.py): their parameter counts equal to megatron-core's, and SDPA attention against
megatron's."""

from __future__ import annotations

import pytest

from megatron_octo import config as cfgmod
from megatron_octo.models import llama
from tests.llama_cases import PUBLISHED
from tests.megatron_cases import parameter_counts, sdpa_against_megatron
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
    (megatron set up in-process: tests/megatron_cases.sdpa_against_megatron)."""
    with megatron_in_process(seed=3):
        worst = sdpa_against_megatron()
    assert set(worst) == {"causal-none", "causal-mask", "doc-mask", "decode"}
    for case, diff in worst.items():
        assert diff < 1e-5, (case, diff)


@pytest.fixture(scope="module")
def megatron_counts():
    """megatron-core's counts of every preset at 1 and 2 layers (tests/megatron_cases.parameter_counts)."""
    with megatron_in_process(seed=1):
        return parameter_counts(["tiny", *PUBLISHED])


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
