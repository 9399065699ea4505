"""HF <-> megatron name/layout mapping, HF config parsing, safetensors streaming (pure, no processes)."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from megatron_octo.models import hf_mapping as hm
from megatron_octo.models.hf_config import (
    HFConfigError, arch_from_hf_config, hf_config_from_arch, matching_preset, model_overrides,
)
from megatron_octo.models.hf_io import (
    HFWeights, HFWeightsError, ShardedSafetensorsWriter, parse_size, plan_shards,
)
from megatron_octo.models.llama import PRESETS, LlamaArchitecture

pytestmark = pytest.mark.timeout(60)


def _labelled(rows: int, base: int, cols: int = 3) -> torch.Tensor:
    """Row r holds base + r in every column: the layout can be read back from the values."""
    return (base + torch.arange(rows, dtype=torch.float32)).unsqueeze(1).repeat(1, cols)


# ----- QKV -------------------------------------------------------------------------------------

def test_qkv_interleaves_query_heads_of_each_group_then_k_then_v():
    np_, ng, hn = 4, 2, 2
    q, k, v = _labelled(np_ * hn, 0), _labelled(ng * hn, 100), _labelled(ng * hn, 200)
    fused = hm.qkv_hf_to_megatron(q, k, v, np_, ng)
    # group 0: q heads 0,1 (rows 0-3), k0 (100,101), v0 (200,201); group 1: q heads 2,3, k1, v1
    assert fused[:, 0].tolist() == [0, 1, 2, 3, 100, 101, 200, 201, 4, 5, 6, 7, 102, 103, 202, 203]


def test_qkv_layout_is_what_megatron_attention_splits():
    """megatron SelfAttention.get_query_key_value_tensors: view [ng, (np/ng + 2) * hn] and split
    [np/ng * hn, hn, hn]; query head i must attend with key/value head i // (np/ng) like HF repeat_kv."""
    np_, ng, hn, h = 6, 2, 4, 5
    q, k, v = torch.randn(np_ * hn, h), torch.randn(ng * hn, h), torch.randn(ng * hn, h)
    mixed = hm.qkv_hf_to_megatron(q, k, v, np_, ng).view(ng, (np_ // ng + 2) * hn, h)
    mq, mk, mv = torch.split(mixed, [np_ // ng * hn, hn, hn], dim=1)
    assert torch.equal(mq.reshape(np_ * hn, h), q)
    for i in range(np_):  # the key/value group serving HF query head i
        assert torch.equal(mk[i // (np_ // ng)], k[(i // (np_ // ng)) * hn:(i // (np_ // ng) + 1) * hn])
    assert torch.equal(mv.reshape(ng * hn, h), v)


@pytest.mark.parametrize("np_,ng", [(4, 4), (4, 2), (8, 1), (24, 8)])
def test_qkv_round_trip_is_exact(np_, ng):
    hn, h = 4, 7
    q, k, v = torch.randn(np_ * hn, h), torch.randn(ng * hn, h), torch.randn(ng * hn, h)
    back = hm.qkv_megatron_to_hf(hm.qkv_hf_to_megatron(q, k, v, np_, ng), np_, ng, hn)
    assert all(torch.equal(a, b) for a, b in zip(back, (q, k, v)))


def test_qkv_shape_errors():
    with pytest.raises(ValueError, match="do not fit"):
        hm.qkv_hf_to_megatron(torch.zeros(8, 4), torch.zeros(6, 4), torch.zeros(6, 4), 4, 2)
    with pytest.raises(ValueError, match="expected 16"):
        hm.qkv_megatron_to_hf(torch.zeros(15, 4), 4, 2, 2)


# ----- gate/up, TP shards, vocab ---------------------------------------------------------------

def test_gate_up_fusion_and_tp_shards():
    gate, up = _labelled(4, 0), _labelled(4, 10)
    fc1 = hm.gate_up_fuse(gate, up)
    assert fc1[:, 0].tolist() == [0, 1, 2, 3, 10, 11, 12, 13]
    g2, u2 = hm.gate_up_split(fc1)
    assert torch.equal(g2, gate) and torch.equal(u2, up)
    # TP=2: each rank holds its slice of gate then its slice of up (not a contiguous block of fc1)
    assert hm.fc1_tp_shard(fc1, 2, 0)[:, 0].tolist() == [0, 1, 10, 11]
    assert hm.fc1_tp_shard(fc1, 2, 1)[:, 0].tolist() == [2, 3, 12, 13]
    with pytest.raises(ValueError, match="differ"):
        hm.gate_up_fuse(gate, _labelled(3, 0))
    with pytest.raises(ValueError, match="odd"):
        hm.gate_up_split(torch.zeros(5, 2))


def test_row_and_column_parallel_shards():
    w = torch.arange(24.0).view(4, 6)
    assert torch.equal(hm.tp_shard(w, 0, 2, 1), w[2:])
    assert torch.equal(hm.tp_shard(w, 1, 3, 2), w[:, 4:])
    with pytest.raises(ValueError, match="does not split"):
        hm.tp_shard(w, 0, 3, 0)


def test_vocab_padding_and_unpadding():
    emb = torch.randn(300, 8)
    padded = hm.pad_vocab(emb, 384)
    assert padded.shape == (384, 8) and torch.equal(padded[:300], emb) and not padded[300:].any()
    assert torch.equal(hm.unpad_vocab(padded, 300), emb)
    assert hm.pad_vocab(emb, 300) is emb
    with pytest.raises(ValueError, match="smaller than the vocabulary"):
        hm.pad_vocab(emb, 256)
    with pytest.raises(ValueError, match="fewer than the vocabulary"):
        hm.unpad_vocab(emb, 301)


def test_embedding_local_tensor_pads_then_splits_rows():
    emb = _labelled(300, 0)
    r1 = hm.megatron_local_tensor("embedding", [emb], num_heads=4, num_groups=2, padded_vocab=512, tp=2, rank=1)
    assert r1.shape == (256, 3) and r1[0, 0] == 256 and r1[43, 0] == 299 and not r1[44:].any()


# ----- names -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name,kind,hf", [
    ("embedding.word_embeddings.weight", "embedding", ("model.embed_tokens.weight",)),
    ("decoder.final_layernorm.weight", "final_norm", ("model.norm.weight",)),
    ("decoder.layers.3.input_layernorm.weight", "input_norm", ("input_layernorm.weight",)),
    ("decoder.layers.3.self_attention.linear_qkv.layer_norm_weight", "input_norm", ("input_layernorm.weight",)),
    ("decoder.layers.0.pre_mlp_layernorm.weight", "mlp_norm", ("post_attention_layernorm.weight",)),
    ("decoder.layers.0.mlp.linear_fc1.layer_norm_weight", "mlp_norm", ("post_attention_layernorm.weight",)),
    ("decoder.layers.1.self_attention.linear_qkv.weight", "qkv",
     ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight")),
    ("decoder.layers.1.self_attention.linear_proj.weight", "proj", ("self_attn.o_proj.weight",)),
    ("decoder.layers.1.mlp.linear_fc1.weight", "fc1", ("mlp.gate_proj.weight", "mlp.up_proj.weight")),
    ("decoder.layers.1.mlp.linear_fc2.weight", "fc2", ("mlp.down_proj.weight",)),
])
def test_param_source_names(name, kind, hf):
    src = hm.param_source(name, tie_embeddings=False)
    assert src.kind == kind and src.hf_names == hf
    if src.local_layer is not None:
        assert hm.hf_names_for_layer(src, 7) == [f"model.layers.7.{s}" for s in hf]


def test_output_layer_source_depends_on_tying():
    assert hm.param_source("output_layer.weight", False).hf_names == ("lm_head.weight",)
    assert hm.param_source("output_layer.weight", True).hf_names == ("model.embed_tokens.weight",)
    with pytest.raises(KeyError, match="no Hugging Face counterpart"):
        hm.param_source("decoder.layers.0.self_attention.linear_qkv.bias", False)


def test_export_plan_covers_every_hf_tensor_once():
    for name in ("llama3.2-3b", "llama3.1-8b"):
        arch = PRESETS[name]
        plan = hm.export_plan(arch)
        names = [n for item in plan for n, _ in item.hf]
        assert len(names) == len(set(names)) == 9 * arch.num_layers + 2 + (0 if arch.tie_embeddings else 1)
        total = sum(torch.Size(s).numel() for item in plan for _, s in item.hf)
        # the published parameter counts (3.2-3B: 3,212,749,824; 3.1-8B: 8,030,261,248)
        assert total == {"llama3.2-3b": 3_212_749_824, "llama3.1-8b": 8_030_261_248}[name]


# ----- config.json -----------------------------------------------------------------------------

LLAMA32_1B = {  # meta-llama/Llama-3.2-1B config.json (transformers 4.x spelling)
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": 128000, "eos_token_id": 128001, "head_dim": 64, "hidden_act": "silu", "hidden_size": 2048,
    "initializer_range": 0.02, "intermediate_size": 8192, "max_position_embeddings": 131072, "mlp_bias": False,
    "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8,
    "pretraining_tp": 1, "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": True, "torch_dtype": "bfloat16", "use_cache": True,
    "vocab_size": 128256,
}


def test_published_llama_3_2_1b_config_is_the_preset():
    arch = arch_from_hf_config(LLAMA32_1B)
    assert arch == PRESETS["llama3.2-1b"] and matching_preset(arch) == "llama3.2-1b"


def test_transformers5_rope_parameters_spelling():
    cfg = dict(LLAMA32_1B)
    scaling = cfg.pop("rope_scaling")
    cfg.pop("rope_theta")
    cfg["rope_parameters"] = {**scaling, "rope_theta": 500000.0}
    assert arch_from_hf_config(cfg) == PRESETS["llama3.2-1b"]
    cfg["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0}
    arch = arch_from_hf_config(cfg)
    assert arch.rope_scaling_factor == 0 and arch.rotary_base == 10000


@pytest.mark.parametrize("arch", [PRESETS["llama3.2-3b"], PRESETS["llama3.1-8b"], PRESETS["tiny"],
                                  LlamaArchitecture(2, 64, 176, 4, 2, 300, 2048, 10000, 0.0, True, 1e-6)])
def test_hf_config_round_trip(arch):
    assert arch_from_hf_config(json.loads(json.dumps(hf_config_from_arch(arch)))) == arch


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="transformers not installed")
def test_exported_config_reads_in_transformers():
    from transformers import LlamaConfig

    arch = PRESETS["llama3.2-3b"]
    c = LlamaConfig.from_dict(hf_config_from_arch(arch, "bfloat16", 128000, 128001))
    rp = c.rope_parameters
    assert (rp["rope_type"], rp["factor"], rp["low_freq_factor"], rp["high_freq_factor"],
            rp["original_max_position_embeddings"], rp["rope_theta"]) == ("llama3", 32.0, 1.0, 4.0, 8192, 500000.0)
    assert c.tie_word_embeddings and c.num_key_value_heads == 8 and c.head_dim == 128


@pytest.mark.parametrize("change,key", [
    ({"model_type": "mistral"}, "model_type"),
    ({"architectures": ["LlamaForSequenceClassification"]}, "architectures"),
    ({"hidden_act": "gelu"}, "hidden_act"),
    ({"attention_bias": True}, "attention_bias"),
    ({"mlp_bias": True}, "mlp_bias"),
    ({"head_dim": 128}, "head_dim"),
    ({"num_key_value_heads": 5}, "num_key_value_heads"),
    ({"pretraining_tp": 2}, "pretraining_tp"),
    ({"rope_theta": 10000.5}, "rope_theta"),
    ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "rope_scaling.rope_type"),
    ({"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, "rope_scaling.rope_type"),
    ({"rope_scaling": dict(LLAMA32_1B["rope_scaling"], low_freq_factor=2.0)}, "rope_scaling.low_freq_factor"),
    ({"rope_scaling": dict(LLAMA32_1B["rope_scaling"], high_freq_factor=8.0)}, "rope_scaling.high_freq_factor"),
    ({"rope_scaling": dict(LLAMA32_1B["rope_scaling"], original_max_position_embeddings=4096)},
     "rope_scaling.original_max_position_embeddings"),
    ({"rope_scaling": dict(LLAMA32_1B["rope_scaling"], factor=0)}, "rope_scaling.factor"),
    ({"vocab_size": None}, "vocab_size"),
])
def test_config_rejections_name_the_key(change, key):
    with pytest.raises(HFConfigError, match=f"config.json key '{key}'"):
        arch_from_hf_config({**LLAMA32_1B, **change})


def test_model_overrides_reproduce_the_architecture():
    from megatron_octo import config as cfgmod
    from megatron_octo.models.llama import resolve_architecture

    arch = LlamaArchitecture(2, 64, 176, 4, 2, 300, 131072, 500000, 32.0, True, 1e-6)
    cfg = cfgmod.load(None, ["train.tokens=0", *model_overrides(arch)])
    assert resolve_architecture(cfg.model) == arch


# ----- safetensors streaming -------------------------------------------------------------------

def test_streaming_writer_single_file_reads_back(tmp_path):
    from safetensors.torch import load_file

    tensors = {"a": torch.randn(3, 5), "b": torch.randn(7).to(torch.bfloat16), "c": torch.randn(2, 2).half()}
    w = ShardedSafetensorsWriter(str(tmp_path), [(k, t.dtype, tuple(t.shape)) for k, t in tensors.items()], 10**9)
    for k, t in tensors.items():
        w.write(k, t)
    w.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
    back = load_file(str(tmp_path / "model.safetensors"))
    assert all(torch.equal(back[k], t) and back[k].dtype == t.dtype for k, t in tensors.items())


def test_streaming_writer_shards_with_index_and_hf_reader(tmp_path):
    tensors = {f"t{i}": torch.randn(10, 10) for i in range(5)}  # 400 bytes each
    w = ShardedSafetensorsWriter(str(tmp_path), [(k, t.dtype, tuple(t.shape)) for k, t in tensors.items()], 900)
    for k, t in tensors.items():
        w.write(k, t)
    w.close()
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_size"] == 2000
    assert sorted(set(index["weight_map"].values())) == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    r = HFWeights(str(tmp_path))
    assert all(torch.equal(r.get(k), t) for k, t in tensors.items()) and r.shape("t3") == (10, 10)
    (tmp_path / "model-00002-of-00003.safetensors").unlink()
    with pytest.raises(HFWeightsError, match="partial download, missing safetensors file.*00002-of-00003"):
        HFWeights(str(tmp_path))


def test_streaming_writer_rejects_out_of_order_or_missing(tmp_path):
    w = ShardedSafetensorsWriter(str(tmp_path), [("a", torch.float32, (2,)), ("b", torch.float32, (3,))], 10**9)
    with pytest.raises(ValueError, match="expected .*'a'"):
        w.write("b", torch.zeros(3))
    w.write("a", torch.zeros(2))
    with pytest.raises(ValueError, match="not every safetensors file|were not written"):
        w.close()
    with pytest.raises(HFWeightsError, match="no model.safetensors"):
        HFWeights(str(tmp_path / "nowhere"))


def test_sizes_and_shard_plan():
    assert parse_size("5GB") == 5 * 10**9 and parse_size("2MiB") == 2 * 2**20 and parse_size("1000") == 1000
    e = [("x", torch.float32, (100,)), ("big", torch.float32, (1000,)), ("y", torch.float32, (10,))]
    assert [[n for n, _, _ in s] for s in plan_shards(e, 1000)] == [["x"], ["big"], ["y"]]
