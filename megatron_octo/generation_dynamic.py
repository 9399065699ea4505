"""Rollouts on megatron-core's dynamic inference engine, with CUDA graphs (a CUDA GPU only).

:class:`DynamicGenerator` has :class:`megatron_octo.generation.Generator`'s interface and results
(the same :func:`~megatron_octo.generation.to_generation`), on megatron-core 0.16.1's
``DynamicInferenceContext`` + ``GPTInferenceWrapper`` + ``TextGenerationController`` +
``DynamicInferenceEngine``, wrapped around the caller's ``GPTModel`` — the training model itself.

What happens when
-----------------
Construction (once): one paged KV-cache buffer (blocks of ``block_size_tokens``; by default enough
blocks for ``max_batch_size`` sequences of ``max_sequence_length`` — the memory the static engine
would take — or ``kv_cache_gb``, and then megatron pauses/evicts requests that do not fit), the
wrapper and controller on the model, and the engine. With ``cuda_graphs`` the transformer layers get
megatron's local ``CudaGraphManager`` and the engine captures its graphs here, once (one per batch
shape in ``context.cuda_graph_batch_dimensions_list``; ``num_cuda_graphs`` of them). That needs
megatron's graph-safe RNG tracker: ``runtime.distributed.initialize(..., cudagraphable_rng=True)``.
(megatron's first ``CudaGraphManager`` also moves the process onto a side CUDA stream for good, as
in Megatron-LM runs with CUDA graphs.)

:meth:`generate`: the model goes to eval mode; with megatron's DDP and ``overlap_param_gather``
(distributed optimizer on GPUs), the forward pre-hooks that finish the parameter all-gather are
switched off after a forced, synchronous all-gather, because graph replays run no hooks
(``DistributedDataParallel.disable_forward_pre_hook``, as Megatron-LM does around evaluation); the
graph managers are attached; ``engine.reset()`` empties the request table and zeroes the context's
bookkeeping (the KV buffer and the captured graphs stay); one request per sample, each with its own
budget (``max_new_tokens`` within ``max_sequence_length``), the stop strings as megatron's
``stop_words`` (the engine ends a sequence when its last tokens spell one; the text cut of
``to_generation`` stays the authority) and per-token log-probs of the generated tokens only
(``skip_prompt_log_probs``; logits are materialised for the last token of each request only); the
engine steps until every request has finished, refilling freed slots at once.

Between rollouts (the training step): the graph managers are detached and ``cuda_graph_impl`` is
``"none"`` again, so training and log-prob forwards run eagerly (a layer that keeps a manager would
route every forward through it); the forward pre-hooks are back; the KV buffer stays allocated (no
``suspend()``: megatron's suspend frees the buffer and deletes every graph, which a later
``resume()`` recaptures — capture once is the point). The graphs read parameters through their
addresses and megatron's optimizer updates the parameters in place, so each rollout uses the
current training weights; a code path that *replaces* a parameter tensor instead of writing into it
would leave the graphs reading the old memory.

Without a GPU, megatron's dynamic engine stops at three places: the sampling tensors it allocates in
pinned memory, its NVTX ranges, and its attention, which needs flash-attn's paged-KV kernels (CUDA
graphs have no CPU counterpart at all). With test-only stand-ins for those three
(tests/dynamic_engine_cpu.py: no pinned memory, no-op NVTX ranges, a pure-torch paged attention) the
engine runs on the CPU, and its greedy tokens and log-probs equal the static engine's
(tests/scripts/dynamic_generation_check.py); that is how this module is tested without a GPU. Production
code never installs them: config validation refuses ``rl.rollout_engine=dynamic`` without a GPU and
flash-attn.
"""

from __future__ import annotations

import math
from contextlib import contextmanager, nullcontext
from typing import Dict, List, Optional, Sequence

import torch

from megatron_octo.generation import (Generation, SamplingConfig, EngineOnModel, megatron_sampling_params,
                                      note_once, to_generation, token_budget)

# megatron's defaults (DynamicInferenceContext; Megatron-LM's --inference-dynamic-batching-* flags).
BLOCK_SIZE_TOKENS = 256
NUM_CUDA_GRAPHS = 16
MAX_TOKENS = 16384


def flash_attn_for_dynamic_engine() -> bool:
    """megatron's own check before dynamic-batching attention: flash-attn 3, or flash-attn >= 2.7.3."""
    try:
        from megatron.core.transformer import attention
    except ImportError:
        return False
    if attention.HAVE_FA3:
        return True
    try:
        return bool(attention.is_fa_min_version("2.7.3"))
    except ImportError:
        return False


