"""The whole OctoThinker pipeline as one nemo-run Experiment.

    python -m megatron_octo.pipeline --out runs/pipeline                       # tiny, local executor
    python -m megatron_octo.pipeline --profile paper --executor slurm --dry-run \\
        --account ACC --partition batch                                         # print the sbatch scripts

DAG (each task starts only when the tasks it depends on succeeded)::

    tokenize -> stable -> decay_{long,short,hybrid} -> rl_{branch} -> eval_{branch}, hf_{branch}

* ``tokenize`` (tiny profile): the built-in corpus -> megatron datasets + mixture
  (``tokenization.build_demo_data``). The paper profile reads datasets prepared beforehand
  (``$OCTO_DATA``, docs/tokenization.md) and has no tokenize task.
* ``stable``, ``decay_*``: ``megatron_octo.train`` with the stage recipes.
* ``rl_*``: ``megatron_octo.rl`` (GRPO) from the branch's decay checkpoint; left out (and reported)
  when that CLI or the profile's ``rl_grpo.yaml`` is missing, or with ``--rl no``; eval and HF export
  then start from the decay checkpoints.
* ``eval_*``: ``megatron_octo.eval`` on the branch's final checkpoint.
* ``hf_*``: ``tools/convert_to_hf.py`` of the branch's final checkpoint (when the tool is present).

Executors: nemo-run's ``LocalExecutor`` (default; each task a local process, torchrun with
``--nproc`` processes for training) or its ``SlurmExecutor`` (one sbatch job per task, chained with
``afterok`` dependencies; the task runs ``launch_slurm/<stage>.sh`` inside the allocation, which
starts torchrun on every node with c10d rendezvous). ``--dry-run`` prints what would run or be
submitted and starts nothing.

Each task writes ``<out>/.stages/<task>.ok`` when it succeeded; a task whose dependencies have no
marker fails at once (nemo-run's local executor starts dependants after a failed task too).
Exit code: 0 when every task succeeded, 1 otherwise, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import sys
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BRANCHES = ("long", "short", "hybrid")
# nemo-run's files under the run root. Not "nemo_run": without a container nemo-run's Slurm executor rewrites
# every "/nemo_run" in the generated sbatch script to the job directory (its in-container run dir), which
# doubled the paths (<out>/<out>/nemo_run/.../stable/slurm_jobs/...).
NEMO_DIR = "nemo-run"
PAPER = "recipes/octothinker/llama3.2-3b"
SLURM_SCRIPTS = {"stable": "stable_200b.sh", "decay_long": "decay_long_20b.sh", "decay_short": "decay_short_20b.sh",
                 "decay_hybrid": "decay_hybrid_20b.sh", "rl": "rl_grpo.sh", "eval": "eval.sh"}


@dataclass
class Stage:
    name: str
    command: list[str]           # local executor: the command (run from the checkout)
    slurm_script: str = ""       # slurm executor: launch_slurm/<script> ...
    slurm_args: list[str] = field(default_factory=list)
    slurm_env: dict = field(default_factory=dict)
    deps: list[str] = field(default_factory=list)
    nodes: int = 1
    gpus_per_node: int = 8


def rl_available() -> bool:
    return importlib.util.find_spec("megatron_octo.rl.__main__") is not None


def hf_export_available() -> bool:
    return os.path.isfile(os.path.join(ROOT, "tools", "convert_to_hf.py"))


def _train(python: str, nproc: int, recipe: str, overrides: list[str]) -> list[str]:
    launcher = ([python, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
                if nproc > 1 else [python])
    return [*launcher, "-m", "megatron_octo.train", "--config", recipe, *overrides]


def plan(args) -> tuple[list[Stage], list[str]]:
    """The DAG for the arguments, and notes on what was left out."""
    out, py = os.path.abspath(args.out), args.python
    tiny = args.profile == "tiny"
    extra = {s: [] for s in ("all", "stable", "decay", "rl", "eval")}
    for item in args.override:
        where, _, kv = item.partition(":")
        if where not in extra or "=" not in kv:
            raise SystemExit(f"error: --override {item!r}: expected STAGE:key=value with STAGE in {sorted(extra)}")
        extra[where].append(kv)
    stages: list[Stage] = []
    notes: list[str] = []
    common = []
    if tiny:
        common.append(f"data.mixture={out}/data/mixture.yaml")
        stages.append(Stage("tokenize", [py, "-m", "tokenization.build_demo_data", "--out", f"{out}/data"],
                            slurm_script="", nodes=1, gpus_per_node=0))
    recipe_dir = "recipes/tiny" if tiny else PAPER
    env = {"OCTO_OUTPUT": out, "OCTO_PROFILE": "cpu" if tiny else "gpu"}
    if tiny:
        env["OCTO_DATA"] = f"{out}/data"
    gpus = 0 if tiny else args.gpus_per_node
    ov = [*common, *extra["all"], *extra["stable"]]
    stages.append(Stage("stable", _train(py, args.nproc, f"{recipe_dir}/stable.yaml", [*ov, f"checkpoint.save={out}/stable"]),
                        slurm_script=SLURM_SCRIPTS["stable"], slurm_args=[*extra["all"], *extra["stable"]],
                        slurm_env=dict(env), deps=["tokenize"] if tiny else [],
                        nodes=args.stable_nodes, gpus_per_node=gpus))
    rl_recipe = f"{recipe_dir}/rl_grpo.yaml"
    can_rl = rl_available() and os.path.isfile(os.path.join(ROOT, rl_recipe))
    do_rl = args.rl == "yes" or (args.rl == "auto" and can_rl)
    if args.rl == "yes" and not can_rl:
        raise SystemExit(f"error: --rl yes: needs python -m megatron_octo.rl and {rl_recipe}")
    if not do_rl:
        why = "--rl no" if args.rl == "no" else (f"{rl_recipe} does not exist" if rl_available()
                                                  else "python -m megatron_octo.rl is not in this checkout")
        notes.append(f"rl_* left out ({why}); eval and HF export start from the decay checkpoints")
    do_hf = hf_export_available() and not args.no_hf
    if not hf_export_available():
        notes.append("hf_* left out: tools/convert_to_hf.py is not in this checkout")
    for b in args.branches:
        ov = [*common, *extra["all"], *extra["decay"]]
        stages.append(Stage(f"decay_{b}", _train(py, args.nproc, f"{recipe_dir}/decay_{b}.yaml", [
            *ov, f"checkpoint.save={out}/decay_{b}", f"checkpoint.init_from={out}/stable"]),
            slurm_script=SLURM_SCRIPTS[f"decay_{b}"], slurm_args=[*extra["all"], *extra["decay"]],
            slurm_env=dict(env), deps=["stable"], nodes=args.decay_nodes, gpus_per_node=gpus))
        final = f"decay_{b}"
        if do_rl:
            # a branch's own recipe where its settings differ (paper: rl_grpo_hybrid.yaml), as launch_slurm/rl_grpo.sh
            branch_recipe = f"{recipe_dir}/rl_grpo_{b}.yaml"
            recipe = branch_recipe if os.path.isfile(os.path.join(ROOT, branch_recipe)) else rl_recipe
            stages.append(Stage(f"rl_{b}", [py, "-m", "megatron_octo.rl", "--config", recipe, *extra["all"], *extra["rl"],
                                             f"checkpoint.save={out}/rl_{b}", f"checkpoint.init_from={out}/decay_{b}"],
                                slurm_script=SLURM_SCRIPTS["rl"], slurm_args=[*extra["all"], *extra["rl"]], slurm_env=dict(env, OCTO_BRANCH=b),
                                deps=[final], nodes=args.rl_nodes, gpus_per_node=gpus))
            final = f"rl_{b}"
        ev = ["--checkpoint", f"{out}/{final}", "--benchmarks", args.eval_benchmarks, "--out", f"{out}/eval/{final}"]
        if args.eval_limit:
            ev += ["--limit", str(args.eval_limit)]
        if args.max_new_tokens:
            ev += ["--max-new-tokens", str(args.max_new_tokens)]
        if do_rl:
            ev += ["--protocol", "rl"]
        stages.append(Stage(f"eval_{b}", [py, "-m", "megatron_octo.eval", *ev, *extra["eval"]],
                            slurm_script=SLURM_SCRIPTS["eval"], slurm_args=ev[4:] + extra["eval"],
                            slurm_env=dict(env, OCTO_CHECKPOINT=f"{out}/{final}", OCTO_BENCHMARKS=args.eval_benchmarks),
                            deps=[final], nodes=1, gpus_per_node=0 if tiny else 1))
        if do_hf:
            stages.append(Stage(f"hf_{b}", [py, "tools/convert_to_hf.py", f"{out}/{final}", "--out", f"{out}/hf/{final}",
                                            "--force"], deps=[final], nodes=1, gpus_per_node=0))
    return stages, notes


def _guarded(stage: Stage, out: str, body: str) -> str:
    """Shell text: fail unless every dependency left its marker, run, leave this task's marker."""
    marks = os.path.join(out, ".stages")
    lines = ["set -uo pipefail", f"cd {shlex.quote(ROOT)}", f"mkdir -p {shlex.quote(marks)}",
             f"rm -f {shlex.quote(os.path.join(marks, stage.name + '.ok'))}"]
    for dep in stage.deps:
        mark = shlex.quote(os.path.join(marks, dep + ".ok"))
        lines.append(f"[ -f {mark} ] || {{ echo 'pipeline: {stage.name}: dependency {dep} did not succeed' >&2; exit 1; }}")
    lines += [body, "rc=$?", f"[ $rc = 0 ] && touch {shlex.quote(os.path.join(marks, stage.name + '.ok'))}", "exit $rc"]
    return "\n".join(lines)


