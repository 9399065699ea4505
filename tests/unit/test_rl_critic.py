"""PPO pieces against hand-computed values: the clipped value loss, GAE advantages from outcome
rewards and critic values (whitened), the critic's data metrics, the value head, and the PPO keys'
validation."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from megatron_octo import config as cfgmod
from megatron_octo.rl.critic import ValueHead
from megatron_octo.rl.losses import value_loss
from megatron_octo.rl.ppo import critic_data_metrics, gae_advantages
from megatron_octo.rl.checks import validate_rl
from tests.helpers import ROOT


def test_value_loss_clipped_by_hand():
    old = torch.tensor([[0.0, 0.0, 0.0]])
    v = torch.tensor([[1.2, 0.3, -2.0]])
    ret = torch.tensor([[1.0, 0.0, 0.0]])
    loss, frac = value_loss(v, old, ret, torch.ones(1, 3), clip=0.5)
    # token 0: v clipped to 0.5 -> max((1.2-1)^2, (0.5-1)^2) = 0.25 (clipped term chosen)
    # token 1: inside the range -> 0.09 both ways (not counted as clipped)
    # token 2: clipped to -0.5 -> max(4, 0.25) = 4 (unclipped term chosen)
    assert loss.item() == pytest.approx(0.5 * (0.25 + 0.09 + 4.0) / 3)
    assert frac.item() == pytest.approx(1 / 3)
    # Inside the clip range nothing counts as clipped, whatever the rounding of v - v_old.
    # (v_old + clamp(v - v_old) differs from v in the last bit for some of these and would count them.)
    g = torch.Generator().manual_seed(0)
    vr = torch.randn(1, 1000, generator=g) * 3
    near = vr + torch.rand(1, 1000, generator=g) * 0.8 - 0.4
    _, frac = value_loss(vr, near, torch.randn(1, 1000, generator=g) * 3, torch.ones(1, 1000), clip=0.5)
    assert frac.item() == 0.0
    # Gradient: only the unclipped tokens (and those where the unclipped term is larger) train v.
    v = torch.tensor([[1.2, 0.3, -2.0]], requires_grad=True)
    value_loss(v, old, torch.tensor([[1.0, 0.0, 0.0]]), torch.ones(1, 3), clip=0.5)[0].backward()
    assert v.grad[0].tolist() == pytest.approx([0.0, 0.3 / 3, -2.0 / 3])


def test_gae_advantages_by_hand():
    # Two responses (row 0: 3 tokens after a 1-token prompt; row 1: 2 tokens, right padding).
    mask = torch.tensor([[0.0, 1.0, 1.0, 1.0], [0.0, 1.0, 1.0, 0.0]])
    values = torch.tensor([[9.0, 0.5, 0.25, 0.75], [9.0, -0.5, 0.5, 9.0]])
    scores = torch.tensor([1.0, -1.0])
    adv, ret = gae_advantages(scores, values, mask, gamma=1.0, lam=1.0)
    # gamma = lam = 1, reward only at the end: A_t = score - V_t, return = score on every token.
    raw = [1 - 0.5, 1 - 0.25, 1 - 0.75, -1 + 0.5, -1 - 0.5]
    assert ret.tolist() == [[0.0, 1.0, 1.0, 1.0], [0.0, -1.0, -1.0, 0.0]]
    mean = sum(raw) / 5
    std = math.sqrt(sum((x - mean) ** 2 for x in raw) / 4)  # unbiased, as verl's masked_whiten
    want = [(x - mean) / std for x in raw]
    got = adv[mask > 0].tolist()
    assert got == pytest.approx(want, rel=1e-5)
    assert adv[mask == 0].abs().sum() == 0
    # gamma = 0.5, lam = 1: A_2 = r - V_2; A_1 = 0.5*V_2 - V_1 + 0.5*A_2 ... (row 0 only).
    adv, ret = gae_advantages(scores[:1], values[:1], mask[:1], gamma=0.5, lam=1.0)
    a3 = 1 - 0.75
    a2 = 0.5 * 0.75 - 0.25 + 0.5 * a3
    a1 = 0.5 * 0.25 - 0.5 + 0.5 * a2
    assert ret[0, 1:].tolist() == pytest.approx([a1 + 0.5, a2 + 0.25, a3 + 0.75])
    raw = torch.tensor([a1, a2, a3])
    assert adv[0, 1:].tolist() == pytest.approx(((raw - raw.mean()) / raw.std()).tolist(), rel=1e-5)


def test_gae_advantages_removed_rows_get_zero_and_do_not_count():
    mask = torch.ones(3, 2)
    values = torch.tensor([[0.0, 0.0], [0.5, 0.5], [7.0, 7.0]])
    scores = torch.tensor([1.0, 1.0, 1.0])
    adv, ret = gae_advantages(scores, values, mask, gamma=1.0, lam=1.0, keep=torch.tensor([True, True, False]))
    assert adv[2].tolist() == [0.0, 0.0] and ret[2].tolist() == [1.0, 1.0]  # the critic still learns it
    x = torch.tensor([1.0, 1.0, 0.5, 0.5])
    assert adv[:2].reshape(-1).tolist() == pytest.approx(((x - x.mean()) / x.std()).tolist(), rel=1e-5)


def test_critic_data_metrics_by_hand():
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    values = torch.tensor([[0.0, 1.0, 50.0], [2.0, 50.0, 50.0]])
    returns = torch.tensor([[1.0, 1.0, 0.0], [4.0, 0.0, 0.0]])
    adv = torch.tensor([[0.5, -0.5, 9.0], [0.3, 9.0, 9.0]])
    m = critic_data_metrics(values, returns, adv, mask)
    r, d = torch.tensor([1.0, 1.0, 4.0]), torch.tensor([1.0, 0.0, 2.0])
    assert m["critic/values/mean"] == pytest.approx(1.0)
    assert m["critic/returns/mean"] == pytest.approx(2.0)
    assert m["critic/advantages/mean"] == pytest.approx(0.1)
    assert m["critic/value_error"] == pytest.approx(1.0)
    assert m["critic/vf_explained_var"] == pytest.approx(1 - d.var().item() / (r.var().item() + 1e-5))


def test_value_head_is_seeded_and_averaged_over_tp():
    cfg = SimpleNamespace(hidden_size=8, init_method_std=0.02, params_dtype=torch.float32, sequence_parallel=False)
    a, b, c = ValueHead(cfg, seed=3), ValueHead(cfg, seed=3), ValueHead(cfg, seed=4)
    assert torch.equal(a.weight, b.weight) and not torch.equal(a.weight, c.weight)
    assert a.weight.average_gradients_across_tp_domain  # megatron's finalize_model_grads syncs it over TP
    h = torch.randn(5, 2, 8)  # [s, b, h]
    out, bias = a(h, weight=torch.zeros(3))  # GPTModel passes its output weight; the head ignores it
    assert bias is None and out.shape == (5, 2, 1)
    assert torch.allclose(out[..., 0], h @ a.weight[0])


@pytest.mark.parametrize("override,key", [
    ("rl.algorithm=ppo2", "rl.algorithm"), ("rl.vf_clip=0", "rl.vf_clip"), ("rl.critic_lr=0", "rl.critic_lr"),
    ("rl.gamma=1.5", "rl.gamma"), ("rl.lam=-0.1", "rl.lam"), ("rl.critic_warmup_steps=-1", "rl.critic_warmup_steps"),
])
def test_ppo_config_errors_name_the_key(tmp_path, override, key):
    cfg = cfgmod.load(str(ROOT / "recipes/tiny/rl_ppo.yaml"), [
        f"checkpoint.init_from={tmp_path}", f"rl.prompts={ROOT}/data/rl/math8k.jsonl.gz", override])
    with pytest.raises(cfgmod.ConfigError, match=f"'{key}'"):
        validate_rl(cfg, 1, have_gpu=False, have_te=False)
    ok = cfgmod.load(str(ROOT / "recipes/tiny/rl_ppo.yaml"), [
        f"checkpoint.init_from={tmp_path}", f"rl.prompts={ROOT}/data/rl/math8k.jsonl.gz"])
    validate_rl(ok, 1, have_gpu=False, have_te=False)


def test_paper_ppo_recipe_validates_with_verl_critic_defaults(tmp_path):
    cfg = cfgmod.load(str(ROOT / "recipes/octothinker/llama3.2-3b/rl_ppo.yaml"), [
        f"checkpoint.init_from={tmp_path}", f"rl.prompts={ROOT}/data/rl/math8k.jsonl.gz"])
    validate_rl(cfg, 8, have_gpu=True, have_te=True)
    r = cfg.rl
    assert (r.algorithm, r.prompts_per_step, r.samples_per_prompt, r.mini_batch_prompts, r.lr) == \
        ("ppo", 128, 16, 64, 1e-6)
    assert (r.critic_lr, r.vf_clip, r.gamma, r.lam, r.critic_warmup_steps) == (1e-5, 0.5, 1.0, 1.0, 0)
