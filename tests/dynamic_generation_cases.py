"""megatron's dynamic inference engine against the static engine on a tiny model: the workload of
tests/scripts/dynamic_generation_check.py (a fresh interpreter: the GPU test, with CUDA graphs) and of the CPU
test, which runs it in-process under tests/megatron_state.megatron_in_process and
tests/dynamic_engine_cpu.cpu_standins (tests/distributed/test_dynamic_engine_parity.py). It returns what it
observed; the test judges it."""

from __future__ import annotations

import torch

from tests.helpers import ROOT


# ----- the checks -------------------------------------------------------------------------------------
class _Tokenizer:
    """The project's tokenizer with a settable EOD id, so that a greedy response can be made to end at EOD."""

    def __init__(self, tok):
        self._tok = tok
        self.eod = tok.eod

    def __getattr__(self, name):
        return getattr(self._tok, name)


def _next_token_log_probs(model, tokens):
    """log-softmax of the model's next-token logits after ``tokens`` (a training-style forward)."""
    dev = model.embedding.word_embeddings.weight.device
    seq = torch.tensor([tokens], device=dev)
    pos = torch.arange(len(tokens), device=dev).unsqueeze(0)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = torch.log_softmax(model(seq, pos, None)[0, -1].float(), -1).cpu()
    model.train(was_training)
    return out


def _compare(model, static, dynamic):
    """What the two engines' greedy results share, pair by pair (the test judges it)."""
    pairs, worst = [], 0.0
    for a_per, b_per in zip(static, dynamic, strict=True):
        for a, b in zip(a_per, b_per, strict=True):
            diff = [i for i, (x, y) in enumerate(zip(a.tokens, b.tokens)) if x != y]
            pair = {"prompt_equal": (a.prompt, a.prompt_tokens) == (b.prompt, b.prompt_tokens),
                    "static": [a.finish_reason, a.tokens], "dynamic": [b.finish_reason, b.tokens],
                    "equal": (a.tokens, a.text, a.finish_reason) == (b.tokens, b.text, b.finish_reason),
                    "divergence": None}
            if diff:  # where they part, how close the two picks were under a training forward
                i = diff[0]
                lp = _next_token_log_probs(model, a.prompt_tokens + a.tokens[:i])
                pair["divergence"] = {"index": i, "tie": abs(float(lp[a.tokens[i]] - lp[b.tokens[i]]))}
            if a.log_probs is not None:
                common = diff[0] if diff else len(a.tokens)
                pair["log_prob_lengths_ok"] = len(a.log_probs) == len(a.tokens) and len(b.log_probs) == len(b.tokens)
                worst = max([worst] + [abs(x - y) for x, y in zip(a.log_probs[:common], b.log_probs[:common])])
            pairs.append(pair)
    return {"pairs": pairs, "worst_log_prob_diff": worst}


