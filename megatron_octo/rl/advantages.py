"""Advantage estimators: GRPO's group-normalised outcome rewards and PPO's GAE.

Shapes: responses are rows of a ``[n, T]`` batch with a ``mask`` (1 on response tokens). Outcome
rewards are one scalar per response; GAE puts it on the response's last token (verl's layout).
"""

from __future__ import annotations

import torch


def grpo_advantages(rewards: torch.Tensor, group_size: int, *, normalize_std: bool = True,
                    eps: float = 1e-6) -> torch.Tensor:
    """Per-response advantage: (r - mean of its group) [/ (std of its group + eps)].

    ``rewards`` is ``[n]`` with the ``group_size`` samples of each prompt adjacent. std is the
    unbiased sample std (torch.std, as verl's GRPO); ``normalize_std=False`` is Dr. GRPO's variant.
    """
    if rewards.dim() != 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards of shape {tuple(rewards.shape)} do not split into groups of {group_size}")
    groups = rewards.float().view(-1, group_size)
    adv = groups - groups.mean(dim=1, keepdim=True)
    if normalize_std:
        std = groups.std(dim=1, keepdim=True) if group_size > 1 else torch.ones_like(groups[:, :1])
        adv = adv / (std + eps)
    return adv.reshape(-1)


def broadcast_to_tokens(per_response: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[n]`` -> ``[n, T]`` on the response tokens (0 elsewhere)."""
    return per_response.view(-1, 1).to(mask.dtype) * mask


def gae(token_rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, *, gamma: float = 1.0,
        lam: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over each row's response tokens.

    ``token_rewards``, ``values``, ``mask``: ``[n, T]``; the value after a row's last response token
    is 0 (the episode ends). Returns (advantages, returns = advantages + values), both 0 off-mask.
    Masked positions are skipped, so left/right padding does not leak into the recursion.
    """
    n, t_len = token_rewards.shape
    adv = torch.zeros_like(token_rewards, dtype=torch.float32)
    next_value = torch.zeros(n, dtype=torch.float32, device=values.device)
    running = torch.zeros(n, dtype=torch.float32, device=values.device)
    m = mask.float()
    r, v = token_rewards.float(), values.float()
    for t in reversed(range(t_len)):
        delta = r[:, t] + gamma * next_value - v[:, t]
        running_t = delta + gamma * lam * running
        # Off-mask positions keep the state of the token after them untouched.
        running = torch.where(m[:, t] > 0, running_t, running)
        next_value = torch.where(m[:, t] > 0, v[:, t], next_value)
        adv[:, t] = running * m[:, t]
    returns = (adv + v) * m
    return adv, returns


def outcome_to_last_token(rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[n]`` outcome rewards placed on each row's last response token: ``[n, T]``."""
    out = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    last = torch.where(mask > 0, positions, torch.full_like(positions, -1)).max(dim=1).values
    rows = torch.nonzero(last >= 0).view(-1)
    out[rows, last[rows]] = rewards.float()[rows]
    return out


def whiten(values: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8, group=None) -> torch.Tensor:
    """Normalise over the masked entries, 0 elsewhere (PPO's advantage whitening; verl's
    masked_whiten: unbiased variance). With a process ``group``, over the entries of all its ranks."""
    m = mask.double()
    x = values.double()
    sums = torch.stack([(x * m).sum(), (x.square() * m).sum(), m.sum()])
    if group is not None and torch.distributed.get_world_size(group) > 1:
        torch.distributed.all_reduce(sums, group=group)
    total, total_sq, n = sums.unbind()
    mean = total / n.clamp(min=1)
    var = (total_sq - n * mean.square()).clamp(min=0) / (n - 1).clamp(min=1)
    return ((x - mean) * torch.rsqrt(var + eps) * m).to(values.dtype)
