"""tools/plan.py run as a user runs it (a process): the headline plan for the paper's 3B model on 64 GPUs."""

from __future__ import annotations

import sys

import pytest

from tests.helpers import run

pytestmark = pytest.mark.timeout(120)


def test_cli_headline_plan():
    res = run([sys.executable, "tools/plan.py", "--model", "llama3.2-3b", "--gpus", "64", "--tokens", "200e9"],
              timeout=90)
    assert res.returncode == 0, res.stderr
    for text in ("3,212,749,824 parameters", "Memory per GPU", "Korthikanti", "fits", "47,684", "GPU-hours",
                 "Ranked layouts for 64 GPUs", "Megatron-Bridge"):
        assert text in res.stdout, text
