"""Stable-then-decay learning-rate schedule, defined on tokens.

OctoThinker trains a long stable stage at constant LR and then several short decay branches from
one stable checkpoint. Each stage is its own run, so the schedule is split in two:

* stable: linear warmup over ``warmup_tokens`` from ``init_lr`` to ``lr``, then constant.
* decay: starts at the token count and LR the stable checkpoint ended at and decays to ``min_lr``
  over this stage's ``tokens`` with ``decay_style`` (cosine, linear, minus_sqrt, exponential).

Both are megatron-core ``OptimizerParamScheduler`` instances counting tokens instead of steps
(``step(tokens_per_step)``), so a stable run of X tokens followed by a decay run of Y tokens is the
same trajectory as megatron's single-run WSD schedule over X+Y tokens with Y decay tokens.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler


@dataclass
class ScheduleState:
    """What a checkpoint records so that resume and decay branches continue the trajectory."""

    stage: str  # stable | decay
    start_tokens: int  # global token count at which this stage began
    start_lr: float  # LR this stage starts from (decay: the stable stage's final LR)
    stage_tokens: int  # this stage's token budget
    tokens: int  # global tokens consumed so far (scheduler position)
    lr: float  # LR after the last step

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ScheduleState":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


class _NoParams:
    """Lets a scheduler be evaluated without an optimizer (plots, planner, tests)."""

    param_groups = [{}]


def build_scheduler(sched_cfg, optimizer, weight_decay: float, *, stage_tokens: int,
                    start_tokens: int = 0, start_lr: float | None = None) -> OptimizerParamScheduler:
    """The megatron scheduler for one stage, positioned at ``start_tokens``.

    ``start_lr`` is the LR a decay stage starts from (the stable checkpoint's last LR).
    """
    optimizer = optimizer if optimizer is not None else _NoParams()
    if sched_cfg.stage == "stable":
        sch = OptimizerParamScheduler(
            optimizer,
            init_lr=sched_cfg.init_lr,
            max_lr=sched_cfg.lr,
            min_lr=sched_cfg.min_lr,
            lr_warmup_steps=sched_cfg.warmup_tokens,
            lr_decay_steps=max(start_tokens + stage_tokens, sched_cfg.warmup_tokens + 1),
            lr_decay_style="constant",
            start_wd=weight_decay,
            end_wd=weight_decay,
            wd_incr_steps=1,
            wd_incr_style="constant",
        )
    elif sched_cfg.stage == "decay":
        peak = sched_cfg.lr if start_lr is None else start_lr
        sch = OptimizerParamScheduler(
            optimizer,
            init_lr=min(sched_cfg.min_lr, peak),
            max_lr=peak,
            min_lr=min(sched_cfg.min_lr, peak),
            lr_warmup_steps=0,
            lr_decay_steps=start_tokens + max(stage_tokens, 1),
            lr_decay_style="WSD",
            wsd_decay_steps=max(stage_tokens, 1),
            lr_wsd_decay_style=sched_cfg.decay_style,
            start_wd=weight_decay,
            end_wd=weight_decay,
            wd_incr_steps=1,
            wd_incr_style="constant",
        )
    else:
        raise ValueError(f"schedule.stage must be stable or decay, got {sched_cfg.stage!r}")
    if start_tokens:
        sch.step(start_tokens)
    return sch


def current_lr(scheduler: OptimizerParamScheduler) -> float:
    return scheduler.get_lr({})


def lr_trajectory(sched_cfg, *, stage_tokens: int, tokens_per_step: int, start_tokens: int = 0,
                  start_lr: float | None = None) -> list[float]:
    """LR used by each step of a stage (the LR set before the step's optimizer update)."""
    sch = build_scheduler(sched_cfg, None, 0.0, stage_tokens=stage_tokens,
                          start_tokens=start_tokens, start_lr=start_lr)
    steps = -(-stage_tokens // tokens_per_step)
    out = []
    for _ in range(steps):
        out.append(current_lr(sch))
        sch.step(tokens_per_step)
    return out
