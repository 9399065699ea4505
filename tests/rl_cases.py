"""RL workloads on a tiny megatron-core model, each run on the process group megatron is already set up with:
in the test's own interpreter under tests/megatron_state.megatron_in_process (the single-process run) and,
but for packed_update, in the distributed bucket under torchrun (tests/distributed/bucket.py: the
multi-process run), so both runs execute the same code. Each returns what it observed; the tests judge it."""

from __future__ import annotations

import copy

import torch

from tests.helpers import ROOT

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


def rollout_logprobs(tp: int) -> dict:
    """Rollout log-probs (megatron inference engine paths) vs the training forward's log-probs, and the
    vocab-parallel log-prob/entropy helpers vs a dense computation, on the process group megatron is set up
    with (TP ``tp``, seed 11; tests/distributed/bucket.py at TP=2, megatron_in_process at TP=1):
    what tests/distributed/test_rl_logprobs.py asserts, the same on every rank.

    Rollouts at temperatures 1.0, 0.7 and 1.3 on the lean forward with the GEMM ``generation.gemm=auto`` chose
    (and again, same sampling stream, with the other GEMM where oneDNN is available: the difference the GEMM
    alone makes), their log-probs against the trainer's ``token_log_probs(logits, labels, T)``; top-p against an
    independent float64 reference of the nucleus distribution; the TIS/MIS weights of the rollout against the
    trainer's log-probs; megatron's forward in our loop (the pipeline-stage path) and megatron's static engine
    (the Transformer Engine path) at T=0.7 and at T=1.3 with top-p."""
    from megatron.core.tensor_parallel.mappings import gather_from_tensor_model_parallel_region

    from megatron_octo import config as cfgmod
    from megatron_octo.generation import Generator, SamplingConfig, shared_prefix_length
    from megatron_octo.models import lean_forward, llama
    from megatron_octo.models.llama import load_tokenizer
    from megatron_octo.rl.logprobs import token_entropy, token_log_probs
    from megatron_octo.rl.rollout_correction import rollout_is_weights

    cfg = cfgmod.load(None, ["train.tokens=0", "model.preset=tiny", "tokenizer.library=sentencepiece",
                             f"tokenizer.path={ROOT}/data/tokenizer/octo_sp8k.model", f"parallel.tp={tp}"])
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
    return {"tp": tp, "tokens": n, "cached_rope_layers": len(attn), "rope_tokens_equal": rope_tokens_equal,
            "max_dlogp_dense": worst, "temperatures": per_temperature, "max_dlogp_top_p": max_dlogp_top_p,
            "is_weights": weights, "paths": paths, "gemm_measured": lean_forward.measured(),
            "max_dentropy": worst_ent, "max_dgrad": worst_grad, "max_dlogp_rope": worst_rope,
            "log_prob_length_mismatches": bad_lengths, "shared_prefix_tokens": shared}


def pipeline_rollout_logprobs(pp: int, ckpt_dir: str) -> dict:
    """Rollouts and log-probs of a checkpoint at pipeline size ``pp`` (the process group megatron is set up
    with, seed 11; tests/distributed/bucket.py at PP=2, megatron_in_process at PP=1): this
    rank's sampled tokens, the engine's log-probs and the training forward's log-probs and entropy
    (``rl.logprobs.pipeline_log_probs`` at PP > 1, the trainer's direct forward at PP = 1), for
    tests/distributed/test_rl_logprobs.py."""
    from megatron.core import parallel_state as ps

    from megatron_octo import config as cfgmod
    from megatron_octo.checkpoint import save_load as ckpt
    from megatron_octo.generation import Generator, SamplingConfig
    from megatron_octo.models import llama
    from megatron_octo.rl.logprobs import pipeline_log_probs, position_ids, token_entropy, token_log_probs

    cfg = cfgmod.load(None, ["train.tokens=0", "model.preset=tiny", "tokenizer.library=sentencepiece",
                             f"tokenizer.path={ROOT}/data/tokenizer/octo_sp8k.model", f"parallel.pp={pp}"])
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
    return {"rank": torch.distributed.get_rank(), "pp": pp, "tokens": [g.tokens for g in flat],
            "logp": [row[sl].tolist() for row, sl in zip(logp, resp)],
            "entropy": [row[sl].tolist() for row, sl in zip(ent, resp)], "max_dlogp_engine": engine}


class Recorder:
    """The optimizer, recording each parameter's gradient when the step is taken."""

    def __init__(self, optimizer, module):
        self.optimizer, self.module, self.grads = optimizer, module, None

    def zero_grad(self):
        self.optimizer.zero_grad()

    def step(self):
        self.grads = {n: p.main_grad.detach().clone() for n, p in self.module.named_parameters()}
        return self.optimizer.step()


