"""The rollout-engine choice (rl.rollout_engine / rl.cuda_graphs / rl.kv_cache_gb, make_generator) and the
parts of the dynamic-engine generator that need no GPU: a finished request as a Generation, the
per-request sampling parameters, the KV-buffer arithmetic, the CUDA-graph managers present only inside a
rollout, and the distributed optimizer's parameter all-gather before one. (The engine itself against the
static one: tests/distributed/test_dynamic_engine_parity.py; the RL CLI's refusal without a GPU:
tests/process/test_generation_dynamic_cli.py.)"""

from __future__ import annotations

from contextlib import contextmanager
from types import SimpleNamespace

import pytest
import torch

from megatron_octo import config as cfgmod
from megatron_octo import generation
from megatron_octo.generation import SamplingConfig, to_generation
from megatron_octo.generators import make_generator
from megatron_octo.generation_dynamic import (DynamicGenerator, _LayerGraphs, blocks_per_sequence, full_kv_cache_gb,
                                              kv_block_bytes)
from megatron_octo.rl.checks import validate_rl
from tests.helpers import ROOT


def _rl_cfg(tmp_path, *overrides):
    return cfgmod.load(str(ROOT / "recipes/tiny/rl_grpo.yaml"), [
        f"checkpoint.init_from={tmp_path}", f"rl.prompts={ROOT}/data/rl/math8k.jsonl.gz", *overrides])


# ----- config --------------------------------------------------------------------------------------------
def test_auto_is_static_without_a_gpu_and_dynamic_with_gpu_and_flash_attn(tmp_path):
    cfg = _rl_cfg(tmp_path)
    assert (cfg.rl.rollout_engine, cfg.rl.cuda_graphs, cfg.rl.kv_cache_gb) == ("auto", True, 0.0)
    validate_rl(cfg, 1, have_gpu=False, have_te=False, have_flash_attn=False)
    resolve = cfgmod.resolve_rollout_engine
    assert resolve("auto", have_gpu=False, have_flash_attn=False) == "static"
    assert resolve("auto", have_gpu=True, have_flash_attn=False) == "static"
    assert resolve("auto", have_gpu=True, have_flash_attn=True) == "dynamic"
    assert resolve("static", have_gpu=True, have_flash_attn=True) == "static"
    assert resolve("dynamic", have_gpu=True, have_flash_attn=True) == "dynamic"
    # cuda_graphs concerns the dynamic engine only: harmless with the static one.
    validate_rl(_rl_cfg(tmp_path, "rl.rollout_engine=static", "rl.cuda_graphs=true"), 1, have_gpu=False,
                       have_te=False, have_flash_attn=False)


@pytest.mark.parametrize("overrides,gpu,fa,key,fragments", [
    (["rl.rollout_engine=dynamic"], False, False, "rl.rollout_engine",
     ["'dynamic' needs a CUDA GPU and flash-attn", "GPU=False", "use 'static' or 'auto'"]),
    (["rl.rollout_engine=dynamic"], True, False, "rl.rollout_engine",
     ["'dynamic' needs flash-attn >= 2.7.3", "GPU=True, flash-attn=False"]),
    (["rl.rollout_engine=vllm"], True, True, "rl.rollout_engine", ["'vllm' is not one of auto, static, dynamic"]),
    (["rl.kv_cache_gb=-1"], False, False, "rl.kv_cache_gb", ["must be >= 0"]),
])
def test_rollout_engine_errors_name_the_key(tmp_path, overrides, gpu, fa, key, fragments):
    with pytest.raises(cfgmod.ConfigError) as exc:
        validate_rl(_rl_cfg(tmp_path, *overrides), 1, have_gpu=gpu, have_te=False, have_flash_attn=fa)
    msg = str(exc.value)
    assert msg.startswith(f"config key '{key}': "), msg
    for fragment in fragments:
        assert fragment in msg, msg
    validate_rl(_rl_cfg(tmp_path, "rl.rollout_engine=dynamic"), 1, have_gpu=True, have_te=False,
                       have_flash_attn=True)


# ----- the factory ---------------------------------------------------------------------------------------
class _Recorder:
    def __init__(self, model, tokenizer, **kw):
        self.model, self.tokenizer, self.kw = model, tokenizer, kw


class _FakeDDP:
    def __init__(self, module):
        self.module = module


