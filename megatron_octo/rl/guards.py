"""Per-step fault guards of the RL loop (tests: tests/reliability/test_rl_faults.py).

* Non-finite rollout log-probs (the old-policy or reference forward on the sampled tokens): the
  step's update is skipped (``fault/nan_steps``), or with ``rl.nan_policy=stop`` the run stops
  without updating, saves and exits 3 (``EXIT_NAN``, as the pretraining trainer).
* An all-uniform batch (every group's samples scored the same, e.g. all zero): GRPO's advantages
  are all zero, and an optimizer step on a zero policy gradient would only move the weights by
  AdamW's momentum and weight decay, so the update is skipped (``fault/uniform_steps``) unless an
  entropy or KL term still gives it something to learn.
* Timed-out rewards (the grader's per-answer limit, or ``rl.reward_timeout`` of a custom reward
  function): counted per step in ``fault/reward_timeouts``.

Every decision is all-reduced so that all ranks skip (or stop) together. ``fault/*`` values are this
step's counts; ``fault/skipped_updates`` is the run's running total (``TrainerState``'s
``skipped_iterations``, kept in checkpoints). Test-only injection through ``OCTO_FAULT_INJECT``
(:mod:`megatron_octo.runtime.faults`): ``step:N=nan`` makes RL step N's old log-probs NaN, and
``step:N=sigterm`` / ``sigusr1`` / ``kill`` act at the start of RL step N (N counts from 1).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from megatron_octo.rl.reward import uniform_groups
from megatron_octo.runtime import faults
from megatron_octo.runtime.distributed import all_reduce_values
from megatron_octo.training.optimizer_state import ensure_optimizer_state


def at_step_start(step: int) -> None:
    """Fault injection at the start of RL step ``step`` (0-based; inert unless OCTO_FAULT_INJECT is set)."""
    faults.hit("step", step + 1)


def check_rollout(step: int, batch, rewards, samples_per_prompt: int, *, grpo: bool, other_loss_terms: bool,
                  nan_policy: str, data_parallel_group=None, log: bool = False) -> dict:
    """The step's ``fault/*`` metrics, plus ``skip`` (no update this step) and ``stop``
    (rl.nan_policy=stop on non-finite log-probs). May set ``batch.old_log_probs`` to NaN when a
    test injects it."""

    if faults.loss_fault(step + 1) == "nan":
        batch.old_log_probs = batch.old_log_probs * float("nan")
    on = batch.mask > 0
    bad = any(t is not None and not bool(torch.isfinite(t[on]).all())
              for t in (batch.old_log_probs, batch.ref_log_probs))
    scores = [x.score for x in rewards]
    uniform = grpo and all(uniform_groups(scores, samples_per_prompt))
    timeouts = float(sum(x.reason == "timeout" for x in rewards))
    # Any rank non-finite / not uniform decides for all; timeouts are summed over data parallelism
    # (the other model-parallel ranks of a replica hold the same rewards).
    n_bad, n_varied = all_reduce_values([float(bad), float(not uniform)])
    (timeouts,) = all_reduce_values([timeouts], group=data_parallel_group)
    nan_step, uniform_step = n_bad > 0, n_varied == 0
    skip = nan_step or (uniform_step and not other_loss_terms)
    stop = nan_step and nan_policy == "stop"
    if log:
        where = f"[megatron-octo] RL step {step + 1}:"
        if nan_step:
            print(f"{where} non-finite log-probs in the rollout; " + (
                "stopping without updating (rl.nan_policy=stop)" if stop else
                "update skipped (rl.nan_policy=skip)"), flush=True)
        elif uniform_step:
            print(f"{where} every group's samples scored the same (no learning signal); " + (
                "update skipped" if skip else "updating for the entropy/KL terms only"), flush=True)
        if timeouts > 0:
            print(f"{where} {int(timeouts)} reward(s) timed out (scored as a time-out)", flush=True)
    return {"fault/nan_steps": float(nan_step), "fault/uniform_steps": float(uniform_step),
            "fault/reward_timeouts": timeouts, "skip": skip, "stop": stop}


def on_first_tp_rank(compute):
    """``compute()`` on the first model-parallel rank (tensor and pipeline) of this replica, its result
    (or its error) broadcast to the others. Rewards are graded once per replica, not once per TP or PP
    rank, and a reward time-out (a race against a clock) cannot give the ranks of one replica
    different rewards."""
    from megatron.core import parallel_state as ps

    if not dist.is_initialized() or not ps.model_parallel_is_initialized():
        return compute()
    group = ps.get_model_parallel_group()
    if dist.get_world_size(group) == 1:
        return compute()
    src = ps.get_model_parallel_src_rank()
    box = [None]
    if dist.get_rank() == src:
        try:
            box[0] = ("ok", compute())
        except Exception as exc:  # noqa: BLE001 - raised on every rank below, not only here
            box[0] = ("error", f"{type(exc).__name__}: {exc}")
    dist.broadcast_object_list(box, src=src, group=group)
    kind, value = box[0]
    if kind == "error":
        raise RuntimeError(f"reward failed on model-parallel rank 0: {value}")
    return value
