"""Per-token log-probabilities and entropy from vocab-parallel logits (any TP).

The model's logits are split over the vocabulary across tensor-parallel ranks; log-softmax and
entropy need the full vocabulary, so the reductions go through TP all-reduces (inside
:class:`_TokenLogProbs` for the log-probs, differentiable all-reduces for the entropy).
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def _tp():
    """(group, rank, size) of tensor parallelism; (None, 0, 1) before megatron is initialised."""
    from megatron.core import parallel_state as ps

    if not ps.model_parallel_is_initialized() or ps.get_tensor_model_parallel_world_size() == 1:
        return None, 0, 1
    return (ps.get_tensor_model_parallel_group(), ps.get_tensor_model_parallel_rank(),
            ps.get_tensor_model_parallel_world_size())


class _TokenLogProbs(torch.autograd.Function):
    """log softmax(x / T)[label] over the vocabulary split across TP ranks, without copying ``x``.

    megatron's ``vocab_parallel_cross_entropy`` computes the same value but overwrites its input, so
    the old path cloned (and transposed) the logits first, then made four more full passes. Here,
    with gradients: one ``exp(x / T - max)`` pass into the tensor kept for backward, its sum (the
    maxima and sums all-reduced over TP) and a gather of the label's logit (summed over TP; zero on
    ranks that do not hold it); backward turns the kept tensor into ``g * (onehot(label) -
    softmax) / T`` in place. Without gradients (the old-policy forward) nothing is kept, and the
    values are bit for bit the ones the update's forward computes (PPO ratios start at exactly 1).
    The backward consumes its saved tensor: a second backward (``retain_graph``) raises.
    """

    @staticmethod
    def forward(ctx, logits, labels, temperature):
        group, rank, _ = _tp()
        part = logits.shape[-1]
        local = labels - rank * part
        outside = (local < 0) | (local >= part)
        local = local.masked_fill(outside, 0)
        scaled = logits if temperature == 1.0 else logits / temperature
        picked = scaled.gather(-1, local.unsqueeze(-1)).squeeze(-1).masked_fill(outside, 0.0)
        if group is not None:
            dist.all_reduce(picked, op=dist.ReduceOp.SUM, group=group)
        m = scaled.amax(dim=-1)
        if group is not None:
            dist.all_reduce(m, op=dist.ReduceOp.MAX, group=group)
        e = torch.sub(scaled, m.unsqueeze(-1), out=None if scaled is logits else scaled).exp_()
        s = e.sum(dim=-1)
        if group is not None:
            dist.all_reduce(s, op=dist.ReduceOp.SUM, group=group)
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(e, s, local, outside)
            ctx.temperature = temperature
        return picked - m - torch.log(s)

    @staticmethod
    def backward(ctx, grad):
        e, s, local, outside = ctx.saved_tensors
        g = grad if ctx.temperature == 1.0 else grad / ctx.temperature
        out = e.mul_((-g / s).unsqueeze(-1))  # -g * softmax, in place
        out.scatter_add_(-1, local.unsqueeze(-1), g.masked_fill(outside, 0.0).unsqueeze(-1))
        return out, None, None


def position_ids(tokens: torch.Tensor) -> torch.Tensor:
    """``[b, L]`` tokens -> the ``[b, L-1]`` positions of the model input ``tokens[:, :-1]``, on the
    tokens' device like every model input (megatron's RoPE path does not read them today)."""
    return torch.arange(tokens.shape[1] - 1, device=tokens.device).unsqueeze(0).expand(tokens.shape[0], -1)


def token_log_probs(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log p(labels) under softmax(logits / temperature). ``logits``: ``[b, s, V/tp]``; ``labels``: ``[b, s]``."""
    x = logits if logits.dtype == torch.float32 else logits.float()
    return _TokenLogProbs.apply(x, labels, float(temperature))


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


def pipeline_log_probs(model, tokens: torch.Tensor, micro_batch_size: int, temperature: float = 1.0,
                       with_entropy: bool = False):
    """:func:`token_log_probs` (and :func:`token_entropy`) of ``tokens[:, 1:]`` without gradients through
    megatron's pipeline schedule (``forward_only``): the last stage computes them from its logits, then
    broadcasts them over the pipeline group, so every stage returns the same ``[b, L-1]`` tensors.
    ``micro_batch_size`` must divide ``b`` (the schedule's activations have one shape)."""
    from megatron.core import parallel_state as ps
    from megatron.core.pipeline_parallel import get_forward_backward_func

    n, width = tokens.shape
    if n % micro_batch_size:
        raise ValueError(f"micro-batch size {micro_batch_size} does not divide the {n} sequences")

    def loss_func(tok, logits):
        out = {"logp": token_log_probs(logits, tok[:, 1:], temperature)}
        if with_entropy:
            out["entropy"] = token_entropy(logits, temperature)
        return logits.new_zeros(()), out

    def forward_step(data_iterator, m):
        tok = next(data_iterator)
        return m(tok[:, :-1], position_ids(tok), None), lambda logits: loss_func(tok, logits)

    micro = list(tokens.split(micro_batch_size))
    with torch.no_grad():
        out = get_forward_backward_func()(forward_step_func=forward_step, data_iterator=iter(micro), model=[model],
                                          num_microbatches=len(micro), seq_length=width - 1,
                                          micro_batch_size=micro_batch_size, forward_only=True)
    keys = ("logp", "entropy") if with_entropy else ("logp",)
    if ps.is_pipeline_last_stage():
        result = torch.stack([torch.cat([o[k] for o in out]) for k in keys])
    else:
        result = torch.empty(len(keys), n, width - 1, dtype=torch.float32, device=tokens.device)
    dist.broadcast(result, src=ps.get_pipeline_model_parallel_last_rank(),
                   group=ps.get_pipeline_model_parallel_group())
    return result[0], (result[1] if with_entropy else None)