@pytest.fixture
def fakes(monkeypatch):
    import megatron.core.distributed
    import megatron_octo.generation_dynamic as gd

    monkeypatch.setattr(megatron.core.distributed, "DistributedDataParallel", _FakeDDP)
    monkeypatch.setattr(generation, "Generator", type("Static", (_Recorder,), {}))
    monkeypatch.setattr(gd, "DynamicGenerator", type("Dynamic", (_Recorder,), {}))
    return monkeypatch


def test_factory_builds_the_static_generator_on_the_unwrapped_model(fakes):
    fakes.setattr(torch.cuda, "is_available", lambda: False)
    gpt = object()
    for engine in ("auto", "static"):
        g = make_generator(_FakeDDP(gpt), "tok", engine=engine, max_sequence_length=64, max_batch_size=4, seed=3)
        assert type(g).__name__ == "Static" and g.model is gpt
        assert g.kw == dict(max_sequence_length=64, max_batch_size=4, seed=3, gemm="auto")
    g = make_generator(gpt, "tok", engine="static", max_sequence_length=64, gemm="torch")  # generation.gemm
    assert g.kw["gemm"] == "torch"
    with pytest.raises(cfgmod.ConfigError, match="config key 'rl.rollout_engine': 'dynamic' needs a CUDA GPU"):
        make_generator(gpt, "tok", engine="dynamic", max_sequence_length=64)


def test_factory_builds_the_dynamic_generator_on_the_training_model_where_it_can_run(fakes):
    import megatron_octo.generation_dynamic as gd

    fakes.setattr(torch.cuda, "is_available", lambda: True)
    fakes.setattr(gd, "flash_attn_for_dynamic_engine", lambda: True)
    ddp = _FakeDDP(object())
    g = make_generator(ddp, "tok", engine="auto", max_sequence_length=64, max_batch_size=4, seed=3, cuda_graphs=False,
                       kv_cache_gb=2.5)
    assert type(g).__name__ == "Dynamic" and g.model is ddp  # the DDP wrapper: it gathers parameters per rollout
    assert g.kw == dict(max_sequence_length=64, max_batch_size=4, seed=3, cuda_graphs=False, kv_cache_gb=2.5)
    fakes.setattr(gd, "flash_attn_for_dynamic_engine", lambda: False)  # a GPU but no flash-attn: static
    assert type(make_generator(ddp, "tok", engine="auto", max_sequence_length=64)).__name__ == "Static"


# ----- a finished request as a Generation ----------------------------------------------------------------
class _CharTokenizer:
    """Token t is chr(t); EOD is 1."""
    eod = 1

    def tokenize(self, text):
        return [ord(c) for c in text]

    def detokenize(self, tokens):
        return "".join(chr(t) for t in tokens)


def _request(text, log_probs=None, extra_log_probs=0, eod=False):
    tok = _CharTokenizer()
    tokens = tok.tokenize(text) + ([tok.eod] if eod else [])
    lp = None if log_probs is None else [-0.5 - i for i in range(len(tokens) + extra_log_probs)]
    # As the dynamic engine returns them: lists for the response, a tensor for the prompt.
    return SimpleNamespace(prompt="Q", prompt_tokens=torch.tensor([81]), generated_tokens=tokens,
                           generated_log_probs=lp)


def test_eod_stop_and_length_with_log_probs_cut_to_the_kept_tokens():
    tok = _CharTokenizer()
    sc = SamplingConfig(max_new_tokens=8, stop=["##"], return_log_probs=True)
    g = to_generation(tok, _request("abc", log_probs=True, eod=True), sc, budget=8)
    assert (g.text, g.tokens, g.finish_reason, g.log_probs) == ("abc", [97, 98, 99], "eod", [-0.5, -1.5, -2.5])
    assert (g.prompt, g.prompt_tokens) == ("Q", [81])
    # The dynamic engine adds one log-prob more than tokens when it ends a sequence on a stop word.
    g = to_generation(tok, _request("ab##cd", log_probs=True, extra_log_probs=1), sc, budget=8, early_stop="stop")
    assert (g.text, g.tokens, g.finish_reason, g.log_probs) == ("ab", [97, 98, 35, 35], "stop",
                                                                 [-0.5, -1.5, -2.5, -3.5])
    g = to_generation(tok, _request("abcdefgh", log_probs=True), sc, budget=8)
    assert (g.finish_reason, len(g.tokens), len(g.log_probs)) == ("length", 8, 8)
    assert to_generation(tok, _request("abc"), SamplingConfig(), budget=8).log_probs is None


