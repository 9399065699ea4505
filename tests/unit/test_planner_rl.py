"""tools/plan.py --rl / --eval: megatron's request rounding, the paper's RL recipe planned at each length stair
with a verdict, and bad input exits 2 naming the flag or file; the KV-buffer bytes equal what megatron-core
allocates for the same arguments (a tiny model on the CPU, megatron set up in-process: the static engine's
StaticInferenceContext buffers after a generation, the dynamic engine's DynamicInferenceContext memory_buffer)."""

from __future__ import annotations

import json

import pytest

from megatron_octo import planner as pl
from megatron_octo.cli import plan as cli
from megatron_octo.models.llama import PRESETS, LlamaArchitecture
from tests.helpers import ROOT, run_main
from tests.megatron_cases import kv_buffer_sizes
from tests.megatron_state import megatron_in_process

RECIPE = "recipes/octothinker/llama3.2-3b/rl_grpo.yaml"


def test_request_rounding_is_megatrons():
    from megatron.core.inference.contexts.dynamic_context import DynamicInferenceContext

    for batch in (1, 3, 4, 5, 31, 32, 33, 64):
        for tp in (1, 2, 3, 4, 8):
            assert pl.dynamic_requests(batch, tp) == DynamicInferenceContext.round_up_requests(batch, tp), (batch, tp)


def _json(capsys, *argv):
    rc = cli.main([*argv, "--json"])
    return rc, json.loads(capsys.readouterr().out)


def test_rl_plan_of_the_paper_recipe_has_every_stair_and_a_verdict(capsys):
    rc, out = _json(capsys, "--rl", str(ROOT / RECIPE), "--gpus", "8")
    assert rc == 0
    stairs = out["stairs"]
    assert [(s["step"], s["response_cap"], s["seq_length"]) for s in stairs] == [
        (0, 2048, 2448), (100, 4096, 4496), (160, 8192, 8592)]
    a = PRESETS["llama3.2-3b"]
    kv = pl.kv_dynamic_bytes(a, tp=1, pp=1, max_batch_size=32, max_sequence_length=8592)  # 'auto' on a GPU
    assert all(s["kv_buffer"] == kv for s in stairs)  # built once for the longest stair
    assert all(s["critic"] == 0 and s["reference"] == 0 for s in stairs)  # GRPO, kl_coef 0
    assert stairs[0]["total"] < stairs[1]["total"] < stairs[2]["total"]
    assert out["verdict"] is not None and out["verdict"]["pp"] == 1
    fitting = [c for c in out["candidates"] if c["fits"] and c["supported"]]
    assert out["verdict"] in [{k: c[k] for k in out["verdict"]} for c in fitting]


def test_ppo_adds_a_critic_and_kl_a_reference(capsys):
    _, grpo = _json(capsys, "--rl", str(ROOT / RECIPE), "--gpus", "8", "--engine", "static")
    _, ppo = _json(capsys, "--rl", str(ROOT / RECIPE), "--gpus", "8", "--engine", "static",
                   "--set", "rl.algorithm=ppo", "--set", "rl.kl_coef=0.01")
    g, p = grpo["stairs"][-1], ppo["stairs"][-1]
    assert p["critic"] > 0 and p["reference"] == p["actor_weights"]
    assert p["total"] == pytest.approx(g["total"] + p["critic"] + p["reference"])
    a = PRESETS["llama3.2-3b"]
    assert g["kv_buffer"] == pl.kv_static_bytes(a, tp=1, pp=1, max_batch_size=32, max_sequence_length=8592)


def test_rl_plan_text_names_the_verdict():
    res = run_main(cli.main, ["--rl", ROOT / RECIPE, "--gpus", "8"])
    assert res.returncode == 0, res.stderr[-2000:]
    assert "verdict: on 8 x H100" in res.stdout and "rl.micro_batch_size=" in res.stdout, res.stdout
    for seq in ("2448", "4496", "8592"):
        assert f" {seq} " in res.stdout