def _slurm_body(stage: Stage) -> str:
    if not stage.slurm_script:  # tokenize: a plain command on one task
        return shlex.join(stage.command)
    env = " ".join(f"{k}={shlex.quote(str(v))}" for k, v in stage.slurm_env.items())
    return f"{env} bash launch_slurm/{stage.slurm_script} {shlex.join(stage.slurm_args)}".strip()


def build_experiment(exp, args, stages: list[Stage]) -> None:
    """Add the stages to an entered nemo-run Experiment, with their executors and dependencies."""
    import nemo_run as run

    out = os.path.abspath(args.out)
    env = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PYTHONWARNINGS": "ignore"}
    ids: dict[str, str] = {}
    for st in stages:
        if args.executor == "local":
            executor = run.LocalExecutor(env_vars=env)
            body = shlex.join(st.command)
        else:
            # The tasks run launch_slurm/ from this checkout (shared filesystem): no code packaging
            # (nemo-run's default git-archives HEAD per task and needs a git checkout as the cwd).
            executor = run.SlurmExecutor(
                account=args.account, partition=args.partition, time=args.time, nodes=st.nodes,
                ntasks_per_node=1, gpus_per_node=st.gpus_per_node or None, exclusive=st.gpus_per_node > 0 or None,
                signal="B:USR1@600", additional_parameters={"requeue": True}, env_vars=env,
                packager=run.Packager(), job_name_prefix="octo-",
                tunnel=run.LocalTunnel(job_dir=os.path.join(out, NEMO_DIR, "slurm_jobs")))
            body = _slurm_body(st)
        ids[st.name] = exp.add(run.Script(inline=_guarded(st, out, body)), executor=executor, name=st.name,
                               dependencies=[ids[d] for d in st.deps if d in ids] or None)


