"""OctoThinker rule-based reward for GRPO on MATH8K.

Reproduces ``compute_score`` of OctoThinker's ``verl/utils/reward_score/math_verifier.py``:

  variant            rule (first match wins)                                    score
  default            no \\boxed{}                                                 -1
                     last box equals gold                                        +1
                     otherwise (wrong, grader error, time-out)                   -1
  v2.wformat         no "\\boxed", or 2+ "\\boxed", or repetition                 -1
                     last box equals gold                                        +1
                     wrong                                                       -0.5
  v3.repeatpenalty   repetition                                                  -2, else default
  v4.repeatpenalty   2+ "\\boxed" or repetition                                   -2, else default

"repetition" is the recipe's regex ``(.{5,}?)\\1{4,}`` (a unit of 5+ characters, no newline,
repeated 5+ times in a row). Python's ``re`` needs ~20 s for one 30k-character response on
that pattern, so :func:`has_repetition` computes the same predicate in near-linear time.
Validation mode (greedy eval during RL): every score <= 0 becomes 0, so the mean is accuracy.
All score values are configurable in :class:`RewardConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Sequence

import numpy as np

from megatron_octo.eval.answer import count_boxed, last_boxed
from megatron_octo.eval.grader import DEFAULT_TIMEOUT, Gold, grade_detailed

__all__ = ["REWARD_VARIANTS", "RewardConfig", "RewardResult", "compute_reward", "compute_rewards", "has_repetition", "add_overlong_penalty", "overlong_penalty", "uniform_groups"]

REWARD_VARIANTS = ("default", "v2.wformat", "v3.repeatpenalty", "v4.repeatpenalty")


@dataclass(frozen=True)
class RewardConfig:
    variant: str = "default"
    correct: float = 1.0
    wrong: float = -1.0  # wrong answer (default/v3/v4), or grading failure / time-out
    no_box: float = -1.0  # no \boxed{} at all (or an unterminated last box)
    wrong_formatted: float = -0.5  # v2.wformat: well-formatted but wrong
    format_penalty: float = -1.0  # v2.wformat: no box, 2+ boxes, or repetition
    repeat_penalty: float = -2.0  # v3/v4: repetition; v4 also 2+ boxes
    validation: bool = False  # clip scores <= 0 to 0
    timeout: float = DEFAULT_TIMEOUT  # seconds per graded answer (hard limit, see eval.grader): 15 s, as OctoThinker
    min_unit: int = 5  # repetition: unit length >= min_unit ...
    min_repeats: int = 5  # ... occurring >= min_repeats times in a row (regex \1{4,} -> 5)

    def __post_init__(self):
        if self.variant not in REWARD_VARIANTS:
            raise ValueError(f"unknown reward variant {self.variant!r}; expected one of {REWARD_VARIANTS}")
        if self.min_unit < 1 or self.min_repeats < 3:
            # has_repetition's aligned-square argument needs at least 3 repeats.
            raise ValueError("min_unit must be >= 1 and min_repeats >= 3")


@dataclass(frozen=True)
class RewardResult:
    """score: the reward; correct: the last box matched the gold answer (independent of
    penalties, for accuracy metrics); extracted: the last box content (None if absent);
    reason: correct | wrong | no_box | multiple_boxes | repetition | timeout;
    grader_score: the grader's reward before DAPO's overlong penalty was added to ``score``
    (:func:`add_overlong_penalty`; None: no penalty was added, ``score`` is the grader's)."""

    score: float
    correct: bool
    extracted: Optional[str]
    reason: str
    grader_score: Optional[float] = None


# ---------------------------------------------------------------------------------------
# Repetition: exact, fast equivalent of re.search(r"(.{5,}?)\1{4,}", text)
# ---------------------------------------------------------------------------------------

_MASK = (1 << 64) - 1
_BASE = 0x9E3779B97F4A7C15  # odd 64-bit multiplier for the rolling hash


def has_repetition(text: str, min_unit: int = 5, min_repeats: int = 5) -> bool:
    """True iff some substring u with len(u) >= min_unit and no newline occurs min_repeats
    times consecutively -- the same predicate as ``re.search(r"(.{5,}?)\\1{4,}", text)``.

    A period-p repeat u^r spanning [i, i + r*p) contains the square starting at the first
    multiple of p at or after i. So for each period p it suffices to test the block pairs
    (kp, (k+1)p): about n/p tests per p, n log n in total, done with 64-bit rolling hashes in
    numpy. Hash hits are confirmed on the code points, so collisions cannot cause false
    positives; a confirmed square is then extended to see whether the run reaches r*p.
    """
    n = len(text)
    p_min, r = min_unit, min_repeats
    if r < 3:
        raise ValueError("min_repeats must be >= 3")
    if n < p_min * r:
        return False
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    # "." does not match "\n": give every newline a unique value so no periodic run spans it.
    nl = codes == 10
    if nl.any():
        idx = np.flatnonzero(nl).astype(np.uint64)
        codes[nl] = np.uint64(0x110000) + idx
    with np.errstate(over="ignore"):
        pw = np.full(n + 1, _BASE, dtype=np.uint64)
        pw[0] = 1
        pw = np.cumprod(pw, dtype=np.uint64)  # pw[i] = BASE**i mod 2**64
        # Prefix hashes H[i+1] = H[i]*BASE + code[i] (mod 2**64); a sequential recurrence, so a
        # plain loop (O(n), a few ms for 30k characters).
        hl = [0] * (n + 1)
        acc = 0
        for i, c in enumerate(codes.tolist()):
            acc = (acc * _BASE + c) & _MASK
            hl[i + 1] = acc
        h = np.array(hl, dtype=np.uint64)

        def block_hash(start: np.ndarray, length: int) -> np.ndarray:
            return h[start + length] - h[start] * pw[length]

        for p in range(p_min, n // r + 1):
            starts = np.arange(0, n - 2 * p + 1, p, dtype=np.int64)
            if starts.size == 0:
                break
            hits = starts[block_hash(starts, p) == block_hash(starts + p, p)]
            for j in hits.tolist():
                if _run_reaches(codes, j, p, r):
                    return True
    return False


def _run_reaches(codes: np.ndarray, j: int, p: int, r: int) -> bool:
    """Is there a window of length r*p with period p that contains the square at j?"""
    lo = max(0, j - (r - 2) * p)
    hi = min(len(codes), j + r * p)
    if hi - lo < r * p:
        return False
    eq = codes[lo : hi - p] == codes[lo + p : hi]  # eq[t]: codes[lo+t] == codes[lo+t+p]
    need = (r - 1) * p  # a window [i, i+r*p) is periodic iff eq holds on [i, i+(r-1)*p)
    if eq.size < need:
        return False
    bad = np.flatnonzero(~eq)
    edges = np.concatenate(([-1], bad, [eq.size]))
    return bool((np.diff(edges) - 1 >= need).any())


# ---------------------------------------------------------------------------------------
# Reward
# ---------------------------------------------------------------------------------------


def _validation_clip(res: RewardResult, cfg: RewardConfig) -> RewardResult:
    if cfg.validation and res.score <= 0:
        return RewardResult(0.0, res.correct, res.extracted, res.reason)
    return res


def compute_rewards(responses: Sequence[str], golds: Sequence[Gold], cfg: RewardConfig = RewardConfig()) -> list[RewardResult]:
    """Reward every response (decoded text only, prompt excluded) against its gold answer.

    Grading runs in the grader's worker pool, each comparison under ``cfg.timeout`` seconds.
    """
    if len(responses) != len(golds):
        raise ValueError(f"{len(responses)} responses but {len(golds)} gold answers")
    boxes = [last_boxed(r) for r in responses]
    pre: list[Optional[RewardResult]] = [None] * len(responses)
    to_grade: list[int] = []
    for i, (resp, box) in enumerate(zip(responses, boxes)):
        v = cfg.variant
        nbox = count_boxed(resp)
        if v == "v2.wformat":
            if nbox == 0 or nbox >= 2:
                pre[i] = RewardResult(cfg.format_penalty, False, box, "no_box" if nbox == 0 else "multiple_boxes")
                continue
            if has_repetition(resp, cfg.min_unit, cfg.min_repeats):
                pre[i] = RewardResult(cfg.format_penalty, False, box, "repetition")
                continue
        elif v == "v3.repeatpenalty":
            if has_repetition(resp, cfg.min_unit, cfg.min_repeats):
                pre[i] = RewardResult(cfg.repeat_penalty, False, box, "repetition")
                continue
        elif v == "v4.repeatpenalty":
            if nbox >= 2:
                pre[i] = RewardResult(cfg.repeat_penalty, False, box, "multiple_boxes")
                continue
            if has_repetition(resp, cfg.min_unit, cfg.min_repeats):
                pre[i] = RewardResult(cfg.repeat_penalty, False, box, "repetition")
                continue
        if box is None or not box.strip():
            pre[i] = RewardResult(cfg.format_penalty if v == "v2.wformat" else cfg.no_box, False, box, "no_box")
            continue
        to_grade.append(i)
    verdicts = grade_detailed([boxes[i] for i in to_grade], [golds[i] for i in to_grade], extracted=True, timeout=cfg.timeout)
    wrong = cfg.wrong_formatted if cfg.variant == "v2.wformat" else cfg.wrong
    for i, vd in zip(to_grade, verdicts):
        if vd.correct:
            pre[i] = RewardResult(cfg.correct, True, boxes[i], "correct")
        elif vd.timed_out:
            pre[i] = RewardResult(cfg.wrong, False, boxes[i], "timeout")  # reference: time-out -> -1
        else:
            pre[i] = RewardResult(wrong, False, boxes[i], "wrong")
    return [_validation_clip(r, cfg) for r in pre]  # type: ignore[arg-type]


def compute_reward(response: str, gold: Gold, cfg: RewardConfig = RewardConfig()) -> RewardResult:
    return compute_rewards([response], [gold], cfg)[0]


def uniform_groups(rewards: Sequence[float], group_size: int) -> list[bool]:
    """For rewards laid out group by group (group_size rollouts of one prompt in a row), True
    for each group whose samples all got the same reward: its GRPO advantages are all zero,
    so it can be dropped ("dynamic_remove_easy_sample" drops the all-correct ones)."""
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    if len(rewards) % group_size:
        raise ValueError(f"{len(rewards)} rewards is not a multiple of group_size={group_size}")
    out = []
    for g in range(0, len(rewards), group_size):
        grp = rewards[g : g + group_size]
        out.append(all(x == grp[0] for x in grp))
    return out


def add_overlong_penalty(rewards: Sequence[RewardResult], lengths: Sequence[int], cap: int, buffer: int,
                         penalty: float = 1.0) -> list[RewardResult]:
    """Each reward with :func:`overlong_penalty` of its response length added to ``score``, the
    grader's score kept in ``grader_score`` (as verl's DAPO reward manager keeps the reward function's
    ``score`` beside the reward it adds the overlong reward to)."""
    return [replace(x, score=x.score + overlong_penalty(n, cap, buffer, penalty), grader_score=x.score)
            for x, n in zip(rewards, lengths, strict=True)]


def overlong_penalty(length: int, cap: int, buffer: int, penalty: float = 1.0) -> float:
    """DAPO's soft overlong punishment (arXiv 2503.14476, eq. 13; verl ``reward_model.overlong_buffer``):
    0 up to ``cap - buffer`` tokens, then falling linearly to ``-penalty`` at ``cap`` (responses are
    never longer than the cap here: the engine stops there). ``buffer`` 0: no penalty."""
    if buffer <= 0:
        return 0.0
    exceed = length - (cap - buffer)
    return min(-exceed / buffer * penalty, 0.0)
