"""Policy, value, KL and entropy terms of the RL objective (verl's definitions).

All take ``[n, T]`` tensors and a response ``mask``. The default aggregation is the token mean over
every response token of the (mini-)batch ("token-mean", OctoThinker's and DAPO's setting), so long
responses weigh in proportion to their length; :func:`agg_loss` has verl's other ``loss_agg_mode``s.

Reference: verl's ``verl/trainer/ppo/core_algos.py`` at verl-project/verl commit
5b98636684f9e4881697a4ad46ddf5bf6f8f5fdc (``compute_policy_loss_vanilla``: dual clip, the +-20 clamp of
the log-ratio; ``compute_policy_loss_gspo``; ``agg_loss``), except ``seq-mean-token-sum-norm``, which
follows verl after PR #5417 (merged 2026-02-26): the masked sequence mean of the token sums divided by
the constant, where 5b98636 and earlier divided the *sum* over sequences by the constant.
tests/unit/test_rl_losses_verl.py compares every policy loss and aggregation mode with the values
verl's functions give (tests/reference/), docs/rl.md writes the formulas out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(x.dtype)
    return (x * m).sum() / m.sum().clamp(min=1.0)


def agg_parts(loss_mat: torch.Tensor, mask: torch.Tensor, mode: str = "token-mean",
              scale_factor: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(numerator, denominator) of verl's ``agg_loss`` (``loss = numerator / denominator``). Both are
    sums over rows, so the loss of a mini-batch split into micro-batches and data-parallel ranks is the
    sum of their numerators over the sum of their denominators, whatever the mode:

    * ``token-mean``: sum of token losses / number of tokens (DAPO; OctoThinker);
    * ``seq-mean-token-sum``: sum over a response's tokens, mean over responses;
    * ``seq-mean-token-mean``: mean over a response's tokens, mean over responses (GRPO's paper, GSPO);
    * ``seq-mean-token-sum-norm``: sum over a response's tokens / ``scale_factor`` (a constant: Dr. GRPO),
      mean over responses (verl since PR #5417, 2026-02-26; before it verl divided the *sum* over
      responses by the constant, i.e. this value times the number of responses).

    Responses with no token in ``mask`` are not counted (verl: "exclude fully masked sequences").
    """
    m = mask.to(loss_mat.dtype)
    tok_sum = (loss_mat * m).sum(dim=-1)
    den = agg_denominator(m, mode)
    if mode == "seq-mean-token-mean":
        return (tok_sum / m.sum(dim=-1).clamp(min=1.0)).sum(), den
    if mode == "seq-mean-token-sum-norm":
        return tok_sum.sum() / scale_factor, den
    return tok_sum.sum(), den


def agg_denominator(mask: torch.Tensor, mode: str = "token-mean") -> torch.Tensor:
    """:func:`agg_parts`' denominator: the masked tokens (token-mean) or the responses with any."""
    n_tok = mask.float().sum(dim=-1)
    if mode == "token-mean":
        return n_tok.sum()
    if mode in ("seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"):
        return (n_tok > 0).float().sum()
    raise ValueError(f"unknown loss_agg_mode {mode!r}")


def agg_loss(loss_mat: torch.Tensor, mask: torch.Tensor, mode: str = "token-mean",
             scale_factor: float = 1.0) -> torch.Tensor:
    """verl's ``agg_loss`` over one batch (see :func:`agg_parts`); 0 when nothing is masked in."""
    num, den = agg_parts(loss_mat, mask, mode, scale_factor)
    return num / den.clamp(min=1.0)


def rows_in_loss(useful: torch.Tensor | None, truncated: torch.Tensor, overlong_filter: bool) -> torch.Tensor:
    """``[n]`` bool: the rows whose tokens count in the loss: dynamic sampling's useful rows (all if
    ``useful`` is None), without the truncated ones under DAPO's overlong filtering."""
    rows = torch.ones_like(truncated, dtype=torch.bool) if useful is None else useful.bool()
    return rows & ~truncated.bool() if overlong_filter else rows


# verl clamps the log-ratio log pi - log pi_old to [-20, 20] before exp (compute_policy_loss_vanilla):
# exp(20) = 4.9e8 bounds the ratio of a stale token; the dual clip then bounds its loss for A < 0.
LOG_RATIO_CLAMP = 20.0


@dataclass
class PolicyLossOut:
    loss: torch.Tensor
    clip_fraction: torch.Tensor  # tokens where the clipped term won (verl's pg_clipfrac)
    approx_kl: torch.Tensor  # mean of (old - new) log-prob: PPO's k1 estimate of KL(old || new)
    token_loss: torch.Tensor  # [n, T] per-token surrogate (times the rollout-IS weights), for agg_parts
    clip_fraction_lower: torch.Tensor | None = None  # A < 0 tokens bounded by the dual clip (pg_clipfrac_lower)


