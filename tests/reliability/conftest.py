"""Session fixtures of the reliability suite: a dataset, a recipe and one uninterrupted reference run."""

from __future__ import annotations

import pytest

from tests.conftest import shared_dir
from tests.helpers import tiny_recipe, write_indexed_dataset
from tests.reliability.faultlib import STEPS, train


@pytest.fixture(scope="session")
def rel(tmp_path_factory):
    """``tmp`` (this worker's directory), ``recipe`` (tiny model, 8 x 32-token batches) and ``ref``: the
    uninterrupted run's save directory (8 steps, checkpoints at 2, 4, 6, 8), built once per test run and only
    read by the tests."""
    def build(shared):
        train(tiny_recipe(shared, write_indexed_dataset(str(shared / "ds"))), [f"checkpoint.save={shared / 'reference'}"])

    shared = shared_dir(tmp_path_factory, "reliability", build)
    ref = shared / "reference"
    assert sorted(d.name for d in ref.glob("iter_*")) == [f"iter_{i:07d}" for i in range(2, STEPS + 1, 2)]
    tmp = tmp_path_factory.mktemp("reliability")
    return {"tmp": tmp, "recipe": tiny_recipe(tmp, str(shared / "ds")), "ref": ref}
