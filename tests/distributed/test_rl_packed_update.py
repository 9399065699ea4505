"""rl.micro_batch_tokens: the update by token-budget micro-batches equals the padded update, on every
parameter's gradient and on every weight after the step (tests/rl_cases.packed_update, in this interpreter
under megatron_in_process: the RL trainer's own _update on the tiny model, 8 rows of different lengths with one row
without loss tokens, PPO's clip and the dual clip active; token-mean and seq-mean-token-sum-norm).

Tolerances, both float32 rounding:

* gradients (as the optimizer step sees them, summed over the micro-batches): relative 1e-6 per
  parameter tensor (Frobenius norm); per element, the largest difference over the largest gradient of
  the tensor, 1e-6 or twice what the padded update itself moves when only its micro-batch split changes
  (``padded4``: the same padded rows in 4 micro-batches instead of 1, so the same sums in another order),
  which is what float32 summation order gives (measured: packed 3.6e-7 / 7.0e-7, padded4 2.9e-7 / 7.0e-7);
* weights after one SGD step (lr 10, so that the step is far above the weights' float32 spacing; Adam's
  first step lr * g / (|g| + eps) would turn the rounding of gradients near eps into steps of up to lr,
  and SGD's is linear in the gradient): the difference beyond one float32 spacing of the weight
  (2^-23 |w|: each side is w0 + step rounded once) over the tensor's largest step, 1e-6 (measured 5.8e-7);
* the update's metrics (loss, clip fractions, ppo_kl, entropy, grad norm): relative 1e-6.
"""

from __future__ import annotations

import pytest
import torch

from tests.megatron_state import megatron_in_process
from tests.rl_cases import packed_update

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(300)]

MODES = ("token-mean", "seq-mean-token-sum-norm")


@pytest.fixture(scope="module")
def results():
    with megatron_in_process(seed=7):
        torch.set_num_threads(1)  # as the fresh interpreter it ran in had it (OMP_NUM_THREADS=1); restored after
        return packed_update(MODES)


@pytest.mark.parametrize("mode", MODES)
def test_packed_update_equals_the_padded_update(results, mode):
    r = results[mode]
    assert r["params"] >= 20 and set(r["packed"]["grad"]["norm"]) == set(r["padded4"]["grad"]["norm"])
    for name, rel in r["packed"]["grad"]["norm"].items():
        assert rel <= 1e-6, (name, rel)
    for name, rel in r["packed"]["grad"]["elem"].items():
        assert rel <= max(1e-6, 2 * r["padded4"]["grad"]["elem"][name]), (name, rel)
    for name, rel in r["packed"]["weights"].items():
        assert rel <= 1e-6, (name, rel)
    ref = r["padded1"]["metrics"]
    for key in ("pg_loss", "clip_fraction", "clip_fraction_lower", "approx_kl", "entropy", "grad_norm"):
        assert r["packed"]["metrics"][key] == pytest.approx(ref[key], rel=1e-6, abs=0), key
    assert ref["clip_fraction"] > 0 and ref["clip_fraction_lower"] > 0  # the clips acted
