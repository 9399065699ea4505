"""RL (GRPO) step phase breakdown: where one step of ``python -m megatron_octo.rl`` spends its time,
and what the RL-step optimisations bought, measured in one run.

    python benchmarks/rl_step.py [--preset cpu-10m] [--prompts 4] [--samples 4] [--response 32]
                                 [--reps 1] [--quick] [--profile] [--json]

A random-weight checkpoint of the preset (the bundled SentencePiece tokenizer) is written with the
trainer (train.tokens=0); then the real ``RLTrainer`` (recipes/tiny/rl_grpo.yaml: MATH8K prompts with
the orz_base template, the math-verify reward) runs one warm-up step and then, ``--reps`` times,
the same step (same prompts, same sampling seed) once with the code this project replaced ("before")
and once as it is ("after"), alternating so that load drifts hit both. Per phase: CPU seconds of the
process (the figures compared: on a shared machine wall time swings with the load of others), wall
seconds, the phase's share of the step's CPU time and its tokens per CPU-second:

  generate     rollout sampling with megatron's static engine          generated tokens
  reward       grading the responses (worker processes: wall only)     -
  old_logprob  no-grad forward for the old log-probs                   sequence tokens
  update       clipped-surrogate forward + backward + optimizer step   sequence tokens x epochs

plus counts no load can blur: the engine's forward passes, the positions they feed and the keys each
layer rotates.

"before" swaps back in, for that step only:
  * megatron's stock ``SelfAttention`` (re-applies RoPE to the whole KV cache at every decoded token)
    instead of ``CachedRopeSelfAttention`` (keys rotated once, when cached);
  * engine batches in prompt order instead of ``plan_batches`` (similar prompt lengths together: the
    static engine decodes every batch from its shortest prompt, one position per step);
  * the clone-and-transpose log-prob path (megatron's in-place cross-entropy on a copy of the logits)
    instead of ``rl.logprobs._TokenLogProbs``.
Each is a reference copy in this file, so the ratio is measured on the same machine, minutes apart.

"update ... rl.micro_batch_tokens": the update alone on one rollout batch of this run's prompts with
responses of the tiny RL demo's length spread, padded micro-batches vs token-budget ones
(rl/packing.py), interleaved in the same run; the ratio of CPU seconds and the tokens each feeds.

A random model writes no ``\\boxed{}``: under the math reward every response scores -1, every group
is uniform and the update is skipped (rl/guards.py). So the step is rewarded by ``dense_reward``
below (response length, a custom reward: the worker-process path of ``rl.reward_fn``), and the
"grader" line times the math-verify reward on boxed responses separately (``--reward math`` uses it
in the step, for a breakdown without an update). ``--profile`` adds torch.profiler's top
operators (self CPU time) over one more "after" step (not in the timings).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHASES = ("generate", "reward", "old_logprob", "update")


def _run(cmd, env):
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    if res.returncode != 0:
        sys.stderr.write(res.stdout[-2000:] + res.stderr[-4000:])
        raise SystemExit(f"failed: {' '.join(cmd)}")


def _median(xs):
    s = sorted(xs)
    return s[len(s) // 2] if len(s) % 2 else 0.5 * (s[len(s) // 2 - 1] + s[len(s) // 2])


def dense_reward(responses, golds):
    """Response length / 100: samples of a group differ, so every step has a policy gradient."""
    return [len(r) / 100 for r in responses]


# ----- references: the implementations the current code replaced ------------------------------

def reference_token_log_probs(logits, labels, temperature: float = 1.0):
    """The original path: a full fp32 copy of the logits, transposed to megatron's [s, b, v] layout,
    handed to megatron's in-place vocab-parallel cross-entropy."""
    import torch
    from megatron.core.tensor_parallel import vocab_parallel_cross_entropy

    scaled = logits.float() / temperature if temperature != 1.0 else logits.float()
    nll = vocab_parallel_cross_entropy(scaled.transpose(0, 1).clone(memory_format=torch.contiguous_format),
                                       labels.transpose(0, 1).contiguous())
    return -nll.transpose(0, 1)


