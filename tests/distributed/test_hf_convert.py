"""Hugging Face import at TP=2 / PP=2 (the tool under torchrun, 2 gloo processes): logits equal transformers' (at
TP=2 in the distributed bucket), and the export of those checkpoints gives back the original tensors bit for bit."""

from __future__ import annotations

import pytest
import torch

from tests.hf_cases import from_hf, hf_tensors, to_hf

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(300)]


def _assert_bitwise(a_dir, b_dir):
    a, b = hf_tensors(a_dir), hf_tensors(b_dir)
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].dtype == b[name].dtype and torch.equal(a[name], b[name]), name


def test_import_tp2_logits_equal_transformers_and_export_is_bitwise(hf_imported, rank_bucket, tmp_path):
    # The session's TP=2 import (tests/conftest.py: hf_imported): the tool starts itself under torchrun with
    # TP x PP processes, and TP=2 pads the vocabulary to a multiple of 128 x 2.
    hf, tp2 = hf_imported["hf"], hf_imported["tp2"]
    assert "TP=2 PP=1" in hf_imported["stdout_tp2"] and "vocab 300 padded to 512" in hf_imported["stdout_tp2"]
    assert sorted(p.name for p in (tp2 / "iter_0000000").glob("__1_*.distcp"))  # rank 1 wrote
    out = rank_bucket.result("test_hf_logits_tp2")[0]  # rank 0's lines (tests/hf_cases.hf_logits)
    assert out["rc"] == 0 and float(out["lines"]["max_abs_diff"]) <= 1e-4, out
    assert out["lines"]["greedy_match"] == "True", out
    to_hf(tp2, "--out", tmp_path / "back")
    _assert_bitwise(hf, tmp_path / "back")


def test_import_pp2_tied_embeddings_export_is_bitwise(hf_imported, tmp_path):
    # PP=2 with tied embeddings: the output layer lives on the last stage, the embedding on the first.
    hf = hf_imported["hf"]
    res = from_hf(hf, "--out", tmp_path / "mg_pp2", "--pp", "2")
    assert "TP=1 PP=2" in res.stdout
    to_hf(tmp_path / "mg_pp2", "--out", tmp_path / "back")
    _assert_bitwise(hf, tmp_path / "back")
