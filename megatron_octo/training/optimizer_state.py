"""Adam state for a run whose first update was skipped (RL's guards and pretraining's nan_policy)."""

from __future__ import annotations

from megatron_octo.runtime.distributed import any_rank


def ensure_optimizer_state(model, optimizer) -> None:
    """Called when an update is skipped. If the optimizer has never stepped (the run's first update
    is the one skipped), step it once with zero gradients at learning rate 0: the weights do not
    move, but Adam gets its state (zero moments, step 1). Without it a checkpoint saved now would
    have no optimizer state and resuming from it fails (megatron's loader expects
    ``optimizer.state.exp_avg...``; it does not save a step count of 0). The next real update then
    starts at Adam step 2, in an uninterrupted run and a resumed one alike."""
    inner = [getattr(o, "optimizer", None) for o in getattr(optimizer, "chained_optimizers", None) or [optimizer]]
    empty = any(o is not None and len(o.state) == 0 for o in inner)
    if not any_rank(empty):  # every rank must step together (collectives)
        return
    model.zero_grad_buffer()
    optimizer.zero_grad()
    lrs = [g["lr"] for g in optimizer.param_groups]
    for g in optimizer.param_groups:
        g["lr"] = 0.0
    try:
        optimizer.step()
    finally:
        for g, lr in zip(optimizer.param_groups, lrs):
            g["lr"] = lr
