"""Generation's forward pass over a GPTModel of the local layer spec, without megatron's module machinery.

Decoding one token through ``GPTModel.forward`` with a static KV cache runs megatron's per-layer
Python (the transformer layer's and the attention's inference bookkeeping, bias-dropout-add
factories, the linear layers' autograd functions): on the realistic CPU shape of
``benchmarks/rollout_throughput.py`` (30 layers, batch 16) about a third of a decode step. This module
computes the same pass from the same parameters with the same operations in the same order:
RMSNorm modules, fused QKV split per query group as megatron splits it, RoPE through
:mod:`megatron_octo.models.cached_rope_attention`'s cos/sin, SDPA, residual adds, SwiGLU, the final
norm, logits of the last position only. Its KV cache lives in the same static context, batch first
(:func:`kv_memory`). With the same GEMM its logits equal megatron's bit for bit (tested).

GEMMs on the CPU go to oneDNN (``torch.ops.mkldnn._linear_pointwise`` on the unpacked fp32 weight) or to
``F.linear``'s BLAS (MKL; megatron's arithmetic exactly), whichever :func:`gemm_backend` finds faster on this
machine (``generation.gemm: auto``, the default): the same fp32 arithmetic summed in another order (logits
within ~1e-6 relative), but its speed depends on the CPU: on the project's AMD EPYC machines oneDNN was
1.7-2.7x faster for a decode step's GEMMs and 1.8x for a prefill's (MKL takes a slow generic path there), on
an Intel Xeon 0.67-1.5x per GEMM and 0.87x for a prefill. ``auto`` times both once per process on the
model's own weight shapes (a few ms on small models) and logs the choice; ``generation.gemm: onednn |
torch`` or the environment variable ``OCTO_INFERENCE_GEMM=auto|onednn|torch`` (which wins) force one.
GPUs (and the simulated-GPU mode) always use ``F.linear``.

Tensor parallelism as megatron's layers do it: column-parallel shards local, the row-parallel outputs
and the vocabulary-parallel embedding all-reduced over the layer's TP group, logits gathered. Pipeline
stages, biases, QK-norm, MoE, non-SwiGLU MLPs, partial or interleaved RoPE, Transformer Engine
modules: :func:`unsupported` names the reason and the caller runs megatron's forward.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Dict, Optional

import torch
import torch.nn.functional as F
from megatron.core.tensor_parallel.mappings import (
    gather_from_tensor_model_parallel_region,
    reduce_from_tensor_model_parallel_region,
)
from megatron.core.transformer.mlp import MLP

from megatron_octo.config import GEMM_CHOICES

from megatron_octo.models.cached_rope_attention import (
    CachedRopeSelfAttention,
    pass_cos_sin,
    rope_mscale,
    rotate,
)
from megatron_octo.models.sdpa_attention import SDPAttention

GEMM_ENV = "OCTO_INFERENCE_GEMM"
BATCH_FIRST = "batch_first"  # key_value_memory_dict tag of kv_memory's buffers


def onednn_gemm_available() -> bool:
    """Whether this torch has oneDNN's fp32 linear (a CPU build with mkldnn) and ``OCTO_INFERENCE_GEMM`` does
    not turn it off."""
    return (os.environ.get(GEMM_ENV, "auto") != "torch" and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


# (weight shapes, dtype, threads) -> (backend, {backend: seconds}, rows): auto's measurement, once per process (every
# generator of the process then runs the same GEMM)
_MEASURED: Dict[tuple, tuple] = {}


def forget_gemm_choices() -> None:
    """Drop auto's measurements, so the next generator measures again as a fresh process would (for tests
    that run several models in one interpreter)."""
    _MEASURED.clear()


PROBE_MAX_ROWS = 32  # decode rows timed (a rollout batch's; larger batches keep the ratio of a 32-row one)
PROBE_MAX_VOCAB = 16384  # output-layer rows timed (scaled up to the full vocabulary)


def step_gemms(model) -> list:
    """The GEMMs of one forward position through ``model`` as ``(weight, times per pass)``: layer 0's four
    weights (every layer has the same shapes) ``num_layers`` times each, and the output layer's first
    :data:`PROBE_MAX_VOCAB` rows weighted up to its full size."""
    layer = model.decoder.layers[0]
    n = len(model.decoder.layers)
    out_w = (model.shared_embedding_or_output_weight() if model.share_embeddings_and_output_weights
             else model.output_layer.weight)
    part = out_w[:PROBE_MAX_VOCAB]
    return [(layer.self_attention.linear_qkv.weight, n), (layer.self_attention.linear_proj.weight, n),
            (layer.mlp.linear_fc1.weight, n), (layer.mlp.linear_fc2.weight, n), (part, out_w.shape[0] / part.shape[0])]


def time_gemms(gemms: list, rows: int, onednn: bool, repeats: int = 3) -> float:
    """Seconds of one decode step's GEMMs (``rows`` sequences) with oneDNN or ``F.linear``: the best of
    ``repeats`` timings after one warm-up (oneDNN builds its kernels at the first call of a shape)."""
    xs = [torch.randn(rows, w.shape[1], dtype=w.dtype, device=w.device) for w, _ in gemms]
    best = float("inf")
    with torch.no_grad():
        for rep in range(repeats + 1):
            total = 0.0
            for (w, times), x in zip(gemms, xs):
                t0 = time.perf_counter()
                linear(x, w, onednn)
                total += (time.perf_counter() - t0) * times
            if rep:
                best = min(best, total)
    return best


def gemm_backend(model, choice: str = "auto", rows: int = 16, *,
                 timer: Callable[[list, int, bool], float] = time_gemms,
                 log: Optional[Callable[[str], None]] = None) -> str:
    """The GEMM backend the lean forward uses for ``model`` (``"onednn"`` or ``"torch"``).

    ``OCTO_INFERENCE_GEMM`` (auto | onednn | torch), if set, replaces ``choice``. Only a CPU run of fp32
    parameters with oneDNN's linear in this torch has a choice (else torch). ``auto`` times a decode step's
    GEMMs of ``rows`` sequences (at most :data:`PROBE_MAX_ROWS`) with both backends on the model's weights
    (:func:`time_gemms`; ``timer`` and ``log``, print by default, are replaced in tests), the times summed over the tensor-parallel group so
    its ranks agree, and keeps the faster; the result is kept for the rest of the process (any later call for
    these weight shapes, whatever its ``rows``) and logged in one line (:func:`measured` returns it)."""
    choice = os.environ.get(GEMM_ENV) or choice
    if choice not in GEMM_CHOICES:
        raise ValueError(f"generation.gemm ({GEMM_ENV}) must be one of {', '.join(GEMM_CHOICES)}, got {choice!r}")
    weight = model.decoder.layers[0].self_attention.linear_qkv.weight
    if (weight.device.type != "cpu" or torch.cuda.is_available() or weight.dtype != torch.float32
            or not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise"))):
        return "torch"
    if choice != "auto":
        return choice
    gemms = step_gemms(model)
    rows = max(1, min(rows, PROBE_MAX_ROWS))
    key = (tuple((tuple(w.shape), t) for w, t in gemms), weight.dtype, torch.get_num_threads())
    if key not in _MEASURED:
        t0 = time.perf_counter()
        times = {"onednn": timer(gemms, rows, True), "torch": timer(gemms, rows, False)}
        group = model.output_layer.tp_group
        if group is not None and group.size() > 1:  # each rank times its shards; the sums agree: one choice
            both = torch.tensor([times["onednn"], times["torch"]], dtype=torch.float64)
            torch.distributed.all_reduce(both, group=group)
            times = {"onednn": float(both[0]), "torch": float(both[1])}
        backend = "onednn" if times["onednn"] < times["torch"] else "torch"
        _MEASURED[key] = (backend, times, rows)
        if not (torch.distributed.is_initialized() and torch.distributed.get_rank() != 0):
            (log or (lambda line: print(line, flush=True)))(
                f"[megatron-octo] generation GEMM: {backend} (generation.gemm=auto: a decode step's GEMMs at {rows} "
                f"rows took {times['onednn'] * 1e3:.2f} ms with oneDNN, {times['torch'] * 1e3:.2f} ms with "
                f"F.linear; measured in {(time.perf_counter() - t0) * 1e3:.0f} ms)")
    return _MEASURED[key][0]


def measured() -> list:
    """auto's measurements so far: ``{"backend", "seconds": {backend: s}, "rows"}`` per weight-shape set."""
    return [{"backend": b, "seconds": dict(t), "rows": r} for b, t, r in _MEASURED.values()]


