"""`make demo`: the whole OctoThinker pipeline in miniature, on 2 CPU cores, with a report.

    python -m megatron_octo.demo --out runs/demo [--smoke] [--nproc 2] [--seed N | --seeds 0,1,2]

Stages, each its own process as on a cluster (``[N/M]`` progress, elapsed and estimated time):

 1. write the synthetic arithmetic task (tokenization/synthetic_arith.py): "web" facts and worked
    examples, worked long/short chain-of-thought problems, RL prompts, held-out problems;
 2. train a 2K SentencePiece tokenizer on it and the bundled real slices;
 3. tokenize everything and write the stage mixtures (tokenization/build_demo_data.py);
 4. the stable stage (constant LR) -> ``stable/``;
 5. three decay branches from that one checkpoint -> ``decay_{long,short,hybrid}/``;
 6. their uniform weight average (tools/merge_checkpoints.py) -> ``merged/``, evaluated zero-shot;
 7. a few-shot probe of every model before RL (the stable checkpoint, each branch, the merge):
    SHOTS worked exemplars from the decay QA split -> ``eval/fewshot_<model>/``;
 8. GRPO from each branch and from the stable checkpoint (the no-mid-training control) ->
    ``rl_{control,long,short,hybrid}/``, each validated greedily on the 200 held-out problems before
    the first update and every 20 steps (the last validation is the after-RL number);
 9. export of the best RL model to Hugging Face format -> ``hf/``;
10. ``result.json`` (each model's numbers and each claim with whether it holds), ``report.md`` (the
    answer, its figure and sentence first) and ``plots/*.png`` (megatron_octo/cli/plot_run.py).

``--seeds 0,1,2`` runs all of it once per seed (task split, initialisation, data order, RL sampling)
into ``OUT/seed_N`` and writes ``OUT/seeds.md`` / ``seeds.json``: mean ± sd per model and whether
each claim holds in every seed. ``--smoke`` runs every stage with a few steps each (CI; a few
minutes): the mechanics, not results. The arithmetic numbers are synthetic and labelled so.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Optional

from megatron_octo.cli import plot_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BRANCHES = ("long", "short", "hybrid")
PROGRESS = re.compile(r"^ (?:iteration|rl step)\s+(\d+)/\s*(\d+)")
SEED_BASE = 1234  # the recipes' train.seed / rl.seed; seed N runs with SEED_BASE + N
SHOTS = 2  # few-shot probe exemplars: 2 short solutions (~110 tokens) + a long response fit the 256 positions trained
# Half the decay QA problems are answered with the value alone (why: tokenization.synthetic_arith.TERSE_SHARE).
# Without terse answers the decay alone reached what RL would (docs/log.md: GRPO added 2-3.5 points to an
# annealed branch).
TERSE_SHARE = 0.5
# Numbers of up to two digits are one token each (Llama-3 groups up to three digits): with one token per
# digit the ~1M-parameter model miscopied two-digit numbers (docs/log.md).
DIGIT_GROUP = 2


@dataclass
class Budget:
    """Stage sizes; the full demo's defaults live in recipes/demo/*.yaml."""

    stable: list[str] = field(default_factory=list)
    decay: list[str] = field(default_factory=list)
    rl: list[str] = field(default_factory=list)
    task: list[str] = field(default_factory=list)
    tokenizer_lines: int = 60000
    eval_limit: int = 200
    max_new_tokens: int = 128  # the probes' budget: recipes/demo/rl_grpo.yaml's response cap


FULL = Budget()
SMOKE = Budget(
    stable=["train.tokens=65536", "train.eval_interval=8", "checkpoint.save_interval=0", "train.log_interval=4"],
    decay=["train.tokens=32768", "train.eval_interval=4", "train.log_interval=2"],
    rl=["rl.steps=2", "rl.prompts_per_step=4", "rl.samples_per_prompt=4", "rl.mini_batch_prompts=2",
        "rl.micro_batch_size=4", "rl.rollout_batch_size=16", "rl.max_response_length={0: 48}", "rl.val_interval=2",
        "rl.val_limit=8", "rl.val_max_new_tokens=48"],
    task=["--web-docs", "800", "--qa", "800", "--rl", "200", "--heldout", "50"],
    tokenizer_lines=8000, eval_limit=8, max_new_tokens=48,
)


