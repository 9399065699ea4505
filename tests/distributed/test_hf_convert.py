"""Hugging Face import at TP=2 / PP=2 (torchrun, 2 gloo processes): logits equal transformers', and the
export of those checkpoints gives back the original tensors bit for bit."""

from __future__ import annotations

import pytest
import torch

from tests.e2e.test_hf_roundtrip import from_hf, hf_tensors, logits_check, make_hf_model, to_hf

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    return make_hf_model(tmp_path_factory.mktemp("hfd") / "hf", seed=1)


def _assert_bitwise(a_dir, b_dir):
    a, b = hf_tensors(a_dir), hf_tensors(b_dir)
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].dtype == b[name].dtype and torch.equal(a[name], b[name]), name


def test_import_tp2_logits_equal_transformers_and_export_is_bitwise(hf, tmp_path):
    # The tool starts itself under torchrun with TP x PP processes.
    res = from_hf(hf, "--out", tmp_path / "mg_tp2", "--tp", "2")
    # TP=2 pads the vocabulary to a multiple of 128 x 2
    assert "TP=2 PP=1" in res.stdout and "vocab 300 padded to 512" in res.stdout
    assert sorted(p.name for p in (tmp_path / "mg_tp2" / "iter_0000000").glob("__1_*.distcp"))  # rank 1 wrote
    out = logits_check(hf, tmp_path / "mg_tp2", "--greedy", 6, nproc=2)
    assert float(out["max_abs_diff"]) <= 1e-4 and out["greedy_match"] == "True", out
    to_hf(tmp_path / "mg_tp2", "--out", tmp_path / "back")
    _assert_bitwise(hf, tmp_path / "back")


def test_import_pp2_tied_embeddings_export_is_bitwise(hf, tmp_path):
    # PP=2 with tied embeddings: the output layer lives on the last stage, the embedding on the first.
    res = from_hf(hf, "--out", tmp_path / "mg_pp2", "--pp", "2")
    assert "TP=1 PP=2" in res.stdout
    to_hf(tmp_path / "mg_pp2", "--out", tmp_path / "back")
    _assert_bitwise(hf, tmp_path / "back")
