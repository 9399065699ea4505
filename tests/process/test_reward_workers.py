"""OctoThinker reward variants and validation clipping, graded through the grader's worker processes."""

import pytest

from megatron_octo.eval.grader import configure_grader, shutdown_grader
from megatron_octo.rl.reward import RewardConfig, compute_reward, compute_rewards

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