def gspo_log_ratio(log_probs: torch.Tensor, old_log_probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """GSPO's (arXiv 2507.18071) sequence-level log importance ratio on every token of a response:
    ``log s_i = mean_t (log pi - log pi_old)`` over the response's tokens, in verl's form
    ``sg[log s_i] + log pi_t - sg[log pi_t]``: the value is the sequence's, the gradient of token t is
    that of ``log pi_t``, so that with ``seq-mean-token-mean`` the gradient is GSPO's
    ``s_i A_i grad log s_i``. Clamped at 10 as verl."""
    m = mask.to(log_probs.dtype)
    seq = ((log_probs - old_log_probs) * m).sum(dim=-1) / m.sum(dim=-1).clamp(min=1.0)
    return torch.clamp(log_probs - log_probs.detach() + seq.detach().unsqueeze(-1), max=10.0)


def policy_loss(log_probs: torch.Tensor, old_log_probs: torch.Tensor, advantages: torch.Tensor,
                mask: torch.Tensor, *, clip_low: float = 0.2, clip_high: float = 0.2, kind: str = "ppo",
                loss_agg_mode: str = "token-mean", scale_factor: float = 1.0,
                is_weights: torch.Tensor | None = None, clip_ratio_c: float = 3.0) -> PolicyLossOut:
    """PPO clipped surrogate with separate low/high clip ranges (DAPO's clip-higher when high > low),
    verl's ``compute_policy_loss_vanilla``:

    * ``log r = clamp(log pi - log pi_old, -20, 20)``, ``r = exp(log r)``;
    * ``L1 = max(-A r, -A clip(r, 1 - clip_low, 1 + clip_high))``;
    * dual clip (arXiv 1912.09729) for ``A < 0``: ``L = min(L1, -A clip_ratio_c)``, which bounds the loss
      (and zeroes the gradient) of a token whose ratio grew past ``clip_ratio_c``; ``A >= 0``: ``L = L1``;

    aggregated by ``loss_agg_mode``. ``kind="gspo"``: the ratio is the sequence's
    (:func:`gspo_log_ratio`, clamped at 10), no dual clip and no +-20 clamp (verl's
    ``compute_policy_loss_gspo``). ``is_weights``: rollout correction weights (detached) multiplying
    each token's loss (verl's rollout_is_weights)."""
    if not clip_ratio_c > 1.0:
        raise ValueError(f"clip_ratio_c must be > 1 (the dual clip's bound on the ratio), got {clip_ratio_c}")
    log_ratio = log_probs - old_log_probs
    if kind == "gspo":
        ratio = torch.exp(gspo_log_ratio(log_probs, old_log_probs, mask))
    elif kind == "ppo":
        log_ratio = torch.clamp(log_ratio, min=-LOG_RATIO_CLAMP, max=LOG_RATIO_CLAMP)
        ratio = torch.exp(log_ratio)
    else:
        raise ValueError(f"unknown policy loss {kind!r}; expected ppo or gspo")
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    token_loss = torch.maximum(unclipped, clipped)
    clip_fraction = masked_mean((clipped > unclipped).to(token_loss.dtype), mask)
    lower = torch.zeros((), dtype=token_loss.dtype, device=token_loss.device)
    if kind == "ppo":
        bound = -advantages * clip_ratio_c
        negative = advantages < 0
        lower = masked_mean(((token_loss > bound) & negative).to(token_loss.dtype), mask)
        token_loss = torch.where(negative, torch.minimum(bound, token_loss), token_loss)
    if is_weights is not None:
        token_loss = token_loss * is_weights.detach()
    loss = agg_loss(token_loss, mask, loss_agg_mode, scale_factor)
    # verl: PPO's from the clamped log-ratio, GSPO's from the token log-ratios as they are.
    approx_kl = masked_mean(-log_ratio, mask)
    return PolicyLossOut(loss=loss, clip_fraction=clip_fraction.detach(), approx_kl=approx_kl.detach(),
                         token_loss=token_loss, clip_fraction_lower=lower.detach())


def kl_penalty(log_probs: torch.Tensor, ref_log_probs: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-token estimate of KL(pi || ref) from samples of pi (Schulman's k1, k2, k3 = low_var_kl), verl's
    ``kl_penalty`` (5b98636): k3 = exp(d) - d - 1 with d = log ref - log pi clamped to [-20, 20] before
    exp (in float32 exp(d > 88) is inf and its gradient NaN), the result clamped to [-10, 10]."""
    log_ratio = log_probs - ref_log_probs
    if kind == "k1":
        return log_ratio
    if kind == "k2":
        return 0.5 * log_ratio.square()
    if kind == "low_var_kl":
        d = torch.clamp(-log_ratio, min=-LOG_RATIO_CLAMP, max=LOG_RATIO_CLAMP)
        return torch.clamp(torch.exp(d) - d - 1.0, min=-10.0, max=10.0)
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
