"""Rollouts and log-probs of a checkpoint at the process group's pipeline size: the sampled tokens, the
engine's log-probs and the training forward's log-probs and entropy (``rl.logprobs.pipeline_log_probs``
at PP > 1, the trainer's direct forward at PP = 1). Every rank writes ``<out_dir>/result-<rank>.json``
(files, not stdout: two ranks' lines interleave on torchrun's shared pipe); the test
(tests/distributed/test_rl_logprobs.py) compares PP=2 with PP=1 and the ranks with each other."""
import json
import os
import sys
import warnings

warnings.filterwarnings("ignore")
import torch  # noqa: E402


def main():
    from megatron.core import parallel_state as ps

    from megatron_octo import config as cfgmod
    from megatron_octo.checkpoint import save_load as ckpt
    from megatron_octo.generation import Generator, SamplingConfig
    from megatron_octo.models import llama
    from megatron_octo.rl.logprobs import pipeline_log_probs, position_ids, token_entropy, token_log_probs
    from megatron_octo.runtime import distributed as rt

    pp, ckpt_dir, out_dir = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    cfg = cfgmod.load(None, ["train.tokens=0", "model.preset=tiny", "tokenizer.library=sentencepiece",
                             "tokenizer.path=data/tokenizer/octo_sp8k.model", f"parallel.pp={pp}"])
    rt.install_device_mode()
    rt.initialize(1, pp, seed=11)
    tok = llama.load_tokenizer(cfg)
    arch = llama.run_architecture(cfg, tok)
    model = llama.build_gpt_model(cfg, arch, pre_process=ps.is_pipeline_first_stage(),
                                  post_process=ps.is_pipeline_last_stage())
    ckpt.load(ckpt.resolve_checkpoint(ckpt_dir), model, None, with_optimizer=False,
              layout={"tp": None, "pp": None, "dp": None})
    model.eval()
    gen = Generator(model, tok, max_sequence_length=128, max_batch_size=8, seed=5)
    prompts = ["Problem: 2 + 2 = ?", "The derivative of x^2 is"]
    outs = gen.generate(prompts, SamplingConfig(max_new_tokens=12, temperature=0.9, n=2, return_log_probs=True))
    flat = [g for per in outs for g in per]
    seqs = [g.prompt_tokens + g.tokens for g in flat]
    width = max(len(s) for s in seqs)
    tokens = torch.zeros(len(seqs), width, dtype=torch.long)
    for i, s in enumerate(seqs):
        tokens[i, :len(s)] = torch.tensor(s)
    if pp > 1:
        logp, ent = pipeline_log_probs(model, tokens, 2, 0.9, with_entropy=True)
    else:
        with torch.no_grad():
            logits = model(tokens[:, :-1], position_ids(tokens), None)
            logp, ent = token_log_probs(logits, tokens[:, 1:], 0.9), token_entropy(logits, 0.9)
    # The response labels of each sequence (label t predicts token t + 1).
    resp = [slice(len(g.prompt_tokens) - 1, len(g.prompt_tokens) - 1 + len(g.tokens)) for g in flat]
    # The engine's log-probs are of the distribution sampled (temperature 0.9): the trainer's at 0.9.
    engine = max(abs(a - b) for g, sl, row in zip(flat, resp, logp) for a, b in zip(g.log_probs, row[sl].tolist()))
    rank = torch.distributed.get_rank()
    result = json.dumps({
        "rank": rank, "pp": pp, "tokens": [g.tokens for g in flat],
        "logp": [row[sl].tolist() for row, sl in zip(logp, resp)],
        "entropy": [row[sl].tolist() for row, sl in zip(ent, resp)], "max_dlogp_engine": engine})
    path = os.path.join(out_dir, f"result-{rank}.json")
    with open(path + ".tmp", "w") as f:
        f.write(result)
    os.replace(path + ".tmp", path)
    rt.shutdown()


if __name__ == "__main__":
    main()
