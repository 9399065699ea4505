"""`make demo`: the whole OctoThinker pipeline in miniature, on 2 CPU cores, with a report.

    python -m megatron_octo.demo --out runs/demo [--smoke] [--nproc 2]

Stages, each its own process as on a cluster (``[N/M]`` progress, elapsed and estimated time):

 1. write the synthetic arithmetic task (tokenization/synthetic_arith.py): "web" facts, worked
    long/short chain-of-thought problems, RL prompts, held-out problems;
 2. train a 2K SentencePiece tokenizer on it and the bundled real slices;
 3. tokenize everything and write the stage mixtures (tokenization/build_demo_data.py);
 4. the stable stage (constant LR) -> ``stable/``;
 5. three decay branches from that one checkpoint -> ``decay_{long,short,hybrid}/``;
 6. GRPO from each branch and from the stable checkpoint (the no-mid-training control) ->
    ``rl_{long,short,hybrid,control}/``, each validated (greedy, held-out problems) before and after;
 7. evaluation of the RL models on the held-out problems (python -m megatron_octo.eval) ->
    ``eval/<model>/``;
 8. export of the best RL model to Hugging Face format -> ``hf/``;
 9. ``report.md`` and ``plots/*.png`` from the TensorBoard logs (megatron_octo/cli/plot_run.py).

``--smoke`` runs every stage with a few steps each (CI; a few minutes): the mechanics, not results.
The arithmetic numbers are synthetic and labelled so in the report.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Optional

from megatron_octo.cli import plot_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BRANCHES = ("long", "short", "hybrid")
PROGRESS = re.compile(r"^ (?:iteration|rl step)\s+(\d+)/\s*(\d+)")


@dataclass
class Budget:
    """Stage sizes; the full demo's defaults live in recipes/demo/*.yaml."""

    stable: list[str] = field(default_factory=list)
    decay: list[str] = field(default_factory=list)
    rl: list[str] = field(default_factory=list)
    task: list[str] = field(default_factory=list)
    tokenizer_lines: int = 60000
    eval_limit: int = 200