@dataclass
class Stage:
    name: str  # directory / report name
    title: str
    cmd: list[str]
    weight: float  # expected seconds of the full demo on 2 idle cores, for the time-left estimate
    nthreads: int = 1


def stage_command(nproc: int, module: str, recipe: str, overrides: list[str]) -> list[str]:
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
                if nproc > 1 else [sys.executable])
    return [*launcher, "-m", module, "--config", recipe, *overrides]


def data_stages(out: str, budget: Budget, seed: int = 0) -> list[Stage]:
    """The synthetic task (its split drawn with ``seed``), the demo tokenizer and the tokenized mixtures."""
    data = os.path.join(out, "data")
    arith = os.path.join(data, "arith")
    tok = os.path.join(data, "tokenizer", "demo_sp2k.model")
    py = sys.executable
    return [
        Stage("task", "write the synthetic arithmetic task",
              [py, "-m", "tokenization.synthetic_arith", "--out", arith, "--seed", str(seed),
               "--terse-share", str(TERSE_SHARE), *budget.task], 1.0),
        Stage("tokenizer", "train the demo tokenizer (SentencePiece, 2K)", [
            py, "-m", "tokenization.train_tokenizer", "--input", f"{arith}/arith_web.jsonl.gz",
            "data/corpus/math_web.jsonl.gz", "--input-qa", f"{arith}/arith_qa_long.jsonl.gz:simple",
            f"{arith}/arith_qa_short.jsonl.gz:simple", "data/corpus/qa_long.jsonl.gz:long_cot",
            "data/corpus/qa_short.jsonl.gz:short_cot", "--vocab-size", "2048",
            "--max-lines", str(budget.tokenizer_lines), "--digit-group", str(DIGIT_GROUP),
            "--output", tok[:-len(".model")]], 8.0),
        Stage("tokenize", "tokenize the corpora, write the mixtures",
              [py, "-m", "tokenization.build_demo_data", "--out", data, "--tokenizer", tok, "--arith", arith], 5.0),
    ]


def probe_stage(out: str, model: str, src: str, budget: Budget, few_shot: bool) -> Stage:
    """Greedy accuracy of one model before RL on the held-out problems: the few-shot probe (SHOTS worked
    exemplars from the decay QA split, the paper's way of judging a mid-trained base model) or zero-shot
    with the RL template (what RL starts from)."""
    arith = os.path.join(out, "data", "arith")
    kind = "fewshot" if few_shot else "zeroshot"
    args = (["--protocol", "base", "--shots-from", f"{arith}/arith_shots.jsonl", "--shots", str(SHOTS)]
            if few_shot else ["--protocol", "rl", "--template", "simple"])
    return Stage(f"{kind}_{model}", f"{SHOTS}-shot probe of {model}" if few_shot else f"zero-shot eval of {model}", [
        sys.executable, "-m", "megatron_octo.eval", "--checkpoint", src, "--benchmarks", f"{arith}/arith_heldout.jsonl",
        *args, "--limit", str(budget.eval_limit), "--max-new-tokens", str(budget.max_new_tokens),
        "--batch-size", "100", "--out", f"{out}/eval/{kind}_{model}"], 12.0, nthreads=2)


