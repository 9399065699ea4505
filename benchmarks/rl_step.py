"""RL (GRPO) step phase breakdown: where one step of ``python -m megatron_octo.rl`` spends its time,
and what the RL-step optimisations bought, measured in one run.

    python benchmarks/rl_step.py [--preset cpu-10m] [--prompts 4] [--samples 4] [--response 32]
                                 [--reps 1] [--quick] [--profile] [--json]

A random-weight checkpoint of the preset (the bundled SentencePiece tokenizer) is written with the
trainer (train.tokens=0); then the real ``RLTrainer`` (recipes/tiny/rl_grpo.yaml: MATH8K prompts with
the orz_base template, the math-verify reward) runs one warm-up step and then, ``--reps`` times,
the same step (same prompts, same sampling seed) once with the code this project replaced ("before")
and once as it is ("after"), alternating so that load drifts hit both. Per phase, from the trainer's
own ``timing/*`` metrics plus a timer around the inference engine:

  generate     rollout sampling with megatron's static engine          generated tokens / s
  reward       grading the responses (inside the rollout phase)        response tokens / s
  old_logprob  no-grad forward for the old log-probs                   sequence tokens / s
  update       clipped-surrogate forward + backward + optimizer step   sequence tokens x epochs / s

"before" swaps back in, for that step only:
  * megatron's stock ``SelfAttention`` (re-applies RoPE to the whole KV cache at every decoded token)
    instead of ``CachedRopeSelfAttention`` (keys rotated once, when cached);
  * engine batches in prompt order instead of ``plan_batches`` (similar prompt lengths together: the
    static engine decodes every batch from its shortest prompt, one position per step);
  * the clone-and-transpose log-prob path (megatron's in-place cross-entropy on a copy of the logits)
    instead of ``rl.logprobs._TokenLogProbs``.
Each is a reference copy in this file, so the ratio is measured on the same machine, minutes apart.

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
    expanded = [p for p in prompts for _ in range(sc.n)]
    was_training = gen.model.training
    gen.model.eval()
    try:
        longest = max(len(gen.tokenizer.tokenize(p)) for p in expanded)
        params = gen._sampling_params(sc, longest)
        out = []
        for start in range(0, len(expanded), gen.max_batch_size):
            for req in gen.engine.generate(prompts=expanded[start:start + gen.max_batch_size], sampling_params=params):
                out.append(gen._finish(req, sc, params.num_tokens_to_generate))
    finally:
        gen.model.train(was_training)
    return [out[i * sc.n:(i + 1) * sc.n] for i in range(len(prompts))]


@contextlib.contextmanager
def before_code(trainer):
    """Run the trainer with the reference implementations (see the module docstring)."""
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
    from megatron_octo import config as cfgmod

    return cfgmod.load(os.path.join(ROOT, "recipes/tiny/rl_grpo.yaml"), [
        f"model.preset={args.preset}", f"checkpoint.init_from={ckpt}", "checkpoint.save=null", f"rl.prompts={prompts}",
        "rl.val_interval=0", "rl.steps=1000", f"rl.prompts_per_step={args.prompts}",
        f"rl.samples_per_prompt={args.samples}", f"rl.mini_batch_prompts={args.mini_batch}",
        f"rl.micro_batch_size={args.micro_batch}", f"rl.rollout_batch_size={args.rollout_batch}",
        f"rl.max_response_length={{0: {args.response}}}", f"rl.seed={args.seed}",
        *([] if args.reward == "math" else [f"rl.reward_fn={os.path.abspath(__file__)}:dense_reward"]),
    ])


class _Timed:
    """Times the generator's generate() (whatever implementation is installed) per step."""

    def __init__(self, trainer):
        self.trainer, self.log = trainer, []

    def wrap(self):
        inner = self.trainer.generator.generate

        def timed(prompts, sc):
            t0 = time.perf_counter()
            out = inner(prompts, sc)
            self.log.append((time.perf_counter() - t0, sum(len(g.tokens) for per in out for g in per),
                             sum(len(g.prompt_tokens) + len(g.tokens) for per in out for g in per)))
            return out

        self.trainer.generator.generate = timed
        return inner

    def step(self, index: int, profile: bool = False):
        self.log.clear()
        inner = self.wrap()
        prof = None
        try:
            if profile:
                from torch.profiler import ProfilerActivity, profile as torch_profile

                with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
                    m = self.trainer.step(index)
            else:
                m = self.trainer.step(index)
        finally:
            self.trainer.generator.generate = inner
        g_s, g_tok, seq_tok = self.log[0]
        return {"step_s": m["timing/step_s"], "generate_s": g_s, "reward_s": max(m["timing/rollout_s"] - g_s, 0.0),
                "old_logprob_s": m["timing/old_log_prob_s"], "update_s": m["timing/update_s"],
                "generated_tokens": g_tok, "sequence_tokens": seq_tok}, prof


