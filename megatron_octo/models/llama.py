"""Llama-3 family on megatron-core: presets, TransformerConfig and GPTModel.

Presets carry the published architectures (Hugging Face config.json of each model): RMSNorm,
SwiGLU, GQA, RoPE with theta 500000 and llama3 rope scaling, no biases. Tiny presets keep the same
shape of network at CPU size.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from megatron_octo.config import ConfigError, fail, tokenizer_library
from megatron_octo.runtime import capability


@dataclass(frozen=True)
class LlamaArchitecture:
    num_layers: int
    hidden_size: int
    ffn_hidden_size: int
    num_attention_heads: int
    num_query_groups: int
    vocab_size: int
    max_position_embeddings: int
    rotary_base: int
    rope_scaling_factor: float  # 0: no llama3 rope scaling
    tie_embeddings: bool
    norm_epsilon: float = 1e-5

    @property
    def kv_channels(self) -> int:
        return self.hidden_size // self.num_attention_heads


PRESETS: dict[str, LlamaArchitecture] = {
    # meta-llama/Llama-3.2-1B
    "llama3.2-1b": LlamaArchitecture(
        num_layers=16, hidden_size=2048, ffn_hidden_size=8192, num_attention_heads=32,
        num_query_groups=8, vocab_size=128256, max_position_embeddings=131072,
        rotary_base=500000, rope_scaling_factor=32.0, tie_embeddings=True),
    # meta-llama/Llama-3.2-3B (the OctoThinker base model)
    "llama3.2-3b": LlamaArchitecture(
        num_layers=28, hidden_size=3072, ffn_hidden_size=8192, num_attention_heads=24,
        num_query_groups=8, vocab_size=128256, max_position_embeddings=131072,
        rotary_base=500000, rope_scaling_factor=32.0, tie_embeddings=True),
    # meta-llama/Llama-3.1-8B
    "llama3.1-8b": LlamaArchitecture(
        num_layers=32, hidden_size=4096, ffn_hidden_size=14336, num_attention_heads=32,
        num_query_groups=8, vocab_size=128256, max_position_embeddings=131072,
        rotary_base=500000, rope_scaling_factor=8.0, tie_embeddings=False),
    # CPU presets: same building blocks, sizes for tests (tiny) and the demo/benchmark (~40M).
    "tiny": LlamaArchitecture(
        num_layers=4, hidden_size=64, ffn_hidden_size=176, num_attention_heads=4,
        num_query_groups=2, vocab_size=512, max_position_embeddings=4096,
        rotary_base=500000, rope_scaling_factor=0.0, tie_embeddings=False),
    "tiny-tied": LlamaArchitecture(
        num_layers=4, hidden_size=64, ffn_hidden_size=176, num_attention_heads=4,
        num_query_groups=2, vocab_size=512, max_position_embeddings=4096,
        rotary_base=500000, rope_scaling_factor=32.0, tie_embeddings=True),
    "cpu-10m": LlamaArchitecture(
        num_layers=6, hidden_size=256, ffn_hidden_size=704, num_attention_heads=4,
        num_query_groups=2, vocab_size=8192, max_position_embeddings=4096,
        rotary_base=500000, rope_scaling_factor=0.0, tie_embeddings=True),
    # The demo's model (~0.85M parameters with its 2K-vocabulary tokenizer, ~18K tokens/s on 2 CPU
    # cores): thousands of steps fit in the demo's minutes. RoPE base 10000 (Llama 2's): its windows
    # are at most 512 tokens.
    "cpu-demo": LlamaArchitecture(
        num_layers=3, hidden_size=128, ffn_hidden_size=384, num_attention_heads=4,
        num_query_groups=2, vocab_size=2048, max_position_embeddings=4096,
        rotary_base=10000, rope_scaling_factor=0.0, tie_embeddings=True),
    "cpu-40m": LlamaArchitecture(
        num_layers=10, hidden_size=512, ffn_hidden_size=1408, num_attention_heads=8,
        num_query_groups=4, vocab_size=8192, max_position_embeddings=4096,
        rotary_base=500000, rope_scaling_factor=0.0, tie_embeddings=False),
}

_OVERRIDABLE = tuple(f.name for f in dataclasses.fields(LlamaArchitecture))


def resolve_architecture(model_cfg, vocab_size: Optional[int] = None) -> LlamaArchitecture:
    """Preset plus the fields the config sets. ``vocab_size`` (from the tokenizer) applies when the
    config does not set model.vocab_size."""
    if model_cfg.preset not in PRESETS:
        raise ConfigError(f"config key 'model.preset': unknown preset {model_cfg.preset!r}; "
                          f"known: {', '.join(PRESETS)}")
    arch = PRESETS[model_cfg.preset]
    changes = {k: getattr(model_cfg, k) for k in _OVERRIDABLE if getattr(model_cfg, k, None) is not None}
    if vocab_size is not None and "vocab_size" not in changes:
        changes["vocab_size"] = vocab_size
    arch = dataclasses.replace(arch, **changes)
    for key in ("num_layers", "hidden_size", "ffn_hidden_size", "num_attention_heads",
                "num_query_groups", "vocab_size"):
        if getattr(arch, key) < 1:
            raise ConfigError(f"config key 'model.{key}': must be >= 1, got {getattr(arch, key)}")
    if arch.hidden_size % arch.num_attention_heads:
        raise ConfigError(f"config key 'model.num_attention_heads': {arch.num_attention_heads} does not "
                          f"divide model.hidden_size={arch.hidden_size}")
    if arch.num_attention_heads % arch.num_query_groups:
        raise ConfigError(f"config key 'model.num_query_groups': {arch.num_query_groups} does not divide "
                          f"model.num_attention_heads={arch.num_attention_heads}")
    return arch


def run_architecture(cfg, tokenizer=None) -> LlamaArchitecture:
    """The architecture a run builds: the tokenizer's vocabulary sizes the embedding unless
    model.vocab_size is set or there is no tokenizer (null library, mock data)."""
    no_tokenizer = tokenizer_library(cfg) == "null" or (cfg.data.mock and cfg.tokenizer.path is None)
    if cfg.model.vocab_size is not None or no_tokenizer:
        return resolve_architecture(cfg.model)
    if tokenizer is None:
        tokenizer = load_tokenizer(cfg)
    return resolve_architecture(cfg.model, tokenizer.vocab_size)


def padded_vocab_size(vocab_size: int, divisible_by: int, tp: int) -> int:
    """Megatron-LM's padding: a multiple of divisible_by * tp, so every TP shard is equal."""
    multiple = divisible_by * tp
    return ((vocab_size + multiple - 1) // multiple) * multiple


def transformer_engine_available() -> bool:
    return importlib.util.find_spec("transformer_engine") is not None


def use_transformer_engine(model_cfg) -> bool:
    if model_cfg.transformer_impl == "local":
        return False
    if model_cfg.transformer_impl == "transformer_engine":
        return True
    return torch.cuda.is_available() and transformer_engine_available()


def params_dtype(model_cfg) -> torch.dtype:
    if model_cfg.params_dtype == "fp32":
        return torch.float32
    if model_cfg.params_dtype == "bf16":
        return torch.bfloat16
    return torch.bfloat16 if torch.cuda.is_available() else torch.float32


def gradient_accumulation_fusion(te: bool) -> bool:
    """On with Transformer Engine when apex's wgrad kernel imports: megatron's own output layer needs
    it once the flag is set, and a pip install of TE has no apex (the model build would fail)."""
    if not te:
        return False
    if capability.apex_wgrad_fusion_available():
        return True
    if "apex" not in _SAID:
        _SAID.add("apex")
        print("[megatron-octo] gradient_accumulation_fusion off: apex's fused_weight_gradient_mlp_cuda "
              "does not import (install apex, or use an NGC PyTorch container, to fuse weight-gradient "
              "accumulation)", flush=True)
    return False


_SAID: set = set()  # one-time log lines of this process


def transformer_config(cfg, arch: LlamaArchitecture):
    """The megatron TransformerConfig for this run's architecture, parallel layout and precision."""
    from megatron.core.transformer.transformer_config import TransformerConfig

    m, par = cfg.model, cfg.parallel
    dtype = params_dtype(m)
    te = use_transformer_engine(m)
    gpu = torch.cuda.is_available()
    return TransformerConfig(
        num_layers=arch.num_layers,
        hidden_size=arch.hidden_size,
        ffn_hidden_size=arch.ffn_hidden_size,
        num_attention_heads=arch.num_attention_heads,
        num_query_groups=arch.num_query_groups,
        kv_channels=arch.kv_channels,
        normalization="RMSNorm",
        layernorm_epsilon=arch.norm_epsilon,
        gated_linear_unit=True,
        activation_func=F.silu,
        add_bias_linear=False,
        add_qkv_bias=False,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        init_method_std=m.init_method_std,
        tensor_model_parallel_size=par.tp,
        pipeline_model_parallel_size=par.pp,
        context_parallel_size=par.cp,
        sequence_parallel=par.sequence_parallel,
        params_dtype=dtype,
        pipeline_dtype=dtype,
        bf16=dtype == torch.bfloat16,
        # Megatron initialises on the GPU when it has one; on CPU there is nowhere else.
        use_cpu_initialization=not gpu,
        recompute_granularity=m.recompute_granularity,
        recompute_method="uniform" if m.recompute_granularity == "full" else None,
        recompute_num_layers=(m.recompute_num_layers or 1) if m.recompute_granularity == "full" else None,
        attention_softmax_in_fp32=True,
        **gpu_feature_kwargs(m, te=te, gpu=gpu),
    )


def gpu_feature_kwargs(model_cfg, *, te: bool, gpu: bool) -> dict:
    """The TransformerConfig arguments that depend on the GPU and its libraries: FP8 and fusions."""
    m = model_cfg
    return dict(
        fp8=m.fp8,
        fp8_recipe=m.fp8_recipe if m.fp8 else "delayed",
        fp8_amax_history_len=m.fp8_amax_history_len,
        fp8_amax_compute_algo=m.fp8_amax_compute_algo,
        fp8_param=m.fp8_param and m.fp8 is not None,
        # Fused kernels come from Transformer Engine / apex; without them the torch paths run.
        apply_rope_fusion=te,
        gradient_accumulation_fusion=gradient_accumulation_fusion(te),
        bias_activation_fusion=gpu,
        masked_softmax_fusion=gpu,
        cross_entropy_loss_fusion=gpu,
    )


def layer_spec(model_cfg):
    from megatron.core.models.gpt.gpt_layer_specs import (
        get_gpt_layer_local_spec,
        get_gpt_layer_with_transformer_engine_spec,
    )

    if use_transformer_engine(model_cfg):
        # GPU-only path (Transformer Engine layers, FP8 per config.fp8 / fp8_recipe).
        return get_gpt_layer_with_transformer_engine_spec()
    spec = get_gpt_layer_local_spec(normalization="RMSNorm")
    from megatron_octo.models.cached_rope_attention import CachedRopeSelfAttention  # lazy: imports megatron-core

    # Same module and parameters as megatron's; static-batch decoding rotates each key once.
    spec.submodules.self_attention.module = CachedRopeSelfAttention
    if model_cfg.local_attention == "sdpa":
        from megatron_octo.models.sdpa_attention import SDPAttention  # lazy: imports megatron-core

        spec.submodules.self_attention.submodules.core_attention = SDPAttention
    return spec


def build_gpt_model(cfg, arch: LlamaArchitecture, *, pre_process: bool, post_process: bool,
                    vp_stage: Optional[int] = None):
    """A megatron GPTModel for this rank's pipeline stage."""
    from megatron.core.models.gpt.gpt_model import GPTModel

    config = transformer_config(cfg, arch)
    model = GPTModel(
        config=config,
        transformer_layer_spec=layer_spec(cfg.model),
        vocab_size=padded_vocab_size(arch.vocab_size, cfg.model.make_vocab_size_divisible_by, cfg.parallel.tp),
        max_sequence_length=arch.max_position_embeddings,
        pre_process=pre_process,
        post_process=post_process,
        share_embeddings_and_output_weights=arch.tie_embeddings,
        position_embedding_type="rope",
        rotary_base=arch.rotary_base,
        rope_scaling=arch.rope_scaling_factor > 0,
        rope_scaling_factor=arch.rope_scaling_factor if arch.rope_scaling_factor > 0 else 8.0,
        vp_stage=vp_stage,
    )
    if config.bf16:
        # The local spec's RMSNorm weights are created in fp32 whatever params_dtype says.
        # Megatron-LM casts the whole model (its Float16Module); megatron's bf16 optimizer keeps
        # fp32 parameters in groups its checkpoint code cannot map, so a bf16 run (the default on
        # GPUs) failed at its first checkpoint save.
        model.bfloat16()
    return model


def num_parameters(arch: LlamaArchitecture, padded_vocab: Optional[int] = None) -> int:
    """Parameter count of the unsharded model (equal to megatron's own count; tested)."""
    v = padded_vocab or arch.vocab_size
    h, f = arch.hidden_size, arch.ffn_hidden_size
    kv = arch.num_query_groups * arch.kv_channels
    per_layer = (
        h  # input RMSNorm
        + h * (h + 2 * kv)  # fused QKV
        + h * h  # attention output
        + h  # pre-MLP RMSNorm
        + h * 2 * f  # fused gate/up
        + f * h  # down
    )
    embeddings = v * h * (1 if arch.tie_embeddings else 2)
    return arch.num_layers * per_layer + embeddings + h  # + final RMSNorm


def flops_per_token(arch: LlamaArchitecture, seq_length: int, padded_vocab: Optional[int] = None,
                    causal: bool = True) -> float:
    """Training FLOPs per token, forward + backward (= 3 x forward):

        6 * (L * (h*(h + 2*kv) + h*h + 3*h*f) + V*h)      matmul parameters incl. the output layer
      + 6 * L * s * h * (1/2 if causal else 1)            attention scores and values

    Causal attention counts the half of the score matrix a fused kernel computes (the accounting
    behind Megatron-Bridge's published TFLOP/s); ``causal=False`` counts the full matrix. The
    input embedding is a lookup, not a matmul, and is not counted.
    """
    v = padded_vocab or arch.vocab_size
    h, f = arch.hidden_size, arch.ffn_hidden_size
    kv = arch.num_query_groups * arch.kv_channels
    matmul_params_per_layer = h * (h + 2 * kv) + h * h + 3 * h * f
    dense = arch.num_layers * matmul_params_per_layer + v * h
    # Forward QK^T and AV: 2 * 2 * s * h per token per layer; x3 for forward + backward.
    attention = 12.0 * arch.num_layers * seq_length * h * (0.5 if causal else 1.0)
    return 6.0 * dense + attention


def load_tokenizer(cfg, vocab_size: Optional[int] = None):
    """The run's tokenizer as a megatron-core tokenizer; the null tokenizer (pre-tokenized data, mock
    data) is sized by the architecture."""
    from tokenization.megatron_wrappers import load_tokenizer as _load  # lazy: imports megatron-core

    t = cfg.tokenizer
    # Mock data needs no tokenizer, but a configured one is still the run's (for later inference).
    if tokenizer_library(cfg) == "null" or (cfg.data.mock and t.path is None):
        if vocab_size is None:
            # megatron's null tokenizer adds one id for EOD after the vocabulary.
            vocab_size = resolve_architecture(cfg.model).vocab_size - 1
        return _load(None, "null", vocab_size=vocab_size)
    return _load(t.path, t.library)


def check_layout(cfg) -> None:
    """The one owner of the layout rules that need the architecture: heads and KV groups divisible by
    the tensor-parallel size, layers by the pipeline-parallel size, the sequence within the positions.
    Raises ConfigError naming the key (the planner accepts exactly these layouts)."""
    par = cfg.parallel
    if par.tp < 1 or par.pp < 1:
        return  # config.validate names the key
    arch = resolve_architecture(cfg.model)
    if arch.num_attention_heads % par.tp != 0:
        fail("parallel.tp", f"tensor parallel size {par.tp} does not divide "
             f"model.num_attention_heads={arch.num_attention_heads}")
    if arch.num_query_groups % par.tp != 0:
        fail("parallel.tp", f"tensor parallel size {par.tp} does not divide "
             f"model.num_query_groups={arch.num_query_groups}")
    if arch.num_layers % par.pp != 0:
        fail("parallel.pp", f"pipeline parallel size {par.pp} does not divide "
             f"model.num_layers={arch.num_layers}")
    if cfg.model.seq_length > arch.max_position_embeddings:
        fail("model.seq_length", f"{cfg.model.seq_length} exceeds model.max_position_embeddings="
             f"{arch.max_position_embeddings}")
