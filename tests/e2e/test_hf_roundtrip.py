"""Hugging Face interop end to end: tools/convert_from_hf.py and tools/convert_to_hf.py (one process).

A tiny random Llama built with transformers (Llama-3.2-like: GQA, tied embeddings, llama3 RoPE
scaling, a vocabulary that needs padding) is imported, compared logit by logit, exported back and
compared tensor by tensor; a checkpoint trained by our trainer is exported and generates the same
greedy tokens in transformers as in megatron; a converted checkpoint starts a training run.
"""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest
import torch

from tests.helpers import ROOT, run_train, tiny_recipe, write_indexed_dataset
from tests.hf_cases import VOCAB, from_hf, hf_logits, hf_tensors, make_hf_model, to_hf
from tests.megatron_state import megatron_in_process

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

def logits_check(hf_dir, ckpt, *extra):
    """tests/hf_cases.hf_logits's ``key: text`` lines at TP=1 in this interpreter (megatron set up at seed 0, one
    thread as under OMP_NUM_THREADS=1); TP=2 runs in the distributed bucket (tests/distributed/bucket.py)."""
    flags = list(map(str, extra))
    greedy_tokens = int(flags[flags.index("--greedy") + 1]) if "--greedy" in flags else 0
    assert set(flags) <= {"--control", "--greedy", str(greedy_tokens)}, flags
    with megatron_in_process(seed=0):
        torch.set_num_threads(1)  # restored after
        rc, lines = hf_logits(str(hf_dir), str(ckpt), greedy_tokens, "--control" in flags)
    assert rc == 0, lines
    return lines


def _load_tool(name):
    return importlib.import_module(f"megatron_octo.cli.{name}")


@pytest.fixture(scope="module")
def imported(hf_imported, tmp_path_factory):
    """The session's sharded tiny HF Llama and its TP=1 import (tests/conftest.py: hf_imported), read only;
    ``tmp`` for what the tests write."""
    assert (hf_imported["hf"] / "model.safetensors.index.json").is_file()  # the sharded input path is exercised
    assert "vocab 300 padded to 384, tied=True, rope_scaling_factor=32" in hf_imported["stdout_tp1"]
    return {"tmp": tmp_path_factory.mktemp("hf"), "hf": hf_imported["hf"], "ckpt": hf_imported["tp1"]}


def test_import_tp1_logits_equal_transformers(imported):
    out = logits_check(imported["hf"], imported["ckpt"], "--control")
    assert float(out["max_abs_diff"]) <= 1e-4, out
    # The comparison can fail: the same weights without llama3 RoPE scaling give different logits.
    assert float(out["control_diff_without_rope_scaling"]) > 1e-3, out


