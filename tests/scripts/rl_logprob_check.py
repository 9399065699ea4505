"""Rollout log-probs (megatron inference engine) vs the training forward's log-probs, and the
vocab-parallel log-prob/entropy helpers vs a dense computation, at the process group's TP."""
import json
import sys
import warnings

warnings.filterwarnings("ignore")
import torch  # noqa: E402


def main():
    from megatron_octo import config as cfgmod
    from megatron_octo.models.llama import load_tokenizer
    from megatron_octo.generation import Generator, SamplingConfig, shared_prefix_length
    from megatron_octo.models import llama
    from megatron_octo.rl.logprobs import token_entropy, token_log_probs
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
    gen = Generator(model, tok, max_sequence_length=128, max_batch_size=8, seed=5)
    prompts = ["Problem: 2 + 2 = ?", "The derivative of x^2 is"]
    outs = gen.generate(prompts, SamplingConfig(max_new_tokens=12, temperature=1.0, n=2, return_log_probs=True))
    # Few-shot prompts: the lean forward computes their shared prefix once and every row attends to it.
    shot = ("Q: There are 15 trees in the grove. Workers will plant trees today. After they are done, there "
            "will be 21 trees. How many trees did they plant?\nA: 21 - 15 = 6. The answer is 6.\n\nQ: ")
    few_shot = [shot + "What is 2 + 2?\nA:", shot + "Tom has 3 apples and buys 4 more. How many now?\nA:"]
    shared = shared_prefix_length([tok.tokenize(p) for p in few_shot]) if gen.lean is not None else 0
    outs += gen.generate(few_shot, SamplingConfig(max_new_tokens=12, temperature=1.0, n=2, return_log_probs=True))
    worst = 0.0  # our log-prob kernel vs a dense log-softmax of the same logits
    worst_engine = 0.0  # the engine's sampled-token log-probs vs the training forward's
    bad_lengths = []  # [engine log-probs, tokens] of a sample whose counts differ (the test requires none)
    worst_ent = 0.0
    from megatron.core.tensor_parallel.mappings import gather_from_tensor_model_parallel_region
    for per in outs:
        for g in per:
            if not g.tokens:
                continue
            seq = torch.tensor([g.prompt_tokens + g.tokens])
            pos = torch.arange(seq.shape[1]).unsqueeze(0)
            with torch.no_grad():
                logits = model(seq[:, :-1], pos[:, :-1], None)
                lp = token_log_probs(logits, seq[:, 1:])[0, len(g.prompt_tokens) - 1:]
                ent = token_entropy(logits)[0]
                full = gather_from_tensor_model_parallel_region(logits)[..., :arch.vocab_size].float()
                dense = torch.distributions.Categorical(logits=full[0]).entropy()
                dense_lp = torch.log_softmax(full[0], -1).gather(-1, seq[0, 1:, None])[:, 0][len(g.prompt_tokens) - 1:]
            if len(g.log_probs) != len(g.tokens):
                bad_lengths.append([len(g.log_probs), len(g.tokens)])
                continue
            if "--debug" in sys.argv:
                print(lp.tolist(), g.log_probs, dense_lp.tolist(), g.prompt_tokens, g.tokens)
            worst_engine = max(worst_engine, (lp - torch.tensor(g.log_probs)).abs().max().item())
            worst = max(worst, (lp - dense_lp).abs().max().item())
            worst_ent = max(worst_ent, (ent - dense).abs().max().item())
    # Gradients of the vocab-parallel log-probs equal the dense log-softmax's (temperature != 1 too).
    from megatron.core import parallel_state as ps

    worst_grad = 0.0
    torch.manual_seed(3)  # the same full logits on every rank; each keeps its vocabulary shard
    full = torch.randn(2, 7, model.vocab_size) * 4
    labels = torch.randint(0, arch.vocab_size, (2, 7))
    weights = torch.randn(2, 7)
    part = model.vocab_size // tp
    shard = full[..., ps.get_tensor_model_parallel_rank() * part:][..., :part]
    for temperature in (1.0, 0.7):
        a, b = shard.clone().requires_grad_(True), full.clone().requires_grad_(True)
        lp = token_log_probs(a, labels, temperature)
        dense_lp = torch.log_softmax(b / temperature, -1).gather(-1, labels[..., None])[..., 0]
        (lp * weights).sum().backward()
        (dense_lp * weights).sum().backward()
        b_shard = b.grad[..., ps.get_tensor_model_parallel_rank() * part:][..., :part]
        worst = max(worst, (lp - dense_lp).abs().max().item())
        worst_grad = max(worst_grad, (a.grad - b_shard).abs().max().item())
    # Keys rotated once, when cached (CachedRopeSelfAttention), decode as megatron's SelfAttention
    # that re-rotates the whole cache at every token.
    from megatron.core.transformer.attention import SelfAttention

    from megatron_octo.models.cached_rope_attention import CachedRopeSelfAttention

    attn = [m for m in model.modules() if isinstance(m, CachedRopeSelfAttention)]
    greedy = SamplingConfig(max_new_tokens=12, temperature=0.0, return_log_probs=True)
    lean, gen.lean = gen.lean, None  # through the attention modules (the lean forward calls neither)
    cached = gen.generate(prompts, greedy)
    for m in attn:
        m.__class__ = SelfAttention
    stock = gen.generate(prompts, greedy)
    for m in attn:
        m.__class__ = CachedRopeSelfAttention
    gen.lean = lean
    rope_tokens_equal = [g[0].tokens for g in cached] == [g[0].tokens for g in stock]
    worst_rope = max(abs(x - y) for a, b in zip(cached, stock) for x, y in zip(a[0].log_probs, b[0].log_probs))
    n = sum(len(g.tokens) for per in outs for g in per)
    if torch.distributed.get_rank() == 0:  # the test compares these (tests/distributed/test_rl_logprobs.py)
        print("RESULT " + json.dumps({"tp": tp, "tokens": n, "cached_rope_layers": len(attn),
                                      "rope_tokens_equal": rope_tokens_equal, "max_dlogp_dense": worst,
                                      "max_dlogp_engine": worst_engine, "max_dentropy": worst_ent,
                                      "max_dgrad": worst_grad, "max_dlogp_rope": worst_rope,
                                      "log_prob_length_mismatches": bad_lengths,
                                      "shared_prefix_tokens": shared}))
    rt.shutdown()


if __name__ == "__main__":
    main()
