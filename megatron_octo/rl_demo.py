"""`make rl-demo`: GRPO and PPO each raise a briefly trained tiny model's held-out accuracy, on 2 CPU cores.

    python -m megatron_octo.rl_demo --out runs/rl-demo [--data runs/demo/data] [--smoke] [--nproc 2]

Stages (each its own process, as in ``make demo``):

 1. the synthetic arithmetic task, a 2K tokenizer and the tokenized mixtures (as ``make demo``;
    skipped with ``--data DIR``, which reuses an existing ``make demo`` data directory);
 2. a supervised stage from scratch on the task's short chain-of-thought solutions with ``\\boxed{}``
    answers (recipes/demo/sft.yaml) -> ``sft/``;
 3. GRPO from it (recipes/demo/rl_grpo_sft.yaml) -> ``rl_grpo/``;
 4. PPO with a critic from the same checkpoint (recipes/demo/rl_ppo_sft.yaml) -> ``rl_ppo/``.

Each RL run validates greedily on the held-out problems (disjoint from the supervised and RL
problems) before its first update and every 20 steps. The result, ``rl_demo.json`` and a printed
table, is read from the runs' TensorBoard events: held-out accuracy at step 0 and at the end, the
gain in points, and the RL time (the sum of the steps' ``timing/step_s``, validation excluded) at
which the gain first reached 10 points. ``report.md`` and plots come from megatron_octo/cli/plot_run.py.
The numbers are on the synthetic task (labelled so): they show that the RL updates learn from the
reward, not math ability.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Optional

from megatron_octo import demo
from megatron_octo.cli import plot_run

GAIN_TARGET = 0.10  # the "at least 10 points"
# run -> (algorithm, recipe, measured seconds of the stage on 2 idle cores, for the time-left estimate)
RUNS = {"rl_grpo": ("GRPO", "recipes/demo/rl_grpo_sft.yaml", 112.0),
        "rl_ppo": ("PPO", "recipes/demo/rl_ppo_sft.yaml", 155.0)}

FULL = demo.Budget(task=["--qa", "3100"])
# Budget.stable carries the supervised stage's overrides here.
SMOKE = demo.Budget(
    stable=["train.tokens=32768", "train.eval_interval=4", "train.log_interval=2"],
    rl=["rl.steps=2", "rl.prompts_per_step=4", "rl.samples_per_prompt=4", "rl.mini_batch_prompts=2",
        "rl.micro_batch_size=4", "rl.rollout_batch_size=16", "rl.val_interval=2", "rl.val_limit=8",
        "rl.critic_warmup_steps=1"],
    task=["--web-docs", "400", "--qa", "800", "--rl", "200", "--heldout", "50"], tokenizer_lines=8000,
)


def plan(out: str, data: Optional[str], nproc: int, budget: demo.Budget, seed: int = 0) -> list[demo.Stage]:
    """Data stages (unless ``data`` is given), the supervised stage, then GRPO and PPO from it; ``seed`` picks
    the task's split, the initialisation and data order, and the RL sampling (as ``make demo --seed``)."""
    stages = []
    if data is None:
        data = os.path.join(out, "data")
        # The first three stages of `make demo`: task, tokenizer, tokenized mixtures.
        stages += demo.data_stages(out, budget, seed)
    tok = os.path.join(data, "tokenizer", "demo_sp2k.model")
    arith = os.path.join(data, "arith")
    seeds = [f"train.seed={demo.SEED_BASE + seed}", f"rl.seed={demo.SEED_BASE + seed}"]
    sft = demo.stage_command(nproc, "megatron_octo.train", "recipes/demo/sft.yaml", [
        f"tokenizer.path={tok}", f"data.mixture={data}/mixture.yaml", f"checkpoint.save={out}/sft", seeds[0],
        *budget.stable])
    stages.append(demo.Stage("sft", "supervised stage: short chain-of-thought solutions, from scratch", sft, 200.0))
    for name, (algo, recipe, seconds) in RUNS.items():
        stages.append(demo.Stage(name, f"{algo} from the supervised checkpoint", demo.stage_command(
            nproc, "megatron_octo.rl", recipe,
            [f"tokenizer.path={tok}", f"rl.prompts={arith}/arith_rl.jsonl.gz",
             f"rl.val_benchmarks={arith}/arith_heldout.jsonl", f"checkpoint.init_from={out}/sft",
             f"checkpoint.save={out}/{name}", seeds[1], *budget.rl]), seconds))
    return stages


