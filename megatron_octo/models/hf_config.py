"""Hugging Face Llama ``config.json`` <-> :class:`LlamaArchitecture`.

Only what megatron's ``GPTModel`` as built by :func:`megatron_octo.models.llama.build_gpt_model`
can express is accepted: RMSNorm, SwiGLU (``silu``), no biases, ``head_dim = hidden / heads``, and
RoPE either unscaled or with Llama 3's scaling at megatron's fixed constants
(``low_freq_factor 1``, ``high_freq_factor 4``, ``original_max_position_embeddings 8192``). Anything
else raises :class:`HFConfigError` naming the ``config.json`` key.

Both spellings of the RoPE settings are read: transformers 4.x (``rope_theta`` + ``rope_scaling``)
and 5.x (``rope_parameters``). The exported ``config.json`` carries both, so either version loads it.
"""

from __future__ import annotations

import json
import os
from typing import Optional

from megatron_octo.models.llama import LlamaArchitecture, PRESETS, run_architecture as _run_architecture

# The llama3 RoPE constants megatron-core 0.16.1 hard-codes in RotaryEmbedding._apply_scaling.
LLAMA3_LOW_FREQ_FACTOR = 1.0
LLAMA3_HIGH_FREQ_FACTOR = 4.0
LLAMA3_ORIGINAL_MAX_POSITION = 8192



class HFConfigError(ValueError):
    """A Hugging Face config.json megatron cannot express; the message names the key."""


def read_hf_config(hf_dir: str) -> dict:
    path = os.path.join(hf_dir, "config.json")
    if not os.path.isfile(path):
        raise HFConfigError(f"{hf_dir}: no config.json (not a Hugging Face model directory)")
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise HFConfigError(f"{path}: not valid JSON: {exc}") from None


def _fail(key: str, msg: str):
    raise HFConfigError(f"config.json key '{key}': {msg}")


def _rope(cfg: dict) -> tuple[float, Optional[dict], str]:
    """(rope_theta, scaling dict or None, the key the scaling came from)."""
    params = cfg.get("rope_parameters")
    if isinstance(params, dict):
        theta = params.get("rope_theta", cfg.get("rope_theta"))
        rope_type = params.get("rope_type", params.get("type", "default"))
        return theta, (None if rope_type == "default" else params), "rope_parameters"
    scaling = cfg.get("rope_scaling")
    if scaling is not None and scaling.get("rope_type", scaling.get("type", "default")) == "default":
        scaling = None
    return cfg.get("rope_theta", 10000.0), scaling, "rope_scaling"


def arch_from_hf_config(cfg: dict) -> LlamaArchitecture:
    """The LlamaArchitecture of a Hugging Face Llama config.json, or HFConfigError naming the key."""
    model_type = cfg.get("model_type")
    if model_type != "llama":
        _fail("model_type", f"{model_type!r} is not 'llama' (only Llama checkpoints are supported)")
    archs = cfg.get("architectures") or ["LlamaForCausalLM"]
    if archs != ["LlamaForCausalLM"]:
        _fail("architectures", f"{archs} is not ['LlamaForCausalLM']")
    act = cfg.get("hidden_act", "silu")
    if act != "silu":
        _fail("hidden_act", f"{act!r}: megatron's SwiGLU uses silu")
    for key in ("attention_bias", "mlp_bias"):
        if cfg.get(key, False):
            _fail(key, "biases are not supported (the megatron model has none)")
    if cfg.get("pretraining_tp", 1) != 1:
        _fail("pretraining_tp", f"{cfg['pretraining_tp']}: only 1 is supported")
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"):
        if not isinstance(cfg.get(key), int) or cfg[key] < 1:
            _fail(key, f"missing or not a positive integer: {cfg.get(key)!r}")
    hidden, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    groups = cfg.get("num_key_value_heads") or heads
    if hidden % heads:
        _fail("num_attention_heads", f"{heads} does not divide hidden_size={hidden}")
    if heads % groups:
        _fail("num_key_value_heads", f"{groups} does not divide num_attention_heads={heads}")
    head_dim = cfg.get("head_dim") or hidden // heads
    if head_dim != hidden // heads:
        _fail("head_dim", f"{head_dim} != hidden_size / num_attention_heads = {hidden // heads}")

    theta, scaling, rope_key = _rope(cfg)
    if theta is None or float(theta) != int(float(theta)) or float(theta) <= 0:
        _fail("rope_theta", f"{theta!r}: megatron takes a positive integer rotary base")
    factor = 0.0
    if scaling is not None:
        rope_type = scaling.get("rope_type", scaling.get("type"))
        if rope_type != "llama3":
            _fail(f"{rope_key}.rope_type", f"{rope_type!r}: only 'llama3' scaling (or none) is supported")
        factor = float(scaling.get("factor", 0))
        if not factor > 0:
            _fail(f"{rope_key}.factor", f"{scaling.get('factor')!r} must be > 0")
        for key, want in (("low_freq_factor", LLAMA3_LOW_FREQ_FACTOR),
                          ("high_freq_factor", LLAMA3_HIGH_FREQ_FACTOR),
                          ("original_max_position_embeddings", LLAMA3_ORIGINAL_MAX_POSITION)):
            got = scaling.get(key, want)
            if float(got) != float(want):
                _fail(f"{rope_key}.{key}", f"{got!r}: megatron-core's llama3 RoPE fixes it at {want:g}")
    return LlamaArchitecture(
        num_layers=cfg["num_hidden_layers"], hidden_size=hidden, ffn_hidden_size=cfg["intermediate_size"],
        num_attention_heads=heads, num_query_groups=groups, vocab_size=cfg["vocab_size"],
        max_position_embeddings=int(cfg.get("max_position_embeddings", 2048)),
        rotary_base=int(float(theta)), rope_scaling_factor=factor,
        tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        norm_epsilon=float(cfg.get("rms_norm_eps", 1e-6)))


