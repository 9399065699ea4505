"""The stable-then-decay schedule against megatron-core's own single-run WSD schedule, the LR the
param groups hold after a checkpoint load, and the resume policy."""

from __future__ import annotations

import pytest
import torch
from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler
from omegaconf import OmegaConf

from megatron_octo.config import Config, ConfigError
from megatron_octo.schedule import (ScheduleState, applied_lr, applied_weight_decay, build_scheduler, constant,
                                    lr_trajectory, planned, reconcile, resume)


class _Opt:
    def __init__(self):
        self.param_groups = [{}]


def _megatron_wsd(total, decay, warmup, peak, floor, style, init_lr=0.0):
    return OptimizerParamScheduler(_Opt(), init_lr=init_lr, max_lr=peak, min_lr=floor, lr_warmup_steps=warmup,
                                   lr_decay_steps=total, lr_decay_style="WSD", start_wd=0.1, end_wd=0.1,
                                   wd_incr_steps=1, wd_incr_style="constant", wsd_decay_steps=decay,
                                   lr_wsd_decay_style=style)


def _cfg(**schedule):
    tokens = schedule.pop("tokens", 1000)
    wd = schedule.pop("weight_decay", 0.1)
    return OmegaConf.merge(OmegaConf.structured(Config), {"schedule": schedule, "train": {"tokens": tokens},
                                                          "optimizer": {"weight_decay": wd}})


