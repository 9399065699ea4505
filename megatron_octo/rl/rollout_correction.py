"""Rollout correction: the rollout engine's per-token log-probs against the trainer's.

The engine samples from pi_rollout; the update's old policy is the trainer's forward pass pi_old on
the same tokens. They are the same weights, but different kernels (KV cache, batching, on a GPU other
GEMMs or precision) make them differ, and a large gap is the first sign of the train/rollout
mismatch that precedes RL collapse. ``training/rollout_logprob_diff`` (mean and max of
``|log pi_old - log pi_rollout|`` over the response tokens) is logged every step; ``rl.rollout_is``
corrects the policy gradient with the importance ratio ``pi_old / pi_rollout`` per token:

* ``tis``: truncated importance sampling, weight ``min(ratio, threshold)`` (Yao et al., "Your
  efficient RL framework secretly brings you off-policy RL training"; verl ``rollout_is_mode=truncate``);
* ``mis``: masked importance sampling, weight ``ratio`` on tokens with ``1/threshold <= ratio <=
  threshold``; the others are taken out of the loss and its denominator (verl ``rollout_is_mode=mask``).
"""

from __future__ import annotations

from typing import Optional

import torch

SAFETY_BOUND = 20.0  # |log ratio| cap before exp (verl's)


def logprob_diff(old_log_probs: torch.Tensor, rollout_log_probs: torch.Tensor,
                 mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum, max) of ``|old - rollout|`` over the masked tokens (sums so ranks can add them up)."""
    on = mask > 0
    d = (old_log_probs - rollout_log_probs).abs()[on]
    if d.numel() == 0:
        z = old_log_probs.new_zeros(())
        return z, z.clone()
    return d.sum(), d.max()


def rollout_is_weights(old_log_probs: torch.Tensor, rollout_log_probs: torch.Tensor, mask: torch.Tensor,
                       mode: str, threshold: float) -> tuple[Optional[torch.Tensor], torch.Tensor]:
    """(per-token weights or None, the loss mask to use). ``mode``: none | tis | mis."""
    if mode == "none":
        return None, mask
    ratio = torch.exp(torch.clamp(old_log_probs - rollout_log_probs, -SAFETY_BOUND, SAFETY_BOUND)).detach()
    if mode == "tis":
        return torch.clamp(ratio, max=threshold), mask
    if mode == "mis":
        inside = (ratio >= 1.0 / threshold) & (ratio <= threshold)
        return ratio * inside, mask * inside.to(mask.dtype)
    raise ValueError(f"unknown rollout_is {mode!r}; expected none, tis or mis")
