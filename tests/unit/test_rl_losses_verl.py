"""megatron_octo/rl/losses.py against verl, and the dual clip and the log-ratio clamp by hand.

Reference values: tests/reference/verl_golden.json, written by tests/reference/make_verl_golden.py from
verl's own functions (bodies unchanged) on the fixed inputs stored beside them (float64; masks with a
fully masked row; per-token and per-response advantages of both signs; log-ratios of +-25..45, past
verl's +-20 clamp and the dual clip's ratio 3 or 10; rollout-IS weights):

* ``5b98636684f9e4881697a4ad46ddf5bf6f8f5fdc``: verl-project/verl at that commit,
  ``verl/trainer/ppo/core_algos.py`` ``compute_policy_loss_vanilla`` (PPO: clip-higher, dual clip
  ``clip_ratio_c``, the +-20 clamp before ``exp``), ``compute_policy_loss_gspo`` and ``agg_loss``, with
  ``verl/utils/torch_functional.py``'s ``masked_sum`` / ``masked_mean``;
* ``...+PR5417``: the same with ``agg_loss`` as verl-project/verl PR #5417 (merged 2026-02-26) left it.

We reproduce the PR #5417 version of ``seq-mean-token-sum-norm``: the token sums' mean over the responses
that have a token, divided by the constant (``rl.loss_scale_factor``). Before it (5b98636 and all earlier
verl) the mode divided the *sum* over responses by the constant: the old value is ours times the number
of responses, which the last test checks. All other results are equal under both versions.

Tolerance: relative 1e-8, absolute 1e-8. Both sides compute in float64, but verl divides by
``count + 1e-8`` in ``masked_mean`` (the clip fractions, ``ppo_kl``) and per response in
``seq-mean-token-mean`` where we divide by the count itself: each such mean differs by a relative
1e-8 / count at most, and a mean over responses of both signs (values O(1) here) by up to 1e-8 absolute
(measured: 4e-8 relative, 3e-9 absolute). Nothing else differs.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from megatron_octo.rl.losses import agg_loss, kl_penalty, policy_loss
from tests.helpers import ROOT

GOLDEN = json.loads((ROOT / "tests/reference/verl_golden.json").read_text())
OLD = "5b98636684f9e4881697a4ad46ddf5bf6f8f5fdc"
NEW = OLD + "+PR5417"
SCALE = GOLDEN["scale_factor"]
POLICY = {label: [c for c in cases if c["kind"] != "kl"] for label, cases in GOLDEN["results"].items()}
KL = [c for c in GOLDEN["results"][NEW] if c["kind"] == "kl"]


def _ours(case: dict) -> dict:
    t = {k: torch.tensor(v, dtype=torch.float64) for k, v in GOLDEN["inputs"][case["inputs"]].items()}
    lp = t["log_prob"].clone().requires_grad_(True)
    out = policy_loss(lp, t["old_log_prob"], t["advantages"], t["response_mask"], clip_low=case["clip_low"],
                      clip_high=case["clip_high"], kind=case["kind"], loss_agg_mode=case["mode"], scale_factor=SCALE,
                      is_weights=t.get("rollout_is_weights"), clip_ratio_c=case["clip_ratio_c"])
    out.loss.backward()
    return dict(loss=out.loss.item(), grad=lp.grad.tolist(), pg_clipfrac=out.clip_fraction.item(),
                ppo_kl=out.approx_kl.item(), pg_clipfrac_lower=out.clip_fraction_lower.item(),
                agg_of_advantages=agg_loss(t["advantages"], t["response_mask"], case["mode"], SCALE).item())


def _close(got, want, key):
    torch.testing.assert_close(torch.tensor(got, dtype=torch.float64), torch.tensor(want, dtype=torch.float64),
                               rtol=1e-8, atol=1e-8, msg=lambda m: f"{key}: {m}")


def _id(case: dict) -> str:
    return f"{case['inputs']}-{case['kind']}-{case['mode']}-c{case['clip_ratio_c']}-clip{case['clip_high']}"


@pytest.mark.parametrize("case", POLICY[NEW], ids=_id)
def test_policy_loss_and_aggregation_equal_verls(case):
    """Loss, its gradient for every token, pg_clipfrac, pg_clipfrac_lower, ppo_kl, and agg_loss of an
    arbitrary matrix in the case's mode: PPO in all 4 aggregation modes and 2 dual-clip bounds, GSPO."""
    got = _ours(case)
    for key in ("loss", "grad", "pg_clipfrac", "ppo_kl", "pg_clipfrac_lower", "agg_of_advantages"):
        _close(got[key], case[key], key)
    assert all(math.isfinite(g) for row in got["grad"] for g in row)


