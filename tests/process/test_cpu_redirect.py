"""The CUDA-to-CPU redirect: what it covers, that it stays off with a GPU, and its version pin.

Each case runs in a fresh interpreter (the redirect is process-wide); tests/scripts/cpu_redirect_checks.py
returns what it observed and the values are asserted here."""

from __future__ import annotations

import functools
import json
import sys

import pytest

from tests.helpers import run

pytestmark = pytest.mark.timeout(120)


@functools.lru_cache(maxsize=None)
def observe(mode: str) -> dict:
    res = run([sys.executable, "tests/scripts/cpu_redirect_checks.py", mode], timeout=100)
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_the_redirect_sends_cuda_requests_to_the_cpu():
    seen = observe("active")
    assert seen["cuda_available"] is False
    assert seen["cuda_tensor_before"] is not None  # without the redirect a CUDA tensor is an error
    assert (seen["installed"], seen["active"]) == (True, True)
    assert seen["devices"] == {k: "cpu" for k in seen["devices"]} and len(seen["devices"]) == 6
    assert seen["cuda_is_identity"] and seen["pin_memory_is_identity"]
    # megatron's grad-clipping assert reads tensor.type()
    assert (seen["type_float"], seen["type_double"]) == ("torch.cuda.FloatTensor", "torch.cuda.DoubleTensor")
    assert seen["current_device"] == "cpu"
    assert seen["event_elapsed"] == 0.0 and seen["synchronize"] is None


def test_megatron_rng_tracker_streams_on_the_cpu():
    seen = observe("active")
    assert seen["fork_kept_default_generator"], "fork changed the default generator"
    assert seen["streams_a_b_differ"]
    assert seen["restored_state_repeats"] and seen["stream_advances"]
    assert seen["same_seed_same_stream"], "the same seed must give the same stream"


def test_the_redirect_stays_off_with_a_gpu():
    assert observe("inactive-with-gpu") == {"installed": False, "active": False}


def test_an_unchecked_megatron_version_is_refused():
    err = observe("version-pin")["install_error"]
    assert err is not None, "install() accepted an unchecked megatron-core version"
    assert err.startswith("RuntimeError") and "0.16.1" in err and "0.17.0" in err, err
