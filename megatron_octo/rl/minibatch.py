"""The update loop shared by the actor and the critic: ``epochs`` passes over a rank's rollout batch
in mini-batches, each one optimizer step through megatron's forward-backward schedule, with the
loss a token mean over the whole mini-batch (all its micro-batches and data-parallel ranks)."""

from __future__ import annotations

from contextlib import contextmanager
from functools import partial
from typing import Callable, Optional, Sequence

import torch
import torch.distributed as dist

from megatron_octo.rl.packing import plan_micro_batches, row_lengths


def train_minibatches(model, optimizer, batch, *, forward_step: Callable, report_keys: Sequence[str],
                      rows_per_minibatch: int, micro_batch_size: int, epochs: int, dp: int,
                      is_last_stage: bool = True, denominator: Optional[Callable] = None,
                      micro_batch_tokens: int = 0) -> dict:
    """Run the updates; return the mean over mini-batches of each reported metric and of the grad norm.

    ``forward_step(data_iterator, model, scale)`` is megatron's forward step: it returns the output
    and a loss function giving ``(sum of the micro-batch's token losses * scale, report)``, where
    ``report[key] = (sum, count)`` for each of ``report_keys``. ``denominator(mini_batch)``: what the
    loss sums are divided by over the mini-batch (all its DP ranks); default its response tokens
    (token-mean), else e.g. its responses (``losses.agg_parts``' seq-mean modes).
    ``micro_batch_tokens`` > 0: micro-batches by token budget instead of ``micro_batch_size`` rows
    (rl/packing.py; ``batch.select(rows, width)`` cuts them).
    """
    from megatron.core import parallel_state as ps
    from megatron.core.pipeline_parallel import get_forward_backward_func

    stats = {key: [] for key in (*report_keys, "grad_norm")}
    fwd_bwd = get_forward_backward_func()
    dp_group = ps.get_data_parallel_group(with_context_parallel=True)
    with shapes_sent_ahead(model, micro_batch_tokens > 0):
        for _ in range(epochs):
            for start in range(0, batch.tokens.shape[0], rows_per_minibatch):
                mb = batch.slice(slice(start, start + rows_per_minibatch))
                n_tokens = (mb.mask.sum() if denominator is None else denominator(mb)).reshape(1)
                dist.all_reduce(n_tokens, group=dp_group)
                if micro_batch_tokens > 0:
                    lengths = row_lengths(mb.mask)
                    micro = [mb.select(rows, max(lengths[i] for i in rows) or 2)
                             for rows in plan_micro_batches(lengths, micro_batch_tokens)]
                else:
                    micro = [mb.slice(slice(i * micro_batch_size, (i + 1) * micro_batch_size))
                             for i in range(mb.tokens.shape[0] // micro_batch_size)]
                num_micro = len(micro)  # this rank's: the scale below is per rank
                # megatron divides each micro-batch loss by num_micro and averages grads over DP:
                # this scale turns the sum over the mini-batch's tokens into its token mean (or the
                # sums of another denominator into their mean).
                scale = num_micro * dp / max(float(n_tokens.item()), 1.0)
                model.zero_grad_buffer()
                optimizer.zero_grad()
                out = fwd_bwd(forward_step_func=partial(forward_step, scale=scale), data_iterator=iter(micro),
                              model=[model], num_microbatches=num_micro, seq_length=mb.tokens.shape[1] - 1,
                              micro_batch_size=micro[0].tokens.shape[0], forward_only=False)
                _, grad_norm, _ = optimizer.step()
                stats["grad_norm"].append(grad_norm if grad_norm is not None else float("nan"))
                if is_last_stage:
                    for key in report_keys:
                        tot = torch.stack([o[key][0] for o in out]).sum()
                        cnt = torch.stack([o[key][1] for o in out]).sum()
                        both = torch.stack([tot, cnt])
                        dist.all_reduce(both, group=dp_group)
                        stats[key].append(float(both[0] / both[1].clamp(min=1)))
    return {k: sum(v) / len(v) for k, v in stats.items() if v}


@contextmanager
def shapes_sent_ahead(model, on: bool):
    """Token-budget micro-batches differ in rows and width: pipeline stages then send each activation's
    shape ahead of it (megatron's ``variable_seq_lengths``) instead of assuming seq_length x micro_batch_size."""
    from megatron.core.utils import get_model_config

    config = get_model_config(model)
    before = config.variable_seq_lengths
    config.variable_seq_lengths = before or on
    try:
        yield
    finally:
        config.variable_seq_lengths = before