def packed_update(modes) -> dict:
    """rl.micro_batch_tokens (token-budget micro-batches) against the padded update, through the RL trainer's
    own update (RLTrainer._update: its loss, megatron's forward-backward schedule, the optimizer).

    One mini-batch of 8 rows (prompts and responses of different lengths, one row with no loss token as
    dynamic sampling's fillers have, per-row advantages of both signs, old log-probs perturbed so that
    PPO's clip and the dual clip act) is trained once with the padded micro-batches (``micro_batch_size``
    rows at the batch's full width) and once with ``rl.micro_batch_tokens``, from the same weights and
    optimizer state. Compared with the first run: every parameter's gradient as the optimizer step sees it
    (the sum over the mini-batch's micro-batches), as ``|g - g_ref| / |g_ref|`` (Frobenius norms, per
    parameter tensor) and as ``max|g - g_ref| / max|g_ref|``; every weight after the step, as the largest
    difference beyond one float32 spacing of the weight over the tensor's largest step; the update's metrics.

    Three runs per mode: ``padded1`` (one micro-batch of all 8 rows: the gradient after one micro-batch is
    the mini-batch's), ``padded4`` (4 micro-batches of 2 rows: the same padded rows, only the order of the
    gradient sums differs) and ``packed`` (token budget 100: micro-batches of 2, 3 and 2 rows, 49, 26 and 15
    tokens wide; the row without loss tokens left out). The optimizer is SGD, lr 10 (megatron's momentum 0.9:
    the first step is -lr * clip * (g + weight_decay * w)), linear in the gradient and far above the weights'
    float32 spacing; Adam's first step lr * g / (|g| + eps) turns the rounding of a gradient element near
    eps = 1e-8 into a change of up to lr (padded4, a pure reordering, moves such steps by 6e-3 of the
    largest) and would say nothing more about the packing than the gradients do.

    For each rl.loss_agg_mode of ``modes``, on the process group megatron is set up with (world 1, seed 7):
    ``{mode: {"padded1" | "padded4" | "packed": {"metrics", "grad", "weights"}, "params"}}``, what
    tests/distributed/test_rl_packed_update.py asserts."""
    from megatron_octo import config as cfgmod, schedule
    from megatron_octo.models import llama
    from megatron_octo.rl.trainer import RLTrainer, build_batch
    from megatron_octo.training.model_setup import build_model_and_optimizer

    base = ["train.tokens=0", "model.preset=tiny", "tokenizer.library=sentencepiece",
            f"tokenizer.path={ROOT}/data/tokenizer/octo_sp8k.model", "rl.prompts_per_step=2", "rl.samples_per_prompt=4",
            "rl.mini_batch_prompts=2", "rl.clip_high=0.28", "rl.loss_scale_factor=32", "optimizer.name=sgd",
            "optimizer.weight_decay=0.1"]
    runs = {"padded1": ["rl.micro_batch_size=8"], "padded4": ["rl.micro_batch_size=2"],
            "packed": ["rl.micro_batch_size=2", "rl.micro_batch_tokens=100"]}
    cfg = cfgmod.load(None, base + runs["padded1"])
    tok = llama.load_tokenizer(cfg)
    arch = llama.run_architecture(cfg, tok)

    g = torch.Generator().manual_seed(3)
    prompt_lens, response_lens = [5, 9, 3, 7, 4, 6, 8, 5], [30, 4, 17, 0, 22, 9, 41, 12]
    prompts = [torch.randint(10, 8000, (n,), generator=g).tolist() for n in prompt_lens]
    responses = [torch.randint(10, 8000, (n,), generator=g).tolist() for n in response_lens]
    adv = torch.tensor([1.3, -0.7, -1.1, 0.5, 0.9, -1.6, 0.4, -0.2])
    batch = build_batch(prompts, responses, adv)

    results = {}
    for mode in modes:
        g = torch.Generator().manual_seed(5)  # the same old log-probs for every mode
        first = None
        grads, after, metrics_of = {}, {}, {}
        for name, extra in runs.items():
            cfg = cfgmod.load(None, base + extra + [f"rl.loss_agg_mode={mode}"])
            built = build_model_and_optimizer(cfg, arch)
            model, optimizer = built.model, built.optimizer
            if first is None:
                first = copy.deepcopy(model.module.state_dict())
            else:
                model.module.load_state_dict(first)
            schedule.constant(optimizer, 10.0, cfg.optimizer.weight_decay)  # see the docstring
            trainer = RLTrainer(cfg)
            trainer.model, trainer.ref, trainer.dp, trainer.is_last_stage = model, None, 1, True
            trainer.loss_scale_factor = float(cfg.rl.loss_scale_factor)
            b = copy.deepcopy(batch)
            if name == "padded1":
                model.eval()
                lp, _ = trainer._forward_log_probs(model.module, b)
                model.train()
                # Old log-probs: the policy's, moved by +-0.3 and, on every 5th token, 2.5 lower (ratio e^2.5 > 3).
                noise = 0.3 * torch.randn(lp.shape, generator=g)
                noise[:, ::5] -= 2.5
                batch.old_log_probs = lp + noise
                b.old_log_probs = batch.old_log_probs.clone()
            trainer.optimizer = Recorder(optimizer, model.module)
            metrics_of[name] = {k: float(v) for k, v in trainer._update(b).items()}
            grads[name] = trainer.optimizer.grads
            after[name] = {n: p.detach().clone() for n, p in model.module.named_parameters()}

        def compare_grads(name: str) -> dict:
            ref, got = grads["padded1"], grads[name]
            norm = {n: float((got[n] - ref[n]).norm() / ref[n].norm()) for n in ref}
            elem = {n: float((got[n] - ref[n]).abs().max() / ref[n].abs().max()) for n in ref}
            return dict(norm=norm, elem=elem)

        def compare_weights(name: str) -> dict:
            """Per tensor: the largest |w - w_ref| beyond one float32 spacing of the weight (2^-23 |w|:
            each side is w0 + step rounded once to float32), over the largest |step| of the reference."""
            out = {}
            for n, ref in after["padded1"].items():
                got = after[name][n]
                spacing = 2.0 ** -23 * torch.maximum(got.abs(), ref.abs())
                beyond = ((got - ref).abs() - spacing).clamp(min=0).max()
                out[n] = float(beyond / (ref - first[n]).abs().max())
            return out

        results[mode] = {name: dict(metrics=metrics_of[name], grad=compare_grads(name),
                                    weights=compare_weights(name)) for name in runs}
        results[mode]["params"] = len(grads["padded1"])
    return results