def _dry_run(exp, executor: str) -> None:
    """nemo-run's dry run, printed as plain text: for Slurm each task's sbatch script exactly as it would be
    submitted (nemo-run's own log wraps lines to the terminal width). Leaves no files behind."""
    import shutil

    exp.dryrun(log=False, delete_exp_dir=False)
    try:
        for job in exp.jobs:
            ex = job.executor
            if executor == "slurm":
                path = os.path.join(ex.experiment_dir, f"{ex.job_name}_sbatch.sh")
                with open(path) as f:
                    text = f.read().rstrip("\n")
                print(f"[pipeline] sbatch script of task {job.id} (sbatch --requeue --parsable <script>):\n{text}\n"
                      f"[pipeline] end of sbatch script of task {job.id}", flush=True)
            else:
                print(f"[pipeline] task {job.id}: local process\n{job.task.inline}\n[pipeline] end of task {job.id}",
                      flush=True)
    finally:
        for d in {job.executor.experiment_dir for job in exp.jobs} | {
                getattr(getattr(job.executor, "tunnel", None), "job_dir", None) for job in exp.jobs}:
            if d:
                shutil.rmtree(d, ignore_errors=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m megatron_octo.pipeline", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/pipeline", help="run root: data, checkpoints, evals, HF exports, nemo-run logs")
    p.add_argument("--executor", choices=("local", "slurm"), default="local")
    p.add_argument("--profile", choices=("tiny", "paper"), default="tiny",
                   help="tiny: CPU recipes on the built-in data; paper: the Llama-3.2-3B recipes")
    p.add_argument("--dry-run", action="store_true", help="print the tasks (and sbatch scripts) without running")
    p.add_argument("--branches", default=",".join(BRANCHES), help="decay branches (comma-separated)")
    p.add_argument("--nproc", type=int, default=2, help="local executor: training processes per stage")
    p.add_argument("--override", action="append", default=[], metavar="STAGE:key=value",
                   help="config override for all|stable|decay|rl stages, or an eval argument (eval:--flag=value)")
    p.add_argument("--eval-benchmarks", default="gsm8k,math500,olympiadbench,amc23")
    p.add_argument("--eval-limit", type=int, default=None)
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.add_argument("--no-hf", action="store_true", help="leave out the HF export tasks")
    p.add_argument("--rl", choices=("auto", "yes", "no"), default="auto",
                   help="RL per branch: auto = when python -m megatron_octo.rl and the profile's rl_grpo.yaml exist")
    p.add_argument("--name", default="octothinker")
    p.add_argument("--python", default=sys.executable)
    slurm = p.add_argument_group("slurm executor")
    slurm.add_argument("--account", default=os.environ.get("OCTO_ACCOUNT", ""))
    slurm.add_argument("--partition", default=os.environ.get("OCTO_PARTITION"))
    slurm.add_argument("--time", default="48:00:00")
    slurm.add_argument("--gpus-per-node", type=int, default=8)
    slurm.add_argument("--stable-nodes", type=int, default=8)
    slurm.add_argument("--decay-nodes", type=int, default=2)
    slurm.add_argument("--rl-nodes", type=int, default=1)
    args = p.parse_args(argv)
    args.branches = [b for b in args.branches.split(",") if b]
    bad = [b for b in args.branches if b not in BRANCHES]
    if bad:
        print(f"error: --branches: unknown {bad}; known {list(BRANCHES)}", file=sys.stderr)
        return 2
    if importlib.util.find_spec("nemo_run") is None:
        print("error: nemo-run is not installed: pip install -e '.[launch]' (nemo-run==0.11.1 leptonai==0.26.6)",
              file=sys.stderr)
        return 2
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    out = os.path.abspath(args.out)
    if args.executor == "slurm" and any("/nemo_run" in d for d in (out, ROOT)):
        print(f"error: nemo-run's Slurm executor rewrites every '/nemo_run' in its sbatch scripts: move --out {out} "
              f"or the checkout {ROOT} to a path without '/nemo_run'", file=sys.stderr)
        return 2
    stages, notes = plan(args)
    for n in notes:
        print(f"[pipeline] note: {n}", flush=True)
    for st in stages:
        print(f"[pipeline] {st.name:<14} after {','.join(st.deps) or '-':<14} "
              f"{shlex.join(st.command) if args.executor == 'local' else _slurm_body(st)}", flush=True)
    import nemo_run as run

    exp = run.Experiment(args.name, executor=run.LocalExecutor(), log_level="WARN",
                         base_dir=os.path.join(out, NEMO_DIR))
    with exp:
        build_experiment(exp, args, stages)
        if args.dry_run:
            _dry_run(exp, args.executor)
            return 0
        exp.run(sequential=False, detach=False, tail_logs=False)
    failed = [st.name for st in stages if not os.path.exists(os.path.join(out, ".stages", st.name + ".ok"))]
    if failed:
        print(f"[pipeline] failed or not run: {', '.join(failed)} (logs: {out}/{NEMO_DIR})", file=sys.stderr)
        return 1
    print(f"[pipeline] all {len(stages)} tasks succeeded; outputs under {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
