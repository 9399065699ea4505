"""Every validation error names its key; recipes load and override."""

from __future__ import annotations

from pathlib import Path

import pytest

from megatron_octo import config as cfgmod
from megatron_octo.training import checks
from tests.helpers import ROOT, write_indexed_dataset


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    return write_indexed_dataset(str(tmp_path_factory.mktemp("d") / "ds"), num_docs=20)


def _cfg(tmp_path, prefix, *overrides):
    base = ["tokenizer.library=null", "train.tokens=1024", "model.seq_length=32",
            f"data.blend=[{{prefix: {prefix}, weight: 1.0}}]"]
    return cfgmod.load(None, base + list(overrides))


def _validate(cfg, world=1, gpu=False, te=False):
    checks.validate(cfg, world, have_gpu=gpu, have_te=te)


def test_valid_config_passes(tmp_path, prefix):
    _validate(_cfg(tmp_path, prefix))
    _validate(_cfg(tmp_path, prefix, "parallel.tp=2", "train.global_batch_size=8"), world=2)


@pytest.mark.parametrize("overrides,world,key,fragment", [
    (["parallel.tp=3"], 3, "parallel.tp", "does not divide model.num_attention_heads=4"),
    (["parallel.tp=4", "model.num_query_groups=2"], 4, "parallel.tp", "num_query_groups=2"),
    (["parallel.pp=3"], 3, "parallel.pp", "does not divide model.num_layers=4"),
    (["parallel.tp=2"], 3, "parallel.tp", "does not divide the world size 3"),
    (["train.global_batch_size=6", "train.micro_batch_size=2"], 2, "train.global_batch_size",
     "micro_batch_size x micro-batches x data-parallel size (2 x n x 2)"),
    (["train.micro_batch_size=0"], 1, "train.micro_batch_size", "must be >= 1"),
    (["train.tokens=-1"], 1, "train.tokens", "must be >= 0"),
    (["parallel.sequence_parallel=true"], 1, "parallel.sequence_parallel", "needs parallel.tp > 1"),
    (["model.seq_length=8192"], 1, "model.seq_length", "exceeds model.max_position_embeddings=4096"),
    (["model.fp8=e4m3"], 1, "model.fp8", "needs Transformer Engine on a CUDA GPU"),
    (["model.fp8=e5m2"], 1, "model.fp8", "not one of e4m3, hybrid"),
    (["model.transformer_impl=transformer_engine"], 1, "model.transformer_impl", "needs a CUDA GPU"),
    (["model.preset=llama9"], 1, "model.preset", "unknown preset 'llama9'"),
    (["schedule.stage=anneal"], 1, "schedule.stage", "not one of stable, decay"),
    (["schedule.decay_style=step"], 1, "schedule.decay_style", "not one of cosine"),
    (["schedule.min_lr=1.0"], 1, "schedule.min_lr", "must be in [0, schedule.lr"),
    (["schedule.stage=decay"], 1, "checkpoint.init_from", "starts from a stable checkpoint"),
    (["checkpoint.init_from=/nonexistent/ckpt"], 1, "checkpoint.init_from", "not found: /nonexistent/ckpt"),
    (["data.split=90,x,0"], 1, "data.split", "comma-separated numbers"),
    (["train.eval_interval=2", "data.split=100,0,0"], 1, "data.split", "validation share"),
    (["tokenizer.library=huggingface"], 1, "tokenizer.path", "not set"),
    (["tokenizer.library=sentencepiece", "tokenizer.path=/nope/t.model"], 1, "tokenizer.path",
     "not found: /nope/t.model"),
    (["train.nan_policy=ignore"], 1, "train.nan_policy", "not one of skip, stop"),
    (["optimizer.name=lion"], 1, "optimizer.name", "not one of adam, sgd"),
    (["generation.gemm=mkl"], 1, "generation.gemm", "not one of auto, onednn, torch"),
])
def test_validation_error_names_key(tmp_path, prefix, overrides, world, key, fragment):
    cfg = _cfg(tmp_path, prefix, *overrides)
    with pytest.raises(cfgmod.ConfigError) as exc:
        _validate(cfg, world=world)
    assert f"'{key}'" in str(exc.value)
    assert fragment in str(exc.value)