def test_import_then_export_is_bitwise_equal(imported):
    out = imported["tmp"] / "hf_back"
    res = to_hf(imported["ckpt"], "--out", out, "--max-shard-size", "200KB", process=True)
    assert "20 tensors" in res.stdout
    assert (out / "model.safetensors.index.json").is_file() and not (out / "model.safetensors").exists()
    orig, back = hf_tensors(imported["hf"]), hf_tensors(out)
    assert sorted(orig) == sorted(back)
    for name in orig:
        assert orig[name].dtype == back[name].dtype and torch.equal(orig[name], back[name]), name
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["tie_word_embeddings"] is True and cfg["vocab_size"] == VOCAB and cfg["dtype"] == "float32"
    assert cfg["rope_scaling"] == {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                   "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    # and it loads in transformers as the same model
    from transformers import AutoModelForCausalLM

    a = AutoModelForCausalLM.from_pretrained(str(imported["hf"])).eval()
    b = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    t = torch.randint(0, VOCAB, (1, 16))
    with torch.no_grad():
        assert torch.equal(a(t).logits, b(t).logits)
    # bf16 export: every tensor is the bf16 rounding of the original
    res = to_hf(imported["ckpt"], "--out", imported["tmp"] / "hf_bf16", "--dtype", "bf16")
    bf = hf_tensors(imported["tmp"] / "hf_bf16")
    assert all(bf[n].dtype == torch.bfloat16 and torch.equal(bf[n], orig[n].to(torch.bfloat16)) for n in orig)


def test_converted_checkpoint_starts_a_training_run(imported, tmp_path):
    """convert_from_hf output -> the trainer (init_from + init_weights_only) -> export: the trained
    weights are the imported ones moved by a tiny learning rate (a run that ignored init_from would
    start from a fresh random init, ~0.1 away)."""
    from megatron_octo.models.hf_config import arch_from_hf_config, model_overrides, read_hf_config

    prefix = write_indexed_dataset(str(tmp_path / "data"), vocab=VOCAB - 1, eod=VOCAB - 1, num_docs=60)
    recipe = tiny_recipe(tmp_path, prefix)
    arch = arch_from_hf_config(read_hf_config(str(imported["hf"])))
    run_train(recipe, [*model_overrides(arch), "model.seq_length=32", "train.tokens=512", "schedule.lr=1e-6",
                       "optimizer.weight_decay=0", f"checkpoint.save={tmp_path / 'run'}",
                       f"checkpoint.init_from={imported['ckpt']}", "checkpoint.init_weights_only=true"],
              in_process=True)
    assert (tmp_path / "run" / "latest_checkpointed_iteration.txt").read_text().strip() == "2"
    to_hf(tmp_path / "run", "--out", tmp_path / "hf_trained")
    orig, trained = hf_tensors(imported["hf"]), hf_tensors(tmp_path / "hf_trained")
    worst = max((orig[n] - trained[n]).abs().max().item() for n in orig)
    assert 0 < worst <= 1e-5, worst


def test_trained_checkpoint_exports_and_generates_the_same_tokens(tmp_path):
    prefix = write_indexed_dataset(str(tmp_path / "data"), num_docs=100)
    recipe = tiny_recipe(tmp_path, prefix)
    tok = str(ROOT / "data" / "tokenizer" / "octo_sp8k.model")
    run_train(recipe, ["model.preset=tiny-tied", "model.num_layers=2", "train.tokens=512", "schedule.lr=3e-3",
                       f"tokenizer.path={tok}", "tokenizer.library=sentencepiece",
                       f"checkpoint.save={tmp_path / 'run'}"], in_process=True)
    out = tmp_path / "hf"
    res = to_hf(tmp_path / "run", "--out", out)
    assert "tokenizer: tokenizer.model, tokenizer.json" in res.stdout
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["vocab_size"] == 8192 and cfg["tie_word_embeddings"] and cfg["eos_token_id"] == 2
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == 2
    # the exported tokenizer encodes like the SentencePiece model the run trained with
    import sentencepiece as spm
    from transformers import AutoTokenizer

    sp = spm.SentencePieceProcessor(model_file=tok)
    hf_tok = AutoTokenizer.from_pretrained(str(out))
    for text in ("Solve 3x + 5 = 20, so x = 5.", "  two  spaces\nand a newline \u00e9 \u2211"):
        assert hf_tok(text, add_special_tokens=False)["input_ids"] == sp.encode(text)
    got = logits_check(out, tmp_path / "run", "--greedy", 8)
    assert got["greedy_match"] == "True", got
    assert float(got["max_abs_diff"]) <= 1e-4, got


# ----- failures, each with its message ---------------------------------------------------------

@pytest.fixture(scope="module")
def small_hf(tmp_path_factory):
    return make_hf_model(tmp_path_factory.mktemp("small") / "hf")


def _edit_config(src, dst, **changes):
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg.update(changes)
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def test_from_hf_failures_name_the_problem(small_hf, tmp_path, capsys):
    tool = _load_tool("convert_from_hf")

    def fails(args, message):
        assert tool.main([str(a) for a in args]) == 2
        err = capsys.readouterr().err
        assert message in err, err

    (tmp_path / "exists").mkdir()
    fails([small_hf, "--out", tmp_path / "exists"], "already exists (use --force to replace it)")
    fails([tmp_path / "nothing", "--out", tmp_path / "o"], "Hugging Face model directory not found")
    fails([small_hf, "--out", tmp_path / "o", "--tp", "3"], "--tp 3 does not divide num_attention_heads=4")
    fails([small_hf, "--out", tmp_path / "o", "--tp", "4"], "--tp 4 does not divide num_key_value_heads=2")
    fails([small_hf, "--out", tmp_path / "o", "--pp", "3"], "--pp 3 does not divide num_hidden_layers=2")
    fails([_edit_config(small_hf, tmp_path / "mistral", model_type="mistral"), "--out", tmp_path / "o"],
          "config.json key 'model_type': 'mistral' is not 'llama'")
    fails([_edit_config(small_hf, tmp_path / "vocab", vocab_size=320), "--out", tmp_path / "o"],
          "vocab mismatch: model.embed_tokens.weight has 300 rows but config.json vocab_size=320")
    fails([_edit_config(small_hf, tmp_path / "ffn", intermediate_size=128), "--out", tmp_path / "o"],
          "shape mismatch: model.layers.0.mlp.gate_proj.weight is [176, 64], config.json implies [128, 64]")
    fails([_edit_config(small_hf, tmp_path / "yarn", rope_parameters={"rope_type": "yarn", "factor": 4.0,
                                                                        "rope_theta": 500000.0}),
           "--out", tmp_path / "o"], "config.json key 'rope_parameters.rope_type': 'yarn'")
    partial = _edit_config(small_hf, tmp_path / "partial")
    (partial / "model.safetensors").unlink()
    fails([partial, "--out", tmp_path / "o"], "no model.safetensors or model.safetensors.index.json")
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.partial").exists()


def test_to_hf_failures_name_the_problem(imported, tmp_path, capsys):
    tool = _load_tool("convert_to_hf")

    def fails(args, message):
        assert tool.main([str(a) for a in args]) == 2
        err = capsys.readouterr().err
        assert message in err, err

    ckpt = imported["ckpt"]
    (tmp_path / "exists").mkdir()
    fails([ckpt, "--out", tmp_path / "exists"], "already exists (use --force to replace it)")
    fails([tmp_path / "none", "--out", tmp_path / "o"], "checkpoint directory not found")
    (tmp_path / "empty").mkdir()
    fails([tmp_path / "empty", "--out", tmp_path / "o"], "not a checkpoint (no latest_checkpointed_iteration.txt")

    def copy(name, edit):
        dst = tmp_path / name
        shutil.copytree(ckpt, dst)
        edit(dst / "iter_0000000")
        return dst

    fails([copy("nometa", lambda d: (d / "metadata.json").unlink()), "--out", tmp_path / "o"],
          "missing metadata.json (not a complete dist checkpoint)")
    fails([copy("nostate", lambda d: (d / "trainer_state.json").unlink()), "--out", tmp_path / "o"],
          "missing trainer_state.json (partial or foreign checkpoint)")
    broken = copy("tracker", lambda d: None)
    (broken / "latest_checkpointed_iteration.txt").write_text("7")
    fails([broken, "--out", tmp_path / "o"], "names iteration 7 but")

    def set_model(key, value):
        def edit(d):
            text = (d / "config.yaml").read_text()
            lines = [f"  {key}: {value}" if line.startswith(f"  {key}:") else line for line in text.splitlines()]
            (d / "config.yaml").write_text("\n".join(lines) + "\n")
        return edit

    fails([copy("vocab", set_model("vocab_size", 400)), "--out", tmp_path / "o"],
          "vocab mismatch: embedding.word_embeddings.weight is [384, 64] in the checkpoint")
    fails([copy("ffn", set_model("ffn_hidden_size", 128)), "--out", tmp_path / "o"],
          "shape mismatch: decoder.layers.mlp.linear_fc1.weight is [2, 352, 64] in the checkpoint, config.yaml "
          "implies [2, 256, 64]")
    fails([copy("preset", set_model("preset", "mixtral-8x7b")), "--out", tmp_path / "o"],
          "config key 'model.preset': unknown preset 'mixtral-8x7b'")
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.partial").exists()
    # --force replaces an existing output
    assert tool.main([str(ckpt), "--out", str(tmp_path / "exists"), "--force"]) == 0
    assert (tmp_path / "exists" / "model.safetensors").is_file()


def test_export_refuses_a_checkpoint_with_non_llama_tensors():
    from megatron_octo.models.hf_mapping import export_plan
    from megatron_octo.models.llama import PRESETS

    tool = _load_tool("convert_to_hf")
    arch = PRESETS["tiny"]

    class Reader:
        dir = "/ckpt"

        def tensor_keys(self):
            L, h = arch.num_layers, arch.hidden_size
            qkv = (arch.num_attention_heads + 2 * arch.num_query_groups) * arch.kv_channels
            keys = {"embedding.word_embeddings.weight": (512, h), "output_layer.weight": (512, h),
                    "decoder.final_layernorm.weight": (h,),
                    "decoder.layers.self_attention.linear_qkv.layer_norm_weight": (L, h),
                    "decoder.layers.self_attention.linear_qkv.weight": (L, qkv, h),
                    "decoder.layers.self_attention.linear_proj.weight": (L, h, h),
                    "decoder.layers.mlp.linear_fc1.layer_norm_weight": (L, h),
                    "decoder.layers.mlp.linear_fc1.weight": (L, 2 * arch.ffn_hidden_size, h),
                    "decoder.layers.mlp.linear_fc2.weight": (L, h, arch.ffn_hidden_size),
                    "optimizer.state.exp_avg.decoder.final_layernorm.weight": (h,)}
            keys.update(self.extra)
            return {k: (v, torch.float32) for k, v in keys.items()}

    r = Reader()
    r.extra = {}
    tool.check_tensors(r, arch, export_plan(arch))  # a plain Llama passes (optimizer keys are ignored)
    r.extra = {"decoder.layers.self_attention.linear_qkv.bias": (arch.num_layers, 128)}
    with pytest.raises(tool.ConvertError, match="not a plain Llama checkpoint, unexpected tensor.*linear_qkv.bias"):
        tool.check_tensors(r, arch, export_plan(arch))


def test_converted_checkpoint_starts_an_rl_run(tmp_path):
    """A Hugging Face model imported with convert_from_hf is a starting point for RL too: a PPO step
    (the actor and the critic both initialised from the converted weights) runs and saves."""
    from megatron_octo.models.hf_config import arch_from_hf_config, model_overrides, read_hf_config
    from megatron_octo.checkpoint.save_load import latest_checkpoint, read_trainer_state

    hf = make_hf_model(tmp_path / "hf", vocab_size=8192)  # the bundled SentencePiece tokenizer's size
    from_hf(hf, "--out", tmp_path / "mg", process=False)
    arch = arch_from_hf_config(read_hf_config(str(hf)))
    res = run_train(str(ROOT / "recipes/tiny/rl_ppo.yaml"), [
        *model_overrides(arch), f"checkpoint.init_from={tmp_path / 'mg'}", f"checkpoint.save={tmp_path / 'ppo'}",
        f"rl.reward_fn={ROOT}/tests/scripts/rl_test_reward.py:digit_share", "rl.steps=1", "rl.val_interval=0",
        "rl.max_response_length={0: 16}", "rl.prompts_per_step=2", "rl.samples_per_prompt=2",
        "rl.mini_batch_prompts=2"], module="megatron_octo.rl", in_process=True)
    assert f"initialised from {tmp_path / 'mg'}" in res.stdout and "rl step     1/1" in res.stdout
    st = read_trainer_state(latest_checkpoint(str(tmp_path / "ppo")))
    assert (st.stage, st.stage_iteration) == ("rl", 1)