def _phases(rows: list[dict], epochs: int) -> dict:
    avg = {k: _median([r[k] for r in rows]) for k in rows[0]}
    tok = {"generate": avg["generated_tokens"], "reward": avg["generated_tokens"],
           "old_logprob": avg["sequence_tokens"], "update": avg["sequence_tokens"] * epochs}
    out = {"step_s": round(avg["step_s"], 3), "generated_tokens": int(avg["generated_tokens"]),
           "sequence_tokens": int(avg["sequence_tokens"]), "phases": {}}
    for p in PHASES:
        secs = avg[f"{p}_s"]
        out["phases"][p] = {"s": round(secs, 4), "share": round(secs / avg["step_s"], 4),
                            "tokens_per_s": round(tok[p] / max(secs, 1e-9), 1)}
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
    from megatron_octo.rl.trainer import RLTrainer

    cfg = rl_config(ckpt, prompts, args)
    t = time.perf_counter()
    trainer = RLTrainer(cfg)
    trainer.setup()
    setup_s = time.perf_counter() - t
    timed = _Timed(trainer)
    timed.step(0)  # warm-up (engine buffers, grader pool start-up)
    before, after = [], []
    for _ in range(args.reps):
        with before_code(trainer):
            before.append(timed.step(1)[0])  # consumed_samples stays 0: the same prompts every call
        after.append(timed.step(1)[0])
    prof = timed.step(1, profile=True)[1] if args.profile else None  # an extra step, not timed
    trainer.writer.close()
    d = {"setup_s": round(setup_s, 2), "prompts_kept": len(trainer.prompts), "prompts_dropped": trainer.dropped,
         "after": _phases(after, cfg.rl.ppo_epochs), "before": _phases(before, cfg.rl.ppo_epochs)}
    d["speedup"] = {p: round(d["before"]["phases"][p]["s"] / max(d["after"]["phases"][p]["s"], 1e-9), 2)
                    for p in ("generate", "old_logprob", "update")}
    d["speedup"]["step"] = round(d["before"]["step_s"] / d["after"]["step_s"], 2)
    if prof is not None:
        events = prof.key_averages()
        d["profile_total_s"] = round(sum(e.self_cpu_time_total for e in events) / 1e6, 3)
        d["profile"] = [(e.key, round(e.self_cpu_time_total / 1e6, 3))
                        for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:args.profile_top]]
    d["token_log_probs"] = logprob_kernel(args, trainer.model.module.vocab_size)
    d["grader"] = grader_rate(args)
    return d


def logprob_kernel(args, vocab: int) -> dict:
    """token_log_probs forward + backward, reference vs current, interleaved, on update-sized logits."""
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


