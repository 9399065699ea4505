"""Rollout log-probs (megatron inference engine) vs the training forward's log-probs, and the
vocab-parallel log-prob/entropy helpers vs a dense computation, at the process group's TP."""
import sys
import warnings

warnings.filterwarnings("ignore")
import torch  # noqa: E402


def main():
    from megatron_octo import config as cfgmod
    from megatron_octo.data.gpt_data import load_tokenizer
    from megatron_octo.generation import Generator, SamplingConfig
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
    worst = 0.0
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
            assert len(g.log_probs) == len(g.tokens), (len(g.log_probs), len(g.tokens))
            if "--debug" in sys.argv:
                print(lp.tolist(), g.log_probs, dense_lp.tolist(), g.prompt_tokens, g.tokens)
            worst = max(worst, (lp - torch.tensor(g.log_probs)).abs().max().item(),
                        (lp - dense_lp).abs().max().item())
            worst_ent = max(worst_ent, (ent - dense).abs().max().item())
    n = sum(len(g.tokens) for per in outs for g in per)
    assert n > 0, "nothing generated"
    assert worst <= 1e-5, f"rollout vs forward log-probs differ by {worst}"
    assert worst_ent <= 1e-4, f"entropy differs by {worst_ent}"
    if torch.distributed.get_rank() == 0:
        print(f"OK tp={tp} tokens={n} max|dlogp|={worst:.2e} max|dH|={worst_ent:.2e}")
    rt.shutdown()


if __name__ == "__main__":
    main()
