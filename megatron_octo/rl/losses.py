"""Policy, value, KL and entropy terms of the RL objective (verl's definitions).

All take ``[n, T]`` tensors and a response ``mask``; aggregation is the token mean over every
response token of the (mini-)batch ("token-mean", OctoThinker's setting), so long responses weigh
in proportion to their length.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(x.dtype)
    return (x * m).sum() / m.sum().clamp(min=1.0)


@dataclass
class PolicyLossOut:
    loss: torch.Tensor
    clip_fraction: torch.Tensor
    approx_kl: torch.Tensor  # mean of (old - new) log-prob: PPO's k1 estimate of KL(old || new)


def policy_loss(log_probs: torch.Tensor, old_log_probs: torch.Tensor, advantages: torch.Tensor,
                mask: torch.Tensor, *, clip_low: float = 0.2, clip_high: float = 0.2) -> PolicyLossOut:
    """PPO clipped surrogate with separate low/high clip ranges (DAPO's clip-higher when high > low):
    ``-min(ratio * A, clip(ratio, 1 - clip_low, 1 + clip_high) * A)``, token-mean."""
    log_ratio = log_probs - old_log_probs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clip_fraction = masked_mean((clipped > unclipped).float(), mask)
    approx_kl = masked_mean(-log_ratio, mask)
    return PolicyLossOut(loss=loss, clip_fraction=clip_fraction.detach(), approx_kl=approx_kl.detach())


def kl_penalty(log_probs: torch.Tensor, ref_log_probs: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-token estimate of KL(pi || ref) from samples of pi (Schulman's k1, k2, k3 = low_var_kl)."""
    log_ratio = log_probs - ref_log_probs
    if kind == "k1":
        return log_ratio
    if kind == "k2":
        return 0.5 * log_ratio.square()
    if kind == "low_var_kl":
        # k3 = ratio - 1 - log(ratio) with ratio = ref/pi; clamped as verl does for stability.
        kl = torch.exp(-log_ratio) - 1.0 + log_ratio
        return torch.clamp(kl, min=-10.0, max=10.0)
    raise ValueError(f"unknown KL estimator {kind!r}; expected k1, k2 or low_var_kl")


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, *,
               clip: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped value loss 0.5 * max((v - R)^2, (clip(v, v_old +- c) - R)^2), token-mean; and the
    fraction of tokens where the clipped term was chosen."""
    # clamp(v, v_old - c, v_old + c) (verl's clip_by_value), not v_old + clamp(v - v_old): inside the
    # range it returns v itself, so rounding never counts an unclipped token as clipped.
    clipped_v = torch.clamp(values, old_values - clip, old_values + clip)
    a = (values - returns).square()
    b = (clipped_v - returns).square()
    loss = 0.5 * masked_mean(torch.maximum(a, b), mask)
    return loss, masked_mean((b > a).float(), mask).detach()
