"""A checkpoint written with megatron's local layer spec (every CPU run, every HF import on a CPU
node) has the tensor and ``_extra_state`` keys megatron's Transformer Engine spec reads, so it loads
into a TE model on the cluster, and a TE checkpoint loads into a local model, without any mapping.

The TE layout, read from megatron-core 0.16.1 (TE cannot be imported here):
``get_gpt_layer_with_transformer_engine_spec`` builds ``linear_qkv`` and ``linear_fc1`` as
``TELayerNormColumnParallelLinear`` (the RMSNorm fused in: ``layer_norm_weight``), ``linear_proj`` and
``linear_fc2`` as ``TERowParallelLinear``, ``input_layernorm``/``pre_mlp_layernorm`` as ``IdentityOp``;
each TE linear stores ``weight`` and its FP8 metadata as a ``ShardedObject`` ``_extra_state``
(``make_sharded_tensors_for_checkpoint``); ``TEDotProductAttention.sharded_state_dict`` is empty
unless the softmax is learnable. The local spec maps its norms onto the same names
(``sharded_state_dict_keys_map``) and megatron's local linears write an ``_extra_state`` (None,
"Keep compatibility with TE state dict") and ignore the one they read.
"""

from __future__ import annotations

import json
import re
import sys

import pytest
from torch.distributed.checkpoint import FileSystemReader

from megatron_octo import config as cfgmod
from megatron_octo.models import llama
from megatron_octo.checkpoint.save_load import latest_checkpoint
from tests.helpers import ROOT, run

pytestmark = pytest.mark.gpu_sim

TE_LAYER_KEYS = {
    "decoder.layers.self_attention.linear_qkv.weight",
    "decoder.layers.self_attention.linear_qkv.layer_norm_weight",
    "decoder.layers.self_attention.linear_qkv._extra_state",
    "decoder.layers.self_attention.linear_proj.weight",
    "decoder.layers.self_attention.linear_proj._extra_state",
    "decoder.layers.mlp.linear_fc1.weight",
    "decoder.layers.mlp.linear_fc1.layer_norm_weight",
    "decoder.layers.mlp.linear_fc1._extra_state",
    "decoder.layers.mlp.linear_fc2.weight",
    "decoder.layers.mlp.linear_fc2._extra_state",
}


def test_our_local_spec_keeps_megatrons_te_key_map():
    spec = llama.layer_spec(cfgmod.load(None, ["model.preset=tiny", "train.tokens=0",
                                               "model.transformer_impl=local"]).model)
    assert spec.submodules.sharded_state_dict_keys_map == {
        "input_layernorm.": "self_attention.linear_qkv.layer_norm_",
        "pre_mlp_layernorm.": "mlp.linear_fc1.layer_norm_",
    }


def test_local_checkpoint_has_the_te_layout(tiny_text_checkpoint):
    meta = FileSystemReader(latest_checkpoint(str(tiny_text_checkpoint / "ckpt"))).read_metadata()
    keys = {re.sub(r"/shard_.*$", "", k) for k in meta.state_dict_metadata}
    layer_keys = {k for k in keys if k.startswith("decoder.layers.")}
    assert layer_keys == TE_LAYER_KEYS
    # Outside the layers megatron builds the same modules for either spec.
    assert {"embedding.word_embeddings.weight", "decoder.final_layernorm.weight"} <= keys


def test_te_extra_state_loads_into_local_and_back(tmp_path):
    res = run([sys.executable, str(ROOT / "tests/scripts/te_extra_state_load.py"), str(tmp_path)], timeout=180)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    out = json.loads(res.stdout.split("RESULT ", 1)[1].splitlines()[0])
    assert out == {"fresh_models_differ": True, "te_into_local": True, "local_into_te": True,
                   "extra_states_received": out["linears"], "linears": 8, "all_none": True}
