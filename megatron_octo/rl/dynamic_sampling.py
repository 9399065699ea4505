"""DAPO's dynamic sampling with refill (verl ``algorithm.filter_groups``; NeMo-RL
``use_dynamic_sampling``), the pure part: which groups of which sampling round make up the batch.

A group whose samples all got the same value of ``rl.dynamic_sampling_metric`` is removed, and
further rounds of prompts are drawn until the batch holds ``target`` groups with varied values (or the
round limit is hit). A batch still short after the last round is filled up with removed groups,
flagged not useful: the trainer masks them out of the loss, so they add neither to the numerator nor
to the denominator; the batch keeps its shape.

The metric is verl's ``filter_groups.metric`` (:func:`metric_values`). DAPO filters on ``acc``: a group
all right or all wrong teaches nothing about correctness, even when DAPO's overlong penalty makes its
rewards (and so its GRPO advantages) differ by length; under ``seq_reward`` such a group is kept.
verl keeps a group when the metric's std over it is > 0; here when its values are not all equal (the
same except for float rounding in the std).
"""

from __future__ import annotations

from typing import Sequence

from megatron_octo.rl.reward import RewardResult, uniform_groups

METRICS = ("acc", "score", "seq_reward", "seq_final_reward")


def metric_values(rewards: Sequence[RewardResult], metric: str) -> list[float]:
    """Per sample, the value compared within its group (verl's ``filter_groups.metric``, DAPO recipe's
    ``dapo_ray_trainer.py`` with the DAPO reward manager):

    * ``acc``: 1 if the answer is correct, else 0 (verl: the reward function's ``acc``; a custom
      ``rl.reward_fn``'s sample counts as correct when it scored > 0);
    * ``score``: the grader's reward before the overlong penalty (verl: the reward function's
      ``score``, kept aside before the reward manager adds the overlong reward);
    * ``seq_reward``: the reward the advantages are computed from, overlong penalty included (verl:
      ``token_level_scores`` summed over the response);
    * ``seq_final_reward``: verl's ``token_level_rewards`` summed, i.e. ``seq_reward`` minus the KL
      penalty put into the reward (``algorithm.use_kl_in_reward``); there is none here (``rl.kl_coef``
      is a loss term, verl's ``use_kl_loss``), so it equals ``seq_reward``.
    """
    if metric == "acc":
        return [1.0 if x.correct else 0.0 for x in rewards]
    if metric == "score":
        return [x.score if x.grader_score is None else x.grader_score for x in rewards]
    if metric in ("seq_reward", "seq_final_reward"):
        return [x.score for x in rewards]
    raise ValueError(f"unknown dynamic sampling metric {metric!r}; expected one of {', '.join(METRICS)}")


def useful_groups(values: Sequence[float], group_size: int) -> list[bool]:
    """Per group: True if its samples' metric values are not all the same."""
    return [not u for u in uniform_groups(list(values), group_size)]


def select_groups(rounds: Sequence[Sequence[float]], group_size: int, target: int) -> list[tuple[int, int, bool]]:
    """``rounds``: each round's metric values (:func:`metric_values`), group by group. Returns
    ``target`` entries ``(round, group, useful)``: the first ``target`` useful groups in draw order,
    then (if there are fewer) the first removed groups to fill the batch, with ``useful=False``."""
    useful, filler = [], []
    for rnd, values in enumerate(rounds):
        for g, ok in enumerate(useful_groups(values, group_size)):
            (useful if ok else filler).append((rnd, g, ok))
    picked = useful[:target]
    picked += filler[:target - len(picked)]
    if len(picked) < target:
        raise ValueError(f"{len(picked)} groups drawn, fewer than the {target} of a batch")
    return picked


def count_useful(rounds: Sequence[Sequence[float]], group_size: int) -> int:
    return sum(sum(useful_groups(v, group_size)) for v in rounds)