def test_the_cases_cover_every_mode_both_losses_and_the_clamps():
    cases = POLICY[NEW]
    assert {c["mode"] for c in cases if c["kind"] == "ppo"} == {
        "token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"}
    assert {c["kind"] for c in cases} == {"ppo", "gspo"}
    stale = GOLDEN["inputs"]["stale"]
    log_ratio = torch.tensor(stale["log_prob"]) - torch.tensor(stale["old_log_prob"])
    on = torch.tensor(stale["response_mask"]) > 0
    assert log_ratio[on].max() > 20 and log_ratio[on].min() < -20  # both sides of verl's clamp
    assert any(c["pg_clipfrac_lower"] > 0 for c in cases)  # the dual clip acted


@pytest.mark.parametrize("case", POLICY[OLD], ids=_id)
def test_verl_before_pr5417_differs_only_in_seq_mean_token_sum_norm(case):
    """5b98636's seq-mean-token-sum-norm = sum over responses / constant = ours x the number of responses
    with a token (5 of the 6 rows); every other value is the same as ours."""
    got = _ours(case)
    rows = int((torch.tensor(GOLDEN["inputs"][case["inputs"]]["response_mask"]).sum(-1) > 0).sum())
    times = rows if case["mode"] == "seq-mean-token-sum-norm" else 1
    assert rows == 5
    for key in ("loss", "agg_of_advantages"):
        _close(got[key] * times, case[key], key)
    _close([[g * times for g in row] for row in got["grad"]], case["grad"], "grad")


@pytest.mark.parametrize("case", KL, ids=lambda c: f"{c['inputs']}-{c['mode']}")
def test_kl_estimators_equal_verls(case):
    """verl's kl_penalty (5b98636) with the old log-probs as the reference: per-token values and the
    gradient of their masked sum (the stale inputs reach the +-20 clamp and the k3 clamp at 10)."""
    t = {k: torch.tensor(v, dtype=torch.float64) for k, v in GOLDEN["inputs"][case["inputs"]].items()}
    lp = t["log_prob"].clone().requires_grad_(True)
    kl = kl_penalty(lp, t["old_log_prob"], case["mode"])
    (kl * t["response_mask"]).sum().backward()
    _close(kl.tolist(), case["kl"], "kl")
    _close(lp.grad.tolist(), case["grad"], "grad")


def test_low_var_kl_of_a_far_token_has_a_finite_gradient():
    """float32, log pi - log ref = -100: exp(100) is inf; verl clamps the exponent at 20 first, so the
    estimate is 10 (the outer clamp) with gradient 0 instead of NaN."""
    lp = torch.tensor([-100.0, 0.5], requires_grad=True)
    kl = kl_penalty(lp, torch.zeros(2), "low_var_kl")
    kl.sum().backward()
    assert kl[0].item() == 10.0 and kl[1].item() == pytest.approx(math.exp(-0.5) + 0.5 - 1)
    assert lp.grad.tolist() == pytest.approx([0.0, 1 - math.exp(-0.5)])