def summarize(out: str) -> dict:
    """Per RL run, from its TensorBoard events: held-out accuracy before/after, the gain, and when
    (step, RL seconds) the gain first reached GAIN_TARGET."""
    result = {}
    for name, (algo, _, _) in RUNS.items():
        st = plot_run.read_stage(out, name)
        tags = plot_run.val_tags(st)
        if not tags:
            result[name] = {"algorithm": algo, "error": f"no held-out accuracy in {st.path}/tensorboard"}
            continue
        val = st.series(tags[0])
        step_s = dict(st.series("timing/step_s"))
        (step0, before), (last_step, after) = val[0], val[-1]
        reached = next(((s, a) for s, a in val if a - before >= GAIN_TARGET - 1e-9), None)

        def rl_seconds(upto: int) -> float:
            return round(sum(v for s, v in step_s.items() if s <= upto), 1)

        result[name] = {
            "algorithm": algo, "heldout": tags[0].split("/")[1], "from_step": step0, "steps": last_step,
            "accuracy_before": before, "accuracy_after": after, "gain_points": round(100 * (after - before), 1),
            "curve": [[s, a] for s, a in val], "rl_seconds": rl_seconds(last_step),
            "reached_target_at_step": reached[0] if reached else None,
            "reached_target_rl_seconds": rl_seconds(reached[0]) if reached else None,
        }
    return result


def render(result: dict) -> str:
    lines = ["| run | held-out accuracy at step 0 | at the end (step) | gain | RL steps' time | "
             f"+{GAIN_TARGET * 100:.0f} points reached at |", "|---|---|---|---|---|---|"]
    for r in result.values():
        if "error" in r:
            lines.append(f"| {r['algorithm']} | {r['error']} | | | | |")
            continue
        stage = f" (stage {r['stage_seconds']:.0f} s)" if "stage_seconds" in r else ""
        when = (f"step {r['reached_target_at_step']} ({r['reached_target_rl_seconds']:.0f} s)"
                if r["reached_target_at_step"] is not None else "not reached")
        lines.append(f"| {r['algorithm']} | {100 * r['accuracy_before']:.1f}% | {100 * r['accuracy_after']:.1f}% "
                     f"({r['steps']}) | {r['gain_points']:+.1f} | {r['rl_seconds']:.0f} s{stage} | {when} |")
    return "\n".join(lines)


def aggregate_seeds(results: dict) -> dict:
    """--seeds: per run, the before/after accuracy and the gain as mean ± sample sd over seeds, and whether every
    seed gained at least GAIN_TARGET."""
    out = {}
    for name in RUNS:
        rows = {s: r[name] for s, r in results.items() if "error" not in r.get(name, {"error": 1})}
        if not rows:
            continue
        stats = {}
        for key in ("accuracy_before", "accuracy_after", "gain_points"):
            vals = [row[key] for row in rows.values()]
            stats[key] = {"mean": sum(vals) / len(vals), "sd": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                          "values": vals}
        out[name] = {"algorithm": RUNS[name][0], **stats, "seeds": list(rows),
                     "every_seed_gains": all(row["gain_points"] >= 100 * GAIN_TARGET - 1e-6 for row in rows.values())}
    return out


def render_seeds(agg: dict) -> str:
    lines = [f"| run | held-out accuracy at step 0 | at the end | gain (points) | every seed >= +{GAIN_TARGET * 100:.0f} |",
             "|---|---|---|---|---|"]
    for r in agg.values():
        def cell(k, scale=100.0, sign=""):
            st = r[k]
            vals = ", ".join(f"{scale * v:{sign}.1f}" for v in st["values"])
            return f"{scale * st['mean']:{sign}.1f} ± {scale * st['sd']:.1f} ({vals})"
        lines.append(f"| {r['algorithm']} | {cell('accuracy_before')}% | {cell('accuracy_after')}% | "
                     f"{cell('gain_points', 1.0, '+')} | {'yes' if r['every_seed_gains'] else 'no'} |")
    return "\n".join(lines)