def reference_generate(gen, prompts, sc):
    """Generator.generate as it was: engine batches in prompt order."""
    # lazy: torch loads only after main() sets OMP_NUM_THREADS
    from megatron_octo.generation import to_generation

    expanded = [p for p in prompts for _ in range(sc.n)]
    was_training = gen.model.training
    gen.model.eval()
    try:
        longest = max(len(gen.tokenizer.tokenize(p)) for p in expanded)
        params = gen._sampling_params(sc, longest)
        out = []
        for start in range(0, len(expanded), gen.max_batch_size):
            for req in gen.engine.generate(prompts=expanded[start:start + gen.max_batch_size], sampling_params=params):
                out.append(to_generation(gen.tokenizer, req, sc, params.num_tokens_to_generate))
    finally:
        gen.model.train(was_training)
    return [out[i * sc.n:(i + 1) * sc.n] for i in range(len(prompts))]


@contextlib.contextmanager
def before_code(trainer):
    """Run the trainer with the reference implementations (see the module docstring)."""
    # lazy: torch loads only after main() sets OMP_NUM_THREADS
    from megatron.core.transformer.attention import SelfAttention

    import megatron_octo.rl.trainer as rl_trainer
    from megatron_octo.models.cached_rope_attention import CachedRopeSelfAttention

    attn = [m for m in trainer.model.modules() if isinstance(m, CachedRopeSelfAttention)]
    gen, lp = trainer.generator, rl_trainer.token_log_probs
    current_generate = gen.generate
    for m in attn:
        m.__class__ = SelfAttention
    gen.generate = lambda prompts, sc: reference_generate(gen, prompts, sc)
    rl_trainer.token_log_probs = reference_token_log_probs
    try:
        yield
    finally:
        for m in attn:
            m.__class__ = CachedRopeSelfAttention
        gen.generate = current_generate
        rl_trainer.token_log_probs = lp


# ----- the measured RL run -------------------------------------------------------------------

def rl_config(ckpt: str, prompts: str, args):
    # lazy: torch loads only after main() sets OMP_NUM_THREADS
    from megatron_octo import config as cfgmod

    return cfgmod.load(os.path.join(ROOT, "recipes/tiny/rl_grpo.yaml"), [
        f"model.preset={args.preset}", f"checkpoint.init_from={ckpt}", "checkpoint.save=null", f"rl.prompts={prompts}",
        "rl.val_interval=0", "rl.steps=1000", f"rl.prompts_per_step={args.prompts}",
        f"rl.samples_per_prompt={args.samples}", f"rl.mini_batch_prompts={args.mini_batch}",
        f"rl.micro_batch_size={args.micro_batch}", f"rl.rollout_batch_size={args.rollout_batch}",
        # Step 0 (the warm-up) generates 4 tokens, the measured step 1 the full length.
        f"rl.max_response_length={{0: 4, 1: {args.response}}}", f"rl.seed={args.seed}",
        *([] if args.reward == "math" else [f"rl.reward_fn={os.path.abspath(__file__)}:dense_reward"]),
    ])