# ----- by hand ---------------------------------------------------------------------------------------
# clip 0.2 / 0.28, clip_ratio_c 3. Token log-ratios log 5, log 2, log 5, 0.1 and advantages -1, -1, +1, -1:
#   A = -1, r = 5:  max(5, 1.28) = 5, dual clip min(5, 3) = 3: bounded, no gradient;
#   A = -1, r = 2:  max(2, 1.28) = 2 < 3: unchanged, d/dlogp (-A r) = r = 2;
#   A = +1, r = 5:  max(-5, -1.28) = -1.28: clipped (no gradient); the dual clip is for A < 0 only;
#   A = -1, r = e^0.1: inside the clip range: e^0.1, gradient e^0.1.
def test_dual_clip_by_hand():
    old = torch.zeros(1, 4)
    lp = torch.tensor([[math.log(5.0), math.log(2.0), math.log(5.0), 0.1]], requires_grad=True)
    adv = torch.tensor([[-1.0, -1.0, 1.0, -1.0]])
    out = policy_loss(lp, old, adv, torch.ones(1, 4), clip_low=0.2, clip_high=0.28, clip_ratio_c=3.0)
    e = math.exp(0.1)
    assert out.token_loss.detach()[0].tolist() == pytest.approx([3.0, 2.0, -1.28, e])
    assert out.loss.item() == pytest.approx((3.0 + 2.0 - 1.28 + e) / 4)
    out.loss.backward()
    assert lp.grad[0].tolist() == pytest.approx([0.0, 2.0 / 4, 0.0, e / 4])
    # Token 2 only: for A < 0 and r > 1 + clip_high the unclipped term is the larger one, PPO's clip does
    # not bound it (5 > 1.28); the dual clip does.
    assert out.clip_fraction.item() == pytest.approx(1 / 4)
    assert out.clip_fraction_lower.item() == pytest.approx(1 / 4)  # token 0: bounded by the dual clip
    # A larger bound lets token 0 through: max(5, 1.28) = 5 < 10.
    wide = policy_loss(lp, old, adv, torch.ones(1, 4), clip_low=0.2, clip_high=0.28, clip_ratio_c=10.0)
    assert wide.token_loss[0, 0].item() == pytest.approx(5.0) and wide.clip_fraction_lower.item() == 0.0


def test_a_stale_token_has_a_bounded_loss_and_finite_gradients():
    """One token whose probability grew e^50-fold since the rollout (A < 0), one e^100-fold (A > 0) in
    float32: exp(100) overflows to inf, and without verl's +-20 clamp inf * 0 in the backward of max/min
    makes every gradient NaN. With the clamp and the dual clip: loss 3 and -1.28, gradients 0."""
    lp = torch.tensor([[50.0, 100.0, 0.0]], requires_grad=True)
    adv = torch.tensor([[-1.0, 1.0, 1.0]])
    out = policy_loss(lp, torch.zeros(1, 3), adv, torch.ones(1, 3), clip_low=0.2, clip_high=0.28)
    assert out.token_loss.detach()[0].tolist() == pytest.approx([3.0, -1.28, -1.0])
    out.loss.backward()
    assert torch.isfinite(lp.grad).all() and lp.grad[0].tolist() == pytest.approx([0.0, 0.0, -1 / 3])
    assert out.approx_kl.item() == pytest.approx(-(20.0 + 20.0 + 0.0) / 3)  # verl: from the clamped log-ratio


def test_gspo_has_no_dual_clip_as_verl():
    """verl's compute_policy_loss_gspo has neither the dual clip nor the +-20 clamp (its log-ratio is
    clamped at 10 above): a response with sequence ratio 5 and A = -1 keeps its loss 5."""
    lp = torch.full((1, 2), math.log(5.0), requires_grad=True)
    out = policy_loss(lp, torch.zeros(1, 2), -torch.ones(1, 2), torch.ones(1, 2), kind="gspo",
                      loss_agg_mode="seq-mean-token-mean", clip_ratio_c=3.0)
    assert out.loss.item() == pytest.approx(5.0) and out.clip_fraction_lower.item() == 0.0


@pytest.mark.parametrize("bad", [1.0, 0.5])
def test_clip_ratio_c_must_exceed_one(bad):
    with pytest.raises(ValueError, match="clip_ratio_c"):
        policy_loss(torch.zeros(1, 1), torch.zeros(1, 1), torch.ones(1, 1), torch.ones(1, 1), clip_ratio_c=bad)
