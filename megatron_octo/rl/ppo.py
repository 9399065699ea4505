"""PPO's advantages from the critic's values (verl's ``compute_gae_advantage_return``) and the
critic's data metrics (verl's ``compute_data_metrics``).

Token-level rewards are the outcome score on each response's last token (0 elsewhere); GAE runs
backwards over each response with ``rl.gamma`` / ``rl.lam``; returns = GAE advantages + values
(the critic's targets); advantages are then whitened over every response token of the step, on
all data-parallel ranks together, so the result does not depend on the layout.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from megatron_octo.rl.advantages import gae, outcome_to_last_token, whiten


def gae_advantages(scores: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, *, gamma: float, lam: float,
                   keep: torch.Tensor | None = None, group=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(whitened advantages, returns), both ``[n, T]``. ``scores``: ``[n]`` outcome rewards;
    ``values``/``mask``: ``[n, T]``; ``keep``: ``[n]`` rows whose advantages count (others get 0)."""
    adv, returns = gae(outcome_to_last_token(scores, mask), values, mask, gamma=gamma, lam=lam)
    adv_mask = mask if keep is None else mask * keep.view(-1, 1).to(mask.dtype)
    return whiten(adv, adv_mask, group=group), returns


def critic_data_metrics(values: torch.Tensor, returns: torch.Tensor, advantages: torch.Tensor,
                        mask: torch.Tensor, group=None) -> dict:
    """Means over every response token (all ranks of ``group``) and the explained variance
    ``1 - Var(R - V) / Var(R)`` (unbiased, verl's ``critic/vf_explained_var``)."""
    m = mask.double()
    v, r = values.double() * m, returns.double() * m
    d = r - v
    sums = torch.stack([v.sum(), r.sum(), (advantages.double() * m).sum(), d.abs().sum(), d.sum(),
                        d.square().sum(), r.square().sum(), m.sum()])
    if group is not None and dist.get_world_size(group) > 1:
        dist.all_reduce(sums, group=group)
    s_v, s_r, s_a, s_abs, s_d, s_d2, s_r2, n = sums.tolist()
    n1 = max(n, 1.0)
    var = lambda s, s2: (s2 - s * s / n1) / max(n - 1, 1.0)
    return {
        "critic/values/mean": s_v / n1, "critic/returns/mean": s_r / n1, "critic/advantages/mean": s_a / n1,
        "critic/value_error": s_abs / n1,
        "critic/vf_explained_var": 1.0 - var(s_d, s_d2) / (var(s_r, s_r2) + 1e-5),
    }