FULL = Budget()
SMOKE = Budget(
    stable=["train.tokens=65536", "train.eval_interval=8", "checkpoint.save_interval=0", "train.log_interval=4"],
    decay=["train.tokens=32768", "train.eval_interval=4", "train.log_interval=2"],
    rl=["rl.steps=2", "rl.prompts_per_step=4", "rl.samples_per_prompt=4", "rl.mini_batch_prompts=2",
        "rl.micro_batch_size=4", "rl.rollout_batch_size=16", "rl.max_response_length={0: 48}", "rl.val_interval=2",
        "rl.val_limit=8", "rl.val_max_new_tokens=48"],
    task=["--web-docs", "800", "--qa", "800", "--rl", "200", "--heldout", "50"],
    tokenizer_lines=8000, eval_limit=8,
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


def plan(out: str, nproc: int, branches: list[str], budget: Budget) -> list[Stage]:
    data = os.path.join(out, "data")
    arith = os.path.join(data, "arith")
    tok = os.path.join(data, "tokenizer", "demo_sp2k.model")
    common = [f"tokenizer.path={tok}", f"data.mixture={data}/mixture.yaml"]
    py = sys.executable
    stages = [
        Stage("task", "write the synthetic arithmetic task",
              [py, "-m", "tokenization.synthetic_arith", "--out", arith, *budget.task], 1.0),
        Stage("tokenizer", "train the demo tokenizer (SentencePiece, 2K)", [
            py, "-m", "tokenization.train_tokenizer", "--input", f"{arith}/arith_web.jsonl.gz",
            "data/corpus/math_web.jsonl.gz", "--input-qa", f"{arith}/arith_qa_long.jsonl.gz:simple",
            f"{arith}/arith_qa_short.jsonl.gz:simple", "data/corpus/qa_long.jsonl.gz:long_cot",
            "data/corpus/qa_short.jsonl.gz:short_cot", "--vocab-size", "2048",
            "--max-lines", str(budget.tokenizer_lines), "--output", tok[:-len(".model")]], 8.0),
        Stage("tokenize", "tokenize the corpora, write the mixtures",
              [py, "-m", "tokenization.build_demo_data", "--out", data, "--tokenizer", tok, "--arith", arith], 5.0),
        Stage("stable", "stable stage", stage_command(nproc, "megatron_octo.train", "recipes/demo/stable.yaml", [
            *common, f"checkpoint.save={out}/stable", *budget.stable]), 190.0),
    ]
    for b in branches:
        stages.append(Stage(f"decay_{b}", f"decay branch '{b}'", stage_command(
            nproc, "megatron_octo.train", f"recipes/demo/decay_{b}.yaml",
            [*common, f"checkpoint.save={out}/decay_{b}", f"checkpoint.init_from={out}/stable", *budget.decay]), 85.0))
    rl_common = [f"tokenizer.path={tok}", f"rl.prompts={arith}/arith_rl.jsonl.gz",
                 f"rl.val_benchmarks={arith}/arith_heldout.jsonl", *budget.rl]
    for b in ["control", *branches]:
        src = f"{out}/stable" if b == "control" else f"{out}/decay_{b}"
        stages.append(Stage(f"rl_{b}", f"GRPO from {'the stable checkpoint (control)' if b == 'control' else b}",
                            stage_command(nproc, "megatron_octo.rl", "recipes/demo/rl_grpo.yaml", [
                                *rl_common, f"checkpoint.init_from={src}", f"checkpoint.save={out}/rl_{b}",
                                f"run_name=demo-rl-{b}"]), 75.0))
    return stages


def eval_stages(out: str, models: list[str], budget: Budget) -> list[Stage]:
    """Evaluate each RL model zero-shot with its RL template on the held-out arithmetic problems (the
    models before RL are measured the same way by each RL run's step-0 validation)."""
    arith = os.path.join(out, "data", "arith", "arith_heldout.jsonl")
    stages = []
    for m in models:
        stages.append(Stage(f"eval_{m}", f"evaluate {m}", [
            sys.executable, "-m", "megatron_octo.eval", "--checkpoint", f"{out}/{m}", "--benchmarks", arith,
            "--protocol", "rl", "--template", "simple", "--limit", str(budget.eval_limit),
            "--max-new-tokens", "96", "--batch-size", "64", "--out", f"{out}/eval/{m}"], 10.0, nthreads=2))
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m megatron_octo.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/demo", help="run directory (default runs/demo)")
    p.add_argument("--nproc", type=int, default=2, help="processes per training/RL stage (data parallel on CPU)")
    p.add_argument("--branches", default=",".join(BRANCHES), help="decay branches to run")
    p.add_argument("--smoke", action="store_true", help="a few steps per stage (CI): mechanics, not results")
    args = p.parse_args(argv)
    branches = [b for b in args.branches.split(",") if b]
    bad = [b for b in branches if b not in BRANCHES]
    if bad:
        p.error(f"--branches: unknown {bad}; choose from {', '.join(BRANCHES)}")
    budget = SMOKE if args.smoke else FULL
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    rl_names = [f"rl_{b}" for b in ["control", *branches]]
    stages = plan(out, args.nproc, branches, budget) + eval_stages(out, rl_names, budget)
    total = len(stages) + 2  # + export + report
    weights_total = sum(s.weight for s in stages) + 20.0  # + export and report, ~20 s
    facts = {"command": " ".join([os.path.basename(sys.executable), "-m", "megatron_octo.demo", *(argv or sys.argv[1:])]),
             "smoke": args.smoke, "stages": {}, "synthetic": {
                 "rl_*": "RL reward and held-out accuracy are on the synthetic arithmetic task",
                 "eval/*": "accuracy on held-out synthetic arithmetic problems (zero-shot, simple template)"}}
    t0 = time.perf_counter()
    rc = run_stages(stages, total, out, env, t0, weights_total, facts)
    if rc != 0:
        return rc

    print(f"\n=== [{total - 1}/{total}] export the best RL model to Hugging Face format "
          f"(elapsed {time.perf_counter() - t0:.0f}s)", flush=True)
    best = _best_rl(out, rl_names) or rl_names[-1]
    ts = time.perf_counter()
    cmd = [sys.executable, "-m", "megatron_octo.cli.convert_to_hf", os.path.join(out, best), "--out", os.path.join(out, "hf"),
           "--force"]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        print(f"export failed (exit {res.returncode}): {res.stderr[-2000:]}", file=sys.stderr)
        return res.returncode
    print(f"    exported {best} -> {out}/hf", flush=True)
    facts["stages"]["export"] = {"seconds": round(time.perf_counter() - ts, 1), "command": cmd}
    facts["notes"] = [f"exported model: {best} (highest held-out accuracy at its last validation)"]

    print(f"\n=== [{total}/{total}] report (elapsed {time.perf_counter() - t0:.0f}s)", flush=True)
    facts["total_seconds"] = round(time.perf_counter() - t0, 1)
    with open(os.path.join(out, "demo.json.tmp"), "w") as f:
        json.dump(facts, f, indent=1)
    os.replace(os.path.join(out, "demo.json.tmp"), os.path.join(out, "demo.json"))
    report = plot_run.render_report(out)
    print(f"\nDone in {time.perf_counter() - t0:.0f}s.\nReport: {report}\n"
          f"TensorBoard: tensorboard --logdir {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
