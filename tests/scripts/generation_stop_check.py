"""A sequence that ends (EOD, stop string) generates no further tokens: the forward passes and the batch
rows x positions the Generator feeds are counted against what the sequences' own lengths imply, and the
generated tokens are the unstopped run's prefixes; on the lean forward, and for stop strings also on the two
fallback paths (megatron's forward in our loop, as with pipeline stages; megatron's static engine, as with
Transformer Engine layers). Prints ``RESULT {json}``."""
import json
import warnings

warnings.filterwarnings("ignore")
import torch  # noqa: E402


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


def main():
    from megatron_octo import config as cfgmod
    from megatron_octo.generation import Generator, SamplingConfig, cut_at_stop
    from megatron_octo.models import llama
    from megatron_octo.models.llama import load_tokenizer
    from megatron_octo.runtime import distributed as rt

    cfg = cfgmod.load(None, ["train.tokens=0", "model.preset=tiny", "tokenizer.library=sentencepiece",
                             "tokenizer.path=data/tokenizer/octo_sp8k.model"])
    rt.initialize(1, 1, seed=11)
    tok = load_tokenizer(cfg)
    model = llama.build_gpt_model(cfg, llama.run_architecture(cfg, tok), pre_process=True, post_process=True)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
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
    print("RESULT " + json.dumps(out))
    rt.shutdown()


if __name__ == "__main__":
    main()
