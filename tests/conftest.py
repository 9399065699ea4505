"""Session fixtures shared by end-to-end tests."""

from __future__ import annotations

import sys

import pytest

from tests.helpers import ROOT, run, run_train


@pytest.fixture(scope="session")
def tiny_text_checkpoint(tmp_path_factory):
    """A few steps of the tiny model on the built-in corpus with the bundled SentencePiece tokenizer:
    ``<dir>/ckpt`` (iteration 4) and the tokenized data in ``<dir>/data``."""
    tmp = tmp_path_factory.mktemp("textck")
    res = run([sys.executable, "-m", "tokenization.build_demo_data", "--out", str(tmp / "data")], timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    run_train(str(ROOT / "recipes/tiny/stable.yaml"), [
        "model.preset=tiny", "model.seq_length=64", f"data.mixture={tmp}/data/mixture.yaml",
        "train.tokens=2048", "train.global_batch_size=8", "train.micro_batch_size=4", "train.eval_interval=0",
        "schedule.warmup_tokens=0", f"checkpoint.save={tmp}/ckpt", "checkpoint.save_interval=0"])
    return tmp
