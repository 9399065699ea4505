"""tools/merge_checkpoints.py with TP=2 inputs (torchrun, 2 gloo processes): they merge to the same weights,
bit for bit, as their TP=1 reshards do, including a vocabulary padded further at TP=2."""

from __future__ import annotations

import sys

import pytest
import torch

from megatron_octo.checkpoint.save_load import read_trainer_state, resolve_checkpoint
from tests.helpers import ROOT, checkpoint_tensors, run, run_train, tiny_recipe, write_indexed_dataset

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(900)]

MODEL = ("embedding.", "decoder.", "output_layer.")


def merge(*args, timeout=300):
    res = run([sys.executable, "tools/merge_checkpoints.py", *map(str, args)], timeout=timeout)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def model_tensors(path) -> dict:
    return checkpoint_tensors(resolve_checkpoint(str(path)), MODEL)


def assert_bitwise(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b) and a
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


def test_tp2_checkpoints_merge_like_their_tp1_reshards(tmp_path):
    recipe = tiny_recipe(tmp_path, write_indexed_dataset(str(tmp_path / "ds")))
    tp2 = tmp_path / "tp2"
    run_train(recipe, ["parallel.tp=2", "train.tokens=512", f"checkpoint.save={tp2}", "checkpoint.save_interval=1"],
              nproc=2)
    a2, b2 = tp2 / "iter_0000001", tp2 / "iter_0000002"
    assert read_trainer_state(str(a2)).layout["tp"] == 2 and sorted(p.name for p in a2.glob("__1_*.distcp"))
    # The TP=1 reshards: each loaded at TP=1 by megatron's dist checkpointing and saved again.
    res = run([sys.executable, str(ROOT / "tests/scripts/resave_checkpoint.py"), str(a2), str(tmp_path / "a1"),
               str(b2), str(tmp_path / "b1")], timeout=300)
    assert res.returncode == 0 and "RESULT" in res.stdout, res.stdout[-2000:] + res.stderr[-3000:]
    assert read_trainer_state(resolve_checkpoint(str(tmp_path / "a1"))).layout["tp"] == 1

    merge(a2, b2, "--weights", "0.25,0.75", "--out", tmp_path / "m2")
    merge(tmp_path / "a1", tmp_path / "b1", "--weights", "0.25,0.75", "--out", tmp_path / "m1")
    m1, m2 = model_tensors(tmp_path / "m1"), model_tensors(tmp_path / "m2")
    assert_bitwise(m2, m1)
    a, b = model_tensors(tmp_path / "a1"), model_tensors(tmp_path / "b1")
    assert any(not torch.equal(a[k], b[k]) for k in a)
    assert_bitwise(m1, {k: (a[k].double() * 0.25 + b[k].double() * 0.75).float() for k in a})


def test_tp2_import_with_a_wider_vocab_padding_merges_to_the_tp1_import(hf_imported, tmp_path):
    # Vocabulary 300: padded to 384 rows at TP=1 (multiple of 128) and 512 at TP=2 (of 256), tied embeddings
    # (the session's imports of one HF model, tests/conftest.py: hf_imported).
    assert model_tensors(hf_imported["tp2"])["embedding.word_embeddings.weight"].shape[0] == 512
    merge(hf_imported["tp2"], hf_imported["tp2"], "--out", tmp_path / "m")
    merged, tp1 = model_tensors(tmp_path / "m"), model_tensors(hf_imported["tp1"])
    assert tp1["embedding.word_embeddings.weight"].shape[0] == 384 and "output_layer.weight" not in tp1
    assert_bitwise(merged, tp1)