def rl_validation(config: str, overrides: list) -> dict:
    """RLTrainer.validate() at this process group's layout, set up as ``python -m megatron_octo.rl`` does
    (RLTrainer.setup initialises megatron itself, at the config's seed): the gathered greedy responses
    (``[text, tokens]`` per prompt, per validation set, as this rank got them back), the val/* metrics, how
    many validation prompts each rank's generator generated itself and whether every rank got the same
    responses back (collectives: every rank calls it). tests/distributed/bucket.py at DP=2, in-process at
    DP=1 (tests/distributed/test_rl_validation_dp.py). Generator.generate and
    trainer.generate_sharded are wrapped for the call only."""
    import torch.distributed as dist

    from megatron_octo import config as cfgmod, generation
    from megatron_octo.rl import trainer

    own = []  # prompts this rank generated, per generate call
    gathered = []  # per validation set: [text, tokens] of every prompt, as every rank got them back
    generate, sharded = generation.Generator.generate, trainer.generate_sharded

    def counted(self, prompts, sc):
        own.append(len(prompts))
        return generate(self, prompts, sc)

    def keep(gen, prompts, sc):
        out = sharded(gen, prompts, sc)
        gathered.append([[[g.text, g.tokens] for g in per] for per in out])  # lists: as JSON has them
        return out

    generation.Generator.generate, trainer.generate_sharded = counted, keep
    try:
        t = trainer.RLTrainer(cfgmod.load(config, list(overrides)))
        t.setup()
        try:
            metrics = t.validate()
        finally:
            t.writer.close()
    finally:
        generation.Generator.generate, trainer.generate_sharded = generate, sharded
    counts = [None] * dist.get_world_size()
    dist.all_gather_object(counts, sum(own))
    every = [None] * dist.get_world_size()
    dist.all_gather_object(every, gathered)
    return {"metrics": metrics, "responses": gathered, "generated_per_rank": counts,
            "ranks_agree": all(e == gathered for e in every)}


VALIDATION_LIMIT = 5  # uneven over two ranks: they generate 3 and 2
RL_RECIPE = str(ROOT / "recipes/tiny/rl_grpo.yaml")


def write_validation_problems(path) -> str:
    """Short problems (math500's longest exceed the tiny recipe's prompt room), one JSON line each."""
    import json

    with open(path, "w") as f:
        f.write("".join(json.dumps({"question": f"What is {a} + {b}?", "answer": str(a + b)}) + "\n"
                        for a, b in [(2, 3), (10, 7), (41, 1), (6, 6), (123, 877)]))
    return str(path)


def validation_overrides(ckpt, save, val) -> list:
    """rl_validation's overrides of RL_RECIPE: the tiny model from ``ckpt``, greedy validation of
    VALIDATION_LIMIT problems of ``val``."""
    return ["model.preset=tiny", f"checkpoint.init_from={ckpt}", f"checkpoint.save={save}",
            f"rl.val_benchmarks={val}", f"rl.val_limit={VALIDATION_LIMIT}", "rl.val_max_new_tokens=16",
            "rl.prompts_per_step=2", "rl.mini_batch_prompts=2"]
