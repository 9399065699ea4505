"""megatron set up in-process (tests/megatron_state.py): two tests that build megatron models run back to
back give the same results in either order, and the interpreter is left as it was found: no process
group, no parallel state, the CPU redirect and every attribute it patched undone, random states, dtype,
thread count and rendezvous variables restored."""

from __future__ import annotations

import torch

from tests.megatron_cases import sdpa_against_megatron, tiny_model_greedy
from tests.megatron_state import interpreter_state, megatron_in_process, same_state


def _in_order(first, second):
    results = {}
    for name, fn, seed in (first, second):
        with megatron_in_process(seed=seed):
            results[name] = fn()
    return results


def test_two_in_process_tests_agree_in_either_order_and_leave_no_state():
    before = interpreter_state()
    a = ("sdpa", sdpa_against_megatron, 3)
    b = ("model", tiny_model_greedy, 11)
    ab = _in_order(a, b)
    assert same_state(before, interpreter_state()) == []
    ba = _in_order(b, a)
    assert same_state(before, interpreter_state()) == []
    assert ab["sdpa"] == ba["sdpa"]
    assert torch.equal(ab["model"][0], ba["model"][0]) and ab["model"][1] == ba["model"][1]
    assert sum(len(t) for t in ab["model"][1]) > 0  # something was generated


def test_the_redirect_and_its_patches_are_undone():
    import torch.cuda

    from megatron_octo.runtime import cpu

    original = torch.cuda.current_device
    with megatron_in_process(seed=1):
        assert cpu.is_active() and torch.cuda.current_device is not original
        assert torch.zeros(1, device="cuda").device.type == "cpu"  # the redirect at work
    assert not cpu.is_active() and torch.cuda.current_device is original

