"""Policy, value, KL and entropy terms of the RL objective (verl's definitions).

All take ``[n, T]`` tensors and a response ``mask``. The default aggregation is the token mean over
every response token of the (mini-)batch ("token-mean", OctoThinker's and DAPO's setting), so long
responses weigh in proportion to their length; :func:`agg_loss` has verl's other ``loss_agg_mode``s.
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
      mean over responses.

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


@dataclass
class PolicyLossOut:
    loss: torch.Tensor
    clip_fraction: torch.Tensor
    approx_kl: torch.Tensor  # mean of (old - new) log-prob: PPO's k1 estimate of KL(old || new)
    token_loss: torch.Tensor  # [n, T] per-token surrogate (times the rollout-IS weights), for agg_parts


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
                is_weights: torch.Tensor | None = None) -> PolicyLossOut:
    """PPO clipped surrogate with separate low/high clip ranges (DAPO's clip-higher when high > low):
    ``-min(ratio * A, clip(ratio, 1 - clip_low, 1 + clip_high) * A)``, aggregated by ``loss_agg_mode``.
    ``kind="gspo"``: the ratio is the sequence's (:func:`gspo_log_ratio`). ``is_weights``: rollout
    correction weights (detached) multiplying each token's surrogate (verl's rollout_is_weights)."""
    log_ratio = log_probs - old_log_probs
    if kind == "gspo":
        ratio = torch.exp(gspo_log_ratio(log_probs, old_log_probs, mask))
    elif kind == "ppo":
        ratio = torch.exp(log_ratio)
    else:
        raise ValueError(f"unknown policy loss {kind!r}; expected ppo or gspo")
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    token_loss = torch.maximum(unclipped, clipped)
    if is_weights is not None:
        token_loss = token_loss * is_weights.detach()
    loss = agg_loss(token_loss, mask, loss_agg_mode, scale_factor)
    clip_fraction = masked_mean((clipped > unclipped).float(), mask)
    approx_kl = masked_mean(-log_ratio, mask)
    return PolicyLossOut(loss=loss, clip_fraction=clip_fraction.detach(), approx_kl=approx_kl.detach(),
                         token_loss=token_loss)


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