def test_an_early_end_without_eod_or_stop_text_is_the_engines_stop_word():
    """Short, no EOD, no stop string in the text: the static engine can only have met EOD; the dynamic one
    may have ended on a stop word it matched token by token."""
    tok = _CharTokenizer()
    sc = SamplingConfig(max_new_tokens=8, stop=["##"])
    assert to_generation(tok, _request("abc"), sc, budget=8).finish_reason == "eod"
    assert to_generation(tok, _request("abc"), sc, budget=8, early_stop="stop").finish_reason == "stop"


# ----- request parameters -------------------------------------------------------------------------------
def test_request_params_per_request_budget_greedy_top_p_stop_words_and_log_probs():
    gen = SimpleNamespace(max_sequence_length=100)
    params, budget = DynamicGenerator.request_params(gen, SamplingConfig(max_new_tokens=30, return_log_probs=True,
                                                                         stop=["\n\n", ""]), 80)
    assert budget == 20 and params.num_tokens_to_generate == 20  # within max_sequence_length
    assert (params.temperature, params.top_k, params.top_p) == (1.0, 1, 0.0)  # greedy
    assert params.return_log_probs and params.skip_prompt_log_probs  # generated tokens' log-probs only
    assert params.stop_words == ["\n\n"]
    params, budget = DynamicGenerator.request_params(gen, SamplingConfig(max_new_tokens=30, temperature=0.7,
                                                                         top_p=0.9), 10)
    assert budget == 30 and (params.temperature, params.top_k, params.top_p) == (0.7, 0, 0.9)
    assert params.stop_words is None and not params.return_log_probs
    params, _ = DynamicGenerator.request_params(gen, SamplingConfig(temperature=1.0, top_p=1.0), 10)
    assert params.top_p == 0.0  # megatron's "off"
    with pytest.raises(ValueError, match="leaves no room"):
        DynamicGenerator.request_params(gen, SamplingConfig(), 100)


# ----- KV-buffer arithmetic ----------------------------------------------------------------------------
def _llama_3b(dtype=torch.bfloat16):
    return SimpleNamespace(num_layers=28, pipeline_model_parallel_size=1, num_query_groups=8, kv_channels=128,
                           params_dtype=dtype)


def test_kv_block_bytes_and_full_buffer():
    c = _llama_3b()
    # bf16, key + value, 28 layers, 256 tokens, 8 KV heads x 128 = 28 MiB a block at TP=1, half at TP=2.
    assert kv_block_bytes(c, 256, 1) == 2 * 2 * 28 * 256 * 8 * 128 == 28 * 2**20
    assert kv_block_bytes(c, 256, 2) == 14 * 2**20
    assert blocks_per_sequence(8592, 256) == 34 and blocks_per_sequence(512, 256) == 2
    # OctoThinker's 64 rollouts of 400 + 8192 tokens: 64 x 34 blocks + the dummy one, ~59.5 GiB at TP=1.
    gb = full_kv_cache_gb(c, max_requests=64, max_sequence_length=8592, block_size_tokens=256, tp=1)
    assert gb == (64 * 34 + 1) * 28 / 1024


@pytest.mark.parametrize("requests,seq,block,tp,dtype", [
    (64, 8592, 256, 1, torch.bfloat16), (7, 100, 16, 1, torch.float32), (12, 4096, 64, 2, torch.bfloat16),
    (1, 1, 256, 4, torch.float16), (256, 20000, 256, 8, torch.bfloat16)])
def test_full_buffer_gives_the_context_exactly_the_blocks_it_needs(requests, seq, block, tp, dtype):
    """DynamicInferenceContext takes int(gb * 2**30) // block_bytes blocks: never one too few."""
    c = _llama_3b(dtype)
    gb = full_kv_cache_gb(c, max_requests=requests, max_sequence_length=seq, block_size_tokens=block, tp=tp)
    blocks = int(gb * 2**30) // kv_block_bytes(c, block, tp)
    assert blocks == requests * blocks_per_sequence(seq, block) + 1


# ----- CUDA-graph managers only inside a rollout --------------------------------------------------------
@pytest.fixture
def two_layers():
    from megatron.core.transformer.module import GraphableMegatronModule
    from megatron.core.transformer.transformer_config import TransformerConfig

    cfg = TransformerConfig(num_layers=2, hidden_size=8, num_attention_heads=2)
    model = torch.nn.Module()
    model.config = cfg
    model.layers = torch.nn.ModuleList([GraphableMegatronModule(cfg), GraphableMegatronModule(cfg)])
    return model


