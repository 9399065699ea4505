"""Progressive ("stair") maximum response length: OctoThinker raises the RL response cap in steps,
e.g. {0: 2048, 100: 4096, 160: 8192} for the Long branch; starting at 8192 directly did worse."""

from __future__ import annotations

from typing import Mapping


def parse_stairs(stairs: Mapping) -> list[tuple[int, int]]:
    """Sorted (step, max_length) pairs; the first must start at step 0. Errors name the entry."""
    if not stairs:
        raise ValueError("rl.max_response_length: empty; give e.g. {0: 2048, 100: 4096}")
    out = []
    for k, v in stairs.items():
        try:
            step, length = int(k), int(v)
        except (TypeError, ValueError):
            raise ValueError(f"rl.max_response_length: entry {k!r}: {v!r} is not 'step: tokens'") from None
        if step < 0 or length < 1:
            raise ValueError(f"rl.max_response_length: entry {k}: {v} needs step >= 0 and tokens >= 1")
        out.append((step, length))
    out.sort()
    if out[0][0] != 0:
        raise ValueError(f"rl.max_response_length: must define step 0, first entry is step {out[0][0]}")
    return out


def max_response_length(step: int, stairs: list[tuple[int, int]]) -> int:
    """The cap in force at RL step ``step`` (the last stair at or before it)."""
    cap = stairs[0][1]
    for start, length in stairs:
        if step >= start:
            cap = length
    return cap
