"""megatron_octo.pipeline: the DAG, the Slurm dry run (sbatch scripts), a failing stage stopping its
dependants, and the whole tiny pipeline end to end on nemo-run's local executor."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, run

nemo_run = pytest.importorskip("nemo_run", reason="nemo-run not installed: pip install -e '.[launch]'")

from megatron_octo import pipeline  # noqa: E402

TINY = ["--override", "all:model.preset=tiny", "--override", "all:model.vocab_size=8192",
        "--override", "all:train.eval_interval=0", "--override", "stable:train.tokens=16384",
        "--override", "decay:train.tokens=8192"]


def _args(*argv):
    p_args = ["--out", "/tmp/x", *argv]
    # parse the same way main() does, without running anything
    import argparse

    captured = {}

    def fake_plan(args):
        captured["args"] = args
        raise SystemExit(0)

    orig = pipeline.plan
    pipeline.plan = fake_plan
    try:
        with pytest.raises(SystemExit):
            pipeline.main(p_args)
    finally:
        pipeline.plan = orig
    assert isinstance(captured["args"], argparse.Namespace)
    return captured["args"]


def test_dag_tiny_profile():
    stages, notes = pipeline.plan(_args("--rl", "no"))
    deps = {s.name: s.deps for s in stages}
    assert deps["tokenize"] == [] and deps["stable"] == ["tokenize"]
    for b in ("long", "short", "hybrid"):
        assert deps[f"decay_{b}"] == ["stable"]
        assert deps[f"eval_{b}"] == [f"decay_{b}"]
        if pipeline.hf_export_available():
            assert deps[f"hf_{b}"] == [f"decay_{b}"]
        assert f"rl_{b}" not in deps
    assert any("rl_* left out" in n for n in notes)
    stable = next(s for s in stages if s.name == "stable")
    assert "recipes/tiny/stable.yaml" in stable.command and "--nproc-per-node=2" in stable.command
    decay = next(s for s in stages if s.name == "decay_long")
    assert "checkpoint.init_from=/tmp/x/stable" in decay.command


@pytest.mark.skipif(not (pipeline.rl_available() and (ROOT / "recipes/tiny/rl_grpo.yaml").exists()),
                    reason="RL CLI or recipes/tiny/rl_grpo.yaml not in this checkout")
def test_dag_with_rl_puts_rl_between_decay_and_eval():
    stages, _ = pipeline.plan(_args("--rl", "yes", "--branches", "long"))
    deps = {s.name: s.deps for s in stages}
    assert deps["rl_long"] == ["decay_long"] and deps["eval_long"] == ["rl_long"]
    ev = next(s for s in stages if s.name == "eval_long")
    assert "/tmp/x/rl_long" in ev.command and "rl" in ev.command


def test_slurm_dry_run_prints_sbatch_scripts(tmp_path):
    out = tmp_path / "run"
    res = run([sys.executable, "-m", "megatron_octo.pipeline", "--executor", "slurm", "--dry-run", "--profile", "paper",
               "--rl", "yes", "--no-hf", "--branches", "long,hybrid", "--account", "acc", "--partition", "batch",
               "--out", str(out)], timeout=180, cwd=tmp_path)  # not from the checkout: no git needed
    assert res.returncode == 0, res.stderr[-4000:]
    scripts = dict(re.findall(r"\[pipeline\] sbatch script of task (\w+) \(sbatch --requeue --parsable <script>\):\n"
                              r"(.*?)\n\[pipeline\] end of sbatch script of task \1\n", res.stdout, flags=re.S))
    assert sorted(scripts) == ["decay_hybrid", "decay_long", "eval_hybrid", "eval_long", "rl_hybrid", "rl_long",
                               "stable"], res.stdout[-4000:]
    for name, script in scripts.items():
        assert script.startswith("#!/bin/bash\n"), script
        check = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, (check.stderr, script)
        for directive in ("#SBATCH --requeue", "#SBATCH --signal=B:USR1@600", "#SBATCH --account=acc",
                          "#SBATCH --partition=batch", f"#SBATCH --job-name=octo-{name}"):
            assert directive in script.splitlines(), (directive, script)
        # every path nemo-run writes is under <out>/nemo-run/slurm_jobs/<experiment>/<task>, once: it used to
        # rewrite each "/nemo_run" in the script and print <out>/<out>/nemo_run/.../<task>/slurm_jobs/.../<task>
        output = re.search(r"^#SBATCH --output=(\S+)$", script, flags=re.M).group(1)
        assert re.fullmatch(rf"{out}/nemo-run/slurm_jobs/octothinker/octothinker_\d+/{name}/sbatch_octo-{name}_%j\.out",
                            output), output
        paths = re.findall(r"(/\S*?)(?=[\s'\"]|$)", script)
        assert all(p.count(str(out)) <= 1 and p.count("slurm_jobs") <= 1 for p in paths), paths
    assert "#SBATCH --nodes=8" in scripts["stable"] and "#SBATCH --nodes=2" in scripts["decay_long"]
    assert "#SBATCH --gpus-per-node=8" in scripts["rl_long"] and "#SBATCH --gpus-per-node=1" in scripts["eval_long"]
    # the tasks nemo-run's srun starts: our launch scripts, guarded by the dependency markers
    plan_lines = [line for line in res.stdout.splitlines() if line.startswith("[pipeline] ")]
    assert any("bash launch_slurm/stable_200b.sh" in line for line in plan_lines), plan_lines
    assert any("after decay_hybrid" in line and "OCTO_BRANCH=hybrid" in line and "rl_grpo.sh" in line
               for line in plan_lines), plan_lines
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()], "the dry run left files behind"


def test_rl_stage_uses_the_branch_recipe_where_one_exists():
    stages, _ = pipeline.plan(_args("--profile", "paper", "--rl", "yes", "--no-hf"))
    recipes = {s.name: s.command[s.command.index("--config") + 1] for s in stages if s.name.startswith("rl_")}
    assert recipes == {"rl_long": "recipes/octothinker/llama3.2-3b/rl_grpo.yaml",
                       "rl_short": "recipes/octothinker/llama3.2-3b/rl_grpo.yaml",
                       "rl_hybrid": "recipes/octothinker/llama3.2-3b/rl_grpo_hybrid.yaml"}


def test_failed_stage_stops_its_dependants(tmp_path):
    out = tmp_path / "run"
    res = run([sys.executable, "-m", "megatron_octo.pipeline", "--out", str(out), "--rl", "no", "--no-hf",
               "--branches", "long", *TINY, "--override", "stable:train.global_batch_size=7"], timeout=300)
    assert res.returncode == 1, (res.stdout[-3000:], res.stderr[-3000:])
    marks = {p.name for p in (out / ".stages").iterdir()}
    assert marks == {"tokenize.ok"}, marks
    assert "failed or not run: stable, decay_long, eval_long" in res.stderr
    assert not (out / "decay_long").exists()


@pytest.mark.e2e
def test_local_pipeline_end_to_end(tmp_path):
    """The whole tiny DAG for one branch: tokenize -> stable -> decay_long -> rl_long -> eval_long, hf_long."""
    out = tmp_path / "run"
    hf = pipeline.hf_export_available()
    res = run([sys.executable, "-m", "megatron_octo.pipeline", "--out", str(out), "--rl", "yes", "--branches", "long",
               *TINY, "--override", "rl:rl.steps=1", "--override", "rl:rl.val_interval=0",
               "--eval-benchmarks", "gsm8k", "--eval-limit", "2", "--max-new-tokens", "8"], timeout=900)
    assert res.returncode == 0, (res.stdout[-4000:], res.stderr[-4000:])
    expected = {"tokenize.ok", "stable.ok", "decay_long.ok", "rl_long.ok", "eval_long.ok"}
    expected |= {"hf_long.ok"} if hf else set()
    assert {p.name for p in (out / ".stages").iterdir()} == expected
    assert (out / "stable" / "latest_checkpointed_iteration.txt").read_text().strip() == "4"
    state = json.loads((out / "decay_long" / "iter_0000006" / "trainer_state.json").read_text())
    assert state["stage"] == "decay" and state["tokens"] == 16384 + 8192
    latest = (out / "rl_long" / "latest_checkpointed_iteration.txt").read_text().strip()
    state = json.loads((out / "rl_long" / f"iter_{int(latest):07d}" / "trainer_state.json").read_text())
    assert state["stage"] == "rl" and state["stage_iteration"] == 1, state
    summary = json.loads((out / "eval" / "rl_long" / "summary.json").read_text())
    assert summary["protocol"] == "rl" and "gsm8k" in summary["benchmarks"], summary
    if hf:
        assert any((out / "hf" / "rl_long").glob("*.safetensors"))
    assert os.path.isdir(out / "nemo-run")