@pytest.mark.parametrize("style", ["cosine", "linear", "minus_sqrt", "exponential"])
@pytest.mark.parametrize("warmup", [0, 3 * 4096])
def test_stable_then_decay_equals_megatron_wsd(style, warmup):
    tps = 4096  # tokens per step
    x_tokens, y_tokens = 40 * tps, 13 * tps + 1000  # decay budget not a multiple of the step
    peak, floor = 3e-4, 3e-5
    stable = planned(_cfg(stage="stable", lr=peak, warmup_tokens=warmup, min_lr=1e-6, tokens=x_tokens),
                     start_tokens=0)
    ours = lr_trajectory(stable, tokens_per_step=tps)
    end_lr = ours[-1]  # constant after warmup: the LR the stable checkpoint records
    decay = planned(_cfg(stage="decay", lr=peak, min_lr=floor, decay_style=style, tokens=y_tokens),
                    start_tokens=x_tokens, start_lr=end_lr)
    ours += lr_trajectory(decay, tokens_per_step=tps)

    ref_sched = _megatron_wsd(x_tokens + y_tokens, y_tokens, warmup, peak, floor, style)
    ref = []
    for _ in range(len(ours)):
        ref.append(ref_sched.get_lr({}))
        ref_sched.step(tps)
    assert len(ours) == x_tokens // tps + -(-y_tokens // tps)
    for step, (a, b) in enumerate(zip(ours, ref)):
        assert abs(a - b) <= 1e-12, (step, a, b)
    # The shape is real: constant through the stable part, strictly decreasing in the decay part.
    assert ours[x_tokens // tps - 1] == peak
    decay_part = ours[x_tokens // tps:]
    assert decay_part[0] == peak and all(b < a for a, b in zip(decay_part, decay_part[1:]))
    assert decay_part[-1] > floor


def test_warmup_is_linear_from_init_lr():
    lrs = lr_trajectory(planned(_cfg(stage="stable", lr=1e-3, init_lr=1e-4, warmup_tokens=400), start_tokens=0),
                        tokens_per_step=100)
    assert lrs[:5] == pytest.approx([1e-4, 1e-4 + 0.9e-3 * 0.25, 1e-4 + 0.9e-3 * 0.5, 1e-4 + 0.9e-3 * 0.75, 1e-3])
    assert lrs[5:] == [1e-3] * 5


def test_decay_starts_from_the_stable_lr_or_schedule_start_lr():
    cfg = _cfg(stage="decay", lr=1.0, min_lr=0.0, decay_style="linear", tokens=4)
    assert lr_trajectory(planned(cfg, start_tokens=100, start_lr=0.5), tokens_per_step=1) == pytest.approx(
        [0.5, 0.375, 0.25, 0.125])
    cfg = _cfg(stage="decay", lr=1.0, min_lr=0.0, decay_style="linear", tokens=4, start_lr=0.8)
    assert lr_trajectory(planned(cfg, start_tokens=100, start_lr=0.5), tokens_per_step=1) == pytest.approx(
        [0.8, 0.6, 0.4, 0.2])


def _loaded_adamw(max_lr, min_lr, lr, weight_decay):
    """A torch AdamW whose param groups look as after loading a stable checkpoint's optimizer state:
    the stable run's max_lr/min_lr/lr (a decayed group and a wd_mult=0 group, as megatron builds them)."""
    w, b = torch.nn.Parameter(torch.ones(2, 2)), torch.nn.Parameter(torch.ones(2))
    opt = torch.optim.AdamW([{"params": [w]}, {"params": [b]}], lr=lr, weight_decay=weight_decay)
    for group, wd_mult in zip(opt.param_groups, (1.0, 0.0)):
        group.update(max_lr=max_lr, min_lr=min_lr, wd_mult=wd_mult, default_config=True)
    return opt


def test_a_decay_branch_applies_its_own_floor_not_the_loaded_one():
    """The bug this module fixes: megatron's scheduler reads max_lr/min_lr from each param group, which a
    checkpoint load fills with the stable run's values (floor 1e-4 here, the branch asks for 7e-4)."""
    opt = _loaded_adamw(max_lr=1e-3, min_lr=1e-4, lr=1e-3, weight_decay=0.1)
    sched = planned(_cfg(stage="decay", min_lr=7e-4, decay_style="linear", tokens=4, weight_decay=0.05),
                    start_tokens=10, start_lr=1e-3)
    s = build_scheduler(sched, opt)
    applied = []
    for _ in range(6):
        applied.append([g["lr"] for g in opt.param_groups])
        s.step(1)
    expected = [1e-3, 9.25e-4, 8.5e-4, 7.75e-4, 7e-4, 7e-4]
    for got, want in zip(applied, expected):
        assert got == pytest.approx([want, want], abs=1e-15)
    assert applied_lr(opt) == pytest.approx(7e-4, abs=1e-15)
    # Weight decay from this stage's config; the no-decay group keeps none.
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]
    assert applied_weight_decay(opt) == 0.05


def test_a_constant_lr_replaces_a_loaded_one():
    opt = _loaded_adamw(max_lr=1e-6, min_lr=1e-6, lr=1e-6, weight_decay=0.1)
    constant(opt, 3e-4, 0.0)
    assert [g["lr"] for g in opt.param_groups] == [3e-4, 3e-4]
    assert [g["weight_decay"] for g in opt.param_groups] == [0.0, 0.0]


def test_reconcile_refuses_applies_or_keeps_a_changed_value():
    saved = {"lr": 1e-4, "weight_decay": 0.1}
    wanted = {"lr": 2e-4, "weight_decay": 0.1}
    keys = {"lr": "rl.lr", "weight_decay": "optimizer.weight_decay"}
    with pytest.raises(ConfigError, match=r"config key 'rl.lr'.*0.0001 in the checkpoint, 0.0002 in the config"):
        reconcile(saved, wanted, keys, "refuse", "ckpt/iter_0000002")
    values, lines = reconcile(saved, wanted, keys, "config", "ckpt/iter_0000002")
    assert values["lr"] == 2e-4 and len(lines) == 1 and "rl.lr: 0.0001" in lines[0] and "applied" in lines[0]
    values, lines = reconcile(saved, wanted, keys, "checkpoint", "ckpt/iter_0000002")
    assert values["lr"] == 1e-4 and len(lines) == 1 and "not applied" in lines[0]
    # Equal values: nothing said, whatever the policy.
    assert reconcile(saved, dict(saved), keys, "refuse", "x") == (saved, [])
    # A value an older checkpoint did not record: the config's, said.
    values, lines = reconcile({"lr": 2e-4}, wanted, keys, "refuse", "x")
    assert values["weight_decay"] == 0.1 and "does not record" in lines[0]
    with pytest.raises(ConfigError, match="checkpoint.schedule_on_resume"):
        reconcile(saved, wanted, keys, "sometimes", "x")


def test_resume_of_a_decay_compares_its_length_floor_and_style():
    saved = planned(_cfg(stage="decay", min_lr=1e-5, tokens=800), start_tokens=4000, start_lr=1e-3, tokens=4400)
    cfg = _cfg(stage="decay", min_lr=2e-5, tokens=800)
    with pytest.raises(ConfigError, match="'schedule.min_lr'"):
        resume(saved, cfg, "refuse", "x")
    chosen, lines = resume(saved, cfg, "config", "x")
    assert (chosen.min_lr, chosen.start_lr, chosen.tokens, chosen.start_tokens) == (2e-5, 1e-3, 4400, 4000)
    chosen, _ = resume(saved, cfg, "checkpoint", "x")
    assert chosen.min_lr == 1e-5
    with pytest.raises(ConfigError, match="'train.tokens'"):
        resume(saved, _cfg(stage="decay", min_lr=1e-5, tokens=1600), "refuse", "x")
    # A stable stage's budget may grow on resume (its LR is constant): not a schedule change.
    stable = planned(_cfg(stage="stable", lr=1e-3, tokens=800), start_tokens=0, tokens=800)
    chosen, lines = resume(stable, _cfg(stage="stable", lr=1e-3, tokens=1600), "refuse", "x")
    assert chosen.stage_tokens == 1600 and lines == []


def test_schedule_state_round_trip_and_older_checkpoints():
    st = ScheduleState(stage="decay", start_tokens=10, start_lr=0.1, stage_tokens=5, tokens=12, lr=0.05,
                       min_lr=0.01, init_lr=0.0, warmup_tokens=0, decay_style="cosine", weight_decay=0.1)
    assert ScheduleState.from_dict(st.to_dict()) == st
    old = ScheduleState.from_dict({"stage": "decay", "start_tokens": 10, "start_lr": 0.1, "stage_tokens": 5,
                                   "tokens": 12, "lr": 0.05})
    assert old.min_lr is None and old.weight_decay is None