class _Timed:
    """Measures one trainer step per phase: wall seconds (from the trainer's ``timing/*`` plus a timer
    around the engine) and CPU seconds of this process (``time.process_time``, all threads), which a
    busy machine blurs much less than wall time. It also counts what load cannot blur at all: the
    engine's forward passes (prefills + decode steps), the positions they feed (batch rows x new
    positions) and the keys each layer rotates (megatron's attention re-rotates the whole cache,
    rows x positions so far, at every pass)."""

    def __init__(self, trainer):
        # lazy: torch loads only after main() sets OMP_NUM_THREADS
        from megatron_octo.models.cached_rope_attention import CachedRopeSelfAttention

        self.trainer = trainer
        self.counts: dict = {}
        wrapped = trainer.generator.controller.inference_wrapped_model
        forward = wrapped.run_one_forward_step
        attn = next(m for m in trainer.model.modules() if isinstance(m, CachedRopeSelfAttention))

        def counted(inputs, *args, **kwargs):
            rows, new = inputs["tokens"].shape
            cached = isinstance(attn, CachedRopeSelfAttention)  # before_code() swaps the class
            c = self.counts
            c["engine_passes"] += 1
            c["engine_positions"] += rows * new
            c["rotated_keys"] += rows * (new if cached else int(inputs["position_ids"].max()) + 1)
            return forward(inputs, *args, **kwargs)

        wrapped.run_one_forward_step = counted
        lean = trainer.generator.lean  # the Generator's passes when its lean forward covers the model

        def counted_lean(model, context, tokens, *args):
            rows, new = tokens.shape
            c = self.counts
            c["engine_passes"] += 1
            c["engine_positions"] += rows * new
            c["rotated_keys"] += rows * new  # each new key rotated once, as the cached-RoPE attention does
            return lean(model, context, tokens, *args)

        if lean is not None:
            trainer.generator.lean = counted_lean

    def _cpu_timed(self, obj, name: str, key: str, record=None):
        """Wrap ``obj.name`` to add its CPU seconds to ``counts[key_cpu_s]``; returns the undo."""
        had, inner = name in vars(obj), getattr(obj, name)

        def timed(*args, **kwargs):
            t0, c0 = time.perf_counter(), time.process_time()
            out = inner(*args, **kwargs)
            self.counts[key + "_cpu_s"] += time.process_time() - c0
            if record:
                record(time.perf_counter() - t0, out)
            return out

        setattr(obj, name, timed)
        return lambda: setattr(obj, name, inner) if had else delattr(obj, name)

    def step(self, index: int, profile: bool = False):
        c = self.counts = dict.fromkeys(("engine_passes", "engine_positions", "rotated_keys", "generate_cpu_s",
                                         "old_logprob_cpu_s", "update_cpu_s"), 0)

        def gen_record(secs, out):
            c["generate_s"] = secs
            c["generated_tokens"] = sum(len(g.tokens) for per in out for g in per)
            c["sequence_tokens"] = sum(len(g.prompt_tokens) + len(g.tokens) for per in out for g in per)

        tr = self.trainer
        undo = [self._cpu_timed(tr.generator, "generate", "generate", gen_record),
                self._cpu_timed(tr, "_forward_log_probs", "old_logprob"), self._cpu_timed(tr, "_update", "update")]
        prof = None
        c0 = time.process_time()
        try:
            if profile:
                from torch.profiler import ProfilerActivity, profile as torch_profile

                with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
                    m = tr.step(index)
            else:
                m = tr.step(index)
        finally:
            c["step_cpu_s"] = time.process_time() - c0
            for u in undo:
                u()
        c["reward_cpu_s"] = 0.0  # a custom reward runs in its worker process; the grader in its pool
        return {"step_s": m["timing/step_s"], "reward_s": max(m["timing/rollout_s"] - c["generate_s"], 0.0),
                "old_logprob_s": m["timing/old_log_prob_s"], "update_s": m["timing/update_s"], **c}, prof


def _phases(rows: list[dict], epochs: int) -> dict:
    """Medians over the rows; per phase wall and CPU seconds, CPU share of the step, tokens per CPU-second."""
    avg = {k: _median([r[k] for r in rows]) for k in rows[0]}
    tok = {"generate": avg["generated_tokens"], "reward": avg["generated_tokens"],
           "old_logprob": avg["sequence_tokens"], "update": avg["sequence_tokens"] * epochs}
    out = {"step_s": round(avg["step_s"], 3), "step_cpu_s": round(avg["step_cpu_s"], 3), "phases": {},
           **{k: int(avg[k]) for k in ("generated_tokens", "sequence_tokens", "engine_passes", "engine_positions",
                                       "rotated_keys")}}
    for p in PHASES:
        cpu = avg[f"{p}_cpu_s"]
        out["phases"][p] = {"s": round(avg[f"{p}_s"], 4), "cpu_s": round(cpu, 4),
                            "share": round(cpu / avg["step_cpu_s"], 4),
                            "tokens_per_cpu_s": round(tok[p] / max(cpu, 1e-9), 1)}
    out["other_share"] = round(1 - sum(v["share"] for v in out["phases"].values()), 4)
    return out


def prompt_file(tmp: str, limit: int) -> str:
    """MATH8K, or its first ``limit`` problems (a faster set-up for --quick)."""
    import gzip

    src = os.path.join(ROOT, "data/rl/math8k.jsonl.gz")
    if not limit:
        return src
    dst = os.path.join(tmp, "prompts.jsonl")
    with gzip.open(src, "rt", encoding="utf-8") as f, open(dst, "w", encoding="utf-8") as g:
        for _, line in zip(range(limit), f):
            g.write(line)
    return dst


