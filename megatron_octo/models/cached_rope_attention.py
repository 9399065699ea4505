"""Self-attention that rotates each key once, when it enters the static KV cache.

megatron-core 0.16.1's static-batch inference path (the legacy static engine, the one that runs
without a GPU) caches keys *before* RoPE and rotates the whole cache again at every decoded token:
per layer and token, cos/sin of every position so far plus rotate-half on ``[s, b, groups, hn]``.
That is O(sequence) work per generated token on top of the attention itself; on the CPU models it
cost more than the layer GEMMs (a third of a rollout, benchmarks/NOTES.md). Only the GPU-only flash
decoding path rotates keys on insertion.

RoPE acts on each position independently, so rotating the new keys with their own positions before
caching them leaves every cached key exactly what the per-step rotation produced; the query is
rotated as before.

Left-padded batches (:class:`megatron_octo.generation.Generator` prefills prompts of different
lengths in one pass): when the context carries ``position_offsets`` (a ``[batch]`` tensor, the pad
length of each row), the token at cache index ``i`` of row ``b`` is rotated for position
``i - position_offsets[b]``, queries and keys alike, so every sequence sees the positions of its
unpadded forward. Training, prefill-free dynamic batching and flash decoding go to megatron's code
unchanged, and the parameters (hence checkpoints) are megatron's ``SelfAttention``'s.
"""

from __future__ import annotations

import torch
from megatron.core.models.common.embeddings.rope_utils import apply_rotary_pos_emb
from megatron.core.models.common.embeddings.yarn_rotary_pos_embedding import (
    _yarn_get_concentration_factor_from_config,
)
from megatron.core.transformer.attention import SelfAttention


class CachedRopeSelfAttention(SelfAttention):
    def _allocate_memory(self, inference_max_sequence_length, batch_size, dim, dtype):
        """The static KV cache in megatron's shape ``[positions, batch, groups, dim]``, stored as
        ``[batch, groups, positions, dim]``: the filled part of each row's group is then one block,
        as SDPA reads it (megatron's layout interleaves the rows; at 16 rows x 830 positions SDPA over
        it took 3.0 ms per layer, 2.3 ms over this one). Flash decoding keeps megatron's layout."""
        if self.config.flash_decode:
            return super()._allocate_memory(inference_max_sequence_length, batch_size, dim, dtype)
        device = super()._allocate_memory(1, 1, dim, dtype).device  # where megatron allocates
        return torch.empty(batch_size, self.num_query_groups_per_partition, inference_max_sequence_length, dim,
                           dtype=dtype, device=device).permute(2, 0, 1, 3)

    def _adjust_key_value_for_inference(self, inference_context, query, key, value, rotary_pos_emb, *args, **kwargs):
        if (inference_context is None or not inference_context.is_static_batching() or self.config.flash_decode
                or not isinstance(rotary_pos_emb, tuple) or rotary_pos_emb[1] is None):
            return super()._adjust_key_value_for_inference(inference_context, query, key, value, rotary_pos_emb,
                                                           *args, **kwargs)
        q_pos_emb, k_pos_emb = rotary_pos_emb
        start = inference_context.sequence_len_offset
        offsets = getattr(inference_context, "position_offsets", None)
        mscale = rope_mscale(self.config)
        if (self.config.apply_rope_fusion or self.config.rotary_interleaved or self.config.multi_latent_attention
                or q_pos_emb is not k_pos_emb or k_pos_emb.shape[-1] != key.shape[-1]):
            k_emb = rope_freqs(k_pos_emb, start, key.size(0), offsets)
            key = apply_rotary_pos_emb(key, k_emb, config=self.config, mscale=mscale, cp_group=self.pg_collection.cp)
            query, key, value, (q_pos_emb, _), mask_type, block_table = super()._adjust_key_value_for_inference(
                inference_context, query, key, value, rotary_pos_emb, *args, **kwargs)
            if offsets is not None:  # the new queries are the new keys' positions
                q_pos_emb = k_emb
            # The cached keys are rotated already: only the query gets its rotation in forward().
            return query, key, value, (q_pos_emb, None), mask_type, block_table
        # The common case: the new queries sit at the new keys' positions, so both are rotated here
        # with one cos/sin per pass, computed by the first layer and reused by the others.
        cos, sin = pass_cos_sin(inference_context, k_pos_emb, start, key.size(0), offsets, mscale, key.dtype)
        key = rotate(key, cos, sin)
        query, key, value, _, mask_type, block_table = super()._adjust_key_value_for_inference(
            inference_context, query, key, value, rotary_pos_emb, *args, **kwargs)
        return rotate(query, cos, sin), key, value, (None, None), mask_type, block_table


def rope_mscale(config) -> float:
    """The factor megatron multiplies RoPE's cos/sin by (YaRN's attention concentration; 1 otherwise)."""
    return _yarn_get_concentration_factor_from_config(config)


def rope_freqs(table, start: int, length: int, offsets):
    """RoPE angles of the ``length`` new positions from ``start``: ``[s, 1, 1, dim]`` from megatron's
    ``[positions, 1, 1, dim]`` table, or per row ``[s, b, 1, dim]`` (cache index minus the row's offset)."""
    if offsets is None:
        return table[start:start + length]
    index = (torch.arange(start, start + length, device=offsets.device)[:, None] - offsets[None, :]).clamp_(min=0)
    return table[index, 0]


def pass_cos_sin(context, table, start: int, length: int, offsets, mscale: float, dtype):
    """cos and sin of the new positions' angles as megatron's RoPE computes them, once per forward pass
    of ``context``.

    Kept on the context under (start offset, length, dtype, row offsets present): the table is the
    model's, so without row offsets that fixes the values. Whoever sets ``position_offsets`` clears
    ``rope_cos_sin`` before each pass (:class:`megatron_octo.generation.Generator` does)."""
    tag = (start, length, dtype, offsets is None, table.shape)
    cached = getattr(context, "rope_cos_sin", None)
    if cached is not None and cached[0] == tag:
        return cached[1], cached[2]
    freqs = rope_freqs(table, start, length, offsets)
    cos, sin = (torch.cos(freqs) * mscale).to(dtype), (torch.sin(freqs) * mscale).to(dtype)
    context.rope_cos_sin = (tag, cos, sin)
    return cos, sin


def rotate(t, cos, sin):
    """Megatron's (non-interleaved) RoPE of ``t`` ``[s, b, heads, dim]`` with precomputed cos/sin."""
    x1, x2 = torch.chunk(t, 2, dim=-1)
    return t * cos + torch.cat((-x2, x1), dim=-1) * sin
