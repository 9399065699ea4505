"""DAPO's dynamic sampling with refill (verl ``algorithm.filter_groups``; NeMo-RL
``use_dynamic_sampling``), the pure part: which groups of which sampling round make up the batch.

A group whose samples all scored the same has a GRPO advantage of zero on every token: it teaches
nothing, yet under token-mean its tokens would still sit in the denominator and shrink every
gradient. Such groups are removed, and further rounds of prompts are drawn until the batch holds
``target`` groups with varied scores (or the round limit is hit). A batch still short after the last
round is filled up with removed groups, flagged not useful: the trainer masks them out of the loss,
so they add neither to the numerator nor to the denominator; the batch keeps its shape.
"""

from __future__ import annotations

from typing import Sequence

from megatron_octo.rl.reward import uniform_groups


def useful_groups(scores: Sequence[float], group_size: int) -> list[bool]:
    """Per group: True if its samples did not all score the same."""
    return [not u for u in uniform_groups(list(scores), group_size)]


def select_groups(rounds: Sequence[Sequence[float]], group_size: int, target: int) -> list[tuple[int, int, bool]]:
    """``rounds``: each round's scores, group by group. Returns ``target`` entries ``(round, group,
    useful)``: the first ``target`` useful groups in draw order, then (if there are fewer) the first
    removed groups to fill the batch, with ``useful=False``."""
    useful, filler = [], []
    for rnd, scores in enumerate(rounds):
        for g, ok in enumerate(useful_groups(scores, group_size)):
            (useful if ok else filler).append((rnd, g, ok))
    picked = useful[:target]
    picked += filler[:target - len(picked)]
    if len(picked) < target:
        raise ValueError(f"{len(picked)} groups drawn, fewer than the {target} of a batch")
    return picked


def count_useful(rounds: Sequence[Sequence[float]], group_size: int) -> int:
    return sum(sum(useful_groups(s, group_size)) for s in rounds)