def measure(ckpt: str, prompts: str, args) -> dict:
    # lazy: torch loads only after main() sets OMP_NUM_THREADS
    from megatron_octo.rl.trainer import RLTrainer

    cfg = rl_config(ckpt, prompts, args)
    t = time.perf_counter()
    trainer = RLTrainer(cfg)
    trainer.setup()
    setup_s = time.perf_counter() - t
    timed = _Timed(trainer)
    timed.step(0)  # warm-up (engine buffers, reward worker start-up), a short one
    before, after = [], []
    for _ in range(args.reps):
        with before_code(trainer):
            before.append(timed.step(1)[0])  # consumed_samples stays 0: the same prompts every call
        after.append(timed.step(1)[0])
    prof = timed.step(1, profile=True)[1] if args.profile else None  # an extra step, not timed
    trainer.writer.close()
    d = {"setup_s": round(setup_s, 2), "prompts_kept": len(trainer.prompts), "prompts_dropped": trainer.dropped,
         "after": _phases(after, cfg.rl.ppo_epochs), "before": _phases(before, cfg.rl.ppo_epochs)}
    # Speed-ups in CPU seconds (wall seconds in "speedup_wall": on a shared machine they swing with load).
    d["speedup"] = {p: round(d["before"]["phases"][p]["cpu_s"] / max(d["after"]["phases"][p]["cpu_s"], 1e-9), 2)
                    for p in ("generate", "old_logprob", "update")}
    d["speedup"]["step"] = round(d["before"]["step_cpu_s"] / d["after"]["step_cpu_s"], 2)
    d["speedup_wall"] = {p: round(d["before"]["phases"][p]["s"] / max(d["after"]["phases"][p]["s"], 1e-9), 2)
                         for p in ("generate", "old_logprob", "update")}
    d["speedup_wall"]["step"] = round(d["before"]["step_s"] / d["after"]["step_s"], 2)
    for k in ("engine_passes", "engine_positions", "rotated_keys"):
        d["speedup"][k] = round(d["before"][k] / d["after"][k], 2)
    if prof is not None:
        events = prof.key_averages()
        d["profile_total_s"] = round(sum(e.self_cpu_time_total for e in events) / 1e6, 3)
        d["profile"] = [(e.key, round(e.self_cpu_time_total / 1e6, 3))
                        for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:args.profile_top]]
    d["token_log_probs"] = logprob_kernel(args, trainer.model.module.vocab_size)
    d["paper_step_plan"] = paper_step_plan(trainer)
    d["grader"] = grader_rate(args)
    d["packing_update"] = packing_update(trainer, args)
    return d


def paper_step_plan(trainer) -> dict:
    """Engine passes of one paper-scale GRPO step (128 MATH8K prompts x 16 samples, engine batches of
    64) in prompt order vs ``plan_batches``, from the prompts' token counts (no model): a static
    batch spanning prompt lengths [a, b] takes about b - a + cap passes."""
    # lazy: torch loads only after main() sets OMP_NUM_THREADS
    from megatron_octo.generation import plan_batches
    from megatron_octo.rl.trainer import prompt_order

    idx = prompt_order(len(trainer.prompts), 0, 128, trainer.cfg.rl.seed)
    lengths = [len(trainer.tokenizer.tokenize(trainer.prompts[i])) for i in idx for _ in range(16)]
    out = {}
    for cap in (256, 2048):
        passes = lambda batches: sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) + cap for b in batches)
        before = passes([range(s, s + 64) for s in range(0, len(lengths), 64)])
        after = passes(plan_batches(lengths, 64, cap))
        out[f"cap_{cap}"] = {"before": before, "after": after, "ratio": round(before / after, 2)}
    return out


def logprob_kernel(args, vocab: int) -> dict:
    """token_log_probs forward + backward, reference vs current, interleaved, on update-sized logits."""
    # lazy: torch loads only after main() sets OMP_NUM_THREADS
    import torch

    from megatron_octo.rl.logprobs import token_log_probs

    b, s = args.micro_batch, args.response + 256
    g = torch.Generator().manual_seed(0)
    base = torch.randn(b, s, vocab, generator=g) * 3
    labels = torch.randint(0, vocab, (b, s), generator=g)
    times = {"before": [], "after": []}
    for i in range(2 * args.repeats + 2):
        name, fn = (("before", reference_token_log_probs), ("after", token_log_probs))[i % 2]
        x = base.clone().requires_grad_(True)
        t = time.perf_counter()
        fn(x, labels, 1.0).sum().backward()
        if i >= 2:  # the first pair warms up
            times[name].append(time.perf_counter() - t)
    with torch.no_grad():
        diff = (reference_token_log_probs(base, labels) - token_log_probs(base, labels)).abs().max().item()
    ref, new = _median(times["before"]), _median(times["after"])
    return {"shape": [b, s, vocab], "before_s": round(ref, 4), "after_s": round(new, 4),
            "speedup": round(ref / new, 2), "max_abs_diff": diff}


