"""Rollout log-probs (megatron inference engine paths) vs the training forward's log-probs, and the
vocab-parallel log-prob/entropy helpers vs a dense computation, at the process group's TP.

Rollouts at temperatures 1.0, 0.7 and 1.3 on the lean forward with the GEMM ``generation.gemm=auto`` chose
(and again, same sampling stream, with the other GEMM where oneDNN is available: the difference the GEMM
alone makes), their log-probs against the trainer's ``token_log_probs(logits, labels, T)``; top-p against an
independent float64 reference of the nucleus distribution; the TIS/MIS weights of the rollout against the
trainer's log-probs; megatron's forward in our loop (the pipeline-stage path) and megatron's static engine
(the Transformer Engine path) at T=0.7 and at T=1.3 with top-p. Prints ``RESULT {json}``."""
import json
import sys
import warnings

warnings.filterwarnings("ignore")
import torch  # noqa: E402

TEMPERATURES = (1.0, 0.7, 1.3)


def reference_log_probs(full: torch.Tensor, labels: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """log p(label) under the nucleus distribution of softmax(full / T), in float64: the tokens in decreasing
    probability order while the mass before them is <= top_p (megatron's filter keeps the token crossing
    top_p), renormalised. ``full`` ``[n, vocab]``, ``labels`` ``[n]``."""
    p = torch.softmax(full.double() / temperature, dim=-1)
    sorted_p, order = p.sort(dim=-1, descending=True)
    before = sorted_p.cumsum(dim=-1) - sorted_p
    keep = torch.zeros_like(p, dtype=torch.bool).scatter(1, order, before <= top_p)
    kept = torch.where(keep, p, torch.zeros_like(p))
    return (kept.gather(1, labels[:, None])[:, 0] / kept.sum(dim=-1)).log()


def main():
    from megatron.core.tensor_parallel.mappings import gather_from_tensor_model_parallel_region

    from megatron_octo import config as cfgmod
    from megatron_octo.generation import Generator, SamplingConfig, shared_prefix_length
    from megatron_octo.models import lean_forward, llama
    from megatron_octo.models.llama import load_tokenizer
    from megatron_octo.rl.logprobs import token_entropy, token_log_probs
    from megatron_octo.rl.rollout_correction import rollout_is_weights
    from megatron_octo.runtime import distributed as rt

    tp = int(sys.argv[1])
    cfg = cfgmod.load(None, ["train.tokens=0", "model.preset=tiny", "tokenizer.library=sentencepiece",
                             "tokenizer.path=data/tokenizer/octo_sp8k.model", f"parallel.tp={tp}"])
    rt.initialize(tp, 1, seed=11)
    tok = load_tokenizer(cfg)
    arch = llama.run_architecture(cfg, tok)
    model = llama.build_gpt_model(cfg, arch, pre_process=True, post_process=True)
    # Sharper than the initial near-uniform distribution, so differences would show.
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    gen = Generator(model, tok, max_sequence_length=128, max_batch_size=8, seed=5, gemm="auto")
    # Three prompts, one sample each: on this model oneDNN's and MKL's GEMMs round alike at some even row
    # counts (4, 6), so an odd batch is what shows the GEMM's own difference.
    prompts = ["Problem: 2 + 2 = ?", "The derivative of x^2 is", "Once upon a time, far away, there was"]
    # Few-shot prompts: the lean forward computes their shared prefix once and every row attends to it.
    shot = ("Q: There are 15 trees in the grove. Workers will plant trees today. After they are done, there "
            "will be 21 trees. How many trees did they plant?\nA: 21 - 15 = 6. The answer is 6.\n\nQ: ")
    few_shot = [shot + "What is 2 + 2?\nA:", shot + "Tom has 3 apples and buys 4 more. How many now?\nA:"]
    shared = shared_prefix_length([tok.tokenize(p) for p in few_shot]) if gen.lean is not None else 0

    def forward(g):
        """The training forward on prompt + response: its vocab-parallel logits and the labels."""
        seq = torch.tensor([g.prompt_tokens + g.tokens])
        pos = torch.arange(seq.shape[1]).unsqueeze(0)
        with torch.no_grad():
            return model(seq[:, :-1], pos[:, :-1], None), seq[:, 1:]

    def rollouts(sc, sets, seed):
        gen.reseed(seed)
        return [g for ps in sets for per in gen.generate(ps, sc) for g in per]

    bad_lengths = []  # [engine log-probs, tokens] of a sample whose counts differ (the test requires none)

    def compare(gens, temperature, top_p=1.0):
        """max |engine - trainer| (top_p 1: rl's token_log_probs at T; else the float64 nucleus reference),
        and the (trainer, engine) log-prob pairs."""
        worst, pairs = 0.0, []
        for g in gens:
            if not g.tokens:
                continue
            if len(g.log_probs) != len(g.tokens):
                bad_lengths.append([len(g.log_probs), len(g.tokens)])
                continue
            logits, labels = forward(g)
            n = len(g.prompt_tokens) - 1
            if top_p < 1.0:
                full = gather_from_tensor_model_parallel_region(logits)[0].float()
                want = reference_log_probs(full[n:], labels[0, n:], temperature, top_p).float()
            else:
                want = token_log_probs(logits, labels, temperature)[0, n:]
            got = torch.tensor(g.log_probs)
            worst = max(worst, (want - got).abs().max().item())
            pairs += list(zip(want.tolist(), g.log_probs))
        return worst, pairs

    def same_tokens_diff(a, b):
        """max |log-prob| difference of two rollouts of the same stream, over each pair's common token prefix."""
        worst = 0.0
        for x, y in zip(a, b):
            common = next((i for i, (s, t) in enumerate(zip(x.tokens, y.tokens)) if s != t),
                          min(len(x.tokens), len(y.tokens)))
            worst = max([worst] + [abs(p - q) for p, q in zip(x.log_probs[:common], y.log_probs[:common])])
        return worst

    per_temperature, pairs = {}, []
    outs = []
    onednn_here = lean_forward.onednn_gemm_available() and gen.lean is not None
    for i, temperature in enumerate(TEMPERATURES):
        sc = SamplingConfig(max_new_tokens=12, temperature=temperature, return_log_probs=True)
        sets = [prompts, few_shot] if temperature == 1.0 else [prompts]
        chosen = rollouts(sc, sets, 100 + i)
        gemm = "onednn" if gen.onednn else "torch"  # what generation.gemm=auto chose, at the first pass
        row = {"chosen": gemm}
        row[gemm], got_pairs = compare(chosen, temperature)
        pairs += got_pairs
        outs += chosen
        if onednn_here:  # the same stream with the other GEMM: what the GEMM alone changes
            other = "torch" if gen.onednn else "onednn"
            gen.onednn = not gen.onednn
            again = rollouts(sc, sets, 100 + i)
            gen.onednn = not gen.onednn
            row[other] = compare(again, temperature)[0]
            row["gemm_only"] = same_tokens_diff(chosen, again)
        per_temperature[str(temperature)] = row

    # Top-p: the log-prob of the renormalised nucleus (vLLM's processed_logprobs).
    topp = rollouts(SamplingConfig(max_new_tokens=12, temperature=0.7, top_p=0.9, n=2, return_log_probs=True),
                    [prompts], 7)
    max_dlogp_top_p = compare(topp, 0.7, 0.9)[0]

    # TIS / MIS weights of the rollout log-probs against the trainer's: 1 wherever the two agree.
    trainer_lp, engine_lp = (torch.tensor(x) for x in zip(*pairs))
    mask = torch.ones_like(trainer_lp)
    tis, _ = rollout_is_weights(trainer_lp, engine_lp, mask, "tis", 2.0)
    mis, mis_mask = rollout_is_weights(trainer_lp, engine_lp, mask, "mis", 2.0)
    equal = trainer_lp == engine_lp
    weights = {"tokens": len(pairs), "equal_tokens": int(equal.sum()),
               "tis_one_where_equal": bool((tis[equal] == 1.0).all()), "mis_one_where_equal": bool((mis[equal] == 1.0).all()),
               "max_abs_weight_minus_one": max((tis - 1).abs().max().item(), (mis - 1).abs().max().item()),
               "max_abs_dlogp": (trainer_lp - engine_lp).abs().max().item(), "mis_masked": int((mis_mask == 0).sum())}

    # The other engine paths, at T=0.7 (trainer's definition) and at T=1.3 with top-p (nucleus reference).
    paths = {}
    lean, own = gen.lean, gen.own_loop
    for name, setup in (("megatron_forward", lambda: setattr(gen, "lean", None)),
                        ("static_engine", lambda: setattr(gen, "own_loop", False))):
        setup()
        paths[name] = {
            "max_dlogp_t0.7": compare(rollouts(SamplingConfig(max_new_tokens=12, temperature=0.7, n=2,
                                                              return_log_probs=True), [prompts], 11), 0.7)[0],
            "max_dlogp_t1.3_top_p0.9": compare(rollouts(SamplingConfig(max_new_tokens=12, temperature=1.3, top_p=0.9,
                                                                       n=2, return_log_probs=True), [prompts], 12),
                                               1.3, 0.9)[0]}
        gen.lean, gen.own_loop = lean, own

    worst = 0.0  # our log-prob kernel vs a dense log-softmax of the same logits
    worst_ent = 0.0
    for g in outs:
        if not g.tokens:
            continue
        logits, labels = forward(g)
        n = len(g.prompt_tokens) - 1
        with torch.no_grad():
            lp = token_log_probs(logits, labels)[0, n:]
            ent = token_entropy(logits)[0]
            full = gather_from_tensor_model_parallel_region(logits)[..., :arch.vocab_size].float()
            dense = torch.distributions.Categorical(logits=full[0]).entropy()
            dense_lp = torch.log_softmax(full[0], -1).gather(-1, labels[0, :, None])[:, 0][n:]
        worst = max(worst, (lp - dense_lp).abs().max().item())
        worst_ent = max(worst_ent, (ent - dense).abs().max().item())
    # Gradients of the vocab-parallel log-probs equal the dense log-softmax's (temperature != 1 too).
    from megatron.core import parallel_state as ps

    worst_grad = 0.0
    torch.manual_seed(3)  # the same full logits on every rank; each keeps its vocabulary shard
    full = torch.randn(2, 7, model.vocab_size) * 4
    labels = torch.randint(0, arch.vocab_size, (2, 7))
    weights_g = torch.randn(2, 7)
    part = model.vocab_size // tp
    shard = full[..., ps.get_tensor_model_parallel_rank() * part:][..., :part]
    for temperature in (1.0, 0.7):
        a, b = shard.clone().requires_grad_(True), full.clone().requires_grad_(True)
        lp = token_log_probs(a, labels, temperature)
        dense_lp = torch.log_softmax(b / temperature, -1).gather(-1, labels[..., None])[..., 0]
        (lp * weights_g).sum().backward()
        (dense_lp * weights_g).sum().backward()
        b_shard = b.grad[..., ps.get_tensor_model_parallel_rank() * part:][..., :part]
        worst = max(worst, (lp - dense_lp).abs().max().item())
        worst_grad = max(worst_grad, (a.grad - b_shard).abs().max().item())
    # Keys rotated once, when cached (CachedRopeSelfAttention), decode as megatron's SelfAttention
    # that re-rotates the whole cache at every token.
    from megatron.core.transformer.attention import SelfAttention

    from megatron_octo.models.cached_rope_attention import CachedRopeSelfAttention

    attn = [m for m in model.modules() if isinstance(m, CachedRopeSelfAttention)]
    greedy = SamplingConfig(max_new_tokens=12, temperature=0.0, return_log_probs=True)
    gen.lean = None  # through the attention modules (the lean forward calls neither)
    cached = gen.generate(prompts, greedy)
    for m in attn:
        m.__class__ = SelfAttention
    stock = gen.generate(prompts, greedy)
    for m in attn:
        m.__class__ = CachedRopeSelfAttention
    gen.lean = lean
    rope_tokens_equal = [g[0].tokens for g in cached] == [g[0].tokens for g in stock]
    worst_rope = max(abs(x - y) for a, b in zip(cached, stock) for x, y in zip(a[0].log_probs, b[0].log_probs))
    n = sum(len(g.tokens) for g in outs)
    if torch.distributed.get_rank() == 0:  # the test compares these (tests/distributed/test_rl_logprobs.py)
        print("RESULT " + json.dumps({"tp": tp, "tokens": n, "cached_rope_layers": len(attn),
                                      "rope_tokens_equal": rope_tokens_equal, "max_dlogp_dense": worst,
                                      "temperatures": per_temperature, "max_dlogp_top_p": max_dlogp_top_p,
                                      "is_weights": weights, "paths": paths, "gemm_measured": lean_forward.measured(),
                                      "max_dentropy": worst_ent,
                                      "max_dgrad": worst_grad, "max_dlogp_rope": worst_rope,
                                      "log_prob_length_mismatches": bad_lengths,
                                      "shared_prefix_tokens": shared}))
    rt.shutdown()


if __name__ == "__main__":
    main()
