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

from tests.helpers import ROOT, env_for_subprocess, run

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
    env = env_for_subprocess()
    env.update(COLUMNS="400", NO_COLOR="1", TERM="dumb")
    res = run([sys.executable, "-m", "megatron_octo.pipeline", "--executor", "slurm", "--dry-run", "--profile", "paper",
               "--rl", "no", "--no-hf", "--branches", "long,short", "--account", "acc", "--partition", "batch",
               "--out", str(tmp_path / "run")], timeout=180, env=env)
    assert res.returncode == 0, res.stderr[-4000:]
    text = "\n".join(line.strip() for line in (res.stdout + res.stderr).splitlines())
    scripts = re.findall(r"#!/bin/bash\n(.*?)(?=\nTask |\n\[\d\d:\d\d:\d\d\]|\Z)", text, flags=re.S)
    assert len(scripts) == 5, text[-4000:]  # stable, decay_long, eval_long, decay_short, eval_short
    joined = "\n".join(scripts)
    for directive in ("#SBATCH --nodes=8", "#SBATCH --nodes=2", "#SBATCH --gpus-per-node=8", "#SBATCH --requeue",
                      "#SBATCH --signal=B:USR1@600", "#SBATCH --account=acc", "#SBATCH --partition=batch"):
        assert directive in joined, directive
    for script in scripts:
        body = "#!/bin/bash\n" + script
        check = subprocess.run(["bash", "-n"], input=body, capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, (check.stderr, body)
    # the task scripts nemo-run's srun starts: our launch scripts, guarded by the dependency markers
    task_scripts = list((tmp_path / "run").rglob("scripts/*.sh")) if (tmp_path / "run").exists() else []
    plan_lines = [line for line in res.stdout.splitlines() if line.startswith("[pipeline] ")]
    assert any("bash launch_slurm/stable_200b.sh" in line for line in plan_lines), plan_lines
    assert any("after stable" in line and "decay_short_20b.sh" in line for line in plan_lines), plan_lines
    assert not any(p.name.endswith(".ok") for p in (tmp_path / "run").rglob("*")), "dry run ran something"
    del task_scripts


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
    out = tmp_path / "run"
    hf = pipeline.hf_export_available()
    res = run([sys.executable, "-m", "megatron_octo.pipeline", "--out", str(out), "--rl", "no", "--branches", "long",
               *TINY, "--eval-benchmarks", "gsm8k", "--eval-limit", "2", "--max-new-tokens", "8"], timeout=900)
    assert res.returncode == 0, (res.stdout[-4000:], res.stderr[-4000:])
    expected = {"tokenize.ok", "stable.ok", "decay_long.ok", "eval_long.ok"} | ({"hf_long.ok"} if hf else set())
    assert {p.name for p in (out / ".stages").iterdir()} == expected
    assert (out / "stable" / "latest_checkpointed_iteration.txt").read_text().strip() == "4"
    state = json.loads((out / "decay_long" / "iter_0000006" / "trainer_state.json").read_text())
    assert state["stage"] == "decay" and state["tokens"] == 16384 + 8192
    summary = json.loads((out / "eval" / "decay_long" / "summary.json").read_text())
    assert "gsm8k" in json.dumps(summary)
    if hf:
        assert any((out / "hf" / "decay_long").glob("*.safetensors"))
    assert os.path.isdir(out / "nemo_run")
