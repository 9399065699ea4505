"""The stable-then-decay schedule against megatron-core's own single-run WSD schedule."""

from __future__ import annotations

import pytest
from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler
from omegaconf import OmegaConf

from megatron_octo.config import ScheduleConfig
from megatron_octo.schedule import ScheduleState, build_scheduler, current_lr, lr_trajectory


class _Opt:
    def __init__(self):
        self.param_groups = [{}]


def _megatron_wsd(total, decay, warmup, peak, floor, style, init_lr=0.0):
    return OptimizerParamScheduler(_Opt(), init_lr=init_lr, max_lr=peak, min_lr=floor, lr_warmup_steps=warmup,
                                   lr_decay_steps=total, lr_decay_style="WSD", start_wd=0.1, end_wd=0.1,
                                   wd_incr_steps=1, wd_incr_style="constant", wsd_decay_steps=decay,
                                   lr_wsd_decay_style=style)


@pytest.mark.parametrize("style", ["cosine", "linear", "minus_sqrt", "exponential"])
@pytest.mark.parametrize("warmup", [0, 3 * 4096])
def test_stable_then_decay_equals_megatron_wsd(style, warmup):
    tps = 4096  # tokens per step
    x_tokens, y_tokens = 40 * tps, 13 * tps + 1000  # decay budget not a multiple of the step
    peak, floor = 3e-4, 3e-5
    stable = OmegaConf.structured(ScheduleConfig(stage="stable", lr=peak, warmup_tokens=warmup, min_lr=floor))
    decay = OmegaConf.structured(ScheduleConfig(stage="decay", lr=peak, min_lr=floor, decay_style=style))

    # Stable run; its final LR and token count are what the checkpoint records.
    s = build_scheduler(stable, None, 0.1, stage_tokens=x_tokens)
    ours = []
    for _ in range(x_tokens // tps):
        ours.append(current_lr(s))
        s.step(tps)
    end_tokens, end_lr = s.num_steps, current_lr(s)
    # A separate decay run started from that state.
    ours += lr_trajectory(decay, stage_tokens=y_tokens, tokens_per_step=tps, start_tokens=end_tokens,
                          start_lr=end_lr)

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
    cfg = OmegaConf.structured(ScheduleConfig(stage="stable", lr=1e-3, init_lr=1e-4, warmup_tokens=400))
    lrs = lr_trajectory(cfg, stage_tokens=1000, tokens_per_step=100)
    assert lrs[:5] == pytest.approx([1e-4, 1e-4 + 0.9e-3 * 0.25, 1e-4 + 0.9e-3 * 0.5, 1e-4 + 0.9e-3 * 0.75, 1e-3])
    assert lrs[5:] == [1e-3] * 5


def test_decay_starts_from_the_stable_lr_not_the_config_lr():
    cfg = OmegaConf.structured(ScheduleConfig(stage="decay", lr=1.0, min_lr=0.0, decay_style="linear"))
    lrs = lr_trajectory(cfg, stage_tokens=4, tokens_per_step=1, start_tokens=100, start_lr=0.5)
    assert lrs == pytest.approx([0.5, 0.375, 0.25, 0.125])


def test_schedule_state_round_trip():
    st = ScheduleState(stage="decay", start_tokens=10, start_lr=0.1, stage_tokens=5, tokens=12, lr=0.05)
    assert ScheduleState.from_dict(st.to_dict()) == st
