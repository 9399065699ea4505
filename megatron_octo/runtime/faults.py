"""Deterministic fault injection for the reliability tests (``tests/reliability``).

Inert unless the environment variable ``OCTO_FAULT_INJECT`` is set: then it is a comma-separated
list of ``POINT[:N][@RANK][=ACTION]``. ``N`` restricts the fault to iteration ``N`` (or the N-th
benchmark for ``eval:generate``), ``RANK`` to one global rank; the default action is ``kill``.

Points (where the code calls :func:`hit`):

=========================  ==================================================================
``step``                   start of training iteration N (the previous one finished and saved)
``save:begin``             ``iter_N.tmp`` created, nothing written yet
``save:after_model_write`` the dist checkpoint is in ``iter_N.tmp``; no state, config, manifest
``save:write``             before each small file rank 0 writes (state, config, manifest, tracker)
``save:before_rename``     ``iter_N.tmp`` complete, not yet renamed to ``iter_N``
``save:before_tracker``    renamed to ``iter_N``; the tracker still names the previous checkpoint
``save:after_tracker``     the tracker names ``iter_N``; old checkpoints not pruned yet
``eval:generate``          ``python -m megatron_octo.eval``, before generating benchmark N (1-based)
``rollout:batch``          RL, before generating rollout engine batch N (1-based, counted over the process)
=========================  ==================================================================

Actions: ``kill`` (SIGKILL this process), ``sigterm`` / ``sigusr1`` (send that signal to this
process), ``enospc`` (raise ``OSError(ENOSPC)`` naming the path being written), and for ``step``
only ``nan`` / ``inf`` (the step's loss is multiplied by NaN / inf) and ``spike`` (the step's
gradients are multiplied by 1e4, its loss value unchanged).

Example: ``OCTO_FAULT_INJECT=save:after_model_write:4,step:7=nan``.
"""

from __future__ import annotations

import errno
import os
import re
import signal
from typing import Optional
from megatron_octo.config import ConfigError

ENV = "OCTO_FAULT_INJECT"
POINTS = ("step", "save:begin", "save:after_model_write", "save:write", "save:before_rename",
          "save:before_tracker", "save:after_tracker", "eval:generate", "rollout:batch")
PROCESS_ACTIONS = ("kill", "sigterm", "sigusr1", "enospc")
LOSS_ACTIONS = {"nan": float("nan"), "inf": float("inf"), "spike": 1e4}

_SPEC = re.compile(r"^(?P<point>[a-z_:]+?)(?::(?P<n>\d+))?(?:@(?P<rank>\d+))?(?:=(?P<action>[a-z][a-z0-9]*))?$")
_plan_cache: Optional[tuple[str, list]] = None


def plan() -> list[tuple[str, Optional[int], Optional[int], str]]:
    """The parsed ``OCTO_FAULT_INJECT`` entries (empty when unset). A malformed value raises
    :class:`megatron_octo.config.ConfigError` naming the variable."""
    global _plan_cache
    raw = os.environ.get(ENV, "")
    if _plan_cache is not None and _plan_cache[0] == raw:
        return _plan_cache[1]
    entries = []
    for item in filter(None, (s.strip() for s in raw.split(","))):
        m = _SPEC.match(item)
        action = (m.group("action") or "kill") if m else None
        if m is None or m.group("point") not in POINTS or (
                action not in PROCESS_ACTIONS and not (action in LOSS_ACTIONS and m.group("point") == "step")):
            raise ConfigError(f"environment variable {ENV}: cannot use {item!r}; expected POINT[:N][@RANK][=ACTION] "
                              f"with POINT in {', '.join(POINTS)} and ACTION in {', '.join(PROCESS_ACTIONS)} "
                              f"(or {', '.join(LOSS_ACTIONS)} for step)")
        n, rank = m.group("n"), m.group("rank")
        entries.append((m.group("point"), None if n is None else int(n), None if rank is None else int(rank), action))
    _plan_cache = (raw, entries)
    return entries


def _match(point: str, n: Optional[int]) -> Optional[str]:
    entries = plan()
    if not entries:
        return None
    rank = int(os.environ.get("RANK", "0"))
    for p, en, er, action in entries:
        if p == point and (en is None or en == n) and (er is None or er == rank):
            return action
    return None


def hit(point: str, n: Optional[int] = None, path: Optional[str] = None) -> None:
    """Carry out the process action configured for ``point`` (at iteration/index ``n``), if any."""
    action = _match(point, n)
    if action is None or action in LOSS_ACTIONS:
        return
    where = f"{point}" + (f":{n}" if n is not None else "")
    print(f"[fault-inject] {action} at {where}", flush=True)
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action in ("sigterm", "sigusr1"):
        os.kill(os.getpid(), signal.SIGTERM if action == "sigterm" else signal.SIGUSR1)
    elif action == "enospc":
        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (injected at {where})", path)


def loss_fault(iteration: int) -> Optional[str]:
    """``nan`` / ``inf`` / ``spike`` when configured for training iteration ``iteration``."""
    action = _match("step", iteration)
    return action if action in LOSS_ACTIONS else None


def apply_loss_fault(loss, action: Optional[str]):
    """The step's loss with the injected fault applied (``loss`` itself when there is none)."""
    if action is None:
        return loss
    factor = LOSS_ACTIONS[action]
    if action == "spike":
        # Same value, gradients scaled: a grad-norm spike on an ordinary-looking loss.
        return loss + (factor - 1.0) * (loss - loss.detach())  # value exactly loss, gradient x factor
    return loss * factor
