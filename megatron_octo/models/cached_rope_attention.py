"""Self-attention that rotates each key once, when it enters the static KV cache.

megatron-core 0.16.1's static-batch inference path (the legacy static engine, the one that runs
without a GPU) caches keys *before* RoPE and rotates the whole cache again at every decoded token:
per layer and token, cos/sin of every position so far plus rotate-half on ``[s, b, groups, hn]``.
That is O(sequence) work per generated token on top of the attention itself; on the CPU models it
cost more than the layer GEMMs (a third of a rollout, benchmarks/NOTES.md). Only the GPU-only flash
decoding path rotates keys on insertion.

RoPE acts on each position independently, so rotating the new keys with their own positions before
caching them leaves every cached key exactly what the per-step rotation produced; the query is
rotated as before. Training, prefill-free dynamic batching and flash decoding go to megatron's code
unchanged, and the parameters (hence checkpoints) are megatron's ``SelfAttention``'s.
"""

from __future__ import annotations

from megatron.core.models.common.embeddings.rope_utils import apply_rotary_pos_emb
from megatron.core.models.common.embeddings.yarn_rotary_pos_embedding import (
    _yarn_get_concentration_factor_from_config,
)
from megatron.core.transformer.attention import SelfAttention


class CachedRopeSelfAttention(SelfAttention):
    def _adjust_key_value_for_inference(self, inference_context, query, key, value, rotary_pos_emb, *args, **kwargs):
        if (inference_context is None or not inference_context.is_static_batching() or self.config.flash_decode
                or not isinstance(rotary_pos_emb, tuple) or rotary_pos_emb[1] is None):
            return super()._adjust_key_value_for_inference(inference_context, query, key, value, rotary_pos_emb,
                                                           *args, **kwargs)
        q_pos_emb, k_pos_emb = rotary_pos_emb
        start = inference_context.sequence_len_offset
        key = apply_rotary_pos_emb(key, k_pos_emb[start:start + key.size(0)], config=self.config,
                                   mscale=_yarn_get_concentration_factor_from_config(self.config),
                                   cp_group=self.pg_collection.cp)
        query, key, value, (q_pos_emb, _), mask_type, block_table = super()._adjust_key_value_for_inference(
            inference_context, query, key, value, rotary_pos_emb, *args, **kwargs)
        # The cached keys are rotated already: only the query gets its rotation in forward().
        return query, key, value, (q_pos_emb, None), mask_type, block_table
