"""The pipeline CLI (a process, as a user runs it): the Slurm dry run's sbatch scripts (each checked by
`bash -n`) and a failing stage stopping its dependants."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.helpers import run
from tests.pipeline_cases import TINY

nemo_run = pytest.importorskip("nemo_run", reason="nemo-run not installed: pip install -e '.[launch]'")


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


def test_failed_stage_stops_its_dependants(tmp_path):
    out = tmp_path / "run"
    res = run([sys.executable, "-m", "megatron_octo.pipeline", "--out", str(out), "--rl", "no", "--no-hf",
               "--branches", "long", *TINY, "--override", "stable:train.global_batch_size=7"], timeout=300)
    assert res.returncode == 1, (res.stdout[-3000:], res.stderr[-3000:])
    marks = {p.name for p in (out / ".stages").iterdir()}
    assert marks == {"tokenize.ok"}, marks
    assert "failed or not run: stable, decay_long, eval_long" in res.stderr
    assert not (out / "decay_long").exists()