def kv_block_bytes(model_config, block_size_tokens: int, tp: int) -> int:
    """Bytes of one KV-cache block on a rank: key and value, every layer of this pipeline stage, the
    rank's share of the KV heads (as ``DynamicInferenceContext`` computes it)."""
    layers = model_config.num_layers // model_config.pipeline_model_parallel_size
    heads = model_config.num_query_groups // tp
    return model_config.params_dtype.itemsize * 2 * layers * block_size_tokens * heads * model_config.kv_channels


def blocks_per_sequence(max_sequence_length: int, block_size_tokens: int) -> int:
    return math.ceil(max_sequence_length / block_size_tokens)


def full_kv_cache_gb(model_config, *, max_requests: int, max_sequence_length: int, block_size_tokens: int,
                     tp: int) -> float:
    """A buffer with room for ``max_requests`` sequences of ``max_sequence_length`` tokens plus megatron's
    dummy block, in GiB (the context counts ``int(gb * 2**30) // block_bytes`` blocks)."""
    blocks = max_requests * blocks_per_sequence(max_sequence_length, block_size_tokens) + 1
    return blocks * kv_block_bytes(model_config, block_size_tokens, tp) / 2**30


class _LayerGraphs:
    """megatron's local CUDA-graph managers on the model's graphable (transformer) layers, attached only
    inside :meth:`active`; created on the first entry, then kept with their captured graphs."""

    def __init__(self, model):
        from megatron.core.transformer.module import GraphableMegatronModule
        from megatron.core.transformer.transformer_config import TransformerConfig

        self.layers = [m for m in model.modules() if isinstance(m, GraphableMegatronModule)]
        configs = [getattr(m, "config", None) for m in model.modules()]
        self.configs = list({id(c): c for c in configs if isinstance(c, TransformerConfig)}.values())
        self.managers: Optional[list] = None

    @contextmanager
    def active(self):
        before = [c.cuda_graph_impl for c in self.configs]
        for c in self.configs:
            c.cuda_graph_impl = "local"
        try:
            if self.managers is None:
                self._create()
            for layer, manager in zip(self.layers, self.managers):
                if manager is not None:
                    layer.cudagraph_manager = manager
            yield
        finally:
            for layer in self.layers:
                if hasattr(layer, "cudagraph_manager"):
                    delattr(layer, "cudagraph_manager")
            for c, impl in zip(self.configs, before):
                c.cuda_graph_impl = impl

    def _create(self):
        from megatron.core.tensor_parallel.random import get_cuda_rng_tracker, is_graph_safe_cuda_rng_tracker
        from megatron.core.transformer.cuda_graphs import CudaGraphManager

        tracker = get_cuda_rng_tracker()
        if not (is_graph_safe_cuda_rng_tracker(tracker) or getattr(tracker, "is_inference_rng_tracker", False)):
            raise RuntimeError("CUDA graphs need megatron's graph-safe RNG tracker: initialise with "
                               "megatron_octo.runtime.distributed.initialize(..., cudagraphable_rng=True) (the RL "
                               "trainer does when rl.rollout_engine is dynamic and rl.cuda_graphs is true)")
        for layer in self.layers:  # as GraphableMegatronModule.__init__ does with cuda_graph_impl="local"
            if hasattr(layer, "create_mcore_cudagraph_manager"):
                layer.create_mcore_cudagraph_manager(layer.config)
            else:
                layer.cudagraph_manager = CudaGraphManager(layer.config)
        self.managers = [getattr(layer, "cudagraph_manager", None) for layer in self.layers]