def dynamic_against_static(graphs: bool = False) -> dict:
    """DynamicGenerator (megatron's dynamic engine) against Generator (the static engine) on one tiny model, on
    the process group megatron is set up with (world 1, seed 11; with ``graphs``, megatron's graph-safe RNG
    tracker): what tests/distributed/test_dynamic_engine_parity.py asserts. Without a GPU the caller has the CPU
    stand-ins of tests/dynamic_engine_cpu.py in place (tests/scripts/dynamic_generation_check.py for the rest of
    its process, the CPU test for this call only); ``graphs`` (megatron's CUDA graphs) needs a GPU.

    Checked: greedy tokens, texts, finish reasons (eod, stop, length) and per-token log-probs equal the
    static engine's, with n samples per prompt, prompts over several KV blocks, and a KV buffer too small
    for every request at once (megatron pauses/evicts, the merged results must not change); sampled
    log-probs equal a training-style forward's (at temperature 0.7 with top-p 0.9: the renormalised nucleus; at
    1.3: the trainer's token_log_probs); reseeding repeats a sampled rollout; after an in-place
    weight update both engines generate from the new weights; the training forward/backward still runs
    after a rollout and no CUDA-graph manager stays on the layers."""
    from tests.rl_cases import reference_log_probs

    from megatron_octo import config as cfgmod
    from megatron_octo.models.llama import load_tokenizer
    from megatron_octo.generation import Generator, SamplingConfig
    from megatron_octo.generation_dynamic import DynamicGenerator, blocks_per_sequence, kv_block_bytes
    from megatron_octo.models import llama
    from megatron_octo.rl.logprobs import token_log_probs

    gpu = torch.cuda.is_available()
    if graphs and not gpu:
        raise ValueError("CUDA graphs need a GPU")
    seen = {"gpu": gpu, "cuda_graphs": graphs, "comparisons": {}}
    cfg = cfgmod.load(None, ["train.tokens=0", "model.preset=tiny", "tokenizer.library=sentencepiece",
                             f"tokenizer.path={ROOT}/data/tokenizer/octo_sp8k.model"])
    tok = _Tokenizer(load_tokenizer(cfg))
    arch = llama.run_architecture(cfg, tok)
    model = llama.build_gpt_model(cfg, arch, pre_process=True, post_process=True)
    if gpu:
        model.cuda()
    with torch.no_grad():  # sharper than the initial near-uniform distribution, so differences would show
        for p in model.parameters():
            p.mul_(3.0)
    model.train()
    # flash-attn 2's paged kernels take blocks of a multiple of 256 tokens; the CPU stand-in any size.
    max_len, block = 96, (256 if gpu else 16)
    static = Generator(model, tok, max_sequence_length=max_len, max_batch_size=8, seed=5)
    dynamic = DynamicGenerator(model, tok, max_sequence_length=max_len, max_batch_size=8, seed=5,
                               cuda_graphs=graphs, block_size_tokens=block)
    # The buffer: room for every request at full length; megatron's own block arithmetic agrees.
    ctx = dynamic.context
    seen["block_size_bytes"] = [ctx.block_size_bytes, kv_block_bytes(model.config, block, 1)]
    seen["blocks"] = {"active": ctx.block_allocator.active_count, "needed": 8 * blocks_per_sequence(max_len, block)}
    prompts = ["Problem: 2 + 2 = ?", "The derivative of x^2 is",
               "A long prompt that spans more than one block of the paged cache: " + "one two three " * 6]

    # Greedy, n=2: first pick a stop string that ends prompt 0's responses only, and an EOD id that
    # ends prompt 1's only (prompt 2's run to the length limit).
    greedy = SamplingConfig(max_new_tokens=24, temperature=0.0, n=2, return_log_probs=True)
    first = [per[0] for per in static.generate(prompts, greedy)]
    stop = next(first[0].text[i:i + 3] for i in range(4, len(first[0].text) - 3)
                if first[0].text[i:i + 3].strip() and first[0].text[i:i + 3] not in first[1].text + first[2].text)
    tok.eod = next(t for t in first[1].tokens[4:] if t not in first[0].tokens + first[2].tokens)
    greedy.stop = [stop]
    ref = static.generate(prompts, greedy)
    seen["comparisons"]["greedy"] = _compare(model, ref, dynamic.generate(prompts, greedy))
    seen["finish_reasons"] = sorted({g.finish_reason for per in ref for g in per})

    # A KV buffer for ~2 full-length sequences with 6 requests: the engine must pause / evict.
    small = DynamicGenerator(model, tok, max_sequence_length=max_len, max_batch_size=8, seed=5, cuda_graphs=False,
                             block_size_tokens=block,
                             kv_cache_gb=(2 * blocks_per_sequence(max_len, block) + 1.5)
                             * kv_block_bytes(model.config, block, 1) / 2**30)
    greedy.stop = []
    seen["comparisons"]["small buffer"] = _compare(model, static.generate(prompts, greedy), small.generate(prompts, greedy))

    # Sampling: the log-probs are those of the distribution each token was drawn from (temperature, the top-p
    # nucleus renormalised); a reseed repeats the rollout.
    sampled = SamplingConfig(max_new_tokens=16, temperature=0.7, top_p=0.9, n=3, return_log_probs=True)
    dynamic.reseed(123)
    a = dynamic.generate(prompts, sampled)
    dynamic.reseed(123)
    b = dynamic.generate(prompts, sampled)
    seen["reseed_repeats"] = [[g.tokens for g in per] for per in a] == [[g.tokens for g in per] for per in b]
    seen["sampled_log_prob_lengths_ok"] = all(len(g.log_probs) == len(g.tokens) for per in a for g in per)
    # At temperature 1.3 without top-p the log-probs are the trainer's token_log_probs(logits, labels, 1.3).
    plain = SamplingConfig(max_new_tokens=16, temperature=1.3, n=2, return_log_probs=True)
    dynamic.reseed(321)
    c = dynamic.generate(prompts, plain)

    def worst_vs_forward(gens, temperature, top_p):
        worst = 0.0
        model.eval()
        with torch.no_grad():
            for g in (g for per in gens for g in per if g.tokens):
                seq = torch.tensor([g.prompt_tokens + g.tokens], device=model.embedding.word_embeddings.weight.device)
                pos = torch.arange(seq.shape[1], device=seq.device).unsqueeze(0)
                logits, n = model(seq[:, :-1], pos[:, :-1], None), len(g.prompt_tokens) - 1
                if top_p < 1.0:
                    lp = reference_log_probs(logits[0, n:].float(), seq[0, n + 1:], temperature, top_p)
                else:
                    lp = token_log_probs(logits, seq[:, 1:], temperature)[0, n:]
                worst = max(worst, (lp.float().cpu() - torch.tensor(g.log_probs)).abs().max().item())
        return worst

    seen["worst_sampled_vs_forward"] = worst_vs_forward(a, 0.7, 0.9)
    seen["worst_sampled_vs_trainer"] = worst_vs_forward(c, 1.3, 1.0)

    # The training step runs after a rollout, and its in-place update reaches the next rollout.
    model.train()
    seen["graph_managers_left"] = sum(hasattr(m, "cudagraph_manager") for m in model.modules())
    seen["cuda_graph_impl"] = model.config.cuda_graph_impl
    seq = torch.randint(0, arch.vocab_size, (2, max_len + 1), device=model.embedding.word_embeddings.weight.device)
    pos = torch.arange(max_len, device=seq.device).unsqueeze(0).expand(2, -1)
    token_log_probs(model(seq[:, :-1], pos, None), seq[:, 1:]).sum().backward()
    greedy.stop, tok.eod = [], tok._tok.eod
    before = static.generate(prompts, greedy)
    with torch.no_grad():  # inside the (CUDA-graphed) transformer layers, in place as an optimizer step
        for name, p in model.decoder.named_parameters():
            if name.endswith(("linear_proj.weight", "linear_fc2.weight")):
                p.mul_(-1.0)
        model.zero_grad()
    after_static = static.generate(prompts, greedy)
    seen["update_changed_tokens"] = ([g.tokens for per in after_static for g in per]
                                     != [g.tokens for per in before for g in per])
    seen["comparisons"]["after the update"] = _compare(model, after_static, dynamic.generate(prompts, greedy))
    seen["sampled_tokens"] = sum(len(g.tokens) for per in a for g in per)
    seen["evicted"] = small.engine.evicted_request_count
    return seen
