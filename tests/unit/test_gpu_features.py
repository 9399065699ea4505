"""GPU-dependent choices with the capability probes answering as an H100, a B200, an A100 and a
machine without apex: the FP8 recipe against the compute capability, the FP8 keys passed to
megatron, gradient_accumulation_fusion only with apex's kernel."""

from __future__ import annotations

import pytest
from megatron.core.transformer.transformer_config import TransformerConfig

from megatron_octo import config as cfgmod
from megatron_octo.models import llama
from megatron_octo.runtime import capability
from megatron_octo.runtime import simulated_gpu as sg
from tests.helpers import write_indexed_dataset

pytestmark = pytest.mark.gpu_sim

H100, B200, A100 = (9, 0), (10, 0), (8, 0)


def _cfg(*overrides):
    return cfgmod.load(None, ["model.preset=tiny", "train.tokens=0", *overrides])


def _validate(cfg, cap):
    cfgmod.check_fp8(cfg.model, cap)


def test_mxfp8_needs_blackwell(tmp_path):
    cfg = _cfg("model.fp8=e4m3", "model.fp8_recipe=mxfp8")
    with pytest.raises(cfgmod.ConfigError, match="'model.fp8_recipe'.*10.0.*9.0"):
        _validate(cfg, H100)
    _validate(cfg, B200)
    _validate(cfg, None)  # capability unknown (no GPU visible here): left to the run's own node
    # Through the entry points' validation, before any process group:
    prefix = write_indexed_dataset(str(tmp_path / "ds"), num_docs=20)
    full = cfgmod.load(None, ["tokenizer.library=null", "train.tokens=1024", "model.seq_length=32",
                              f"data.blend=[{{prefix: {prefix}, weight: 1.0}}]", "model.fp8=e4m3",
                              "model.fp8_recipe=mxfp8"])
    with pytest.raises(cfgmod.ConfigError, match="'model.fp8_recipe'"):
        cfgmod.validate(full, 1, have_gpu=True, have_te=True, capability=H100)
    cfgmod.validate(full, 1, have_gpu=True, have_te=True, capability=B200)


@pytest.mark.parametrize("recipe", ["delayed", "tensorwise", "blockwise"])
def test_hopper_recipes(recipe):
    cfg = _cfg("model.fp8=hybrid", f"model.fp8_recipe={recipe}")
    _validate(cfg, H100)
    _validate(cfg, B200)
    with pytest.raises(cfgmod.ConfigError, match="'model.fp8_recipe'"):
        _validate(cfg, A100)


@pytest.mark.parametrize("override,key", [
    ("model.fp8_amax_history_len=0", "model.fp8_amax_history_len"),
    ("model.fp8_amax_compute_algo=mean", "model.fp8_amax_compute_algo"),
])
def test_fp8_key_errors_name_the_key(override, key):
    with pytest.raises(cfgmod.ConfigError, match=f"'{key}'"):
        _validate(_cfg("model.fp8=hybrid", override), H100)


def test_fp8_param_needs_fp8():
    with pytest.raises(cfgmod.ConfigError, match="'model.fp8_param'"):
        _validate(_cfg("model.fp8_param=true"), H100)


def test_fp8_keys_reach_megatron_with_megatron_lm_defaults():
    kw = llama.gpu_feature_kwargs(_cfg().model, te=False, gpu=False)
    # Megatron-LM's defaults are TransformerConfig's: --fp8-amax-history-len 1, most_recent, no fp8 params.
    for key in ("fp8_amax_history_len", "fp8_amax_compute_algo", "fp8_param"):
        assert kw[key] == TransformerConfig.__dataclass_fields__[key].default, key
    kw = llama.gpu_feature_kwargs(_cfg("model.fp8=hybrid", "model.fp8_recipe=mxfp8", "model.fp8_amax_history_len=1024",
                                       "model.fp8_amax_compute_algo=max", "model.fp8_param=true").model,
                                  te=True, gpu=True)
    assert (kw["fp8"], kw["fp8_recipe"], kw["fp8_amax_history_len"], kw["fp8_amax_compute_algo"], kw["fp8_param"]) == (
        "hybrid", "mxfp8", 1024, "max", True)


def test_gradient_accumulation_fusion_only_with_apex(monkeypatch, capsys):
    monkeypatch.setattr(capability, "apex_wgrad_fusion_available", lambda: True)
    assert llama.gradient_accumulation_fusion(te=True) is True
    assert llama.gradient_accumulation_fusion(te=False) is False
    monkeypatch.setattr(capability, "apex_wgrad_fusion_available", lambda: False)  # pip TE, no apex
    monkeypatch.setattr(llama, "_SAID", set())
    assert llama.gradient_accumulation_fusion(te=True) is False
    assert llama.gradient_accumulation_fusion(te=True) is False
    out = capsys.readouterr().out
    assert out.count("gradient_accumulation_fusion off") == 1 and "fused_weight_gradient_mlp_cuda" in out


def test_probes_answer_as_the_simulated_gpu():
    assert capability.compute_capability() is None  # this machine: no GPU
    for cap in (H100, B200):
        with sg.simulated_gpu(capability=cap):
            assert capability.compute_capability() == cap
    assert capability.apex_wgrad_fusion_available() is False  # apex is not installable here
