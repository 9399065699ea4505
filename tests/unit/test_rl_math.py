"""GRPO advantages, GAE, PPO losses, KL estimators and the length stairs against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from megatron_octo.rl.advantages import broadcast_to_tokens, gae, grpo_advantages, outcome_to_last_token, whiten
from megatron_octo.rl.length_schedule import max_response_length, parse_stairs
from megatron_octo.rl.losses import kl_penalty, masked_mean, policy_loss, value_loss


def test_grpo_with_and_without_std():
    r = torch.tensor([1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    a = grpo_advantages(r, 4)
    s = math.sqrt(4 / 3)  # unbiased std of [1, -1, -1, 1]
    assert a[:4].tolist() == pytest.approx([1 / s, -1 / s, -1 / s, 1 / s], rel=1e-5)
    assert a[4:].tolist() == [0.0] * 4  # a uniform group carries no signal
    assert grpo_advantages(r, 4, normalize_std=False)[:4].tolist() == [1.0, -1.0, -1.0, 1.0]
    with pytest.raises(ValueError, match="groups of 3"):
        grpo_advantages(r, 3)


def test_gae_by_hand():
    r = torch.tensor([[0.0, 0.0, 1.0]])
    v = torch.tensor([[0.5, 0.6, 0.7]])
    m = torch.ones(1, 3)
    adv, ret = gae(r, v, m, gamma=1.0, lam=1.0)
    assert adv[0].tolist() == pytest.approx([0.5, 0.4, 0.3])
    assert ret[0].tolist() == pytest.approx([1.0, 1.0, 1.0])
    adv, _ = gae(r, v, m, gamma=0.9, lam=0.5)
    # delta = [0.9*0.6-0.5, 0.9*0.7-0.6, 1-0.7]; A_t = delta_t + 0.45 * A_{t+1}
    assert adv[0].tolist() == pytest.approx([0.04 + 0.45 * (0.03 + 0.45 * 0.3), 0.03 + 0.45 * 0.3, 0.3])


def test_gae_ignores_padding_on_both_sides():
    r = torch.tensor([[0.0, 0.0, 0.0, 1.0, 0.0]])
    v = torch.tensor([[9.0, 0.5, 0.6, 0.7, 9.0]])
    m = torch.tensor([[0.0, 1.0, 1.0, 1.0, 0.0]])
    adv, ret = gae(r, v, m)
    assert adv[0].tolist() == pytest.approx([0.0, 0.5, 0.4, 0.3, 0.0])
    assert ret[0, 0] == 0 and ret[0, 4] == 0


def test_outcome_reward_on_last_response_token_and_broadcast():
    m = torch.tensor([[1, 1, 0], [0, 1, 1], [0, 0, 0]])
    out = outcome_to_last_token(torch.tensor([2.0, -1.0, 5.0]), m)
    assert out.tolist() == [[0.0, 2.0, 0.0], [0.0, 0.0, -1.0], [0.0, 0.0, 0.0]]
    assert broadcast_to_tokens(torch.tensor([2.0, -1.0, 5.0]), m.float()).tolist() == \
        [[2.0, 2.0, 0.0], [0.0, -1.0, -1.0], [0.0, 0.0, 0.0]]


def test_policy_loss_clipping_by_hand():
    old = torch.zeros(1, 3)
    new = torch.log(torch.tensor([[1.5, 0.5, 1.1]]))
    adv = torch.tensor([[1.0, -1.0, 1.0]])
    out = policy_loss(new, old, adv, torch.ones(1, 3), clip_low=0.2, clip_high=0.2)
    # token 0: ratio 1.5 clipped to 1.2 -> -1.2; token 1: A<0, ratio 0.5 clipped to 0.8 -> 0.8;
    # token 2: ratio 1.1 inside the range -> -1.1
    assert out.loss.item() == pytest.approx((-1.2 + 0.8 - 1.1) / 3)
    assert out.clip_fraction.item() == pytest.approx(2 / 3)
    # Clip-higher: a wider upper range lets token 0 keep ratio 1.5.
    hi = policy_loss(new, old, adv, torch.ones(1, 3), clip_low=0.2, clip_high=0.6)
    assert hi.loss.item() == pytest.approx((-1.5 + 0.8 - 1.1) / 3)
    # Masked tokens do not count; token-mean over the remaining ones.
    masked = policy_loss(new, old, adv, torch.tensor([[1.0, 0.0, 1.0]]))
    assert masked.loss.item() == pytest.approx((-1.2 - 1.1) / 2)
    assert out.approx_kl.item() == pytest.approx(-(math.log(1.5) + math.log(0.5) + math.log(1.1)) / 3)


def test_policy_gradient_direction():
    logp = torch.zeros(1, 2, requires_grad=True)
    policy_loss(logp, torch.zeros(1, 2), torch.tensor([[1.0, -1.0]]), torch.ones(1, 2)).loss.backward()
    assert logp.grad[0, 0] < 0 < logp.grad[0, 1]  # descent raises the positive-advantage token


def test_kl_estimators_by_hand():
    lp, ref = torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)])
    d = math.log(2.0)
    assert kl_penalty(lp, ref, "k1").item() == pytest.approx(d)
    assert kl_penalty(lp, ref, "k2").item() == pytest.approx(0.5 * d * d)
    assert kl_penalty(lp, ref, "low_var_kl").item() == pytest.approx(0.5 - 1 + d)  # r - 1 - log r, r = 1/2
    assert kl_penalty(lp, lp, "low_var_kl").item() == 0.0
    with pytest.raises(ValueError, match="k1, k2 or low_var_kl"):
        kl_penalty(lp, ref, "k4")


def test_kl_estimators_are_unbiased_or_consistent_in_expectation():
    torch.manual_seed(0)
    p = torch.tensor([0.6, 0.3, 0.1])
    q = torch.tensor([0.3, 0.3, 0.4])
    true_kl = float((p * (p / q).log()).sum())
    x = torch.multinomial(p, 200000, replacement=True)
    lp, lq = p.log()[x], q.log()[x]
    assert kl_penalty(lp, lq, "k1").mean().item() == pytest.approx(true_kl, abs=0.01)
    assert kl_penalty(lp, lq, "low_var_kl").mean().item() == pytest.approx(true_kl, abs=0.01)


def test_value_loss_and_whiten():
    v, old, ret = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    loss, frac = value_loss(v, old, ret, torch.ones(1, 2), clip=0.5)
    # token 0: max((1-0)^2, (0.5-0)^2) = 1; token 1: max(1, 1) = 1 -> 0.5 * mean = 0.5
    assert loss.item() == pytest.approx(0.5) and frac.item() == 0.0
    w = whiten(torch.tensor([[1.0, 2.0, 3.0, 100.0]]), torch.tensor([[1.0, 1.0, 1.0, 0.0]]))
    assert w[0, :3].mean().item() == pytest.approx(0.0, abs=1e-6) and w[0, 3] == 0
    assert masked_mean(torch.tensor([1.0, 3.0]), torch.tensor([1.0, 0.0])).item() == 1.0


def test_length_stairs():
    stairs = parse_stairs({0: 2048, 100: 4096, 160: 8192})
    assert [max_response_length(s, stairs) for s in (0, 99, 100, 159, 160, 1000)] == \
        [2048, 2048, 4096, 4096, 8192, 8192]
    with pytest.raises(ValueError, match="must define step 0"):
        parse_stairs({10: 2048})
    with pytest.raises(ValueError, match="entry 5"):
        parse_stairs({0: 1024, 5: 0})
    with pytest.raises(ValueError, match="empty"):
        parse_stairs({})
