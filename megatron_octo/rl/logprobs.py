"""Per-token log-probabilities and entropy from vocab-parallel logits (any TP).

The model's logits are split over the vocabulary across tensor-parallel ranks; log-softmax and
entropy need the full vocabulary, so the reductions go through megatron's TP collectives
(``vocab_parallel_cross_entropy``, and differentiable all-reduces for the entropy).
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def token_log_probs(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log p(labels) under softmax(logits / temperature). ``logits``: ``[b, s, V/tp]``; ``labels``: ``[b, s]``."""
    from megatron.core.tensor_parallel import vocab_parallel_cross_entropy

    scaled = logits.float() / temperature if temperature != 1.0 else logits.float()
    # megatron's kernel works on [s, b, v] and overwrites its input (max subtraction and exp in
    # place), so it gets its own copy; it returns the NLL of the label, reduced over TP.
    nll = vocab_parallel_cross_entropy(scaled.transpose(0, 1).clone(memory_format=torch.contiguous_format),
                                       labels.transpose(0, 1).contiguous())
    return -nll.transpose(0, 1)


def token_entropy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Entropy of softmax(logits / temperature) over the full vocabulary: ``[b, s]``."""
    from megatron.core import parallel_state as ps
    from megatron.core.tensor_parallel.mappings import reduce_from_tensor_model_parallel_region

    x = logits.float() / temperature
    m = x.max(dim=-1, keepdim=True).values.detach()
    if ps.get_tensor_model_parallel_world_size() > 1:
        dist.all_reduce(m, op=dist.ReduceOp.MAX, group=ps.get_tensor_model_parallel_group())
    e = torch.exp(x - m)
    z = reduce_from_tensor_model_parallel_region(e.sum(dim=-1))
    p_dot_x = reduce_from_tensor_model_parallel_region((e * x).sum(dim=-1)) / z
    return m.squeeze(-1) + torch.log(z) - p_dot_x