def test_fp8_accepted_with_transformer_engine_on_gpu(tmp_path, prefix):
    _validate(_cfg(tmp_path, prefix, "model.fp8=hybrid", "model.fp8_recipe=mxfp8"), gpu=True, te=True)
    with pytest.raises(cfgmod.ConfigError, match="'model.fp8_recipe'"):
        _validate(_cfg(tmp_path, prefix, "model.fp8=hybrid", "model.fp8_recipe=nvfp4"), gpu=True, te=True)


def test_missing_data_files_name_the_blend_entry(tmp_path, prefix):
    cfg = cfgmod.load(None, ["tokenizer.library=null", "train.tokens=1",
                             f"data.blend=[{{prefix: {prefix}, weight: 1}}, {{prefix: {tmp_path}/missing, weight: 1}}]"])
    with pytest.raises(cfgmod.ConfigError, match=r"'data.blend\[1\].prefix'.*missing.bin"):
        _validate(cfg)
    cfg = cfgmod.load(None, ["tokenizer.library=null", "train.tokens=1"])
    with pytest.raises(cfgmod.ConfigError, match="'data.blend'.*no training data"):
        _validate(cfg)
    cfg = cfgmod.load(None, ["tokenizer.library=null", "train.tokens=1",
                             f"data.blend=[{{prefix: {prefix}, weight: 0}}]"])
    with pytest.raises(cfgmod.ConfigError, match=r"'data.blend\[0\].weight'"):
        _validate(cfg)


def test_unknown_keys_are_rejected_with_their_name(tmp_path):
    with pytest.raises(cfgmod.ConfigError, match="'train.tokenz'"):
        cfgmod.load(None, ["train.tokenz=5"])
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model:\n  preset: tiny\n  hidden: 64\n")
    with pytest.raises(cfgmod.ConfigError) as exc:
        cfgmod.load(str(recipe), [])
    assert str(recipe) in str(exc.value) and "'model.hidden'" in str(exc.value)


def test_type_errors_and_missing_required_keys(tmp_path):
    with pytest.raises(cfgmod.ConfigError, match="'parallel.tp'"):
        cfgmod.load(None, ["parallel.tp=two", "train.tokens=1"])
    with pytest.raises(cfgmod.ConfigError, match="train.tokens"):
        cfgmod.load(None, [])
    with pytest.raises(cfgmod.ConfigError, match="not of the form key=value"):
        cfgmod.load(None, ["train.tokens"])
    with pytest.raises(cfgmod.ConfigError, match="recipe file not found"):
        cfgmod.load(str(tmp_path / "nope.yaml"), [])


@pytest.mark.parametrize("recipe", sorted(str(p) for p in (ROOT / "recipes").rglob("*.yaml")
                                          if "mixtures" not in p.parts))
def test_every_shipped_recipe_loads(recipe):
    cfg = cfgmod.load(recipe, [])
    assert cfg.train.tokens >= 0


def test_paper_recipe_encodes_octothinker_numbers():
    stable = cfgmod.load(str(ROOT / "recipes/octothinker/llama3.2-3b/stable.yaml"), [])
    assert stable.model.preset == "llama3.2-3b"
    assert stable.model.seq_length == 8192
    assert stable.train.global_batch_size * stable.model.seq_length == 4 * 1024 * 1024  # 4M tokens
    assert stable.train.tokens == 200_000_000_000 and stable.schedule.stage == "stable"
    for branch in ("long", "short", "hybrid"):
        decay = cfgmod.load(str(ROOT / f"recipes/octothinker/llama3.2-3b/decay_{branch}.yaml"), [])
        assert decay.schedule.stage == "decay" and decay.train.tokens == 20_000_000_000
        assert decay.data.stage == f"decay_{branch}"
        assert decay.train.global_batch_size == stable.train.global_batch_size