# Response lengths of the tiny RL demo (`make rl-demo`, runs/rl-demo-dapo/rl_grpo, 80 steps of 4 x 4):
# per step mean 29.2-30.3 tokens, max 32-38, no response at the 64-token cap. Its metrics keep the
# mean and max, not each response's length, so the batch below draws lengths with that spread.
DEMO_RESPONSE_MEAN, DEMO_RESPONSE_SD, DEMO_RESPONSE_RANGE = 30.0, 4.0, (20, 38)


def packing_update(trainer, args) -> dict:
    """The update (``trainer._update``: every epoch and mini-batch, forward + backward + optimizer step)
    on one rollout batch with padded micro-batches (``rl.micro_batch_size`` rows at the batch's width)
    and with token-budget micro-batches (``rl.micro_batch_tokens`` = the padded micro-batch's tokens,
    rl/packing.py), interleaved, CPU seconds (medians); the batch: this run's prompts with responses of
    the demo's length spread (random tokens; the update's cost does not depend on which)."""
    # lazy: torch loads only after main() sets OMP_NUM_THREADS
    import torch
    from omegaconf import read_write

    from megatron_octo.rl.packing import plan_micro_batches, row_lengths
    from megatron_octo.rl.trainer import build_batch, prompt_order
    from megatron_octo.runtime.distributed import device

    r = trainer.cfg.rl
    idx = prompt_order(len(trainer.prompts), 0, r.prompts_per_step, r.seed)
    prompts = [trainer.tokenizer.tokenize(trainer.prompts[i]) for i in idx for _ in range(r.samples_per_prompt)]
    g = torch.Generator().manual_seed(args.seed)
    lo, hi = DEMO_RESPONSE_RANGE
    lengths = (torch.randn(len(prompts), generator=g) * DEMO_RESPONSE_SD + DEMO_RESPONSE_MEAN).round().clamp(lo, hi)
    responses = [torch.randint(10, 1000, (int(n),), generator=g).tolist() for n in lengths]
    adv = torch.randn(len(prompts), generator=g).to(device())
    batch = build_batch(prompts, responses, adv)
    batch.old_log_probs, _ = trainer._forward_log_probs(trainer.model.module, batch)
    width = batch.tokens.shape[1]
    budget = r.micro_batch_size * width
    rows = r.mini_batch_prompts * r.samples_per_prompt
    packed_tokens = 0
    for start in range(0, batch.tokens.shape[0], rows):
        lens = row_lengths(batch.mask[start:start + rows])
        packed_tokens += sum(len(m) * max(lens[i] for i in m) for m in plan_micro_batches(lens, budget))
    times = {"padded": [], "packed": []}
    for i in range(2 * args.repeats + 2):
        name = ("padded", "packed")[i % 2]
        with read_write(trainer.cfg):  # the trainer reads rl.micro_batch_tokens at each update
            r.micro_batch_tokens = budget if name == "packed" else 0
        c0 = time.process_time()
        trainer._update(batch)
        if i >= 2:  # the first pair warms up
            times[name].append(time.process_time() - c0)
    with read_write(trainer.cfg):
        r.micro_batch_tokens = 0
    pad, pack = _median(times["padded"]), _median(times["packed"])
    return {"rows": len(prompts), "response_lengths": [int(n) for n in lengths], "width": width,
            "micro_batch_tokens": budget, "padded_tokens": batch.tokens.numel() * r.ppo_epochs,
            "packed_tokens": packed_tokens * r.ppo_epochs, "padded_cpu_s": round(pad, 4),
            "packed_cpu_s": round(pack, 4), "speedup": round(pad / max(pack, 1e-9), 2)}


