"""User-supplied reward functions (verl's custom_reward_function), named "module:function" or
"path/to/file.py:function", called as fn(responses, golds) -> list of float scores."""

from __future__ import annotations

import importlib
import importlib.util
import os
from typing import Callable, Sequence

from megatron_octo.rl.reward import RewardResult


def load_reward_fn(spec: str) -> Callable:
    if ":" not in spec:
        raise ValueError(f"{spec!r} is not 'module:function' or 'file.py:function'")
    target, name = spec.rsplit(":", 1)
    try:
        if target.endswith(".py"):
            if not os.path.isfile(target):
                raise ValueError(f"file not found: {target}")
            mod_spec = importlib.util.spec_from_file_location(f"_octo_reward_{abs(hash(target))}", target)
            module = importlib.util.module_from_spec(mod_spec)
            mod_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except ImportError as exc:
        raise ValueError(f"cannot import {target}: {exc}") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ValueError(f"{target} has no function {name!r}")
    return fn


def custom_rewards(fn: Callable, responses: Sequence[str], golds: Sequence[str]) -> list[RewardResult]:
    scores = list(fn(list(responses), list(golds)))
    if len(scores) != len(responses):
        raise ValueError(f"custom reward returned {len(scores)} scores for {len(responses)} responses")
    return [RewardResult(score=float(s), correct=float(s) > 0, extracted=None, reason="custom") for s in scores]