def linear(x: torch.Tensor, weight: torch.Tensor, onednn: bool) -> torch.Tensor:
    if onednn:
        return torch.ops.mkldnn._linear_pointwise(x, weight, None, "none", [], "")
    return F.linear(x, weight)


def unsupported(model) -> Optional[str]:
    """Why :func:`forward` cannot run ``model`` (None: it can)."""
    cfg = model.config
    if not (model.pre_process and model.post_process):
        return "pipeline stages (the pass spans one stage)"
    if model.position_embedding_type != "rope" or cfg.rotary_interleaved or cfg.apply_rope_fusion:
        return "not plain RoPE"
    if cfg.add_bias_linear or cfg.add_qkv_bias or cfg.qk_layernorm or cfg.fp32_residual_connection:
        return "biases, QK-norm or an fp32 residual"
    if cfg.apply_residual_connection_post_layernorm or cfg.multi_latent_attention or cfg.num_moe_experts:
        return "post-norm residual, MLA or MoE"
    if not (cfg.gated_linear_unit and cfg.activation_func is F.silu):
        return "not a SwiGLU MLP"
    for layer in model.decoder.layers:
        sa = layer.self_attention
        if not (isinstance(sa, CachedRopeSelfAttention) and isinstance(sa.core_attention, SDPAttention)
                and isinstance(layer.mlp, MLP)):
            return "not the local layer spec"
        if not (isinstance(layer.input_layernorm, torch.nn.RMSNorm)
                and isinstance(layer.pre_mlp_layernorm, torch.nn.RMSNorm)):
            return "not torch RMSNorm"
        if sa.num_query_groups_per_partition * sa.world_size != cfg.num_query_groups:
            return "query groups split across TP ranks"
    table = model.rotary_pos_emb(1)
    if table.shape[-1] != cfg.kv_channels:
        return "partial RoPE"
    return None


