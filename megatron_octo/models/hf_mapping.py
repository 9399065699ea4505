"""Tensor names and layouts between Hugging Face Llama and megatron-core's GPTModel. Pure functions.

Megatron layouts (megatron-core 0.16.1, as built by ``llama.build_gpt_model``):

* fused QKV ``linear_qkv.weight`` ``[ng * (np/ng + 2) * hn, h]``: for each query group ``g`` (= HF
  key/value head ``g``) the ``np/ng`` query heads of that group, then ``k_g``, then ``v_g``. HF's
  ``repeat_kv`` gives query head ``i`` the key/value head ``i // (np/ng)``, so the query heads of group
  ``g`` are HF heads ``g*np/ng .. (g+1)*np/ng - 1``. Tensor parallelism splits dim 0 into ``tp``
  contiguous blocks, i.e. whole groups.
* fused SwiGLU ``linear_fc1.weight`` ``[2f, h]`` = ``[gate; up]`` at TP=1. Under TP each rank holds
  ``[gate_r; up_r]`` (its slice of each half), not a contiguous block of the TP=1 tensor; dist
  checkpoints store the global ``[gate; up]`` whatever the TP.
* word embeddings and the output layer ``[V_padded, h]``: the vocabulary padded to a multiple of
  ``make_vocab_size_divisible_by * tp``, split by rows under TP. Padding rows are zeros on import and
  dropped on export.
* ``linear_proj`` and ``linear_fc2`` are row-parallel (split dim 1); norms are replicated.

Dist checkpoint keys stack the layers: ``decoder.layers.<suffix>`` has a leading ``num_layers`` axis,
and the local spec saves its norms under Transformer Engine's names (``linear_qkv.layer_norm_weight``,
``linear_fc1.layer_norm_weight``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

import torch

# ---------------------------------------------------------------------------------------------
# QKV, gate/up, vocabulary


def qkv_hf_to_megatron(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_heads: int,
                       num_groups: int) -> torch.Tensor:
    """HF q_proj ``[np*hn, h]``, k_proj/v_proj ``[ng*hn, h]`` -> megatron fused QKV."""
    h = q.shape[1]
    hn = q.shape[0] // num_heads
    if q.shape != (num_heads * hn, h) or k.shape != (num_groups * hn, h) or v.shape != k.shape:
        raise ValueError(f"QKV shapes q{tuple(q.shape)} k{tuple(k.shape)} v{tuple(v.shape)} do not fit "
                         f"{num_heads} heads / {num_groups} groups")
    per = num_heads // num_groups
    fused = torch.cat([q.reshape(num_groups, per * hn, h), k.reshape(num_groups, hn, h),
                       v.reshape(num_groups, hn, h)], dim=1)
    return fused.reshape(num_groups * (per + 2) * hn, h)


def qkv_megatron_to_hf(qkv: torch.Tensor, num_heads: int, num_groups: int,
                       head_dim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Megatron fused QKV -> HF (q_proj, k_proj, v_proj), contiguous."""
    per = num_heads // num_groups
    h = qkv.shape[1]
    if qkv.shape[0] != num_groups * (per + 2) * head_dim:
        raise ValueError(f"fused QKV has {qkv.shape[0]} rows, expected {num_groups * (per + 2) * head_dim}")
    g = qkv.reshape(num_groups, (per + 2) * head_dim, h)
    q = g[:, : per * head_dim].reshape(num_heads * head_dim, h).contiguous()
    k = g[:, per * head_dim: (per + 1) * head_dim].reshape(num_groups * head_dim, h).contiguous()
    v = g[:, (per + 1) * head_dim:].reshape(num_groups * head_dim, h).contiguous()
    return q, k, v