def grader_rate(args) -> dict:
    """The default reward (math-verify, time-limited workers) on boxed responses: responses/s."""
    # lazy: torch loads only after main() sets OMP_NUM_THREADS
    from megatron_octo.rl.reward import RewardConfig, compute_rewards

    n = args.grader_responses
    answers = ["\\frac{1}{2}", "42", "x^2+1", "\\sqrt{3}", "7"]
    resp = [f"We compute step by step. The answer is \\boxed{{{answers[i % 5]}}}." for i in range(n)]
    golds = [answers[(i + i // 5) % 5] for i in range(n)]
    compute_rewards(resp[:2], golds[:2], RewardConfig())  # pool start-up
    t = time.perf_counter()
    compute_rewards(resp, golds, RewardConfig())
    dt = time.perf_counter() - t
    return {"responses": n, "s": round(dt, 3), "responses_per_s": round(n / dt, 1)}


def print_report(d: dict, args) -> None:
    a, b, sp, sw = d["after"], d["before"], d["speedup"], d["speedup_wall"]
    print(f"rl_step: {args.preset} (random init), {args.reward} reward, {args.prompts} prompts x {args.samples} samples, "
          f"{args.response}-token responses, rollout batch {args.rollout_batch}, micro-batch {args.micro_batch}, "
          f"{args.threads} thread(s), {args.reps} before/after pair(s) (medians)")
    print(f"  set-up {d['setup_s']} s ({d['prompts_kept']} prompts kept, {d['prompts_dropped']} over the length limit)")
    print(f"  step: {a['generated_tokens']} generated tokens, {a['sequence_tokens']} sequence tokens")
    print(f"  engine (after / before, counted): forward passes {a['engine_passes']} / {b['engine_passes']} "
          f"({sp['engine_passes']}x), positions fed {a['engine_positions']:,} / {b['engine_positions']:,} "
          f"({sp['engine_positions']}x), keys rotated per layer {a['rotated_keys']:,} / {b['rotated_keys']:,} "
          f"({sp['rotated_keys']}x)")
    print(f"  {'phase':<12} {'after CPU s':>11} {'share':>6} {'tok/CPU-s':>10} | {'before CPU s':>12} {'share':>6} "
          f"{'tok/CPU-s':>10} | {'speed-up':>8} | {'wall s after / before':>21}")
    for p in PHASES:
        x, y = a["phases"][p], b["phases"][p]
        cpu = p != "reward"  # the reward runs in worker processes: wall time only
        f = (lambda v: f"{v['cpu_s']:>11.3f} {v['share']:>6.1%} {v['tokens_per_cpu_s']:>10,.0f}") if cpu else (
            lambda v: f"{'-':>11} {'':>6} {'':>10}")
        g = (lambda v: f"{v['cpu_s']:>12.3f} {v['share']:>6.1%} {v['tokens_per_cpu_s']:>10,.0f}") if cpu else (
            lambda v: f"{'-':>12} {'':>6} {'':>10}")
        print(f"  {p:<12} {f(x)} | {g(y)} | {(f'{sp[p]:.2f}x' if p in sp else ''):>8} | "
              f"{x['s']:>9.3f} / {y['s']:<9.3f}")
    print(f"  {'other':<12} {'':>11} {a['other_share']:>6.1%} {'':>10} | {'':>12} {b['other_share']:>6.1%}")
    print(f"  {'step':<12} {a['step_cpu_s']:>11.3f} {'':>6} {'':>10} | {b['step_cpu_s']:>12.3f} {'':>6} {'':>10} | "
          f"{sp['step']:>7.2f}x | {a['step_s']:>9.3f} / {b['step_s']:<9.3f} ({sw['step']:.2f}x wall)")
    r = d["ratios"]
    print(f"  ratios (after, CPU): old-logprob forward / update tokens per CPU-s = {r['forward_over_update']:.2f} "
          f"(forward only vs forward+backward+step); generate / old-logprob = {r['generate_over_forward']:.3f} "
          f"(one token per pass vs one pass over the sequence); generation share of the step {r['rollout_share']:.1%}")
    t = d["token_log_probs"]
    print(f"  token_log_probs fwd+bwd on {t['shape']}: before {t['before_s']} s, after {t['after_s']} s = "
          f"{t['speedup']}x (max |diff| {t['max_abs_diff']:.1e})")
    pl = d["paper_step_plan"]
    print("  paper-scale step (128 x 16 of these prompts, engine batches of 64), engine passes in prompt order / "
          "planned: " + ", ".join(f"cap {k[4:]}: {v['before']:,} / {v['after']:,} ({v['ratio']}x)" for k, v in pl.items()))
    k = d["packing_update"]
    print(f"  update on {k['rows']} rows with the demo's response lengths ({min(k['response_lengths'])}-"
          f"{max(k['response_lengths'])} tokens) after this run's prompts: padded micro-batches {k['padded_cpu_s']} CPU s "
          f"({k['padded_tokens']:,} tokens fed), rl.micro_batch_tokens={k['micro_batch_tokens']} {k['packed_cpu_s']} CPU s "
          f"({k['packed_tokens']:,} tokens) = {k['speedup']}x")
    g = d["grader"]
    print(f"  grader: {g['responses']} boxed responses in {g['s']} s = {g['responses_per_s']} responses/s (math-verify)")
    if "profile" in d:
        print(f"  torch.profiler, one 'after' step, top operators by self CPU time (total {d['profile_total_s']} s):")
        for name, secs in d["profile"]:
            print(f"    {secs:>8.3f} s {secs / d['profile_total_s']:>6.1%}  {name}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu-10m")
    p.add_argument("--prompts", type=int, default=4, help="prompts per step")
    p.add_argument("--samples", type=int, default=4, help="samples per prompt")
    p.add_argument("--response", type=int, default=32, help="response length cap (tokens)")
    p.add_argument("--mini-batch", type=int, default=2, help="PPO mini-batch, in prompts")
    p.add_argument("--micro-batch", type=int, default=4, help="sequences per forward/backward")
    p.add_argument("--rollout-batch", type=int, default=16, help="sequences per inference-engine batch")
    p.add_argument("--reps", type=int, default=1, help="before/after step pairs (medians are reported)")
    p.add_argument("--seed", type=int, default=1234, help="rl.seed: picks the step's prompts")
    p.add_argument("--prompt-limit", type=int, default=0, help="use the first N MATH8K problems (0 = all)")
    p.add_argument("--reward", choices=("dense", "math"), default="dense",
                   help="dense: response length (every step updates); math: the default math-verify reward")
    p.add_argument("--threads", type=int, default=1, help="torch threads (python -m megatron_octo.rl's default: 1)")
    p.add_argument("--repeats", type=int, default=5, help="timings of the log-prob kernel comparison (median)")
    p.add_argument("--grader-responses", type=int, default=64)
    p.add_argument("--profile", action="store_true", help="torch.profiler over one more 'after' step")
    p.add_argument("--profile-top", type=int, default=15)
    p.add_argument("--quick", action="store_true", help="4 prompts x 2 samples, 16-token responses, 2 pairs, the first 512 problems (about a minute)")
    p.add_argument("--workdir", default=None, help="where the checkpoint goes (default: a temporary directory)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON line at the end")
    args = p.parse_args(argv)
    if args.quick:
        args.prompts, args.samples, args.response, args.mini_batch, args.micro_batch = 4, 2, 16, 2, 4
        args.rollout_batch, args.repeats, args.grader_responses, args.reps = 8, 3, 16, 2
        args.prompt_limit = args.prompt_limit or 512
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ.setdefault("TQDM_DISABLE", "1")
    warnings.filterwarnings("ignore")
    os.chdir(ROOT)
    import torch

    torch.set_num_threads(args.threads)
    env = dict(os.environ, PYTHONWARNINGS="ignore", PYTHONPATH=ROOT)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        _run([sys.executable, "-m", "megatron_octo.train", "--config", "recipes/tiny/stable.yaml",
              f"model.preset={args.preset}", "data.mock=true", "data.mixture=null", "train.tokens=0",
              f"checkpoint.save={tmp}/ckpt", f"data.cache_dir={tmp}/cache"], env)
        d = measure(f"{tmp}/ckpt", prompt_file(tmp, args.prompt_limit), args)
    ph = d["after"]["phases"]
    d["ratios"] = {"forward_over_update": round(ph["old_logprob"]["tokens_per_cpu_s"] / ph["update"]["tokens_per_cpu_s"], 3),
                   "generate_over_forward": round(ph["generate"]["tokens_per_cpu_s"] / ph["old_logprob"]["tokens_per_cpu_s"], 4),
                   "rollout_share": round(ph["generate"]["share"], 4)}
    d.update(preset=args.preset, reward=args.reward, prompts=args.prompts, samples=args.samples, response=args.response,
             threads=args.threads, reps=args.reps)
    print_report(d, args)
    # lazy: torch loads only after main() sets OMP_NUM_THREADS
    from megatron_octo.runtime import distributed as rt

    rt.shutdown()
    if args.json:
        print(json.dumps(d))
    return 0


if __name__ == "__main__":
    sys.exit(main())