class DynamicGenerator(EngineOnModel):
    """Batched generation from one GPTModel (any TP) with megatron's dynamic inference engine.

    ``model``: the GPTModel, or megatron's ``DistributedDataParallel`` around it (the training model;
    its parameter all-gather is then finished before each rollout). ``max_batch_size``: requests in
    flight at once. ``kv_cache_gb``: the paged KV buffer per rank; 0 = room for ``max_batch_size``
    full-length sequences (never a pause).
    """

    def __init__(self, model, tokenizer, *, max_sequence_length: int, max_batch_size: int = 32, seed: int = 1234,
                 cuda_graphs: bool = True, kv_cache_gb: float = 0.0, block_size_tokens: int = BLOCK_SIZE_TOKENS,
                 max_tokens: int = MAX_TOKENS, num_cuda_graphs: int = NUM_CUDA_GRAPHS):
        from megatron.core.distributed import DistributedDataParallel
        from megatron.core.inference.contexts.dynamic_context import DynamicInferenceContext
        from megatron.core.inference.engines import DynamicInferenceEngine

        self.ddp = model if isinstance(model, DistributedDataParallel) else None
        module = model.module if self.ddp is not None else model
        tp = module.config.tensor_model_parallel_size
        max_requests = DynamicInferenceContext.round_up_requests(max_batch_size, tp)
        per_sequence = blocks_per_sequence(max_sequence_length, block_size_tokens)
        if kv_cache_gb:
            blocks = int(kv_cache_gb * 2**30) // kv_block_bytes(module.config, block_size_tokens, tp)
            if blocks < per_sequence + 1:
                raise ValueError(f"kv_cache_gb={kv_cache_gb} holds {blocks} KV blocks of {block_size_tokens} tokens; "
                                 f"one sequence of {max_sequence_length} tokens needs {per_sequence} (+1 spare)")
        else:
            kv_cache_gb = full_kv_cache_gb(module.config, max_requests=max_requests,
                                           max_sequence_length=max_sequence_length,
                                           block_size_tokens=block_size_tokens, tp=tp)
        self.cuda_graphs = cuda_graphs
        self.graphs = _LayerGraphs(module) if cuda_graphs else None
        cfg = module.config

        def make_context(wcfg):
            return DynamicInferenceContext(
                params_dtype=wcfg.params_dtype, num_layers=cfg.num_layers // cfg.pipeline_model_parallel_size,
                kv_channels=cfg.kv_channels, num_attention_heads=cfg.num_query_groups,
                max_sequence_length=max_sequence_length, buffer_size_gb=kv_cache_gb, max_requests=max_requests,
                max_tokens=max(max_tokens, max_requests), block_size_tokens=block_size_tokens,
                tensor_model_parallel_size=tp, pipeline_model_parallel_size=cfg.pipeline_model_parallel_size,
                num_cuda_graphs=num_cuda_graphs if cuda_graphs else None,
                materialize_only_last_token_logits=True, use_flashinfer_fused_rope=False)

        controller = self._wrap(module, tokenizer, make_context, max_sequence_length=max_sequence_length,
                                max_batch_size=max_batch_size)
        with self._rollout_mode():  # the engine captures its CUDA graphs here, once
            self.engine = DynamicInferenceEngine(controller, self.context, random_seed=int(seed))
        self.reseed(seed)
        note_once(f"generation: megatron's dynamic engine (CUDA graphs {'on' if cuda_graphs else 'off'})")

    @contextmanager
    def _rollout_mode(self):
        hooks = self.ddp is not None and getattr(self.ddp, "use_forward_hook", False)
        with self._eval_mode():
            if hooks:
                self.ddp.disable_forward_pre_hook(param_sync=True)
            try:
                with self.graphs.active() if self.graphs is not None else nullcontext():
                    yield
            finally:
                if hooks:
                    self.ddp.enable_forward_pre_hook()

    def request_params(self, sc: SamplingConfig, prompt_len: int):
        """megatron ``SamplingParams`` of one request and its token budget."""
        budget = token_budget(sc, prompt_len, self.max_sequence_length)
        return megatron_sampling_params(sc, budget, skip_prompt_log_probs=True,
                                        stop_words=[s for s in sc.stop if s] or None), budget

    @torch.no_grad()
    def generate(self, prompts: Sequence[str], sc: SamplingConfig) -> List[List[Generation]]:
        """``sc.n`` generations per prompt, in prompt order."""
        expanded = [p for p in prompts for _ in range(sc.n)]
        tokens = {p: self.controller.tokenize_prompt(p) for p in prompts}
        budgets = []
        records: Dict[int, object] = {}
        with self._rollout_mode():
            self.engine.reset()
            for request_id, prompt in enumerate(expanded):
                params, budget = self.request_params(sc, len(tokens[prompt]))
                budgets.append(budget)
                self.engine.add_request(request_id, list(tokens[prompt]), params)
            while self.engine.has_unfinished_requests() or self.engine.failed_request_ids:
                for record in self.engine.step_modern()["finished_request_records"]:
                    records[record.request_id] = record
        out = [self._generation(records.get(i), prompt, sc, budgets[i]) for i, prompt in enumerate(expanded)]
        return [out[i * sc.n:(i + 1) * sc.n] for i in range(len(prompts))]

    def _generation(self, record, prompt: str, sc: SamplingConfig, budget: int) -> Generation:
        from megatron.core.inference.inference_request import Status

        if record is None:
            raise RuntimeError(f"the dynamic engine returned no result for prompt {prompt[:80]!r}")
        req = record.merge()  # one request, also when it was evicted and resumed on the way
        if req.status != Status.COMPLETED:
            errors = [repr(e.payload) for e in req.events if e.payload is not None]
            raise RuntimeError(f"dynamic engine request {record.request_id} ended {req.status.name}: "
                               f"{'; '.join(errors) or 'no error recorded'}")
        req.prompt = prompt  # requests were added as token ids
        return to_generation(self.tokenizer, req, sc, budget, early_stop="stop" if any(sc.stop) else "eod")
