"""Text generation on the parallel model through megatron-core's inference engines.

The engine wraps the same ``GPTModel`` object the trainer (or the RL actor) holds — no copy, no
resharding — so evaluation and RL rollouts run at the model's TP/PP and see the current weights.
Two engines, one interface (``generate(prompts, SamplingConfig) -> [[Generation] * n]``,
``reseed(seed)``), chosen by :func:`megatron_octo.generators.make_generator`:

- :class:`Generator`: megatron's static engine (``legacy=True``), batches of similar prompt
  length (:func:`plan_batches`). Runs everywhere, the CPU included (as measured in ../shared/notes).
- :class:`megatron_octo.generation_dynamic.DynamicGenerator`: megatron's dynamic engine — paged KV
  cache, in-flight batching (a finished sequence's slot is refilled at once), CUDA graphs captured
  once. Needs a CUDA GPU and flash-attn (its attention runs in flash-attn's paged-KV kernels); what
  fails without them is written down in that module.

Both translate the engine's results the same way (:func:`to_generation`): the response is cut at
EOD, then at the first stop string (``finish_reason="stop"``; the static engine stops only at EOD,
so the cut is made after generation), with the tokens and per-token log-probs cut to match;
``"length"`` when the token budget ran out.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import torch


@dataclass
class SamplingConfig:
    max_new_tokens: int = 1024
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0
    n: int = 1  # samples per prompt
    stop: List[str] = field(default_factory=list)
    return_log_probs: bool = False


@dataclass
class Generation:
    prompt: str
    prompt_tokens: List[int]
    text: str
    tokens: List[int]
    log_probs: Optional[List[float]]
    finish_reason: str  # stop | eod | length


def cut_at_stop(tokenizer, tokens: List[int], stop: Sequence[str]) -> tuple[int, str, Optional[str]]:
    """Number of tokens to keep, the kept text, and the stop string found (or None)."""
    text = tokenizer.detokenize(tokens)
    hits = [(text.find(s), s) for s in stop if s and s in text]
    if not hits:
        return len(tokens), text, None
    pos, found = min(hits)
    # Smallest token prefix whose text contains the stop string (the tokens that produced it are
    # kept: the model generated them; the text ends before it).
    lo, hi = 1, len(tokens)
    while lo < hi:
        mid = (lo + hi) // 2
        if found in tokenizer.detokenize(tokens[:mid]):
            hi = mid
        else:
            lo = mid + 1
    return lo, text[:pos], found


# Cost of one decode step of the static engine, in sequences: on the small CPU models a step costs
# about the same for 1 or 32 sequences (per-step overhead dominates), and on a GPU decoding is
# memory-bound, so batches are only split when that saves many steps.
STEP_OVERHEAD = 16


def plan_batches(lengths: Sequence[int], max_batch_size: int, budget: int,
                 step_overhead: float = STEP_OVERHEAD) -> List[List[int]]:
    """Engine batches (indices into ``lengths``, the prompts' token counts) of similar prompt length.

    The static engine prefills a batch only up to its *shortest* prompt, then advances one position
    per step until the longest prompt plus ``budget``: a batch spanning prompt lengths ``[a, b]``
    takes ``b - a + budget`` steps, so a 250-token prompt batched with a 140-token one costs 110
    extra decode steps. The prompts are sorted by length and the sorted list is cut where that
    minimises the sum over batches of steps x (``step_overhead`` + batch size) (dynamic programming
    over cut points, batches of at most ``max_batch_size``).
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    ls = [lengths[i] for i in order]
    n = len(ls)
    best = [0.0] + [float("inf")] * n
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(max(0, j - max_batch_size), j):
            cost = best[i] + (ls[j - 1] - ls[i] + budget) * (step_overhead + j - i)
            if cost < best[j]:
                best[j], cut[j] = cost, i
    batches = []
    while n > 0:
        batches.append(order[cut[n]:n])
        n = cut[n]
    return batches[::-1]


def token_budget(sc: SamplingConfig, prompt_len: int, max_sequence_length: int) -> int:
    """New tokens a prompt of ``prompt_len`` tokens may get: ``sc.max_new_tokens`` within the engine's
    maximum sequence length."""
    budget = min(sc.max_new_tokens, max_sequence_length - prompt_len)
    if budget < 1:
        raise ValueError(f"prompt of {prompt_len} tokens leaves no room to generate within "
                         f"max_sequence_length={max_sequence_length}")
    return budget


def megatron_sampling_params(sc: SamplingConfig, budget: int, **extra):
    """megatron's ``SamplingParams`` for ``sc``: greedy is top-k 1; top-p 1 is megatron's 0 (off)."""
    from megatron.core.inference.sampling_params import SamplingParams

    greedy = sc.temperature == 0
    return SamplingParams(temperature=1.0 if greedy else sc.temperature, top_k=1 if greedy else sc.top_k,
                          top_p=0.0 if greedy else (sc.top_p if sc.top_p < 1.0 else 0.0),
                          return_log_probs=sc.return_log_probs, num_tokens_to_generate=budget, **extra)


def _as_list(x) -> list:
    return x.tolist() if torch.is_tensor(x) else list(x)


def to_generation(tokenizer, req, sc: SamplingConfig, budget: int, early_stop: str = "eod") -> Generation:
    """A finished engine request (static or dynamic: ``prompt``, ``prompt_tokens``,
    ``generated_tokens``, ``generated_log_probs``) as a :class:`Generation`.

    ``early_stop`` names why the engine may end a response before ``budget`` tokens when neither EOD
    nor a stop string is found in it: always EOD for the static engine; the dynamic engine also stops
    on a stop string it matched token by token.
    """
    tokens = [int(t) for t in _as_list(req.generated_tokens)]
    eod = tokenizer.eod
    reason = "length"
    if eod in tokens:
        tokens = tokens[:tokens.index(eod)]
        reason = "eod"
    logp = None
    if sc.return_log_probs and req.generated_log_probs is not None:
        logp = [float(x) for x in _as_list(req.generated_log_probs)]
    keep, text, found = cut_at_stop(tokenizer, tokens, sc.stop)
    if found is not None:
        tokens, reason = tokens[:keep], "stop"
    if logp is not None:
        logp = logp[:len(tokens)]
    if reason == "length" and len(tokens) < budget:
        reason = early_stop
    return Generation(prompt=req.prompt, prompt_tokens=[int(t) for t in _as_list(req.prompt_tokens)], text=text,
                      tokens=tokens, log_probs=logp, finish_reason=reason)


class EngineOnModel:
    """What both engines share: megatron's GPT inference wrapper and text-generation controller on the
    caller's ``GPTModel`` (not a copy), the sampling stream, and eval mode while generating."""

    def _wrap(self, model, tokenizer, make_context, *, max_sequence_length: int, max_batch_size: int):
        """Builds the wrapper config, ``make_context(wrapper_config)`` and the controller."""
        from megatron.core.inference.model_inference_wrappers.gpt.gpt_inference_wrapper import GPTInferenceWrapper
        from megatron.core.inference.model_inference_wrappers.inference_wrapper_config import InferenceWrapperConfig
        from megatron.core.inference.text_generation_controllers.text_generation_controller import (
            TextGenerationController,
        )

        cfg = model.config
        self.model = model
        self.tokenizer = tokenizer
        self.max_sequence_length = max_sequence_length
        self.max_batch_size = max_batch_size
        wcfg = InferenceWrapperConfig(
            hidden_size=cfg.hidden_size,
            params_dtype=cfg.params_dtype,
            inference_batch_times_seqlen_threshold=-1,  # no pipelined micro-batching of prompts
            fp32_residual_connection=False,
            padded_vocab_size=model.vocab_size,
            inference_max_requests=max_batch_size,
            inference_max_seq_length=max_sequence_length,
        )
        self.context = make_context(wcfg)
        wrapped = GPTInferenceWrapper(model, wcfg, self.context)
        self.controller = TextGenerationController(inference_wrapped_model=wrapped, tokenizer=tokenizer)
        return self.controller

    def reseed(self, seed: int) -> None:
        """Restart the sampling stream: RL re-seeds every step so a resumed run samples the same."""
        self.controller.sampling_rng.manual_seed(int(seed))

    @contextmanager
    def _eval_mode(self):
        was_training = self.model.training
        self.model.eval()
        try:
            yield
        finally:
            self.model.train(was_training)


class Generator(EngineOnModel):
    """Batched generation from one GPTModel (any TP/PP) with megatron's static inference engine."""

    def __init__(self, model, tokenizer, *, max_sequence_length: int, max_batch_size: int = 32, seed: int = 1234):
        from megatron.core.inference.contexts import StaticInferenceContext
        from megatron.core.inference.engines import StaticInferenceEngine

        controller = self._wrap(model, tokenizer, StaticInferenceContext.from_config,
                                max_sequence_length=max_sequence_length, max_batch_size=max_batch_size)
        self.engine = StaticInferenceEngine(text_generation_controller=controller, max_batch_size=max_batch_size,
                                            random_seed=seed, legacy=True)
        self.reseed(seed)

    def _sampling_params(self, sc: SamplingConfig, prompt_len: int):
        return megatron_sampling_params(sc, token_budget(sc, prompt_len, self.max_sequence_length))

    @torch.no_grad()
    def generate(self, prompts: Sequence[str], sc: SamplingConfig) -> List[List[Generation]]:
        """``sc.n`` generations per prompt, in prompt order."""
        with self._eval_mode():
            expanded = [p for p in prompts for _ in range(sc.n)]
            lengths = [len(self.tokenizer.tokenize(p)) for p in prompts]
            longest = max(lengths, default=0)
            params = self._sampling_params(sc, longest)
            out: List[Optional[Generation]] = [None] * len(expanded)
            for batch in plan_batches([n for n in lengths for _ in range(sc.n)], self.max_batch_size,
                                      params.num_tokens_to_generate):
                results = self.engine.generate(prompts=[expanded[i] for i in batch], sampling_params=params)
                for i, req in zip(batch, results):
                    out[i] = to_generation(self.tokenizer, req, sc, params.num_tokens_to_generate)
        return [out[i * sc.n:(i + 1) * sc.n] for i in range(len(prompts))]
