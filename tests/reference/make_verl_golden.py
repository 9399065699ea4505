"""Writes the verl reference values that tests/unit/test_rl_losses_verl.py compares
``megatron_octo/rl/losses.py`` with.

    python tests/reference/make_verl_golden.py OUT.json REF.py=LABEL [REF2.py=LABEL2 ...]

Each ``REF.py`` is a module holding verl's own ``agg_loss``, ``compute_policy_loss_vanilla`` and
``compute_policy_loss_gspo`` (``verl/trainer/ppo/core_algos.py``) with ``verl_F.masked_sum`` /
``masked_mean`` (``verl/utils/torch_functional.py``), their bodies unchanged, plus a
``make_config(clip_ratio_low, clip_ratio_high, clip_ratio_c, loss_scale_factor)`` returning the
``ActorConfig`` those functions read (``clip_ratio``, ``clip_ratio_low/high``, ``get("clip_ratio_c")``,
``global_batch_info``, an ``isinstance`` check in GSPO); and verl's ``kl_penalty`` (with
``kl_penalty_forward``) for the KL estimators. verl itself is not a dependency of this project
(it needs Ray, vLLM/SGLang, a GPU stack): the module is assembled from a verl checkout by hand, and only
the numbers it gives are kept (``tests/reference/verl_golden.json``, one result set per LABEL, which
names the verl version). The stored labels: ``5b98636684f9e4881697a4ad46ddf5bf6f8f5fdc``, verl-project/verl
at that commit; ``5b98636684f9e4881697a4ad46ddf5bf6f8f5fdc+PR5417``, the same with ``agg_loss`` as
verl-project/verl PR #5417 (merged 2026-02-26) left it: ``seq-mean-token-sum-norm`` joined the
``seq-mean-token-sum`` branch (masked mean over responses) before the division by ``loss_scale_factor``.

The inputs are fixed here (stored in the JSON as well): float64, masks with a fully masked row,
negative and positive advantages, log-ratios far beyond verl's +-20 clamp, rollout-IS weights.
"""

from __future__ import annotations

import importlib.util
import json
import sys

import torch

MODES = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")
SCALE_FACTOR = 8.0  # seq-mean-token-sum-norm's constant (verl's loss_scale_factor)


def inputs() -> dict[str, dict[str, list]]:
    g = torch.Generator().manual_seed(20260305)
    n, t = 6, 10
    spans = [(0, 10), (2, 9), (4, 7), (9, 10), (0, 0), (3, 8)]  # one token, and a row with none
    mask = torch.zeros(n, t, dtype=torch.float64)
    for i, (a, b) in enumerate(spans):
        mask[i, a:b] = 1.0
    logp = -3.0 * torch.rand(n, t, generator=g, dtype=torch.float64)
    sets = {}
    # Small policy changes: ratios around the clip range, per-token advantages of both signs.
    sets["near"] = dict(log_prob=logp, old_log_prob=logp + 0.3 * torch.randn(n, t, generator=g, dtype=torch.float64),
                        advantages=torch.randn(n, t, generator=g, dtype=torch.float64), response_mask=mask)
    # Stale tokens: log-ratios of +-25..45 (past verl's +-20 clamp) and ratios past the dual clip's 3.
    delta = torch.randn(n, t, generator=g, dtype=torch.float64)
    delta[:, ::3] *= 30.0
    delta[1, 3], delta[3, 9], delta[5, 4] = 45.0, -38.0, 25.0
    sets["stale"] = dict(log_prob=logp, old_log_prob=logp - delta,
                         advantages=torch.randn(n, t, generator=g, dtype=torch.float64).sign() * 1.5,
                         response_mask=mask)
    # GRPO-like: one advantage per response, with rollout-IS weights (truncated at 2).
    adv = torch.randn(n, 1, generator=g, dtype=torch.float64).expand(n, t).clone()
    sets["grpo_is"] = dict(log_prob=logp, old_log_prob=logp + 1.2 * torch.randn(n, t, generator=g, dtype=torch.float64),
                           advantages=adv, response_mask=mask,
                           rollout_is_weights=(2.5 * torch.rand(n, t, generator=g, dtype=torch.float64)).clamp(max=2.0))
    return {k: {name: v.tolist() for name, v in d.items()} for k, d in sets.items()}


def cases() -> list[dict]:
    out = []
    for mode in MODES:
        out.append(dict(kind="ppo", mode=mode, clip_low=0.2, clip_high=0.28, clip_ratio_c=3.0))
    out.append(dict(kind="ppo", mode="token-mean", clip_low=0.2, clip_high=0.2, clip_ratio_c=10.0))
    out.append(dict(kind="gspo", mode="seq-mean-token-mean", clip_low=0.2, clip_high=0.28, clip_ratio_c=3.0))
    out.append(dict(kind="gspo", mode="seq-mean-token-mean", clip_low=3e-4, clip_high=4e-4, clip_ratio_c=3.0))
    return out


def run(ref, data: dict, case: dict) -> dict:
    t = {k: torch.tensor(v, dtype=torch.float64) for k, v in data.items()}
    log_prob = t["log_prob"].clone().requires_grad_(True)
    config = ref.make_config(case["clip_low"], case["clip_high"], case["clip_ratio_c"], SCALE_FACTOR)
    fn = ref.compute_policy_loss_vanilla if case["kind"] == "ppo" else ref.compute_policy_loss_gspo
    loss, metrics = fn(t["old_log_prob"], log_prob, t["advantages"], t["response_mask"], loss_agg_mode=case["mode"],
                       config=config, rollout_is_weights=t.get("rollout_is_weights"))
    loss.backward()
    agg = ref.agg_loss(loss_mat=t["advantages"], loss_mask=t["response_mask"], loss_agg_mode=case["mode"],
                       loss_scale_factor=SCALE_FACTOR)
    return dict(loss=loss.item(), grad=log_prob.grad.tolist(), pg_clipfrac=metrics["actor/pg_clipfrac"],
                ppo_kl=metrics["actor/ppo_kl"], pg_clipfrac_lower=metrics["actor/pg_clipfrac_lower"],
                agg_of_advantages=agg.item())


def run_kl(ref, data: dict, kind: str) -> dict:
    """verl's kl_penalty(log_prob, ref_log_prob, kind) with the inputs' old log-probs as the reference: the
    per-token values and the gradient of their masked sum."""
    t = {k: torch.tensor(v, dtype=torch.float64) for k, v in data.items()}
    log_prob = t["log_prob"].clone().requires_grad_(True)
    kl = ref.kl_penalty(log_prob, t["old_log_prob"], kind)
    (kl * t["response_mask"]).sum().backward()
    return dict(kl=kl.tolist(), grad=log_prob.grad.tolist())


def main(argv: list[str]) -> None:
    out_path, *refs = argv
    data = inputs()
    results = {}
    for n, ref_arg in enumerate(refs):
        path, label = ref_arg.split("=", 1)
        spec = importlib.util.spec_from_file_location(f"verl_reference_{n}", path)
        ref = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(ref)
        results[label] = [dict(inputs=name, **case, **run(ref, d, case))
                          for name, d in data.items() for case in cases()]
        results[label] += [dict(inputs=name, kind="kl", mode=kind, **run_kl(ref, d, kind))
                           for name, d in data.items() for kind in ("k1", "k2", "low_var_kl")]
    with open(out_path, "w") as f:
        json.dump(dict(scale_factor=SCALE_FACTOR, inputs=data, results=results), f)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1:])
