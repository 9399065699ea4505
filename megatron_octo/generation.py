"""Text generation on the parallel model through megatron-core's inference engines.

The engine wraps the same ``GPTModel`` object the trainer (or the RL actor) holds — no copy, no
resharding — so evaluation and RL rollouts run at the model's TP/PP and see the current weights.
Two engines, one interface (``generate(prompts, SamplingConfig) -> [[Generation] * n]``,
``reseed(seed)``), chosen by :func:`megatron_octo.generators.make_generator`:

- :class:`Generator`: megatron's static-batch KV cache and forward step, every prompt prefilled in one
  pass, finished sequences leaving the batch (megatron's static engine, ``legacy=True``, with
  pipeline stages or Transformer Engine attention). Runs everywhere, the CPU included.
- :class:`megatron_octo.generation_dynamic.DynamicGenerator`: megatron's dynamic engine — paged KV
  cache, in-flight batching (a finished sequence's slot is refilled at once), CUDA graphs captured
  once. Needs a CUDA GPU and flash-attn (its attention runs in flash-attn's paged-KV kernels); what
  fails without them is written down in that module.

Both translate the engine's results the same way (:func:`to_generation`): the response is cut at
EOD, then at the first stop string (``finish_reason="stop"``; generation also ends there, on every path:
our own loop, megatron's static engine through :func:`engine_classes`' status check, the dynamic
engine through megatron's stop words), with the tokens and per-token log-probs cut to match;
``"length"`` when the token budget ran out.

Log-probs (``SamplingConfig.return_log_probs``) are those of the distribution each token was drawn from
(:func:`processed_logits`): ``log softmax(logits / temperature)``, over the top-k / top-p set renormalised
when those are set, in fp32 — vLLM's ``logprobs_mode="processed_logprobs"``, which verl's vLLM rollout
requests by default (verl PR #4755), so ``rl.rollout_is`` weighs by the sampling policy's own ratio. The
trainer's log-probs are ``log softmax(logits / rl.temperature)`` over the whole vocabulary (as verl's actor
computes them): with ``top_p`` = 1 and no top-k (every recipe) the two are the same number up to fp32
rounding; with ``top_p`` < 1 a rollout log-prob exceeds the trainer's by the log of the nucleus' mass, a real
difference between the sampling and the trained policy that ``training/rollout_logprob_diff`` then shows.
Greedy decoding (temperature 0) records the raw logits' log-softmax. megatron-core 0.16.1's engines
record ``log_softmax(raw logits)`` whatever the temperature; both are corrected here (the static engine's
logits transformed before megatron samples them, the dynamic engine's log-probs recomputed per request).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Set

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
    ignore_eod: bool = False  # generate past EOD (benchmarks: a fixed number of tokens)


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

# Shortest prompt prefix shared by a whole batch that is computed once (shared_prefix_length): its own
# pass costs about one decode step at batch 1, what a few dozen repeated prompt tokens cost.
MIN_SHARED_PREFIX = 32


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
    if eod in tokens and not sc.ignore_eod:
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


@dataclass
class EngineResult:
    """A finished sequence of :class:`Generator`'s own loop, in the engines' request fields."""
    prompt: str
    prompt_tokens: List[int]
    generated_tokens: List[int]
    generated_log_probs: Optional[List[float]]


def processed_logits(logits: torch.Tensor, temperature: float, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """fp32 logits ``[rows, vocab]`` of the distribution a token is drawn from (softmax of the result), as
    megatron's static engine builds it (``TextGenerationController``): divided by ``temperature``, then the
    top-k (``top_k`` > 1) or top-p (``top_p`` < 1, megatron's filter: the token crossing ``top_p`` stays)
    tokens kept and the others set to -inf. Greedy (``temperature`` 0 or ``top_k`` 1): the logits as they
    are (fp32; the caller takes the argmax). A new tensor unless greedy on fp32 logits."""
    if temperature == 0 or top_k == 1:
        return logits.float()
    logits = logits.float() / temperature  # a new fp32 tensor (filtered in place; a bf16 cumsum would drift)
    if top_k > 1:
        logits.masked_fill_(logits < torch.topk(logits, top_k)[0][..., -1, None], float("-inf"))
    elif top_p < 1.0:
        sorted_logits, sorted_idx = torch.sort(logits, descending=True)
        drop = sorted_logits.softmax(dim=-1).cumsum(dim=-1) > top_p
        drop[:, 1:] = drop[:, :-1].clone()
        drop[..., 0] = False
        logits.masked_fill_(drop.scatter(1, sorted_idx, drop), float("-inf"))
    return logits


def sample_tokens(logits: torch.Tensor, sc: SamplingConfig, rng: torch.Generator,
                  vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One token per row of ``logits`` ``[rows, vocab]`` from the distribution megatron's static engine
    samples, and that distribution's logits (:func:`processed_logits`: their log-softmax at the token is
    its log-prob): greedy argmax; else one draw per row from ``rng`` (torch.multinomial's algorithm)."""
    logits = processed_logits(logits, sc.temperature, sc.top_k, sc.top_p)
    if sc.temperature == 0 or sc.top_k == 1:
        return logits.argmax(dim=-1), logits
    # torch.multinomial's draw of one sample (argmax of p / E, E ~ Exp(1): a race, not an inverse CDF at one
    # uniform, whose cumulative sum over the vocabulary moves every boundary by its rounding, so TP=2's
    # logits, equal to TP=1's up to rounding, picked a neighbouring token every few dozen draws of a flat
    # distribution; the race flips only on a near-tie of two tokens), with E = -log(U): torch's
    # exponential_ costs 12 ms per 16 x 49K draws on the CPU, uniform_ and a log 2-3 ms.
    probs = logits.softmax(dim=-1)
    race = torch.empty_like(probs).uniform_(generator=rng).log_().neg_()
    tokens = (probs / race).argmax(dim=-1)
    return tokens.clamp_(min=0, max=min(vocab_size, probs.shape[1]) - 1), logits


def token_log_probs_of(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log softmax(``logits``)[row, ``tokens[row]``] per row, fp32."""
    return torch.log_softmax(logits.float(), dim=-1).gather(1, tokens[:, None])[:, 0]


def shared_prefix_length(prompts: Sequence[Sequence[int]]) -> int:
    """Tokens every prompt of a batch starts with (few-shot examples, a GRPO group's prompt) that the lean
    forward computes and caches once for all rows, at least one token of each prompt left to its row; 0
    when fewer than :data:`MIN_SHARED_PREFIX` or one row (the prefix's extra pass would cost more than the
    rows' repeated tokens)."""
    if len(prompts) < 2:
        return 0
    first, n = prompts[0], min(len(p) for p in prompts) - 1
    for p in prompts[1:]:
        n = next((i for i in range(n) if p[i] != first[i]), n)
    return n if n >= MIN_SHARED_PREFIX else 0


def compact_kv_cache(context, rows: torch.Tensor) -> None:
    """Keep only ``rows`` of a static inference context's KV cache, moved to the first rows (the batch
    shrinks: later passes feed ``len(rows)`` sequences). megatron's buffers are ``[positions, batch, ...]``;
    the lean forward's, tagged ``(BATCH_FIRST, layer)``, ``[batch, groups, positions, dim]``
    (:func:`megatron_octo.models.lean_forward.kv_memory`), their first ``context.shared_prefix`` columns
    the batch's shared prefix in row 0, kept in place."""
    end, n, lead = context.sequence_len_offset, len(rows), getattr(context, "shared_prefix", 0) or 0
    for tag, (key, value) in context.key_value_memory_dict.items():
        for mem in (key, value):
            if isinstance(tag, tuple):
                mem[:n, :, lead:end] = mem[rows, :, lead:end]
            else:
                mem[:end, :n] = mem[:end, rows]


def own_loop_supported(model) -> bool:
    """Whether :class:`Generator` drives the KV cache itself: every attention layer our cached-RoPE
    attention (per-sequence positions) over SDPA core attention (attention mask). Any number of
    pipeline stages: every stage is built from the same layer spec, so all of them agree."""
    # lazy: megatron-core (these modules import it) loads only when a generator is built
    from megatron.core.transformer.attention import SelfAttention

    from megatron_octo.models.cached_rope_attention import CachedRopeSelfAttention
    from megatron_octo.models.sdpa_attention import SDPAttention

    attn = [m for m in model.modules() if isinstance(m, SelfAttention)]
    return bool(attn) and all(isinstance(m, CachedRopeSelfAttention) and isinstance(m.core_attention, SDPAttention)
                              for m in attn)


def generation_path(model) -> tuple[str, Optional[str]]:
    """Which forward generates on ``model`` and why not the fastest: ``("lean forward", None)``, ``("megatron's
    forward", reason)`` (our loop over megatron's ``GPTModel.forward``) or ``("megatron's static engine",
    reason)`` (Transformer Engine or other attention our loop cannot drive)."""
    # lazy: megatron-core (imported there) loads only when a generator is built
    from megatron_octo.models import lean_forward

    if not own_loop_supported(model):
        return ("megatron's static engine", "the attention layers are not the local spec's cached-RoPE SDPA "
                "attention (Transformer Engine layers): no per-row positions for a left-padded batch")
    reason = lean_forward.unsupported(model)
    return ("lean forward", None) if reason is None else ("megatron's forward", reason)


_LOGGED: Set[str] = set()


def note_once(message: str) -> None:
    """Print ``message`` once per process, on global rank 0."""
    if message in _LOGGED:
        return
    _LOGGED.add(message)
    if not (torch.distributed.is_initialized() and torch.distributed.get_rank() != 0):
        print(f"[megatron-octo] {message}", flush=True)


_ENGINE_CLASSES: dict = {}


def engine_classes() -> tuple:
    """megatron's GPT inference wrapper and text-generation controller, subclassed (once, lazily: megatron
    loads only when a generator is built):

    - the wrapper's ``logits_transform`` (None: off) replaces each pass's logits (megatron's static engine
      then samples and takes log-probs of :func:`processed_logits`), and ``passes`` counts its passes;
    - the controller's ``stop_rows`` (None: off; ``(stop strings, prompt lengths of the batch's rows,
      tail tokens)`` while megatron's static engine runs a batch) ends a row once the text of its last
      generated tokens holds a stop string, as EOD does (the token that completed it kept); and its dynamic
      engine log-probs are those of each request's :func:`processed_logits` (megatron's are of the raw
      logits)."""
    if _ENGINE_CLASSES:
        return _ENGINE_CLASSES["wrapper"], _ENGINE_CLASSES["controller"]
    from megatron.core.inference.model_inference_wrappers.gpt.gpt_inference_wrapper import GPTInferenceWrapper
    from megatron.core.inference.text_generation_controllers.text_generation_controller import (
        TextGenerationController,
    )

    class Wrapper(GPTInferenceWrapper):
        logits_transform = None
        passes = 0

        def run_one_forward_step(self, inference_input, *args, **kwargs):
            self.passes += 1
            logits = super().run_one_forward_step(inference_input, *args, **kwargs)
            if self.logits_transform is None or logits is None:
                return logits
            return self.logits_transform(logits)

    class Controller(TextGenerationController):
        stop_rows = None

        def update_generation_status(self, updated_prompts_tokens, generation_started, current_context_end_position,
                                     is_generation_done_tensor, generated_sequence_lengths, termination_id=None):
            done, lengths = super().update_generation_status(
                updated_prompts_tokens, generation_started, current_context_end_position, is_generation_done_tensor,
                generated_sequence_lengths, termination_id)
            if self.stop_rows is None:
                return done, lengths
            stops, prompt_lengths, tail = self.stop_rows
            end = current_context_end_position + 1
            running = (~done & generation_started).tolist()
            for row, length in enumerate(prompt_lengths):
                if running[row] and end > length:  # counted above: the stop string's last token stays
                    text = self.tokenizer.detokenize(updated_prompts_tokens[row, max(length, end - tail):end].tolist())
                    if any(stop in text for stop in stops):
                        done[row] = True
            return done, lengths

        def _dynamic_step_calculate_log_probs(self, logits):
            context = self.inference_wrapped_model.inference_context
            active = slice(context.paused_request_count, context.total_request_count)
            params = list(zip(self._request_metadata["temperature"][active].tolist(),
                              self._request_metadata["top_k"][active].tolist(),
                              self._request_metadata["top_p"][active].tolist()))
            if all(t == 1.0 and k in (0, 1) and p in (0.0, 1.0) or k == 1 for t, k, p in params):
                return super()._dynamic_step_calculate_log_probs(logits)  # raw logits' (greedy, or plain T=1)
            if not (context.materialize_only_last_token_logits or context.is_decode_only()):
                raise NotImplementedError("sampled log-probs at temperature != 1 or with top-k/top-p need the "
                                          "dynamic engine's last-token logits (materialize_only_last_token_logits)")
            flat = logits.reshape(-1, logits.shape[-1])
            processed = flat.float().clone()
            groups: dict = {}
            for row, key in enumerate(params):
                groups.setdefault(key, []).append(row)
            for (t, k, p), rows in groups.items():
                idx = torch.tensor(rows, device=flat.device)
                processed[idx] = processed_logits(flat[idx], t, int(k), p if p > 0 else 1.0)
            return context.calculate_log_probs(processed.view(logits.shape), self._sampled_tokens_cuda[:len(params)],
                                               only_last_token_logits=context.materialize_only_last_token_logits)

    _ENGINE_CLASSES.update(wrapper=Wrapper, controller=Controller)
    return Wrapper, Controller


class EngineOnModel:
    """What both engines share: megatron's GPT inference wrapper and text-generation controller on the
    caller's ``GPTModel`` (not a copy), the sampling stream, and eval mode while generating."""

    def _wrap(self, model, tokenizer, make_context, *, max_sequence_length: int, max_batch_size: int):
        """Builds the wrapper config, ``make_context(wrapper_config)`` and the controller."""
        from megatron.core.inference.model_inference_wrappers.inference_wrapper_config import InferenceWrapperConfig

        wrapper_class, controller_class = engine_classes()
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
        wrapped = wrapper_class(model, wcfg, self.context)
        self.controller = controller_class(inference_wrapped_model=wrapped, tokenizer=tokenizer)
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
    """Batched generation from one GPTModel (any TP/PP) through megatron's static-batch inference path.

    With the local layer spec (SDPA core attention and cached-RoPE attention: the CPU path; any number
    of pipeline stages, the last stage's logits broadcast to the others) :meth:`generate` drives
    megatron's ``StaticInferenceContext`` KV cache and its
    inference wrapper's forward step itself, instead of the static engine's loop (which prefills a
    batch only up to its shortest prompt, then feeds the longer prompts one position per pass, and
    decodes every sequence to the longest response):

    - every prompt is prefilled in one pass: left padding, an attention mask hiding the pad keys, and
      per-sequence RoPE positions (:mod:`megatron_octo.models.cached_rope_attention`), so a sequence's
      numbers are those of its unpadded forward; with the lean forward, a prefix every prompt of the
      batch shares (few-shot examples; a GRPO group's prompt when the batch is one group) is fed once,
      in a pass of its own, and every row attends to its one cached copy (:func:`shared_prefix_length`);
    - then at most ``max_new_tokens`` decode passes of one position each, logits of the last position
      only (both through :mod:`megatron_octo.models.lean_forward` where it covers the model: the same
      numbers without megatron's per-layer Python; on the CPU the GEMM backend ``gemm`` names, auto: the
      faster on this machine, :func:`megatron_octo.models.lean_forward.gemm_backend`); sampling as megatron's
      (temperature, top-k or top-p, the controller's ``sampling_rng``, the same on every TP rank) and
      log-probs of the distribution sampled (:func:`processed_logits`);
    - a sequence ends at EOD or a stop string (checked on the tail of its text after every token) and
      leaves the batch: its KV-cache rows are compacted away, so later passes cost the rows still
      running. ``stats`` counts the forward passes and the batch rows x positions fed, and the
      wall time of prefill and decode.

    Where the lean forward does not cover the model (pipeline stages, biases, ...) the same loop runs
    megatron's ``GPTModel.forward``; with attention layers our loop cannot drive (Transformer Engine)
    megatron's static engine runs, in batches of similar prompt length (:func:`plan_batches`), its rows
    ending at EOD or a stop string (:func:`engine_classes`) and its log-probs those of the distribution
    sampled. Which of the three runs, and why, is printed once per process (``path``).
    """

    def __init__(self, model, tokenizer, *, max_sequence_length: int, max_batch_size: int = 32, seed: int = 1234,
                 share_prefix: bool = True, gemm: str = "auto"):
        from megatron.core.inference.contexts import StaticInferenceContext
        from megatron.core.inference.engines import StaticInferenceEngine

        controller = self._wrap(model, tokenizer, StaticInferenceContext.from_config,
                                max_sequence_length=max_sequence_length, max_batch_size=max_batch_size)
        self.engine = StaticInferenceEngine(text_generation_controller=controller, max_batch_size=max_batch_size,
                                            random_seed=seed, legacy=True)
        self.reseed(seed)
        # forward passes, batch rows x positions fed, wall seconds of the prompts' passes and of decoding
        # (every later pass, sampling included)
        self.stats = {"passes": 0, "positions": 0, "prefill_s": 0.0, "decode_s": 0.0}
        self.own_loop = own_loop_supported(model)
        # lazy: megatron-core (imported there) loads only when a generator is built
        from megatron_octo.models import lean_forward

        # megatron's forward stays for what the lean pass does not cover (pipeline stages, biases, ...)
        self.path = generation_path(model)
        self.lean = lean_forward.forward if self.path[0] == "lean forward" else None
        self.share_prefix = share_prefix  # a batch's shared prompt prefix fed once (lean forward only)
        self.gemm = gemm  # generation.gemm: auto | onednn | torch (the lean forward's CPU GEMM)
        self.onednn: Optional[bool] = None  # the lean forward's GEMM, chosen at its first pass
        name, why = self.path
        note_once(f"generation: {name}" + (f" ({why})" if why else ""))

    def _sampling_params(self, sc: SamplingConfig, prompt_len: int):
        params = megatron_sampling_params(sc, token_budget(sc, prompt_len, self.max_sequence_length))
        if sc.ignore_eod:
            params.no_early_termination = True  # read with getattr by megatron's static loop
        return params

    @torch.no_grad()
    def generate(self, prompts: Sequence[str], sc: SamplingConfig) -> List[List[Generation]]:
        """``sc.n`` generations per prompt, in prompt order."""
        if not self.own_loop:
            return self._generate_with_engine(prompts, sc)
        with self._eval_mode(), torch.inference_mode():
            expanded = [p for p in prompts for _ in range(sc.n)]
            ids = [self.tokenizer.tokenize(p) for p in prompts]
            ids = [x for x in ids for _ in range(sc.n)]
            budget = token_budget(sc, max((len(x) for x in ids), default=0), self.max_sequence_length)
            out: List[Optional[Generation]] = [None] * len(expanded)
            # Batches of similar length (less padding), in a fixed order (the sampling stream is shared).
            order = sorted(range(len(ids)), key=lambda i: (len(ids[i]), i))
            for start in range(0, len(order), self.max_batch_size):
                batch = order[start:start + self.max_batch_size]
                gen_tokens, gen_logp = self._decode_batch([ids[i] for i in batch], sc, budget)
                for j, i in enumerate(batch):
                    req = EngineResult(expanded[i], ids[i], gen_tokens[j], gen_logp[j] if gen_logp else None)
                    out[i] = to_generation(self.tokenizer, req, sc, budget)
        return [out[i * sc.n:(i + 1) * sc.n] for i in range(len(prompts))]

    def _forward(self, tokens: torch.Tensor, positions: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        """One pass through megatron's inference wrapper (KV cache append, last-position logits gathered
        over TP; with pipeline stages, broadcast from the last): ``[rows, vocab]``."""
        from megatron.core import parallel_state as ps
        from megatron.core.inference.communication_utils import broadcast_from_last_pipeline_stage

        self.stats["passes"] += 1
        self.stats["positions"] += tokens.numel()
        self.context.rope_cos_sin = None  # per-pass RoPE cos/sin (models.cached_rope_attention)
        if self.lean is not None:
            if self.onednn is None:
                # lazy: megatron-core (imported there) loads only when a generator is built
                from megatron_octo.models import lean_forward

                self.onednn = lean_forward.gemm_backend(self.model, self.gemm, rows=self.max_batch_size) == "onednn"
            return self.lean(self.model, self.context, tokens, positions, mask, onednn=self.onednn)
        wrapped = self.controller.inference_wrapped_model
        logits = wrapped.run_one_forward_step({"tokens": tokens, "position_ids": positions, "attention_mask": mask})
        if not (ps.is_pipeline_first_stage() and ps.is_pipeline_last_stage()):  # the last stage's, to all stages
            last = None if logits is None else logits[:, -1, :].contiguous()
            return broadcast_from_last_pipeline_stage([tokens.shape[0], self.model.vocab_size],
                                                      self.model.config.params_dtype, last)
        return logits[:, -1, :]

    def _decode_batch(self, prompts: List[List[int]], sc: SamplingConfig, budget: int):
        """Generated tokens (and log-probs when asked) of each prompt: prefill all, then decode.

        Columns of the batch: the prompts' shared prefix (``lead`` tokens, lean forward only), then each
        row's rest, left padded to the longest."""
        ctx = self.context
        dev = torch.cuda.current_device() if torch.cuda.is_available() else torch.device("cpu")
        rows, width = len(prompts), max(len(p) for p in prompts)
        lead = shared_prefix_length(prompts) if self.lean is not None and self.share_prefix else 0
        eod = self.tokenizer.eod
        pad = torch.tensor([width - len(p) for p in prompts], device=dev)
        tokens = torch.tensor([list(p[:lead]) + [eod] * (width - len(p)) + list(p[lead:]) for p in prompts],
                              device=dev)
        padded = bool(pad.any())
        ctx.reset()
        ctx.materialize_only_last_token_logits = True
        ctx.shared_prefix = lead
        keys = torch.arange(width, device=dev)
        positions = torch.where(keys[None, :] < lead, keys[None, :], (keys[None, :] - pad[:, None]).clamp_(min=lead))
        mask = None
        if padded:  # True = masked: the future, and pad keys (a pad query still sees itself: no empty rows)
            future = keys[None, :] > keys[:, None]
            pad_key = (((keys[None, None, :] >= lead) & (keys[None, None, :] < lead + pad[:, None, None]))
                       & (keys[None, :, None] != keys[None, None, :]))
            mask = (future[None] | pad_key)[:, None]
        live = list(range(rows))  # row of the cache -> index into prompts
        gen_tokens: List[List[int]] = [[] for _ in prompts]
        gen_logp: Optional[List[List[float]]] = [[] for _ in prompts] if sc.return_log_probs else None
        stops = [s for s in sc.stop if s]
        tail = max((len(s) for s in stops), default=0) + 8  # tokens of text enough to contain a stop string
        t_start = time.perf_counter()
        try:
            if lead:  # the shared prefix once (one row, no padding), then every row's rest over it
                ctx.position_offsets = None
                self._forward(tokens[:1, :lead], positions[:1, :lead], None)
            ctx.position_offsets = pad if padded else None
            logits = self._forward(tokens[:, lead:], positions[:, lead:], None if mask is None else mask[..., lead:, :])
            t_prefilled = time.perf_counter()
            self.stats["prefill_s"] += t_prefilled - t_start
            ctx.enable_decode_mode()
            for step in range(budget):
                new, sampled_from = sample_tokens(logits, sc, self.controller.sampling_rng, self.model.vocab_size)
                if gen_logp is not None:
                    logp = token_log_probs_of(sampled_from, new).tolist()
                done = []
                for r, (i, t) in enumerate(zip(live, new.tolist())):
                    gen_tokens[i].append(t)
                    if gen_logp is not None:
                        gen_logp[i].append(logp[r])
                    if ((t == eod and not sc.ignore_eod)
                            or (stops and any(s in self.tokenizer.detokenize(gen_tokens[i][-tail:]) for s in stops))):
                        done.append(r)
                if step == budget - 1 or len(done) == len(live):
                    break
                if done:
                    ended = set(done)
                    keep = [r for r in range(len(live)) if r not in ended]
                    live = [live[r] for r in keep]
                    idx = torch.tensor(keep, device=dev)
                    compact_kv_cache(ctx, idx)
                    new, pad = new[idx], pad[idx]
                    if ctx.position_offsets is not None:
                        ctx.position_offsets = pad
                end = ctx.sequence_len_offset + 1
                positions = (end - 1 - pad)[:, None]
                cols = torch.arange(end, device=dev)[None, :]
                mask = ((cols >= lead) & (cols < lead + pad[:, None]))[:, None, None] if padded else None
                logits = self._forward(new[:, None], positions, mask)
            self.stats["decode_s"] += time.perf_counter() - t_prefilled
        finally:
            ctx.position_offsets, ctx.shared_prefix = None, 0
            ctx.reset()
        return gen_tokens, gen_logp

    def _generate_with_engine(self, prompts: Sequence[str], sc: SamplingConfig) -> List[List[Generation]]:
        """megatron's static engine (Transformer Engine attention). When sampling, the engine is handed
        :func:`processed_logits` and samples them as they are (temperature 1, no filter): the same draw from
        the same distribution, and its log-probs are that distribution's. Stop strings end rows
        (``stop_rows``); the batch ends when every row has."""
        from megatron.core import parallel_state as ps

        wrapped, controller = self.controller.inference_wrapped_model, self.controller
        greedy = sc.temperature == 0 or sc.top_k == 1
        pipelined = not (ps.is_pipeline_first_stage() and ps.is_pipeline_last_stage())
        dtype = self.model.config.params_dtype

        def transform(logits):  # [b, s, vocab] -> the sampled distribution's logits (params dtype under PP:
            # megatron broadcasts them from the last stage in that dtype)
            out = processed_logits(logits.reshape(-1, logits.shape[-1]), sc.temperature, sc.top_k, sc.top_p)
            return out.view(logits.shape).to(dtype if pipelined else torch.float32)

        stops = [s for s in sc.stop if s]
        tail = max((len(s) for s in stops), default=0) + 8
        with self._eval_mode():
            expanded = [p for p in prompts for _ in range(sc.n)]
            ids = [self.tokenizer.tokenize(p) for p in prompts]
            lengths = [len(x) for x in ids]
            longest = max(lengths, default=0)
            params = self._sampling_params(sc, longest)
            if not greedy:
                params.temperature, params.top_k, params.top_p = 1.0, 0, 0.0
            out: List[Optional[Generation]] = [None] * len(expanded)
            passes = wrapped.passes
            try:
                wrapped.logits_transform = None if greedy else transform
                for batch in plan_batches([n for n in lengths for _ in range(sc.n)], self.max_batch_size,
                                          params.num_tokens_to_generate):
                    controller.stop_rows = (stops, [lengths[i // sc.n] for i in batch], tail) if stops else None
                    results = self.engine.generate(prompts=[expanded[i] for i in batch], sampling_params=params)
                    for i, req in zip(batch, results):
                        out[i] = to_generation(self.tokenizer, req, sc, params.num_tokens_to_generate)
            finally:
                wrapped.logits_transform, controller.stop_rows = None, None
                self.stats["passes"] += wrapped.passes - passes
        return [out[i * sc.n:(i + 1) * sc.n] for i in range(len(prompts))]
