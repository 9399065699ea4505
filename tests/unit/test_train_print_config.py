"""The training CLI's ``--print-config``, in-process: ``megatron_octo.train.main`` prints the merged config
and returns before it builds a trainer (no CPU redirect, no process group, no signal handler). Its
refusals of bad keys and the signal handling run the real CLI: tests/e2e/test_train_cli.py."""

from __future__ import annotations

import os

import pytest

from megatron_octo import train
from tests.helpers import run_main, tiny_recipe, write_indexed_dataset


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    return tmp, tiny_recipe(tmp, write_indexed_dataset(str(tmp / "ds")))


@pytest.fixture(autouse=True)
def _omp_threads_restored(monkeypatch):
    """main() does os.environ.setdefault('OMP_NUM_THREADS', '1'): undone after the test."""
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))


def test_print_config(recipe):
    _, path = recipe
    res = run_main(train.main, ["--config", path, "--print-config", "schedule.lr=0.5"])
    assert res.returncode == 0 and "lr: 0.5" in res.stdout and "preset: tiny" in res.stdout
