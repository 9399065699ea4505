"""The Generator's lean forward (megatron_octo/models/lean_forward.py) against megatron's GPTModel forward on
the same model, prompts and sampling stream. Prints ``RESULT {json}``; run with ``OCTO_INFERENCE_GEMM`` set
by the caller. What is recorded is what ran: the passes each path made (counted by wrapping the Generator's
``lean`` function and a forward pre-hook on the GPTModel), the oneDNN GEMMs the profiler saw, the tokens
generated and their log-probs."""
import json
import sys
import warnings

warnings.filterwarnings("ignore")
import torch  # noqa: E402

from generation_stop_check import EodAs  # noqa: E402  (this script's folder is on sys.path)


def main():
    from torch.profiler import ProfilerActivity, profile

    from megatron_octo import config as cfgmod
    from megatron_octo.generation import Generator, SamplingConfig, shared_prefix_length
    from megatron_octo.models import lean_forward, llama
    from megatron_octo.runtime import distributed as rt

    cfg = cfgmod.load(None, ["train.tokens=0", "model.preset=tiny", "tokenizer.library=sentencepiece",
                             "tokenizer.path=data/tokenizer/octo_sp8k.model"])
    rt.initialize(1, 1, seed=11)
    tok = llama.load_tokenizer(cfg)
    arch = llama.run_architecture(cfg, tok)
    model = llama.build_gpt_model(cfg, arch, pre_process=True, post_process=True)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)  # sharper distributions than the init's: sampling follows the logits closely
    megatron_passes = []
    model.register_forward_pre_hook(lambda *_: megatron_passes.append(1))
    # Prompts of different lengths: one batch, left padded.
    prompts = ["Problem: 2 + 2 = ?", "The derivative of x^2 is", "Once upon a time, far away, there was a king"]
    gen = Generator(model, tok, max_sequence_length=128, max_batch_size=4, seed=5)
    lean = gen.lean
    lean_passes = []

    def counted(*args, **kwargs):
        lean_passes.append(1)
        return lean(*args, **kwargs)

    out = {"unsupported": lean_forward.unsupported(model), "onednn": lean_forward.onednn_gemm_available()}
    runs = {}
    shot = ("Q: There are 15 trees in the grove. Workers will plant trees today. After they are done, there "
            "will be 21 trees. How many trees did they plant?\nA: 21 - 15 = 6. The answer is 6.\n\nQ: ")
    few_shot = [shot + "What is 2 + 2?\nA:", shot + "Tom has 3 apples and buys 4 more. How many now?\nA:"]
    first = gen.generate(few_shot[:1], SamplingConfig(max_new_tokens=16, temperature=0.0, ignore_eod=True))
    gen_eod = Generator(model, EodAs(tok, first[0][0].tokens[2]), max_sequence_length=128, max_batch_size=4, seed=5)
    for name, fn in (("lean", counted), ("megatron", None)):
        gen.lean = fn
        lean_passes.clear(), megatron_passes.clear()
        res = {}
        for case, prompt_sets, sc in (
                ("padded_sampled", [prompts], SamplingConfig(max_new_tokens=16, temperature=1.0, ignore_eod=True,
                                                             return_log_probs=True)),
                ("single_greedy", [[p] for p in prompts], SamplingConfig(max_new_tokens=16, temperature=0.0,
                                                                         ignore_eod=True, return_log_probs=True))):
            gen.reseed(7)
            gens = [g[0] for ps in prompt_sets for g in gen.generate(ps, sc)]
            res[case] = {"tokens": [g.tokens for g in gens], "log_probs": [g.log_probs for g in gens]}
        # Few-shot prompts, two samples each: a shared prefix the lean forward computes once.
        gen.reseed(7)
        before = dict(gen.stats)
        gens = [g for per in gen.generate(few_shot, SamplingConfig(max_new_tokens=16, temperature=1.0, n=2,
                                                                    ignore_eod=True, return_log_probs=True))
                for g in per]
        res["shared_prefix"] = {"tokens": [g.tokens for g in gens], "log_probs": [g.log_probs for g in gens],
                                "positions": gen.stats["positions"] - before["positions"],
                                "passes": gen.stats["passes"] - before["passes"],
                                "prompt_lengths": [len(tok.tokenize(p)) for p in few_shot]}
        # Rows leaving the batch while the others decode over the shared prefix: row 0 (whose cache row holds
        # the prefix) ends first, at the token it generates third (played as EOD), greedy.
        gen_eod.lean = fn
        gens = [g[0] for g in gen_eod.generate(few_shot, SamplingConfig(max_new_tokens=16, temperature=0.0,
                                                                         return_log_probs=True))]
        res["shared_prefix_eod"] = {"tokens": [g.tokens for g in gens], "log_probs": [g.log_probs for g in gens],
                                    "reasons": [g.finish_reason for g in gens]}
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            gen.generate(prompts[:1], SamplingConfig(max_new_tokens=2, temperature=0.0))
        res["onednn_gemms"] = sum(e.count for e in prof.key_averages() if e.key == "mkldnn::_linear_pointwise")
        res["lean_passes"], res["megatron_passes"] = len(lean_passes), len(megatron_passes)
        runs[name] = res
    out["runs"] = runs
    out["shared_prefix_tokens"] = shared_prefix_length([tok.tokenize(p) for p in few_shot])
    # A pipeline stage (no output layer): megatron's forward, with the reason.
    stage = llama.build_gpt_model(cfg, arch, pre_process=True, post_process=False)
    out["stage_unsupported"] = lean_forward.unsupported(stage)
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
