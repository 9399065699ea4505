"""The one owner of the optimizer's learning rate and weight decay, for every stage.

OctoThinker trains a long stable stage at constant LR and then several short decay branches from
one stable checkpoint. Each stage is its own run, so the schedule is split in two:

* stable: linear warmup over ``warmup_tokens`` from ``init_lr`` to ``lr``, then constant.
* decay: starts at the token count and LR the stable checkpoint ended at (or ``schedule.start_lr``)
  and decays to ``min_lr`` over this stage's ``tokens`` with ``decay_style`` (cosine, linear,
  minus_sqrt, exponential).
* rl: a constant LR (``rl.lr``, the critic's ``rl.critic_lr``).

Each is a megatron-core ``OptimizerParamScheduler`` counting tokens instead of steps
(``step(tokens_per_step)``), so a stable run of X tokens followed by a decay run of Y tokens is the
same trajectory as megatron's single-run WSD schedule over X+Y tokens with Y decay tokens.

Megatron's scheduler computes each param group's LR from the *group's* ``max_lr``/``min_lr`` (and
weight decay from the group's ``wd_mult``); loading a checkpoint's optimizer state replaces the
groups, and with them those values, by the saved run's. So after every load :func:`build_scheduler`
writes this stage's values into every group (:func:`bind`), and what a run logs is read back from
the groups (:func:`applied_lr`), never recomputed beside them.

What a stage takes from where (the policy, stated once here and in the README):

* a new stage (``checkpoint.init_from``): its schedule from its own config; a decay stage starts
  from the LR the stable checkpoint ended at unless ``schedule.start_lr`` is set.
* a resume: the checkpoint's schedule; a config value that differs from it is refused naming the
  key (``checkpoint.schedule_on_resume=refuse``, megatron's default check), applied from the resume
  point with a line saying so (``config``, megatron's ``--override-opt_param-scheduler``), or kept
  from the checkpoint with a line saying so (``checkpoint``, ``--use-checkpoint-opt_param-scheduler``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Optional

from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler, get_canonical_lr_for_logging

from megatron_octo.config import SCHEDULE_ON_RESUME, ConfigError


@dataclass
class ScheduleState:
    """A stage's schedule: the values that define its trajectory, and its position. Checkpointed in
    ``trainer_state.json``; fields after ``lr`` are None in checkpoints written before they were
    recorded."""

    stage: str  # stable | decay | rl
    start_tokens: int  # global token count at which this stage began
    start_lr: float  # stable: the peak (schedule.lr); decay: the LR it decays from; rl: the constant LR
    stage_tokens: int  # this stage's token budget (decay: the length of the decay)
    tokens: int  # global tokens consumed so far (scheduler position)
    lr: float  # the LR the next step applies
    min_lr: Optional[float] = None
    init_lr: Optional[float] = None
    warmup_tokens: Optional[int] = None
    decay_style: Optional[str] = None
    weight_decay: Optional[float] = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ScheduleState":
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


# Which values a resume compares with the config, per stage, and the config key that sets each.
# A stable stage's token budget may grow on resume (its LR is constant); a decay's budget is the
# decay's length, so it is part of the trajectory.
_RESUME_KEYS = {
    "stable": {"start_lr": "schedule.lr", "init_lr": "schedule.init_lr", "warmup_tokens": "schedule.warmup_tokens",
               "weight_decay": "optimizer.weight_decay"},
    "decay": {"start_lr": "schedule.start_lr", "min_lr": "schedule.min_lr", "decay_style": "schedule.decay_style",
              "stage_tokens": "train.tokens", "weight_decay": "optimizer.weight_decay"},
}


def planned(cfg, *, start_tokens: int, start_lr: Optional[float] = None, tokens: Optional[int] = None) -> ScheduleState:
    """The schedule the config asks for, for a stage that began at ``start_tokens``. ``start_lr``:
    a decay stage's starting LR when ``schedule.start_lr`` is not set (the stable checkpoint's last)."""
    s = cfg.schedule
    if s.stage == "decay":
        peak = s.start_lr if s.start_lr is not None else start_lr
        if peak is None:
            raise ConfigError("config key 'schedule.start_lr': a decay stage starts from a stable checkpoint's "
                              "last LR (checkpoint.init_from) or from schedule.start_lr; neither is there")
    else:
        peak = s.lr
    return ScheduleState(stage=s.stage, start_tokens=start_tokens, start_lr=float(peak), stage_tokens=cfg.train.tokens,
                         tokens=start_tokens if tokens is None else tokens, lr=float("nan"), min_lr=s.min_lr,
                         init_lr=s.init_lr, warmup_tokens=s.warmup_tokens, decay_style=s.decay_style,
                         weight_decay=cfg.optimizer.weight_decay)


def reconcile(saved: dict, wanted: dict, keys: dict, policy: str, where: str) -> tuple[dict, list[str]]:
    """The values a resumed run applies: ``saved`` (the checkpoint's) where the config agrees,
    else by ``policy`` (``checkpoint.schedule_on_resume``). ``keys``: value name -> config key.
    Returns (values, one line per value taken differently from the checkpoint)."""
    if policy not in SCHEDULE_ON_RESUME:
        raise ConfigError(f"config key 'checkpoint.schedule_on_resume': {policy!r} is not one of "
                          f"{', '.join(SCHEDULE_ON_RESUME)}")
    out, lines, refused = dict(saved), [], []
    for name, key in keys.items():
        old, new = saved.get(name), wanted.get(name)
        if old is None:
            out[name] = new
            lines.append(f"{key}={new}: {where} does not record it; applying the config's value")
        elif new is not None and not _same(old, new):
            if policy == "refuse":
                refused.append((key, old, new))
            elif policy == "config":
                out[name] = new
                lines.append(f"{key}: {old} in {where} -> {new} from the config, applied from this resume on "
                             "(checkpoint.schedule_on_resume=config)")
            else:
                lines.append(f"{key}={new} in the config is not applied: continuing {where}'s {old} "
                             "(checkpoint.schedule_on_resume=checkpoint)")
    if refused:
        diffs = "; ".join(f"{key}: {old} in the checkpoint, {new} in the config" for key, old, new in refused)
        raise ConfigError(
            f"config key '{refused[0][0]}': resuming {where} with a schedule that differs from the checkpoint's "
            f"({diffs}). "
            "Set checkpoint.schedule_on_resume=config to apply the config's values from this point on, "
            "=checkpoint to continue the checkpoint's, or restore the checkpoint's values")
    return out, lines


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return float(a) == float(b)
    return a == b


def resume(saved: ScheduleState, cfg, policy: str, where: str) -> tuple[ScheduleState, list[str]]:
    """A resumed stage's schedule: the checkpoint's position, its values reconciled with the config's."""
    wanted = planned(cfg, start_tokens=saved.start_tokens, start_lr=saved.start_lr, tokens=saved.tokens)
    keys = dict(_RESUME_KEYS[saved.stage])
    if saved.stage == "decay" and cfg.schedule.start_lr is None:
        del keys["start_lr"]  # no starting LR in the config: nothing to compare
    values, lines = reconcile(saved.to_dict(), wanted.to_dict(), keys, policy, where)
    chosen = ScheduleState.from_dict(values)
    if saved.stage == "stable":
        chosen = replace(chosen, stage_tokens=cfg.train.tokens)  # a stable budget may grow (constant LR)
    # Values a stage does not compare (a stable stage's floor, style) follow the config.
    for name in ("min_lr", "init_lr", "warmup_tokens", "decay_style", "weight_decay"):
        if getattr(chosen, name) is None or name not in keys:
            chosen = replace(chosen, **{name: getattr(wanted, name)})
    return chosen, lines


def build_scheduler(state: ScheduleState, optimizer) -> OptimizerParamScheduler:
    """The megatron scheduler of ``state`` positioned at ``state.tokens``, bound to ``optimizer``
    (every param group's LR and weight decay set from it, whatever a checkpoint load left there)."""
    wd = state.weight_decay or 0.0
    common = dict(start_wd=wd, end_wd=wd, wd_incr_steps=1, wd_incr_style="constant")
    if state.stage == "stable":
        sch = OptimizerParamScheduler(
            optimizer, init_lr=state.init_lr, max_lr=state.start_lr, min_lr=min(state.min_lr, state.start_lr),
            lr_warmup_steps=state.warmup_tokens,
            lr_decay_steps=max(state.start_tokens + state.stage_tokens, state.warmup_tokens + 1),
            lr_decay_style="constant", **common)
    elif state.stage == "decay":
        floor = min(state.min_lr, state.start_lr)
        sch = OptimizerParamScheduler(
            optimizer, init_lr=floor, max_lr=state.start_lr, min_lr=floor, lr_warmup_steps=0,
            lr_decay_steps=state.start_tokens + max(state.stage_tokens, 1), lr_decay_style="WSD",
            wsd_decay_steps=max(state.stage_tokens, 1), lr_wsd_decay_style=state.decay_style, **common)
    elif state.stage == "rl":
        sch = OptimizerParamScheduler(
            optimizer, init_lr=state.start_lr, max_lr=state.start_lr, min_lr=state.start_lr, lr_warmup_steps=0,
            lr_decay_steps=1, lr_decay_style="constant", **common)
    else:
        raise ConfigError(f"config key 'schedule.stage': must be stable or decay, got {state.stage!r}")
    sch.num_steps = state.tokens
    bind(sch, optimizer)
    return sch


def constant(optimizer, lr: float, weight_decay: float) -> OptimizerParamScheduler:
    """A constant LR (RL's actor and critic) bound to ``optimizer``."""
    return build_scheduler(rl_state(lr, weight_decay), optimizer)


def rl_state(lr: float, weight_decay: float, tokens: int = 0) -> ScheduleState:
    return ScheduleState(stage="rl", start_tokens=0, start_lr=float(lr), stage_tokens=0, tokens=tokens, lr=float(lr),
                         weight_decay=weight_decay)


def bind(scheduler: OptimizerParamScheduler, optimizer) -> None:
    """Make every param group follow ``scheduler``: megatron's ``get_lr``/``get_wd`` read a group's own
    ``max_lr``/``min_lr``/``start_wd``/``end_wd`` before the scheduler's, and a checkpoint load puts the
    saved run's values there. Then set the groups' LR and weight decay at the current position."""
    for group in optimizer.param_groups:
        group["max_lr"], group["min_lr"] = scheduler.max_lr, scheduler.min_lr
        group["start_wd"], group["end_wd"] = scheduler.start_wd, scheduler.end_wd
    scheduler.step(0)


def applied_lr(optimizer) -> float:
    """The LR the optimizer applies at its next step, read from its param groups (megatron's choice
    of group for logging: the first one on the default schedule)."""
    lr = get_canonical_lr_for_logging(optimizer.param_groups)
    return float(lr if lr is not None else optimizer.param_groups[0]["lr"])


def applied_weight_decay(optimizer) -> float:
    """The weight decay the optimizer applies to decayed parameters (groups with ``wd_mult`` 0 have none)."""
    return float(max(g["weight_decay"] for g in optimizer.param_groups))


class _Groups:
    """Param groups without an optimizer: evaluates a schedule for plots, the planner and tests."""

    def __init__(self):
        self.param_groups = [{}]


def lr_trajectory(state: ScheduleState, *, tokens_per_step: int) -> list[float]:
    """LR applied by each step of a stage (set before the step's optimizer update)."""
    holder = _Groups()
    sch = build_scheduler(state, holder)
    steps = -(-state.stage_tokens // tokens_per_step)
    out = []
    for _ in range(steps):
        out.append(applied_lr(holder))
        sch.step(tokens_per_step)
    return out
