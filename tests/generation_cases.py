"""Generation on a tiny megatron-core model, for tests that set megatron up in-process (tests/megatron_state.py):
what stopped sequences cost (tests/unit/test_generation_stop_tokens.py) and the lean forward against megatron's
forward (tests/unit/test_lean_forward.py). Each workload returns what it observed; the tests judge it."""

from __future__ import annotations

import torch

from tests.helpers import ROOT


class EodAs:
    """The tokenizer with another token id as EOD."""

    def __init__(self, tok, eod: int):
        self._tok, self.eod = tok, eod

    def __getattr__(self, name):
        return getattr(self._tok, name)


def expected_counts(prompt_lengths, stop_lengths, budget):
    """Passes and rows x positions when row r stops after stop_lengths[r] tokens: one prefill of the
    padded batch, then a decode pass per step while any row is running, feeding only those rows."""
    rows, width = len(prompt_lengths), max(prompt_lengths)
    passes, positions = 1, rows * width
    for k in range(1, budget):
        live = sum(n > k for n in stop_lengths)
        if live:
            passes, positions = passes + 1, positions + live
    return passes, positions


def _sharpened_tiny_model(pre_process=True, post_process=True):
    """The tiny preset with the bundled SentencePiece tokenizer, its weights x3 (sharper distributions than the
    init's: sampling follows the logits closely): (cfg, tokenizer, architecture, model)."""
    from megatron_octo import config as cfgmod
    from megatron_octo.models import llama

    cfg = cfgmod.load(None, ["train.tokens=0", "model.preset=tiny", "tokenizer.library=sentencepiece",
                             f"tokenizer.path={ROOT}/data/tokenizer/octo_sp8k.model"])
    tok = llama.load_tokenizer(cfg)
    arch = llama.run_architecture(cfg, tok)
    model = llama.build_gpt_model(cfg, arch, pre_process=pre_process, post_process=post_process)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    return cfg, tok, arch, model


def generation_stop_counts() -> dict:
    """A sequence that ends (EOD, stop string) generates no further tokens: the forward passes and the batch
    rows x positions the Generator feeds, with what the sequences' own lengths imply, and whether the generated
    tokens are the unstopped run's prefixes; on the lean forward, and for stop strings also on the two fallback
    paths (megatron's forward in our loop, as with pipeline stages; megatron's static engine, as with
    Transformer Engine layers)."""
    from megatron_octo.generation import Generator, SamplingConfig, cut_at_stop

    _, tok, _, model = _sharpened_tiny_model()
    prompts = ["Problem: 2 + 2 = ?", "The derivative of x^2 is", "Once upon a time, far away, there was"]
    lengths = [len(tok.tokenize(p)) for p in prompts]
    budget = 12
    gen = Generator(model, tok, max_sequence_length=128, max_batch_size=4, seed=5)
    full = SamplingConfig(max_new_tokens=budget, temperature=0.0, ignore_eod=True)
    ref = [g[0].tokens for g in gen.generate(prompts, full)]
    out = {"own_loop": gen.own_loop, "reference_lengths": [len(r) for r in ref],
           "full_counts": [gen.stats["passes"], gen.stats["positions"]],
           "full_expected": list(expected_counts(lengths, [budget] * 3, budget))}

    # EOD: the 3rd token prompt 0 generates plays EOD.
    eod = ref[0][2]
    stops = [r.index(eod) + 1 if eod in r else budget for r in ref]
    gen_eod = Generator(model, EodAs(tok, eod), max_sequence_length=128, max_batch_size=4, seed=5)
    res = [g[0] for g in gen_eod.generate(prompts, SamplingConfig(max_new_tokens=budget, temperature=0.0))]
    out["eod"] = {"counts": [gen_eod.stats["passes"], gen_eod.stats["positions"]],
                  "expected": list(expected_counts(lengths, stops, budget)),
                  "tokens_are_prefixes": all(g.tokens == (r[:r.index(eod)] if eod in r else r)
                                             for g, r in zip(res, ref)),
                  "reasons": [g.finish_reason for g in res], "stops": stops}

    # A stop string: the text of prompt 1's 4th and 5th tokens.
    stop = tok.detokenize(ref[1][3:5]).strip() or tok.detokenize(ref[1][3:5])
    stops = [cut_at_stop(tok, r, [stop])[0] if stop in tok.detokenize(r) else budget for r in ref]
    before = dict(gen.stats)
    res = [g[0] for g in gen.generate(prompts, SamplingConfig(max_new_tokens=budget, temperature=0.0,
                                                              ignore_eod=True, stop=[stop]))]
    out["stop"] = {"string": stop, "counts": [gen.stats["passes"] - before["passes"],
                                              gen.stats["positions"] - before["positions"]],
                   "expected": list(expected_counts(lengths, stops, budget)),
                   "tokens_are_prefixes": all(g.tokens == r[:n] for g, r, n in zip(res, ref, stops)),
                   "reasons": [g.finish_reason for g in res], "stops": stops}

    # The fallback paths, a stop string per row (the text of its 4th and 5th tokens), greedy.
    def static_engine_passes(stop_lengths):
        """megatron's static engine: a prefill up to the shortest prompt, then one position per pass; row r's
        k-th token comes from pass len_r - min + k, and the batch ends when every row has ended."""
        return max(n - min(lengths) + s for n, s in zip(lengths, stop_lengths))

    lean, own = gen.lean, gen.own_loop
    for name, setup in (("megatron_forward", lambda: setattr(gen, "lean", None)),
                        ("static_engine", lambda: setattr(gen, "own_loop", False))):
        setup()
        before = dict(gen.stats)
        path_ref = [g[0].tokens for g in gen.generate(prompts, full)]
        full_passes = gen.stats["passes"] - before["passes"]
        stops_all = [tok.detokenize(r[3:5]).strip() or tok.detokenize(r[3:5]) for r in path_ref]
        stops = [cut_at_stop(tok, r, stops_all)[0] for r in path_ref]
        before = dict(gen.stats)
        res = [g[0] for g in gen.generate(prompts, SamplingConfig(max_new_tokens=budget, temperature=0.0,
                                                                  ignore_eod=True, stop=stops_all))]
        counts = [gen.stats["passes"] - before["passes"], gen.stats["positions"] - before["positions"]]
        out[name] = {"strings": stops_all, "stops": stops, "reasons": [g.finish_reason for g in res],
                     "tokens_are_prefixes": all(g.tokens == r[:n] for g, r, n in zip(res, path_ref, stops)),
                     "passes": counts[0], "full_passes": full_passes,
                     "expected_passes": (static_engine_passes(stops) if name == "static_engine"
                                         else expected_counts(lengths, stops, budget)[0])}
        if name == "megatron_forward":
            out[name]["counts"], out[name]["expected"] = counts, list(expected_counts(lengths, stops, budget))
        gen.lean, gen.own_loop = lean, own
    return out


def lean_forward_against_megatron() -> dict:
    """The Generator's lean forward (megatron_octo/models/lean_forward.py) against megatron's GPTModel forward on
    the same model, prompts and sampling stream, with the GEMM ``OCTO_INFERENCE_GEMM`` names (set by the caller).
    What is recorded is what ran: the passes each path made (counted by wrapping the Generator's ``lean``
    function and a forward pre-hook on the GPTModel), the oneDNN GEMMs the profiler saw, the tokens generated
    and their log-probs."""
    from torch.profiler import ProfilerActivity, profile

    from megatron_octo.generation import Generator, SamplingConfig, shared_prefix_length
    from megatron_octo.models import lean_forward, llama

    cfg, tok, arch, model = _sharpened_tiny_model()
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
    return out