def matching_preset(arch: LlamaArchitecture) -> Optional[str]:
    for name, preset in PRESETS.items():
        if preset == arch:
            return name
    return None


def model_overrides(arch: LlamaArchitecture) -> list[str]:
    """``model.*=...`` overrides that make a run's config resolve to exactly ``arch``."""
    preset = matching_preset(arch) or "tiny"
    out = [f"model.preset={preset}"]
    for key in ("num_layers", "hidden_size", "ffn_hidden_size", "num_attention_heads", "num_query_groups",
                "vocab_size", "max_position_embeddings", "rotary_base", "rope_scaling_factor",
                "tie_embeddings", "norm_epsilon"):
        out.append(f"model.{key}={getattr(arch, key)!r}".replace("True", "true").replace("False", "false"))
    return out


def hf_config_from_arch(arch: LlamaArchitecture, dtype: str = "float32", bos_token_id: Optional[int] = None,
                        eos_token_id: Optional[int] = None) -> dict:
    """A LlamaForCausalLM config.json (readable by transformers 4.45+ and 5.x)."""
    rope_theta = float(arch.rotary_base)
    scaling = None
    if arch.rope_scaling_factor > 0:
        scaling = {"rope_type": "llama3", "factor": float(arch.rope_scaling_factor),
                   "low_freq_factor": LLAMA3_LOW_FREQ_FACTOR, "high_freq_factor": LLAMA3_HIGH_FREQ_FACTOR,
                   "original_max_position_embeddings": LLAMA3_ORIGINAL_MAX_POSITION}
    params = {"rope_type": "default", "rope_theta": rope_theta} if scaling is None else {**scaling, "rope_theta": rope_theta}
    cfg = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "hidden_act": "silu",
        "hidden_size": arch.hidden_size,
        "intermediate_size": arch.ffn_hidden_size,
        "num_hidden_layers": arch.num_layers,
        "num_attention_heads": arch.num_attention_heads,
        "num_key_value_heads": arch.num_query_groups,
        "head_dim": arch.kv_channels,
        "vocab_size": arch.vocab_size,
        "max_position_embeddings": arch.max_position_embeddings,
        "rms_norm_eps": arch.norm_epsilon,
        "initializer_range": 0.02,
        "pretraining_tp": 1,
        "tie_word_embeddings": arch.tie_embeddings,
        "use_cache": True,
        # transformers 4.x
        "rope_theta": rope_theta,
        "rope_scaling": scaling,
        "torch_dtype": dtype,
        # transformers 5.x
        "rope_parameters": params,
        "dtype": dtype,
    }
    if bos_token_id is not None:
        cfg["bos_token_id"] = bos_token_id
    if eos_token_id is not None:
        cfg["eos_token_id"] = eos_token_id
    return cfg


def run_architecture(cfg) -> LlamaArchitecture:
    """The architecture a trainer run with this config built (see llama.run_architecture)."""

    return _run_architecture(cfg)