def test_graph_managers_exist_only_inside_a_rollout_and_are_created_once(two_layers, monkeypatch):
    graphs = _LayerGraphs(two_layers)
    assert len(graphs.layers) == 2 and graphs.configs == [two_layers.config]
    created = []

    def fake_create(self):  # megatron's CudaGraphManager needs a GPU; the bookkeeping around it does not
        for layer in self.layers:
            layer.cudagraph_manager = torch.nn.Identity()
            created.append(layer.cudagraph_manager)
        self.managers = [layer.cudagraph_manager for layer in self.layers]

    monkeypatch.setattr(_LayerGraphs, "_create", fake_create)
    for _ in range(2):
        with graphs.active():
            assert two_layers.config.cuda_graph_impl == "local"
            assert [layer.cudagraph_manager for layer in two_layers.layers] == created
        assert two_layers.config.cuda_graph_impl == "none"
        assert not any(hasattr(layer, "cudagraph_manager") for layer in two_layers.layers)
    assert len(created) == 2  # the second rollout reuses the first one's managers (and their graphs)
    with pytest.raises(KeyError):
        with graphs.active():
            raise KeyError("a failing rollout")
    assert two_layers.config.cuda_graph_impl == "none"
    assert not any(hasattr(layer, "cudagraph_manager") for layer in two_layers.layers)


def test_graph_managers_need_the_graph_safe_rng_tracker(two_layers, monkeypatch):
    from megatron.core.tensor_parallel import random as mrandom

    monkeypatch.setattr(mrandom, "get_cuda_rng_tracker", lambda: mrandom.CudaRNGStatesTracker())
    with pytest.raises(RuntimeError, match="cudagraphable_rng=True"):
        with _LayerGraphs(two_layers).active():
            pass
    assert two_layers.config.cuda_graph_impl == "none"


# ----- the parameter all-gather around a rollout -----------------------------------------------------------
def test_rollout_mode_gathers_parameters_and_restores_hooks_and_training_mode():
    calls = []

    class DDP:
        use_forward_hook = True

        def disable_forward_pre_hook(self, param_sync):
            calls.append(("disable", param_sync, model.training))

        def enable_forward_pre_hook(self):
            calls.append(("enable", model.training))

    class Graphs:
        @contextmanager
        def active(self):
            calls.append("graphs on")
            yield
            calls.append("graphs off")

    model = torch.nn.Linear(2, 2)
    gen = DynamicGenerator.__new__(DynamicGenerator)
    gen.model, gen.ddp, gen.graphs = model, DDP(), Graphs()
    with gen._rollout_mode():
        assert not model.training
        calls.append("generate")
    assert model.training
    # Hooks off with a forced all-gather before graphs replay; hooks back only once the graphs are detached.
    assert calls == [("disable", True, False), "graphs on", "generate", "graphs off", ("enable", False)]
    calls.clear()
    gen.ddp = SimpleNamespace(use_forward_hook=False)  # no overlapped all-gather: nothing to do
    gen.graphs = None
    with gen._rollout_mode():
        pass
    assert calls == [] and model.training


# ----- checkpoints of a graph-safe RNG tracker ----------------------------------------------------------
def test_checkpoint_saves_graph_safe_rng_states_as_tensors(monkeypatch):
    """CUDA graphs need megatron's graph-safe tracker, whose states are torch.Generator objects; the
    checkpoint holds their state tensors, which load into either kind of tracker."""
    from megatron.core import parallel_state as ps
    from megatron.core.tensor_parallel import random as mrandom

    from megatron_octo.checkpoint import save_load as ckpt

    for name in ("get_pipeline_model_parallel_world_size", "get_tensor_model_parallel_world_size"):
        monkeypatch.setattr(ps, name, lambda: 1)
    for name in ("get_pipeline_model_parallel_rank", "get_tensor_model_parallel_rank"):
        monkeypatch.setattr(ps, name, lambda: 0)
    monkeypatch.setattr(ps, "get_data_parallel_rank", lambda with_context_parallel=False: 0)
    saved = mrandom.CudaRNGStatesTracker()
    saved.states_ = {"model-parallel-rng": torch.Generator().manual_seed(7)}
    loaded = mrandom.CudaRNGStatesTracker()
    tracker = saved
    monkeypatch.setattr(mrandom, "get_cuda_rng_tracker", lambda: tracker)
    state = ckpt._rng_state().data
    want = torch.Generator().manual_seed(7).get_state()
    assert torch.equal(state["tracker"]["model-parallel-rng"], want)
    tracker = loaded
    ckpt._set_rng_state(state)
    assert torch.equal(loaded.get_states()["model-parallel-rng"], want)
