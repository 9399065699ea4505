"""The generator factory for evaluation and RL rollouts: megatron's static or dynamic engine on the
caller's model (:mod:`megatron_octo.generation`, :mod:`megatron_octo.generation_dynamic`)."""

from __future__ import annotations

import torch

from megatron_octo import generation, generation_dynamic
from megatron_octo.config import resolve_rollout_engine


def make_generator(model, tokenizer, *, engine: str = "static", max_sequence_length: int, max_batch_size: int = 32,
                   seed: int = 1234, cuda_graphs: bool = True, kv_cache_gb: float = 0.0, gemm: str = "auto"):
    """The generator of ``engine`` on ``model`` — a GPTModel, or megatron's DDP wrapper around the training
    model (the dynamic engine then finishes the distributed optimizer's parameter all-gather before each
    rollout). ``engine``: static | dynamic | auto (dynamic when a CUDA GPU and flash-attn are present: see
    :func:`megatron_octo.config.resolve_rollout_engine`, whose ConfigError names ``rl.rollout_engine``).
    ``cuda_graphs`` and ``kv_cache_gb`` concern the dynamic engine only, ``gemm`` (generation.gemm: auto | onednn
    | torch) the static generator's CPU GEMM."""
    gpu = torch.cuda.is_available()
    engine = resolve_rollout_engine(engine, have_gpu=gpu,
                                    have_flash_attn=gpu and generation_dynamic.flash_attn_for_dynamic_engine())
    common = dict(max_sequence_length=max_sequence_length, max_batch_size=max_batch_size, seed=seed)
    if engine == "static":
        from megatron.core.distributed import DistributedDataParallel

        return generation.Generator(model.module if isinstance(model, DistributedDataParallel) else model, tokenizer,
                                    gemm=gemm, **common)
    return generation_dynamic.DynamicGenerator(model, tokenizer, cuda_graphs=cuda_graphs, kv_cache_gb=kv_cache_gb, **common)


def release_kv_cache(generator) -> None:
    """Free ``generator``'s KV buffer until its next ``generate`` (RL: the update needs the memory).

    megatron's static context allocates each layer's key/value tensors at the first forward that
    finds none (``Attention._adjust_key_value_for_inference``), so dropping them from
    ``key_value_memory_dict`` frees them (nothing else holds them between calls) and the next rollout
    re-creates them at the same shape. The dynamic engine's paged buffer is allocated up front and
    kept (not released here)."""
    context = getattr(generator, "context", None)
    if context is not None and context.is_static_batching():
        context.key_value_memory_dict.clear()