def plan(out: str, nproc: int, branches: list[str], budget: Budget, seed: int = 0,
         rl_merged: bool = False) -> list[Stage]:
    """Every stage of one seed's pipeline, in order: data, stable, the decay branches, their merge, the
    probes of every model before RL, GRPO from the stable checkpoint (control) and from each branch."""
    data = os.path.join(out, "data")
    arith = os.path.join(data, "arith")
    tok = os.path.join(data, "tokenizer", "demo_sp2k.model")
    seeds = [f"train.seed={SEED_BASE + seed}"]
    common = [f"tokenizer.path={tok}", f"data.mixture={data}/mixture.yaml", *seeds]
    stages = data_stages(out, budget, seed) + [
        Stage("stable", "stable stage", stage_command(nproc, "megatron_octo.train", "recipes/demo/stable.yaml", [
            *common, f"checkpoint.save={out}/stable", *budget.stable]), 190.0),
    ]
    for b in branches:
        stages.append(Stage(f"decay_{b}", f"decay branch '{b}'", stage_command(
            nproc, "megatron_octo.train", f"recipes/demo/decay_{b}.yaml",
            [*common, f"checkpoint.save={out}/decay_{b}", f"checkpoint.init_from={out}/stable", *budget.decay]), 125.0))
    sources = {"control": f"{out}/stable", **{b: f"{out}/decay_{b}" for b in branches}}
    if len(branches) > 1:
        stages.append(Stage("merged", f"merge the decay branches ({', '.join(branches)}, uniform weights)", [
            sys.executable, "-m", "megatron_octo.cli.merge_checkpoints", *[sources[b] for b in branches],
            "--out", f"{out}/merged", "--force"], 10.0))
        sources["merged"] = f"{out}/merged"
        # RL's step-0 validation measures the other models zero-shot; the merge gets its own evaluation
        stages.append(probe_stage(out, "merged", sources["merged"], budget, few_shot=False))
    stages += [probe_stage(out, m, src, budget, few_shot=True) for m, src in sources.items()]
    rl_common = [f"tokenizer.path={tok}", f"rl.prompts={arith}/arith_rl.jsonl.gz",
                 f"rl.val_benchmarks={arith}/arith_heldout.jsonl", f"rl.seed={SEED_BASE + seed}", *budget.rl]
    for m in ["control", *branches, *(["merged"] if rl_merged and "merged" in sources else [])]:
        what = "the stable checkpoint (control)" if m == "control" else m if m != "merged" else "the merged branches"
        stages.append(Stage(f"rl_{m}", f"GRPO from {what}", stage_command(nproc, "megatron_octo.rl",
                            "recipes/demo/rl_grpo.yaml", [*rl_common, f"checkpoint.init_from={sources[m]}",
                                                           f"checkpoint.save={out}/rl_{m}", f"run_name=demo-rl-{m}"]),
                            80.0))
    return stages


