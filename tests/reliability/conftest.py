"""Session fixtures of the reliability suite: a dataset, a recipe and one uninterrupted reference run."""

from __future__ import annotations

import pytest

from tests.helpers import tiny_recipe, write_indexed_dataset
from tests.reliability.faultlib import STEPS, train


@pytest.fixture(scope="session")
def rel(tmp_path_factory):
    """``tmp`` (a directory), ``recipe`` (tiny model, 8 x 32-token batches) and ``ref``: the
    uninterrupted run's save directory (8 steps, checkpoints at 2, 4, 6, 8)."""
    tmp = tmp_path_factory.mktemp("reliability")
    recipe = tiny_recipe(tmp, write_indexed_dataset(str(tmp / "ds")))
    ref = tmp / "reference"
    train(recipe, [f"checkpoint.save={ref}"])
    assert sorted(d.name for d in ref.glob("iter_*")) == [f"iter_{i:07d}" for i in range(2, STEPS + 1, 2)]
    return {"tmp": tmp, "recipe": recipe, "ref": ref}