def forward(model, context, tokens: torch.Tensor, positions: torch.Tensor,
            attention_mask: Optional[torch.Tensor], onednn: Optional[bool] = None) -> torch.Tensor:
    """One pass of ``tokens`` ``[b, s]`` through ``model`` over the static ``context``'s KV cache (written at
    ``context.sequence_len_offset``, which then advances by ``s``): logits of the last position ``[b, vocab]``
    (gathered over TP). ``attention_mask`` as megatron's (True = masked) or None (causal); RoPE positions
    from the context's ``position_offsets`` as :class:`CachedRopeSelfAttention` takes them (``positions``
    only feed megatron's path, kept for the same signature). ``onednn``: the GEMM backend (None:
    :func:`gemm_backend`'s choice for ``model``)."""
    cfg = model.config
    if onednn is None:
        onednn = gemm_backend(model, rows=tokens.shape[0]) == "onednn"
    start, (b, s) = context.sequence_len_offset, tokens.shape
    h = embed(model.embedding.word_embeddings, tokens.t())  # [s, b, hidden]
    offsets = getattr(context, "position_offsets", None)
    table = model.rotary_pos_emb(context.max_sequence_length)
    cos, sin = pass_cos_sin(context, table, start, s, offsets, rope_mscale(cfg), h.dtype)
    # The batch's shared prompt prefix (Generator): its pass (the first, one row) caches it in row 0's first
    # ``lead`` columns (the other rows' are never written); every later pass attends to it there and to its
    # rows' own keys from column ``lead``.
    lead = getattr(context, "shared_prefix", 0) or 0
    prefix_pass = lead > 0 and start == 0
    if prefix_pass and (b != 1 or s != lead):
        raise ValueError(f"the shared prefix's pass feeds one row of {lead} tokens, not {b} x {s}")
    row_pads = offsets.tolist() if s > 1 and offsets is not None and start == lead else None  # one host sync
    # SDPA's mask (True = attend) from megatron's (True = masked), once for all layers
    attend = None if attention_mask is None or row_pads is not None else ~attention_mask[..., lead:]
    for layer in model.decoder.layers:
        sa = layer.self_attention
        heads, groups, hn = (sa.num_attention_heads_per_partition, sa.num_query_groups_per_partition,
                             sa.hidden_size_per_attention_head)
        x = layer.input_layernorm(h)
        qkv = linear(x, sa.linear_qkv.weight, onednn).view(s, b, groups, (heads // groups + 2) * hn)
        q, k, v = torch.split(qkv, [heads // groups * hn, hn, hn], dim=3)
        q = rotate(q.reshape(s, b, heads, hn), cos, sin).permute(1, 2, 0, 3)  # [b, heads, s, hn]
        key_mem, value_mem = kv_memory(context, sa)
        key_mem[:b, :, start:start + s] = rotate(k, cos, sin).permute(1, 2, 0, 3)
        value_mem[:b, :, start:start + s] = v.permute(1, 2, 0, 3)
        first = 0 if prefix_pass else lead  # the rows' own keys start after the shared prefix
        own_k, own_v = key_mem[:b, :, first:start + s], value_mem[:b, :, first:start + s]
        prefix = (key_mem[:1, :, :lead], value_mem[:1, :, :lead]) if first else None
        scale = sa.core_attention.softmax_scale
        if row_pads is not None:
            o = prefill_rows(q, own_k, own_v, row_pads, scale, prefix)
        else:
            o = attention(q, own_k, own_v, attend, scale, prefix)
        h = h + tp_sum(linear(o, sa.linear_proj.weight, onednn), sa.linear_proj)
        x = layer.pre_mlp_layernorm(h)
        gate, up = torch.chunk(linear(x, layer.mlp.linear_fc1.weight, onednn), 2, dim=-1)
        # in place: a prefill's [s, b, ffn] temporaries cost more in page faults than in arithmetic
        act = F.silu(gate, inplace=True).mul_(up)
        h = h + tp_sum(linear(act, layer.mlp.linear_fc2.weight, onednn), layer.mlp.linear_fc2)
    context.sequence_len_offset += s
    h = model.decoder.final_layernorm(h[-1])  # [b, hidden]
    logits = linear(h, model.shared_embedding_or_output_weight() if model.share_embeddings_and_output_weights
                    else model.output_layer.weight, onednn)
    if model.output_layer.tp_group.size() > 1:
        logits = gather_from_tensor_model_parallel_region(logits, group=model.output_layer.tp_group)
    return logits


def kv_memory(context, sa) -> tuple:
    """Attention layer ``sa``'s key and value memory, batch first: ``[batch, groups, positions, dim]`` (a shared
    prompt prefix in row 0's first columns: :func:`forward`). Decoding reads each sequence's keys as one contiguous block: over megatron's ``[positions, batch,
    groups, dim]`` buffers (every key 12 KB from the next at batch 16) SDPA's CPU kernel took 2.4x the time.
    Kept in the context's ``key_value_memory_dict`` under ``(BATCH_FIRST, layer_number)`` beside megatron's
    own entries, so what frees or compacts those frees or compacts these
    (:func:`megatron_octo.generation.compact_kv_cache`, :func:`megatron_octo.generators.release_kv_cache`)."""
    memory, tag = context.key_value_memory_dict, (BATCH_FIRST, sa.layer_number)
    if tag not in memory:
        shape = (context.max_batch_size, sa.num_query_groups_per_partition, context.max_sequence_length,
                 sa.hidden_size_per_attention_head)
        dev = torch.cuda.current_device() if torch.cuda.is_available() else torch.device("cpu")
        memory[tag] = tuple(torch.empty(shape, dtype=sa.config.params_dtype, device=dev) for _ in range(2))
    return memory[tag]


def attention(q, k, v, attend: Optional[torch.Tensor], scale: float, prefix: Optional[tuple] = None) -> torch.Tensor:
    """``q`` ``[b, heads, sq, hn]`` (the last ``sq`` positions) over ``k``/``v`` ``[b, groups, sk, hn]``: causal,
    or under ``attend`` (True = attend, ``[b, 1, sq | 1, sk]``) -> ``[sq, b, heads * hn]``. ``prefix``: keys
    and values ``[1, groups, P, hn]`` before ``k``/``v`` that every query sees (a shared prompt prefix)."""
    b, heads, sq, hn = q.shape
    if prefix is not None and sq > 1:  # prefill: the prefix joins the keys (SDPA keeps its memory linear)
        k, v = (torch.cat((p.expand(b, -1, -1, -1), t), dim=2) for p, t in zip(prefix, (k, v)))
        attend = None if attend is None else F.pad(attend, (prefix[0].shape[2], 0), value=True)
        prefix = None
    if prefix is None:
        sk = k.shape[2]
        causal = attend is None and sq > 1
        if causal and sq != sk:  # queries after cached keys: the causal diagonal shifted
            attend, causal = torch.ones(sq, sk, dtype=torch.bool, device=q.device).tril(diagonal=sk - sq), False
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attend, is_causal=causal, scale=scale,
                                             enable_gqa=k.shape[1] != heads)
        return out.permute(2, 0, 1, 3).reshape(sq, b, heads * hn)
    # One new token per row over the shared prefix and its own keys, one softmax over both: the prefix's keys
    # are read once for the whole batch (every row's queries of a group in one GEMM), not once per row.
    kp, vp = prefix[0][0], prefix[1][0]  # [groups, P, hn]
    groups, plen = kp.shape[0], kp.shape[1]
    rows = heads // groups  # a group's query heads of one sequence
    qg = q.reshape(b, groups, rows, hn)
    shared = torch.matmul(qg.transpose(0, 1).reshape(groups, b * rows, hn), kp.transpose(1, 2))
    scores = torch.cat((shared.view(groups, b, rows, plen).transpose(0, 1), torch.matmul(qg, k.transpose(2, 3))),
                       dim=-1).mul_(scale)
    if attend is not None:
        scores[..., plen:].masked_fill_(~attend, float("-inf"))
    probs = scores.softmax(dim=-1)
    out = torch.matmul(probs[..., plen:], v)
    out += torch.matmul(probs[..., :plen].transpose(0, 1).reshape(groups, b * rows, plen), vp).view(
        groups, b, rows, hn).transpose(0, 1)
    return out.reshape(b, heads, 1, hn).permute(2, 0, 1, 3).reshape(1, b, heads * hn)


def prefill_rows(q, k, v, pads: list, scale: float, prefix: Optional[tuple] = None) -> torch.Tensor:
    """Causal attention of a left-padded prompt batch (``q`` ``[b, heads, s, hn]``, ``k``/``v`` ``[b, groups, s,
    hn]``, after a shared ``prefix`` if given), row by row over each row's own tokens (no mask): SDPA's CPU
    kernel skips the blocks above the diagonal only when causal, so one masked call over the padded batch
    cost 1.5x these calls. The pad queries' outputs are zeros (no real token attends to a pad key, in this
    pass or later ones)."""
    b, heads, s, hn = q.shape
    out = q.new_zeros(s, b, heads * hn)
    for row, pad in enumerate(pads):
        out[pad:, row:row + 1] = attention(q[row:row + 1, :, pad:], k[row:row + 1, :, pad:], v[row:row + 1, :, pad:],
                                           None, scale, prefix)
    return out


def embed(embedding, tokens: torch.Tensor) -> torch.Tensor:
    """megatron's ``VocabParallelEmbedding`` lookup, all-reduced over its TP group (never scattered over the
    sequence: generation does not run sequence-parallel)."""
    group = embedding.tp_group
    if group.size() == 1:
        return F.embedding(tokens, embedding.weight)
    outside = (tokens < embedding.vocab_start_index) | (tokens >= embedding.vocab_end_index)
    out = F.embedding((tokens - embedding.vocab_start_index).masked_fill_(outside, 0), embedding.weight)
    out[outside, :] = 0.0
    return reduce_from_tensor_model_parallel_region(out, group=group)


def tp_sum(partial: torch.Tensor, row_parallel) -> torch.Tensor:
    """A row-parallel layer's output: the partial products summed over its TP group."""
    group = row_parallel.tp_group
    return partial if group.size() == 1 else reduce_from_tensor_model_parallel_region(partial, group=group)