def run_one(out: str, data: Optional[str], args, budget: demo.Budget, seed: int, env: dict) -> tuple[int, dict]:
    os.makedirs(out, exist_ok=True)
    stages = plan(out, data, args.nproc, budget, seed=seed)
    total = len(stages) + 1
    facts = {"command": " ".join([os.path.basename(sys.executable), "-m", "megatron_octo.rl_demo",
                                  *(args.argv if args.argv is not None else sys.argv[1:])]),
             "seed": seed, "smoke": args.smoke, "stages": {},
             "synthetic": "held-out accuracy and rewards are on the synthetic arithmetic task"}
    t0 = time.perf_counter()
    rc = demo.run_stages(stages, total, out, env, t0, sum(s.weight for s in stages), facts)
    if rc != 0:
        return rc, {}

    print(f"\n=== [{total}/{total}] result (elapsed {time.perf_counter() - t0:.0f}s)", flush=True)
    result = summarize(out)
    for name, r in result.items():
        r["stage_seconds"] = facts["stages"][name]["seconds"]  # with start-up, loading and validation
    facts["total_seconds"] = round(time.perf_counter() - t0, 1)
    summary = {"result": result, "gain_target_points": 100 * GAIN_TARGET, "smoke": args.smoke, "seed": seed,
               "total_seconds": facts["total_seconds"]}
    for name, obj in (("rl_demo.json", summary), ("demo.json", facts)):
        with open(os.path.join(out, name + ".tmp"), "w") as f:
            json.dump(obj, f, indent=1)
        os.replace(os.path.join(out, name + ".tmp"), os.path.join(out, name))
    report = plot_run.render_report(out)
    print(render(result), flush=True)
    print(f"\nDone in {time.perf_counter() - t0:.0f}s.\nResult: {out}/rl_demo.json\nReport: {report}\n"
          f"TensorBoard: tensorboard --logdir {out}", flush=True)
    errors = [f"{r['algorithm']}: {r['error']}" for r in result.values() if "error" in r]
    if errors:  # a recipe without validation (rl.val_interval: 0) leaves nothing to show
        print("no result for " + "; ".join(errors), file=sys.stderr)
        return 1, result
    return 0, result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m megatron_octo.rl_demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/rl-demo", help="run directory (default runs/rl-demo)")
    p.add_argument("--data", default=None, help="reuse this `make demo` data directory (tokenizer, mixture.yaml, "
                   "arith/) instead of building one under --out")
    p.add_argument("--nproc", type=int, default=2, help="processes per stage (data parallel on CPU)")
    p.add_argument("--smoke", action="store_true", help="a few steps per stage (CI): mechanics, not results")
    p.add_argument("--seed", type=int, default=0, help="the task split, model init, data order and RL sampling")
    p.add_argument("--seeds", default=None, help="the whole run once per seed (e.g. 0,1,2) into OUT/seed_N; "
                   "OUT/seeds.md: each run's gain as mean ± sd (with --data every seed reuses that one task split)")
    args = p.parse_args(argv)
    out = os.path.abspath(args.out)
    data = os.path.abspath(args.data) if args.data else None
    if data is not None:
        need = ["mixture.yaml", "tokenizer/demo_sp2k.model", "arith/arith_rl.jsonl.gz", "arith/arith_heldout.jsonl"]
        missing = [n for n in need if not os.path.exists(os.path.join(data, n))]
        if missing:
            p.error(f"--data {data}: missing {', '.join(missing)} (a `make demo` run's data directory has them)")
        from omegaconf import OmegaConf

        if "sft" not in (OmegaConf.load(os.path.join(data, "mixture.yaml")).get("stages") or {}):
            p.error(f"--data {data}: {data}/mixture.yaml has no 'sft' stage (an older `make demo` run's; re-run "
                    "tokenization/build_demo_data.py --arith on it, which rewrites mixture.yaml, or omit --data)")
    budget = SMOKE if args.smoke else FULL
    args.argv = argv
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    if args.seeds is None:
        return run_one(out, data, args, budget, args.seed, env)[0]
    try:
        seeds = demo.parse_seeds(args.seeds)
    except ValueError as exc:
        p.error(str(exc))
    results = {}
    for seed in seeds:
        print(f"\n##### seed {seed} ({len(results) + 1} of {len(seeds)}) -> {out}/seed_{seed}", flush=True)
        rc, results[seed] = run_one(os.path.join(out, f"seed_{seed}"), data, args, budget, seed, env)
        if rc != 0:
            return rc
    agg = {"seeds": seeds, "runs": aggregate_seeds(results)}
    with open(os.path.join(out, "seeds.json.tmp"), "w") as f:
        json.dump(agg, f, indent=1)
    os.replace(os.path.join(out, "seeds.json.tmp"), os.path.join(out, "seeds.json"))
    table = render_seeds(agg["runs"])
    with open(os.path.join(out, "seeds.md"), "w") as f:
        f.write(f"# `make rl-demo-seeds`: seeds {', '.join(map(str, seeds))}\n\n{table}\n\nMean ± sample sd over "
                "the seeds, each seed's value in brackets (greedy accuracy on the 200 held-out problems).\n")
    print(f"\n{table}\nSeeds table: {out}/seeds.md", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
