"""OctoThinker reward's repetition detector and uniform groups. The reward variants and validation clipping,
which grade through worker processes: tests/process/test_reward_workers.py."""

import random
import re
import time

import pytest

from megatron_octo.rl.reward import has_repetition, uniform_groups

pytestmark = pytest.mark.timeout(120)


def test_has_repetition_matches_recipe_regex():
    # Same predicate as re.search(r"(.{5,}?)\1{4,}", s), checked on random strings with small
    # alphabets (many near-repeats) and newlines (which "." does not match).
    pat = re.compile(r"(.{5,}?)\1{4,}")
    rng = random.Random(0)
    for _ in range(4000):
        alpha = rng.choice(["ab", "abc", "ab\n", "a b", "xy\n "])
        s = "".join(rng.choice(alpha) for _ in range(rng.randint(0, 70)))
        if rng.random() < 0.4:
            u = "".join(rng.choice(alpha) for _ in range(rng.randint(1, 9)))
            i = rng.randint(0, len(s))
            s = s[:i] + u * rng.randint(3, 7) + s[i:]
        assert has_repetition(s) == bool(pat.search(s)), repr(s)
    assert has_repetition("abcde" * 5) and not has_repetition("abcde" * 4)
    # A 4-char unit is too short, but "abcdabcd" is an 8-char unit: 40+ chars repeat.
    assert not has_repetition("abcd" * 9) and not pat.search("abcd" * 9)
    assert has_repetition("abcd" * 10) and pat.search("abcd" * 10)
    assert not has_repetition("abcde\n" * 10)  # newline inside the unit


def test_has_repetition_is_fast_on_long_responses():
    rng = random.Random(1)
    words = ["the", "sum", "is", "x", "=", "\\frac{1}{2}", "+", "3", "so", "we", "get", "and"]
    text = " ".join(rng.choice(words) for _ in range(8000))  # ~30k chars, one line
    t = time.monotonic()
    has_repetition(text)
    assert time.monotonic() - t < 2.0  # the regex needs ~20 s here


def test_uniform_groups():
    assert uniform_groups([1, 1, 1, -1, 1, -1, -1, -1, -1], 3) == [True, False, True]
    assert uniform_groups([], 4) == []
    with pytest.raises(ValueError, match="not a multiple"):
        uniform_groups([1, 1, 1], 2)
    with pytest.raises(ValueError, match="group_size must be >= 1"):
        uniform_groups([1], 0)