def test_eval_plan_sizes_the_kv_cache_for_the_longest_prompt(capsys):
    rc, out = _json(capsys, "--eval", "math500", "--prompt-tokens", "1000", "--max-new-tokens", "1024",
                    "--batch-size", "8")
    assert rc == 0 and out["verdict_tp"] == 1
    rows = out["rows"]
    a = PRESETS["llama3.2-3b"]
    for r in rows:
        assert r["kv_buffer"] == pl.kv_static_bytes(a, tp=r["tp"], pp=1, max_batch_size=8, max_sequence_length=2024)
    assert {r["tp"] for r in rows} == {1, 2, 4, 8}


def test_eval_plan_measures_prompts_with_the_tokenizer(capsys):
    from megatron_octo.eval.prompts import get_protocol
    from megatron_octo.eval.benchmarks import load_benchmark
    from tokenization.megatron_wrappers import load_tokenizer

    path = str(ROOT / "data/tokenizer/octo_sp8k.model")
    rc, out = _json(capsys, "--eval", "gsm8k", "--tokenizer", path, "--tokenizer-library", "sentencepiece")
    assert rc == 0
    rows = out["rows"]
    tok, proto = load_tokenizer(path, "sentencepiece"), get_protocol("gsm8k_8shot")
    longest = max(len(tok.tokenize(proto.build(ex.question))) for ex in load_benchmark("gsm8k"))
    assert {r["prompt_tokens"] for r in rows} == {longest} and {r["max_new_tokens"] for r in rows} == {1024}


@pytest.mark.parametrize("argv,fragment", [
    (["--rl", "recipes/nope.yaml"], "recipe file not found: recipes/nope.yaml"),
    (["--rl", "recipes/tiny/stable.yaml"], "not an RL recipe"),
    (["--rl", RECIPE, "--set", "rl.bogus=1"], "rl.bogus"),
    (["--eval", "math500"], "--eval needs --tokenizer"),
    (["--eval", "nosuchbench", "--prompt-tokens", "10"], "nosuchbench"),
    (["--eval", "math500", "--prompt-tokens", "0"], "--prompt-tokens must be >= 1"),
])
def test_bad_input_exits_2_naming_it(argv, fragment, capsys):
    assert cli.main(argv) == 2
    assert fragment in capsys.readouterr().err


@pytest.fixture(scope="module")
def megatron_kv():
    """What megatron-core allocates (tests/megatron_cases.kv_buffer_sizes)."""
    with megatron_in_process(seed=3):
        return kv_buffer_sizes()


def _arch(seen) -> LlamaArchitecture:
    a = seen["arch"]
    return LlamaArchitecture(num_layers=a["num_layers"], hidden_size=a["kv_channels"] * 4, ffn_hidden_size=8,
                             num_attention_heads=4, num_query_groups=a["num_query_groups"], vocab_size=8,
                             max_position_embeddings=4096, rotary_base=10000, rope_scaling_factor=0.0,
                             tie_embeddings=True)


@pytest.mark.timeout(400)
def test_static_kv_bytes_equal_megatrons_allocation(megatron_kv):
    arch, dtype = _arch(megatron_kv), megatron_kv["dtype_bytes"]
    assert arch.kv_channels == megatron_kv["arch"]["kv_channels"]
    for row in megatron_kv["static"]:
        assert row["bytes"] == pl.kv_static_bytes(arch, tp=1, pp=1, max_batch_size=row["batch"],
                                                  max_sequence_length=row["seq"], dtype_bytes=dtype), row
        assert row["batch_first"], row  # the local spec's generation runs the lean forward
        assert row["shape"] == [row["batch"], arch.num_query_groups, row["seq"], arch.kv_channels], row
        assert row["buffers"] == 2 * arch.num_layers


@pytest.mark.timeout(400)
def test_dynamic_kv_bytes_equal_megatrons_allocation(megatron_kv):
    arch, dtype = _arch(megatron_kv), megatron_kv["dtype_bytes"]
    for row in megatron_kv["dynamic"]:
        assert row["bytes"] == pl.kv_dynamic_bytes(arch, tp=1, pp=1, max_batch_size=row["batch"],
                                                   max_sequence_length=row["seq"], block_size_tokens=row["block"],
                                                   buffer_gib=row["gb"], dtype_bytes=dtype), row
