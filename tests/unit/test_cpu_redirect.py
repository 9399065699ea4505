"""The CUDA-to-CPU redirect: what it covers, that it stays off with a GPU, and its version pin."""

from __future__ import annotations

import sys

import pytest

from tests.helpers import run

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("mode", ["active", "inactive-with-gpu", "version-pin"])
def test_cpu_redirect(mode):
    res = run([sys.executable, "tests/scripts/cpu_redirect_checks.py", mode], timeout=100)
    assert res.returncode == 0 and res.stdout.strip().endswith("OK"), res.stdout + res.stderr[-3000:]
