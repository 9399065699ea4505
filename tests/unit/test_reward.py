"""OctoThinker reward variants, repetition detector, validation clipping, uniform groups."""

import random
import re
import time

import pytest

from megatron_octo.eval.grader import configure_grader, shutdown_grader
from megatron_octo.rl.reward import RewardConfig, compute_reward, compute_rewards, has_repetition, uniform_groups

pytestmark = pytest.mark.timeout(120)

REPEAT = "Let me check again. " * 6  # a 20-char unit repeated 6 times


@pytest.fixture(scope="module", autouse=True)
def _workers():
    configure_grader(workers=2)
    yield
    shutdown_grader()


def _scores(responses, golds, **kw):
    return [(r.score, r.reason) for r in compute_rewards(responses, golds, RewardConfig(**kw))]


def test_default_variant():
    resp = [
        "So $x = \\boxed{\\dfrac{1}{2}}$.",
        "So $x = \\boxed{3}$.",
        "I think it is 1/2.",
        "first \\boxed{7} then \\boxed{0.5}",
        REPEAT + "\\boxed{0.5}",
        "\\boxed{9^{9^{9^{9}}}}",
    ]
    golds = ["\\frac12"] * 4 + ["1/2", "1"]
    out = compute_rewards(resp, golds, RewardConfig(timeout=1.5))
    assert [(r.score, r.reason) for r in out] == [
        (1.0, "correct"),
        (-1.0, "wrong"),
        (-1.0, "no_box"),
        (1.0, "correct"),  # last box counts; no penalty for 2 boxes in the default variant
        (1.0, "correct"),
        (-1.0, "timeout"),
    ]
    assert out[0].correct and out[0].extracted == "\\dfrac{1}{2}"
    assert out[2].extracted is None


def test_v2_wformat():
    resp = ["\\boxed{5}", "\\boxed{4}", "no box", "\\boxed{5} \\boxed{5}", REPEAT + "\\boxed{5}"]
    assert _scores(resp, ["5"] * 5, variant="v2.wformat") == [
        (1.0, "correct"),
        (-0.5, "wrong"),
        (-1.0, "no_box"),
        (-1.0, "multiple_boxes"),
        (-1.0, "repetition"),
    ]


def test_v3_and_v4_repeat_penalty():
    resp = ["\\boxed{5}", REPEAT + "\\boxed{5}", "\\boxed{4} \\boxed{5}", "\\boxed{4}", "none"]
    assert _scores(resp, ["5"] * 5, variant="v3.repeatpenalty") == [
        (1.0, "correct"), (-2.0, "repetition"), (1.0, "correct"), (-1.0, "wrong"), (-1.0, "no_box")
    ]
    assert _scores(resp, ["5"] * 5, variant="v4.repeatpenalty") == [
        (1.0, "correct"), (-2.0, "repetition"), (-2.0, "multiple_boxes"), (-1.0, "wrong"), (-1.0, "no_box")
    ]


def test_validation_clips_and_values_are_configurable():
    resp = ["\\boxed{5}", "\\boxed{4}", "none"]
    assert [r.score for r in compute_rewards(resp, ["5"] * 3, RewardConfig(validation=True))] == [1.0, 0.0, 0.0]
    cfg = RewardConfig(correct=2.0, wrong=-0.25, no_box=-3.0)
    assert [r.score for r in compute_rewards(resp, ["5"] * 3, cfg)] == [2.0, -0.25, -3.0]
    r = compute_reward("\\boxed{27}", 27.0)  # AMC-style float gold
    assert r.score == 1.0 and r.correct
    with pytest.raises(ValueError, match="unknown reward variant"):
        RewardConfig(variant="v9")
    with pytest.raises(ValueError, match="2 responses but 1 gold"):
        compute_rewards(["a", "b"], ["1"])


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