def gate_up_fuse(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    if gate.shape != up.shape:
        raise ValueError(f"gate {tuple(gate.shape)} and up {tuple(up.shape)} differ")
    return torch.cat([gate, up], dim=0)


def gate_up_split(fc1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if fc1.shape[0] % 2:
        raise ValueError(f"fused fc1 has an odd number of rows ({fc1.shape[0]})")
    f = fc1.shape[0] // 2
    return fc1[:f].contiguous(), fc1[f:].contiguous()


def pad_vocab(weight: torch.Tensor, padded: int) -> torch.Tensor:
    """Rows ``vocab..padded`` appended as zeros."""
    v = weight.shape[0]
    if padded < v:
        raise ValueError(f"padded vocabulary {padded} is smaller than the vocabulary {v}")
    if padded == v:
        return weight
    return torch.cat([weight, weight.new_zeros(padded - v, *weight.shape[1:])], dim=0)


def unpad_vocab(weight: torch.Tensor, vocab: int) -> torch.Tensor:
    if weight.shape[0] < vocab:
        raise ValueError(f"embedding has {weight.shape[0]} rows, fewer than the vocabulary {vocab}")
    return weight[:vocab].contiguous()


# ---------------------------------------------------------------------------------------------
# Tensor parallel shards of a global (TP=1 layout) tensor


def tp_shard(t: torch.Tensor, dim: int, tp: int, rank: int) -> torch.Tensor:
    if t.shape[dim] % tp:
        raise ValueError(f"dimension {dim} of size {t.shape[dim]} does not split into {tp} shards")
    return t.chunk(tp, dim=dim)[rank].contiguous()


def fc1_tp_shard(fc1: torch.Tensor, tp: int, rank: int) -> torch.Tensor:
    """The rank's local fused fc1 ``[gate_r; up_r]`` from the global ``[gate; up]``."""
    gate, up = gate_up_split(fc1)
    return torch.cat([tp_shard(gate, 0, tp, rank), tp_shard(up, 0, tp, rank)], dim=0)


# ---------------------------------------------------------------------------------------------
# Names

# Per-layer tensors: (kind, megatron parameter suffix(es) (local spec, TE spec), checkpoint suffix, HF names)
# kinds: norm (replicated), qkv, proj (row parallel), fc1, fc2 (row parallel).
LAYER_TENSORS = (
    ("input_norm", ("input_layernorm.weight", "self_attention.linear_qkv.layer_norm_weight"),
     "self_attention.linear_qkv.layer_norm_weight", ("input_layernorm.weight",)),
    ("qkv", ("self_attention.linear_qkv.weight",), "self_attention.linear_qkv.weight",
     ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight")),
    ("proj", ("self_attention.linear_proj.weight",), "self_attention.linear_proj.weight",
     ("self_attn.o_proj.weight",)),
    ("mlp_norm", ("pre_mlp_layernorm.weight", "mlp.linear_fc1.layer_norm_weight"),
     "mlp.linear_fc1.layer_norm_weight", ("post_attention_layernorm.weight",)),
    ("fc1", ("mlp.linear_fc1.weight",), "mlp.linear_fc1.weight",
     ("mlp.gate_proj.weight", "mlp.up_proj.weight")),
    ("fc2", ("mlp.linear_fc2.weight",), "mlp.linear_fc2.weight", ("mlp.down_proj.weight",)),
)

HF_EMBED = "model.embed_tokens.weight"
HF_NORM = "model.norm.weight"
HF_LM_HEAD = "lm_head.weight"
MG_EMBED = "embedding.word_embeddings.weight"
MG_NORM = "decoder.final_layernorm.weight"
MG_OUTPUT = "output_layer.weight"


def hf_layer_name(layer: int, suffix: str) -> str:
    return f"model.layers.{layer}.{suffix}"


@dataclass(frozen=True)
class ParamSource:
    """Where a megatron parameter of this rank comes from."""
    kind: str  # embedding | output | final_norm | input_norm | qkv | proj | mlp_norm | fc1 | fc2
    hf_names: tuple[str, ...]
    local_layer: Optional[int] = None


_LAYER_RE = re.compile(r"^decoder\.layers\.(\d+)\.(.+)$")


def param_source(name: str, tie_embeddings: bool) -> ParamSource:
    """The HF tensors behind a megatron parameter name (as in ``GPTModel.named_parameters()``)."""
    if name == MG_EMBED:
        return ParamSource("embedding", (HF_EMBED,))
    if name == MG_OUTPUT:
        return ParamSource("output", (HF_EMBED if tie_embeddings else HF_LM_HEAD,))
    if name == MG_NORM:
        return ParamSource("final_norm", (HF_NORM,))
    m = _LAYER_RE.match(name)
    if m:
        i, suffix = int(m.group(1)), m.group(2)
        for kind, mg_suffixes, _, hf_suffixes in LAYER_TENSORS:
            if suffix in mg_suffixes:
                return ParamSource(kind, hf_suffixes, i)
    raise KeyError(f"megatron parameter {name!r} has no Hugging Face counterpart")


def hf_names_for_layer(source: ParamSource, global_layer: int) -> list[str]:
    if source.local_layer is None:
        return list(source.hf_names)
    return [hf_layer_name(global_layer, s) for s in source.hf_names]


def megatron_local_tensor(kind: str, hf: list[torch.Tensor], *, num_heads: int, num_groups: int,
                          padded_vocab: int, tp: int, rank: int) -> torch.Tensor:
    """This TP rank's megatron tensor built from the HF tensors of :func:`param_source`."""
    if kind in ("embedding", "output"):
        return tp_shard(pad_vocab(hf[0], padded_vocab), 0, tp, rank)
    if kind in ("final_norm", "input_norm", "mlp_norm"):
        return hf[0]
    if kind == "qkv":
        return tp_shard(qkv_hf_to_megatron(hf[0], hf[1], hf[2], num_heads, num_groups), 0, tp, rank)
    if kind in ("proj", "fc2"):
        return tp_shard(hf[0], 1, tp, rank)
    if kind == "fc1":
        return fc1_tp_shard(gate_up_fuse(hf[0], hf[1]), tp, rank)
    raise KeyError(kind)


# ---------------------------------------------------------------------------------------------
# Export plan: dist checkpoint keys -> HF tensors, in the order they are written


@dataclass(frozen=True)
class ExportItem:
    ckpt_key: str  # dist checkpoint key (stacked layers: leading layer axis)
    layer: Optional[int]  # index along the stacked layer axis, or None
    kind: str  # embedding | output | final_norm | input_norm | qkv | proj | mlp_norm | fc1 | fc2
    hf: tuple[tuple[str, tuple[int, ...]], ...]  # (HF name, shape) written from it


def export_plan(arch) -> list[ExportItem]:
    h, f, hn = arch.hidden_size, arch.ffn_hidden_size, arch.kv_channels
    np_, ng, v = arch.num_attention_heads, arch.num_query_groups, arch.vocab_size
    shapes = {
        "input_layernorm.weight": (h,), "post_attention_layernorm.weight": (h,),
        "self_attn.q_proj.weight": (np_ * hn, h), "self_attn.k_proj.weight": (ng * hn, h),
        "self_attn.v_proj.weight": (ng * hn, h), "self_attn.o_proj.weight": (h, np_ * hn),
        "mlp.gate_proj.weight": (f, h), "mlp.up_proj.weight": (f, h), "mlp.down_proj.weight": (h, f),
    }
    plan = [ExportItem(MG_EMBED, None, "embedding", ((HF_EMBED, (v, h)),))]
    for layer in range(arch.num_layers):
        for kind, _, ckpt_suffix, hf_suffixes in LAYER_TENSORS:
            plan.append(ExportItem(f"decoder.layers.{ckpt_suffix}", layer, kind,
                                   tuple((hf_layer_name(layer, s), shapes[s]) for s in hf_suffixes)))
    plan.append(ExportItem(MG_NORM, None, "final_norm", ((HF_NORM, (h,)),)))
    if not arch.tie_embeddings:
        plan.append(ExportItem(MG_OUTPUT, None, "output", ((HF_LM_HEAD, (v, h)),)))
    return plan


def hf_tensors_from_megatron(item: ExportItem, t: torch.Tensor, arch) -> list[torch.Tensor]:
    """The HF tensors of one export item from its global (TP=1 layout) megatron tensor."""
    if item.kind in ("embedding", "output"):
        return [unpad_vocab(t, arch.vocab_size)]
    if item.kind == "qkv":
        return list(qkv_megatron_to_hf(t, arch.num_attention_heads, arch.num_query_groups, arch.kv_channels))
    if item.kind == "fc1":
        return list(gate_up_split(t))
    return [t.contiguous()]