def _run_stage(stage: Stage, index: int, total: int, out: str, env: dict, t0: float, eta: Optional[float]) -> int:
    eta_text = f", about {eta / 60:.0f} min left" if eta is not None else ""
    print(f"\n=== [{index}/{total}] {stage.title} (elapsed {time.perf_counter() - t0:.0f}s{eta_text})", flush=True)
    log_path = os.path.join(out, "logs", f"{index:02d}_{stage.name}.log")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    stage_env = dict(env, OMP_NUM_THREADS=str(stage.nthreads))
    with open(log_path, "w") as log:
        log.write(" ".join(stage.cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(stage.cmd, cwd=ROOT, env=stage_env, stdout=subprocess.PIPE, stderr=log, text=True)
        for line in proc.stdout:
            log.write(line)
            m = PROGRESS.match(line)
            if m:
                print(f"    [{index}/{total}] {stage.name}: {m.group(1)}/{m.group(2)} "
                      f"({time.perf_counter() - t0:.0f}s) |{line.split('|', 1)[1].rstrip()[:150]}", flush=True)
            elif line.startswith(("[megatron-octo]", "[eval]", " validation")):
                print("    " + line.rstrip(), flush=True)
        rc = proc.wait()
    if rc != 0:
        print(f"stage '{stage.name}' failed with exit code {rc}; its log: {log_path}", file=sys.stderr)
        with open(log_path) as f:
            sys.stderr.write("".join(f.readlines()[-25:]))
    return rc


def run_stages(stages: list[Stage], total: int, out: str, env: dict, t0: float, weights_total: float,
               facts: dict) -> int:
    """Run the stages in order (numbered from 1 of ``total``) with a time-left estimate from their
    weights; each stage's seconds and command go to ``facts["stages"]``. The first failure's exit code."""
    done_weight = 0.0
    for i, stage in enumerate(stages, 1):
        elapsed = time.perf_counter() - t0
        eta = elapsed / done_weight * (weights_total - done_weight) if done_weight > 0 and elapsed > 5 else None
        ts = time.perf_counter()
        rc = _run_stage(stage, i, total, out, env, t0, eta)
        facts["stages"][stage.name] = {"seconds": round(time.perf_counter() - ts, 1), "command": stage.cmd}
        if rc != 0:
            return rc
        done_weight += stage.weight
    return 0


def _best_rl(out: str, names: list[str]) -> Optional[str]:
    """The RL run with the highest held-out accuracy at its last validation (read as the report reads it)."""
    best, best_acc = None, -1.0
    for n in names:
        st = plot_run.read_stage(out, n)
        accs = [st.last(tag) for tag in plot_run.val_tags(st)]
        if accs and max(accs) > best_acc:
            best, best_acc = n, max(accs)
    return best


# ----- the result: what the run says about the paper's question --------------------------------------
CONTROL_MAX = 0.05  # the control after RL: at most this accuracy (the paper's plain Llama: 9.6% on MATH500)
BRANCH_MIN = 0.40  # every decay branch after RL: at least this greedy held-out accuracy
GAIN_MIN = 0.10  # RL's own gain on a branch (points/100), reached by at least GAINERS of them
GAINERS = 2
CAP_SHARE = 0.8  # the control's failure signature: mean rollout length >= this share of the cap ...
CLIP_MIN = 0.5  # ... and at least this share of rollouts truncated at the cap
SEED_SD_MAX = 0.08  # --seeds: no model's after-RL accuracy varies more than this (sd) across seeds


def _eval_accuracy(out: str, name: str) -> Optional[tuple[float, int, float]]:
    """(accuracy, problems, mean response tokens) of eval/<name>/summary.json's one benchmark, or None."""
    path = os.path.join(out, "eval", name, "summary.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        bench = next(iter(json.load(f)["benchmarks"].values()))
    return bench["accuracy"], bench["num_examples"], bench["mean_response_tokens"]


def _mean(xs: list) -> Optional[float]:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def summarize(out: str, val_limit: int) -> dict:
    """Per model (control = the stable checkpoint, each decay branch, the merge): greedy held-out accuracy
    few-shot and zero-shot before RL and after RL, greedy response lengths, and the control's rollout
    statistics; read from the RL runs' TensorBoard events and eval/*/summary.json."""
    models = {}
    for m in ("control", *BRANCHES, "merged"):
        row: dict = {}
        fs = _eval_accuracy(out, f"fewshot_{m}")
        if fs:
            row["fewshot"], row["fewshot_n"] = fs[0], fs[1]
        rl_dir = os.path.join(out, f"rl_{m}")
        if os.path.isdir(rl_dir):
            st = plot_run.read_stage(out, f"rl_{m}")
            tags = plot_run.val_tags(st)
            if tags:
                val, vlen = st.series(tags[0]), st.series(tags[0].replace("/accuracy", "/response_length/mean"))
                # TensorBoard keeps float32: k/n accuracies rounded back to their decimals
                row.update(before=round(val[0][1], 6), after=round(val[-1][1], 6), n=val_limit, rl_steps=val[-1][0])
                if vlen:
                    row.update(length_before=vlen[0][1], length_after=vlen[-1][1])
            tail = lambda tag: _mean([v for _, v in st.series(tag)[-10:]])  # noqa: E731 (last 10 steps)
            row.update(rollout_length=tail("response_length/mean"), clip_ratio=tail("response_length/clip_ratio"),
                       cap=st.last("response_length/cap"), reward_first=st.series("critic/score/mean")[0][1]
                       if st.series("critic/score/mean") else None, reward_last=tail("critic/score/mean"))
        zs = _eval_accuracy(out, f"zeroshot_{m}")
        if zs and "before" not in row:
            row.update(before=zs[0], n=zs[1], length_before=zs[2])
        if row:
            models[m] = row
    return {"models": models, "conclusions": conclusions(models)}


def conclusions(models: dict) -> dict:
    """The demo's claims, each with whether this run's numbers bear it out (None: not measured)."""
    c, branches = models.get("control", {}), [b for b in BRANCHES if "after" in models.get(b, {})]

    def claim(text: str, holds) -> dict:
        return {"claim": text, "holds": holds}

    sig = None
    if c.get("rollout_length") is not None and c.get("cap"):
        sig = (c["rollout_length"] >= CAP_SHARE * c["cap"] and (c.get("clip_ratio") or 0) >= CLIP_MIN
               and abs((c.get("reward_last") or 0) - (c.get("reward_first") or 0)) < 0.1)
    gains = [models[b]["after"] - models[b]["before"] for b in branches]
    lo, sh = models.get("long", {}), models.get("short", {})
    lengths = [lo.get(k) for k in ("length_before", "length_after")] + [sh.get(k) for k in ("length_before",
                                                                                          "length_after")]
    return {
        "control_fails": claim(f"RL from the stable checkpoint ends at <= {100 * CONTROL_MAX:.0f}%",
                               c["after"] <= CONTROL_MAX if "after" in c else None),
        "control_signature": claim(f"the control's rollouts run to the cap (mean >= {100 * CAP_SHARE:.0f}% of it, "
                                   f">= {100 * CLIP_MIN:.0f}% truncated) and its reward stays flat", sig),
        "branches_reach": claim(f"every decay branch reaches >= {100 * BRANCH_MIN:.0f}% after RL",
                                all(models[b]["after"] >= BRANCH_MIN for b in branches) if branches else None),
        "rl_gains": claim(f"RL adds >= {100 * GAIN_MIN:.0f} points to at least {GAINERS} of the branches",
                          sum(g >= GAIN_MIN - 1e-9 for g in gains) >= GAINERS if len(gains) >= GAINERS else None),
        "long_longer": claim("the Long branch answers at greater length than the Short branch, before and after RL",
                             lengths[0] > lengths[2] and lengths[1] > lengths[3] if None not in lengths else None),
    }


def headline_sentence(models: dict, concl: dict, spread: Optional[dict] = None) -> str:
    """One sentence stating the conclusion with its numbers (``spread``: model -> after-RL sd, --seeds)."""
    branches = [b for b in BRANCHES if "after" in models.get(b, {})]
    c = models.get("control", {})
    if not branches or "after" not in c:
        return "The run has no RL result for the control and a decay branch: no conclusion."

    def pct(m: str, key: str) -> str:
        sd = f" ± {100 * spread[m]:.1f}" if spread and m in spread and key == "after" else ""
        return f"{100 * models[m][key]:.1f}{sd}"

    after = " / ".join(pct(b, "after") for b in branches)
    gains = " / ".join(f"{100 * (models[b]['after'] - models[b]['before']):+.1f}" for b in branches)
    holds = all(v["holds"] for k, v in concl.items() if k != "long_longer" and v["holds"] is not None)
    verdict = ("Mid-training makes RL work here" if holds else
               "This run does not show the paper's effect cleanly (see the claims below)")
    length = (f"; its rollouts average {c['rollout_length']:.0f} of {c['cap']:.0f} tokens"
              if c.get("rollout_length") is not None and c.get("cap") else "")
    return (f"{verdict}: after RL the decay branches ({' / '.join(branches)}) reach {after}% greedy held-out "
            f"accuracy ({gains} points from before RL), while RL from the stable checkpoint ends at "
            f"{pct('control', 'after')}%{length}.")


def write_result(out: str, result: dict) -> None:
    tmp = os.path.join(out, "result.json.tmp")
    with open(tmp, "w") as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, os.path.join(out, "result.json"))


def aggregate_seeds(seed_results: dict) -> dict:
    """--seeds: per model and measure the mean and sample sd over seeds; each claim holds in every seed?"""
    models: dict = {}
    for seed, res in seed_results.items():
        for m, row in res["models"].items():
            for k, v in row.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    models.setdefault(m, {}).setdefault(k, []).append(v)
    stats = {m: {k: {"mean": sum(v) / len(v), "sd": statistics.stdev(v) if len(v) > 1 else 0.0, "values": v}
                 for k, v in row.items()} for m, row in models.items()}
    keys = next(iter(seed_results.values()))["conclusions"].keys()
    concl = {k: {"claim": next(iter(seed_results.values()))["conclusions"][k]["claim"],
                 "per_seed": {s: r["conclusions"][k]["holds"] for s, r in seed_results.items()}} for k in keys}
    for v in concl.values():
        v["holds"] = all(v["per_seed"].values()) if None not in v["per_seed"].values() else None
    sds = {m: st["after"]["sd"] for m, st in stats.items() if "after" in st}
    concl["seed_spread"] = {"claim": f"no model's after-RL accuracy varies by more than {100 * SEED_SD_MAX:.0f} "
                            "points (sd) across seeds", "holds": all(sd <= SEED_SD_MAX for sd in sds.values()),
                            "per_seed": {}}
    means = {m: {k: st[k]["mean"] for k in st} for m, st in stats.items()}
    return {"seeds": list(seed_results), "models": stats, "conclusions": concl,
            "sentence": headline_sentence(means, concl, spread=sds)}


def seeds_markdown(agg: dict, seconds: dict) -> str:
    seeds = agg["seeds"]
    L = [f"# `make demo-seeds`: {len(seeds)} seeds ({', '.join(map(str, seeds))})", "", agg["sentence"], "",
         "![before and after RL, mean ± sd over seeds](plots/headline.png)", "",
         "| model | few-shot probe | before RL (zero-shot) | after RL | RL gain (points) |"
         " greedy length before → after |", "|---|---|---|---|---|---|"]

    def cell(st: dict, k: str, scale: float = 100, unit: str = "%") -> str:
        if k not in st:
            return "—"
        vals = ", ".join(f"{scale * v:.{0 if unit != '%' else 1}f}" for v in st[k]["values"])
        return f"{scale * st[k]['mean']:.1f} ± {scale * st[k]['sd']:.1f}{unit} ({vals})"

    for m, st in agg["models"].items():
        gain = "—"
        if "after" in st and "before" in st:
            g = [100 * (a - b) for a, b in zip(st["after"]["values"], st["before"]["values"])]
            gain = f"{sum(g) / len(g):+.1f} ± {statistics.stdev(g) if len(g) > 1 else 0.0:.1f} ({', '.join(f'{x:+.1f}' for x in g)})"
        lens = (f"{st['length_before']['mean']:.0f} → {st['length_after']['mean']:.0f}"
                if "length_before" in st and "length_after" in st else
                f"{st['length_before']['mean']:.0f}" if "length_before" in st else "—")
        L.append(f"| {m} | {cell(st, 'fewshot')} | {cell(st, 'before')} | {cell(st, 'after')} | {gain} | {lens} |")
    L += ["", "Mean ± sample standard deviation over the seeds, each seed's value in brackets (greedy accuracy on "
          "the 200 held-out problems of that seed's task; the task's split, the model initialisation, data order "
          "and RL sampling all follow the seed).", "", "| claim | every seed | per seed |", "|---|---|---|"]
    for v in agg["conclusions"].values():
        per = ", ".join(f"{s}: {'yes' if h else 'no' if h is not None else '—'}" for s, h in v["per_seed"].items())
        L.append(f"| {v['claim']} | {'yes' if v['holds'] else 'no' if v['holds'] is not None else '—'} | {per} |")
    L += ["", "Wall time per seed: " + ", ".join(f"seed {s}: {t / 60:.1f} min" for s, t in seconds.items()) + "."]
    return "\n".join(L) + "\n"


def run_seed(out: str, args, branches: list[str], budget: Budget, seed: int, env: dict) -> tuple[int, dict]:
    """One whole pipeline into ``out`` (stages, export, result.json, report.md); (exit code, result)."""
    os.makedirs(out, exist_ok=True)
    stages = plan(out, args.nproc, branches, budget, seed=seed, rl_merged=args.rl_merged)
    rl_names = [s.name for s in stages if s.name.startswith("rl_")]
    total = len(stages) + 2  # + export + report
    weights_total = sum(s.weight for s in stages) + 20.0  # + export and report, ~20 s
    facts = {"command": " ".join([os.path.basename(sys.executable), "-m", "megatron_octo.demo",
                                  *(args.argv if args.argv is not None else sys.argv[1:])]),
             "seed": seed, "smoke": args.smoke, "stages": {}, "synthetic": {
                 "rl_*": "RL reward and held-out accuracy are on the synthetic arithmetic task",
                 "eval/*": "accuracy on held-out synthetic arithmetic problems (few-shot probes and zero-shot)"}}
    t0 = time.perf_counter()
    rc = run_stages(stages, total, out, env, t0, weights_total, facts)
    if rc != 0:
        return rc, {}

    print(f"\n=== [{total - 1}/{total}] export the best RL model to Hugging Face format "
          f"(elapsed {time.perf_counter() - t0:.0f}s)", flush=True)
    best = _best_rl(out, rl_names) or rl_names[-1]
    ts = time.perf_counter()
    cmd = [sys.executable, "-m", "megatron_octo.cli.convert_to_hf", os.path.join(out, best), "--out",
           os.path.join(out, "hf"), "--force"]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        print(f"export failed (exit {res.returncode}): {res.stderr[-2000:]}", file=sys.stderr)
        return res.returncode, {}
    print(f"    exported {best} -> {out}/hf", flush=True)
    facts["stages"]["export"] = {"seconds": round(time.perf_counter() - ts, 1), "command": cmd}
    facts["notes"] = [f"exported model: {best} (highest held-out accuracy at its last validation)"]

    print(f"\n=== [{total}/{total}] report (elapsed {time.perf_counter() - t0:.0f}s)", flush=True)
    facts["total_seconds"] = round(time.perf_counter() - t0, 1)
    with open(os.path.join(out, "demo.json.tmp"), "w") as f:
        json.dump(facts, f, indent=1)
    os.replace(os.path.join(out, "demo.json.tmp"), os.path.join(out, "demo.json"))
    result = summarize(out, budget.eval_limit)
    result.update(seed=seed, seconds=facts["total_seconds"], commit=code_version(), smoke=args.smoke,
                  sentence=headline_sentence(result["models"], result["conclusions"]))
    write_result(out, result)
    report = plot_run.render_report(out)
    print(f"\n{result['sentence']}", flush=True)
    for v in result["conclusions"].values():
        print(f"  [{'yes' if v['holds'] else 'no ' if v['holds'] is not None else ' - '}] {v['claim']}", flush=True)
    print(f"\nDone in {time.perf_counter() - t0:.0f}s.\nReport: {report}\n"
          f"TensorBoard: tensorboard --logdir {out}", flush=True)
    return 0, result


def code_version() -> Optional[str]:
    """The checkout's commit, with "+dirty" when tracked files differ from it; None outside git."""
    try:
        head = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30)
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if head.returncode != 0 or dirty.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def finished_seed(out: str, seed: int, smoke: bool, version: Optional[str]) -> Optional[dict]:
    """--resume: the result of a seed's finished pipeline when it was made by this very code (a clean
    checkout of the same commit) with the same --smoke; else None (the seed runs again)."""
    path = os.path.join(out, "result.json")
    if version is None or version.endswith("+dirty") or not os.path.exists(path):
        return None
    with open(path) as f:
        result = json.load(f)
    if result.get("commit") != version or result.get("seed") != seed or result.get("smoke", False) != smoke:
        return None
    return result


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--seeds {text!r}: expected comma-separated integers, e.g. 0,1,2") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f"--seeds {text!r}: expected distinct integers >= 0, e.g. 0,1,2")
    return seeds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m megatron_octo.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/demo", help="run directory (default runs/demo)")
    p.add_argument("--nproc", type=int, default=2, help="processes per training/RL stage (data parallel on CPU)")
    p.add_argument("--branches", default=",".join(BRANCHES), help="decay branches to run")
    p.add_argument("--seed", type=int, default=0, help="the task split, model init, data order and RL sampling")
    p.add_argument("--seeds", default=None, help="run the whole pipeline once per seed (e.g. 0,1,2) into "
                   "OUT/seed_N and write OUT/seeds.md and OUT/seeds.json: mean ± sd per model")
    p.add_argument("--rl-merged", action="store_true", help="also run GRPO from the merged decay branches")
    p.add_argument("--resume", action="store_true", help="with --seeds: keep a seed whose OUT/seed_N/result.json "
                   "was written by a clean checkout of this same commit (a finished pipeline) instead of rerunning it")
    p.add_argument("--smoke", action="store_true", help="a few steps per stage (CI): mechanics, not results")
    args = p.parse_args(argv)
    args.argv = argv
    branches = [b for b in args.branches.split(",") if b]
    bad = [b for b in branches if b not in BRANCHES]
    if bad:
        p.error(f"--branches: unknown {bad}; choose from {', '.join(BRANCHES)}")
    try:
        seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    except ValueError as exc:
        p.error(str(exc))
    if args.resume and seeds is None:
        p.error("--resume keeps finished seeds of a --seeds run: give --seeds too")
    budget = SMOKE if args.smoke else FULL
    out = os.path.abspath(args.out)
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    if seeds is None:
        return run_seed(out, args, branches, budget, args.seed, env)[0]

    results, seconds = {}, {}
    version = code_version() if args.resume else None
    for seed in seeds:
        seed_out = os.path.join(out, f"seed_{seed}")
        done = finished_seed(seed_out, seed, args.smoke, version) if args.resume else None
        if done is not None:
            print(f"\n##### seed {seed}: reusing the finished pipeline in {seed_out} (commit {version})", flush=True)
            results[seed], seconds[seed] = done, done["seconds"]
            continue
        print(f"\n##### seed {seed} ({len(results) + 1} of {len(seeds)}) -> {seed_out}", flush=True)
        rc, results[seed] = run_seed(seed_out, args, branches, budget, seed, env)
        if rc != 0:
            return rc
        seconds[seed] = results[seed]["seconds"]
    agg = aggregate_seeds(results)
    with open(os.path.join(out, "seeds.json.tmp"), "w") as f:
        json.dump(agg, f, indent=1)
    os.replace(os.path.join(out, "seeds.json.tmp"), os.path.join(out, "seeds.json"))
    plot_run.plot_headline(os.path.join(out, "plots", "headline.png"), plot_run.headline_bars(agg["models"]),
                           f"mean ± sd over seeds {', '.join(map(str, seeds))}")
    with open(os.path.join(out, "seeds.md"), "w") as f:
        f.write(seeds_markdown(agg, seconds))
    print(f"\n{agg['sentence']}\nSeeds table: {out}/seeds.md", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
