"""Test-only CPU stand-ins for what megatron's dynamic inference engine needs a GPU for: pinned-memory
requests (a TorchFunctionMode drops ``pin_memory=True``), NVTX ranges (no-ops) and flash-attn's two paged-KV
kernels (the pure-torch ``_paged_attention`` below). Production code never installs them
(megatron_octo/generation_dynamic.py).

:func:`install_cpu_standins` installs them for the rest of the process (tests/scripts/dynamic_generation_check.py,
a fresh interpreter); :func:`cpu_standins` for the body of a ``with`` only, and puts back everything it
replaced (in-process tests: tests/megatron_cases.py)."""

from __future__ import annotations

import contextlib
import math
import sys
import types

import torch
from torch.overrides import TorchFunctionMode


def _gather_blocks(cache, blocks, n):
    """[num_blocks, block, heads, d] paged cache -> the first n positions of the given blocks."""
    return cache[blocks.long()].reshape(-1, *cache.shape[2:])[:n]


def _attend(q, k, v, scale):
    """Causal attention of q [lq, h, d] on k, v [lk, hk, d], the queries being the last lq positions."""
    lq, lk = q.shape[0], k.shape[0]
    rep = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    s = torch.einsum("qhd,khd->hqk", q.float(), k.float()) * scale
    s = s.masked_fill(torch.arange(lk)[None, :] > torch.arange(lq)[:, None] + (lk - lq), float("-inf"))
    return torch.einsum("hqk,khd->qhd", torch.softmax(s, dim=-1), v.float()).to(q.dtype)


def _paged_attention(q, spans, kv_lengths, k_cache, v_cache, block_table, scale):
    """Request i's queries q[a:b] ((a, b) = spans[i]) on its kv_lengths[i] cached keys and values."""
    out = torch.zeros_like(q)
    block = k_cache.shape[1]
    for i, ((a, b), lk) in enumerate(zip(spans, kv_lengths)):
        if b > a and lk > 0:
            blocks = block_table[i, :math.ceil(lk / block)]
            out[a:b] = _attend(q[a:b], _gather_blocks(k_cache, blocks, lk), _gather_blocks(v_cache, blocks, lk), scale)
    return out


def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale=None,
                           causal=True, block_table=None, **_):
    """flash-attn 2's varlen kernel on a paged cache (prefill steps): q [tokens, h, d]."""
    assert causal and block_table is not None
    spans = list(zip(cu_seqlens_q[:-1].tolist(), cu_seqlens_q[1:].tolist()))
    lengths = (cu_seqlens_k[1:] - cu_seqlens_k[:-1]).tolist()
    return _paged_attention(q, spans, lengths, k, v, block_table, softmax_scale or q.shape[-1] ** -0.5)


def flash_attn_with_kvcache(q, k_cache, v_cache, cache_seqlens=None, causal=True, block_table=None,
                            softmax_scale=None, **_):
    """flash-attn 2's decode kernel on a paged cache (decode-only steps): q [requests, 1, h, d]."""
    assert causal and block_table is not None
    flat = q.reshape(q.shape[0], *q.shape[2:])
    spans = [(i, i + 1) for i in range(q.shape[0])]
    out = _paged_attention(flat, spans, cache_seqlens.tolist(), k_cache, v_cache, block_table,
                           softmax_scale or q.shape[-1] ** -0.5)
    return out.reshape(q.shape)


class _NoPinnedMemory(TorchFunctionMode):
    def __torch_function__(self, func, types_, args=(), kwargs=None):
        kwargs = kwargs or {}
        if kwargs.get("pin_memory"):
            kwargs = dict(kwargs, pin_memory=False)
        return func(*args, **kwargs)


def _patches() -> list:
    """(object, attribute, stand-in) for every attribute the stand-ins replace."""
    import megatron.core.inference.engines.dynamic_engine as dynamic_engine
    import megatron.core.transformer.attention as attention

    noop = lambda *a, **k: None  # noqa: E731
    return [(torch.cuda.nvtx, "range_push", noop), (torch.cuda.nvtx, "range_pop", noop),
            (dynamic_engine, "range_push", noop), (dynamic_engine, "range_pop", noop),
            (attention, "flash_attn_varlen_func", flash_attn_varlen_func),
            (attention, "flash_attn_with_kvcache", flash_attn_with_kvcache)]


def _flash_attn_module() -> types.ModuleType:
    fa = types.ModuleType("flash_attn")
    fa.__version__ = "2.7.3"  # what megatron's assert asks for; the kernels are the ones above
    fa.flash_attn_varlen_func, fa.flash_attn_with_kvcache = flash_attn_varlen_func, flash_attn_with_kvcache
    return fa


def install_cpu_standins():
    """The stand-ins, for the rest of the process."""
    _NoPinnedMemory().__enter__()
    for obj, name, value in _patches():
        setattr(obj, name, value)
    sys.modules["flash_attn"] = _flash_attn_module()


_MISSING = object()


@contextlib.contextmanager
def cpu_standins():
    """The stand-ins for the body only; afterwards every replaced attribute, ``sys.modules["flash_attn"]`` and
    megatron's cached flash-attn version (read from the stand-in module if the body asked for it) are back."""
    import megatron.core.utils as mcore_utils

    patches = _patches()
    saved = [(obj, name, getattr(obj, name, _MISSING)) for obj, name, _ in patches]
    saved_module = sys.modules.get("flash_attn", _MISSING)
    saved_fa_version = mcore_utils._fa_version  # noqa: SLF001 (megatron's own cache)
    try:
        for obj, name, value in patches:
            setattr(obj, name, value)
        sys.modules["flash_attn"] = _flash_attn_module()
        with _NoPinnedMemory():
            yield
    finally:
        for obj, name, value in saved:
            if value is _MISSING:
                if hasattr(obj, name):
                    delattr(obj, name)
            else:
                setattr(obj, name, value)
        if saved_module is _MISSING:
            sys.modules.pop("flash_attn", None)
        else:
            sys.modules["flash_attn"] = saved_module
        mcore_utils._fa_version = saved_fa_version  # noqa: SLF001