def grader_rate(args) -> dict:
    """The default reward (math-verify, time-limited workers) on boxed responses: responses/s."""
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
    a, b = d["after"], d["before"]
    print(f"rl_step: {args.preset} (random init), {args.reward} reward, {args.prompts} prompts x {args.samples} samples, "
          f"{args.response}-token responses, rollout batch {args.rollout_batch}, micro-batch {args.micro_batch}, "
          f"{args.threads} threads, {args.reps} before/after pair(s)")
    print(f"  set-up {d['setup_s']} s ({d['prompts_kept']} prompts kept, {d['prompts_dropped']} over the length limit)")
    print(f"  step: {a['generated_tokens']} generated tokens, {a['sequence_tokens']} sequence tokens")
    print(f"  {'phase':<12} {'after s':>8} {'share':>7} {'tokens/s':>10} | {'before s':>9} {'share':>7} "
          f"{'tokens/s':>10} | {'speed-up':>8}")
    for p in PHASES:
        x, y = a["phases"][p], b["phases"][p]
        sp = d["speedup"].get(p)
        print(f"  {p:<12} {x['s']:>8.3f} {x['share']:>7.1%} {x['tokens_per_s']:>10,.0f} | {y['s']:>9.3f} "
              f"{y['share']:>7.1%} {y['tokens_per_s']:>10,.0f} | {f'{sp:.2f}x' if sp else '':>8}")
    print(f"  {'other':<12} {'':>8} {a['other_share']:>7.1%} {'':>10} | {'':>9} {b['other_share']:>7.1%}")
    print(f"  {'step':<12} {a['step_s']:>8.3f} {'':>7} {'':>10} | {b['step_s']:>9.3f} {'':>7} {'':>10} | "
          f"{d['speedup']['step']:>7.2f}x")
    r = d["ratios"]
    print(f"  ratios (after): old-logprob forward / update tokens/s = {r['forward_over_update']:.2f} (forward only vs "
          f"forward+backward+step); generate / old-logprob tokens/s = {r['generate_over_forward']:.3f} (one token "
          f"per step vs one pass over the sequence); rollout share of the step {r['rollout_share']:.1%}")
    t = d["token_log_probs"]
    print(f"  token_log_probs fwd+bwd on {t['shape']}: before {t['before_s']} s, after {t['after_s']} s = "
          f"{t['speedup']}x (max |diff| {t['max_abs_diff']:.1e})")
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
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5, help="timings of the log-prob kernel comparison (median)")
    p.add_argument("--grader-responses", type=int, default=64)
    p.add_argument("--profile", action="store_true", help="torch.profiler over one more 'after' step")
    p.add_argument("--profile-top", type=int, default=15)
    p.add_argument("--quick", action="store_true", help="2 prompts x 2 samples, 16-token responses, the first 512 problems (about a minute)")
    p.add_argument("--workdir", default=None, help="where the checkpoint goes (default: a temporary directory)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON line at the end")
    args = p.parse_args(argv)
    if args.quick:
        args.prompts, args.samples, args.response, args.mini_batch, args.micro_batch = 2, 2, 16, 2, 2
        args.rollout_batch, args.repeats, args.grader_responses, args.reps = 4, 3, 16, 1
        args.prompt_limit = args.prompt_limit or 512
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ.setdefault("TQDM_DISABLE", "1")
    warnings.filterwarnings("ignore")
    sys.path.insert(0, ROOT)
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
    d["ratios"] = {"forward_over_update": round(ph["old_logprob"]["tokens_per_s"] / ph["update"]["tokens_per_s"], 3),
                   "generate_over_forward": round(ph["generate"]["tokens_per_s"] / ph["old_logprob"]["tokens_per_s"], 4),
                   "rollout_share": round(ph["generate"]["share"] + ph["reward"]["share"], 4)}
    d.update(preset=args.preset, reward=args.reward, prompts=args.prompts, samples=args.samples, response=args.response,
             threads=args.threads, reps=args.reps)
    print_report(d, args)
    from megatron_octo.runtime import distributed as rt

    rt.shutdown()
    if args.json:
        print(json.dumps(d))
    return 0


if __name__ == "__main__":
    sys.exit(main())
