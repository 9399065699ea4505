"""Core attention through ``torch.nn.functional.scaled_dot_product_attention`` for the local spec.

megatron-core's local ``DotProductAttention`` materialises the full ``[b, heads, s, s]`` score
matrix, repeats the KV heads for GQA and masks with ``masked_fill``. On a GPU Transformer Engine's
fused attention replaces it; without Transformer Engine this module is the fused path: torch's
SDPA kernels (flash-style on CPU) skip the masked half of causal attention and read GQA groups
directly. Same parameters, same interface, same numbers (tested against megatron's module).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from megatron.core.transformer.dot_product_attention import DotProductAttention
from megatron.core.transformer.enums import AttnMaskType


class SDPAttention(DotProductAttention):
    def forward(self, query, key, value, attention_mask: Optional[torch.Tensor], attn_mask_type=None,
                attention_bias=None, packed_seq_params=None):
        if (attention_bias is not None or packed_seq_params is not None or self.config.softmax_type != "vanilla"
                or self.config.window_size is not None):
            return super().forward(query, key, value, attention_mask, attn_mask_type, attention_bias,
                                   packed_seq_params)
        mask_type = attn_mask_type if attn_mask_type is not None else self.attn_mask_type
        dropout = self.attention_dropout.p if self.training else 0.0
        return sdpa(query, key, value, attention_mask, mask_type == AttnMaskType.causal, self.softmax_scale, dropout)


def sdpa(query, key, value, attention_mask: Optional[torch.Tensor], causal: bool, scale: float,
         dropout: float = 0.0) -> torch.Tensor:
    """Attention of ``query`` ``[sq, b, heads, hn]`` over ``key``/``value`` ``[sk, b, groups, hn]``
    (megatron's layout; GQA groups read directly) -> ``[sq, b, heads * hn]``. ``attention_mask``:
    megatron's (True = masked), else causal with the ``sq`` queries the last ``sq`` positions."""
    sq, b, np_, hn = query.shape
    sk = key.shape[0]
    # [s, b, heads, hn] -> [b, heads, s, hn]
    q, k, v = (t.permute(1, 2, 0, 3) for t in (query, key, value))
    attn_mask, is_causal = None, False
    if attention_mask is not None:
        attn_mask = ~attention_mask  # megatron: True = masked; SDPA: True = attend
    elif causal:
        if sq == sk:
            is_causal = True
        else:
            # Decoding with a KV cache: the sq new queries are the last sq positions.
            attn_mask = torch.ones(sq, sk, dtype=torch.bool, device=q.device).tril(diagonal=sk - sq)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout, is_causal=is_causal,
                                         scale=scale, enable_gqa=k.shape[1] != np_)
    # [b, heads, sq, hn] -> [sq, b, heads * hn]
    return out.permute(2, 0, 1, 3).reshape(sq, b, np_ * hn)
