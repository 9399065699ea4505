"""Micro-batches of the update by token budget (``rl.micro_batch_tokens``; verl's ``use_dynamic_bsz``).

A rollout batch is right-padded to its longest sequence, and fixed-size micro-batches of it
(``rl.micro_batch_size`` rows) run every row at that width: with the spread of response lengths of a
real run most of the compute is padding. Here the rows are sorted by length and cut into micro-batches
of at most ``token_budget`` padded tokens (rows x the micro-batch's longest row), each trimmed to its
own longest row. Rows with no loss token (filtered samples, dynamic sampling's fillers) are left out:
they add nothing to the loss. The loss is unchanged: a causal model's log-probs of a sequence do not
depend on the padding after it, and the mini-batch's denominator (minibatch.py) does not depend on
how it is cut. Not THD packing (sequences concatenated into one row), which needs Transformer Engine's
packed attention.
"""

from __future__ import annotations

from typing import Sequence

import torch


def row_lengths(mask: torch.Tensor) -> list[int]:
    """Tokens each row needs: up to its last loss label + 1 (labels are ``tokens[:, 1:]``); 0 without any."""
    n, width = mask.shape
    positions = torch.arange(1, width + 1, device=mask.device).expand(n, width)
    last = torch.where(mask > 0, positions, torch.zeros_like(positions)).max(dim=1).values
    return [int(x) + 1 if int(x) > 0 else 0 for x in last.tolist()]


def plan_micro_batches(lengths: Sequence[int], token_budget: int) -> list[list[int]]:
    """Row indices per micro-batch: rows of length > 0, longest first, each micro-batch taking rows
    while (rows x its longest) <= ``token_budget``; a row longer than the budget goes alone. If no row
    has a loss token, one micro-batch of row 0 (the update must still run its collectives)."""
    order = sorted((i for i, n in enumerate(lengths) if n > 0), key=lambda i: (-lengths[i], i))
    plan: list[list[int]] = []
    for i in order:
        if plan and (len(plan[-1]) + 1) * lengths[plan[-1][0]] <= token_budget:
            plan[-1].append(i)
        else:
            plan.append([i])
    if not plan and len(lengths):
        plan = [[0]]
    return plan
