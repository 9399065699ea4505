"""launch_slurm/*.sh without a cluster: bad inputs fail in seconds before anything is submitted,
and the dry run shows the sbatch command built from the OCTO_* settings. No Slurm needed."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT, env_for_subprocess, run

SCRIPTS = ("stable_200b.sh", "decay_long_20b.sh", "decay_short_20b.sh", "decay_hybrid_20b.sh", "rl_grpo.sh", "eval.sh")


def _env(tmp_path, **extra) -> dict:
    env = env_for_subprocess()
    for key in list(env):
        if key.startswith(("OCTO_", "SLURM_", "SBATCH_")):
            env.pop(key)
    env.update(OCTO_OUTPUT=str(tmp_path / "out"), OCTO_DRY_RUN="1")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _script(name: str, tmp_path, timeout: float = 60, args=(), **env):
    t0 = time.time()
    res = run(["bash", str(ROOT / "launch_slurm" / name), *args], timeout=timeout, cwd=tmp_path, env=_env(tmp_path, **env))
    return res, time.time() - t0


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("launch") / "data"
    res = run([str(ROOT / ".venv/bin/python") if (ROOT / ".venv/bin/python").exists() else "python3",
               "-m", "tokenization.build_demo_data", "--out", str(out)], timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def test_scripts_are_valid_bash_with_requeue_and_signal():
    for name in SCRIPTS:
        path = ROOT / "launch_slurm" / name
        res = run(["bash", "-n", str(path)], timeout=30)
        assert res.returncode == 0, f"{name}: {res.stderr}"
        text = path.read_text()
        assert "#SBATCH --requeue" in text and "#SBATCH --signal=B:USR1@" in text, name
        assert "#SBATCH --gpus-per-node=" in text, name
    assert run(["bash", "-n", str(ROOT / "launch_slurm" / "common.sh")], timeout=30).returncode == 0


def test_dry_run_builds_sbatch_command_from_environment(tmp_path, demo_data):
    res, _ = _script("stable_200b.sh", tmp_path, args=["train.tokens=8192"], OCTO_PROFILE="cpu",
                     OCTO_DATA=demo_data, OCTO_TIME="15", OCTO_PARTITION="debug", OCTO_SIGNAL="120")
    assert res.returncode == 0, res.stderr
    assert "preflight ok: recipes/tiny/stable.yaml" in res.stdout and "world size 2" in res.stdout
    cmd = [line for line in res.stdout.splitlines() if line.startswith("sbatch ")]
    assert len(cmd) == 1, res.stdout
    for opt in ("--nodes=1", "--gpus-per-node=0", "--ntasks-per-node=2", "--cpus-per-task=1", "--time=15",
                "--partition=debug", "--signal=B:USR1@120"):
        assert opt in cmd[0].split(), (opt, cmd[0])
    assert cmd[0].endswith("launch_slurm/stable_200b.sh train.tokens=8192")


def test_missing_recipe_fails_fast(tmp_path):
    res, dt = _script("stable_200b.sh", tmp_path, OCTO_RECIPE="recipes/nope.yaml")
    assert res.returncode == 2 and dt < 30, (res.returncode, dt)
    assert "recipe file not found: recipes/nope.yaml" in res.stderr
    assert "sbatch " not in res.stdout


def test_missing_stable_checkpoint_fails_fast(tmp_path, demo_data):
    for name in ("decay_long_20b.sh", "decay_short_20b.sh", "decay_hybrid_20b.sh"):
        res, dt = _script(name, tmp_path, OCTO_PROFILE="cpu", OCTO_DATA=demo_data)
        assert res.returncode == 2 and dt < 30, (name, res.returncode, dt, res.stderr)
        assert "checkpoint.init_from" in res.stderr and str(tmp_path / "out" / "stable") in res.stderr, res.stderr
        assert "sbatch " not in res.stdout


def test_init_from_without_checkpoint_fails_fast(tmp_path, demo_data):
    empty = tmp_path / "not_a_checkpoint"
    empty.mkdir()
    res, dt = _script("decay_long_20b.sh", tmp_path, OCTO_PROFILE="cpu", OCTO_DATA=demo_data, OCTO_INIT_FROM=empty)
    assert res.returncode == 2 and dt < 30, (res.returncode, dt, res.stderr)
    assert "checkpoint.init_from" in res.stderr and "not a checkpoint" in res.stderr, res.stderr


def test_missing_dataset_fails_fast(tmp_path, demo_data):
    # no mixture at all
    res, dt = _script("stable_200b.sh", tmp_path, OCTO_PROFILE="cpu", OCTO_DATA=tmp_path / "nowhere")
    assert res.returncode == 2 and dt < 30
    assert "data mixture not found" in res.stderr and "build_demo_data" in res.stderr, res.stderr
    # a mixture naming a dataset whose .bin is gone (prefixes are relative to the mixture file)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "mixture.yaml").write_text((demo_data / "mixture.yaml").read_text())
    for f in demo_data.iterdir():
        if f.suffix in (".bin", ".idx") and f.name != "math_web.bin":
            os.symlink(f, broken / f.name)
    res, dt = _script("stable_200b.sh", tmp_path, OCTO_PROFILE="cpu", OCTO_DATA=broken)
    assert res.returncode == 2 and dt < 30, (res.returncode, res.stdout, res.stderr)
    assert "data.mixture" in res.stderr and "math_web" in res.stderr, res.stderr


def test_paper_recipe_without_inputs_names_the_key(tmp_path):
    res, dt = _script("stable_200b.sh", tmp_path, OCTO_INIT=tmp_path / "no_init")
    assert res.returncode == 2 and dt < 30
    assert "checkpoint.init_from" in res.stderr and "no_init" in res.stderr, res.stderr


def test_eval_missing_checkpoint_fails_fast(tmp_path):
    res, dt = _script("eval.sh", tmp_path, OCTO_CHECKPOINT=tmp_path / "nope")
    assert res.returncode == 2 and dt < 30, (res.returncode, res.stderr)
    assert "--checkpoint" in res.stderr and "not found" in res.stderr
    res, _ = _script("eval.sh", tmp_path, OCTO_CHECKPOINT=tmp_path, OCTO_BENCHMARKS="gsm8k")
    assert res.returncode == 2 and "not a checkpoint" in res.stderr, res.stderr


def test_rl_missing_decay_checkpoint_fails_fast(tmp_path):
    res, dt = _script("rl_grpo.sh", tmp_path, OCTO_BRANCH="short")
    assert res.returncode == 2 and dt < 30, (res.returncode, dt, res.stderr)
    assert "checkpoint.init_from" in res.stderr and str(tmp_path / "out" / "decay_short") in res.stderr, res.stderr
    assert "sbatch " not in res.stdout


@pytest.mark.parametrize("branch,recipe,stairs", [
    ("long", "rl_grpo.yaml", "{0: 2048, 100: 4096, 160: 8192}"),
    ("hybrid", "rl_grpo_hybrid.yaml", "{0: 4096}"),
])
def test_rl_dry_run_validates_the_paper_recipe(tmp_path, branch, recipe, stairs):
    decay = tmp_path / "out" / f"decay_{branch}"
    decay.mkdir(parents=True)
    (decay / "latest_checkpointed_iteration.txt").write_text("5")
    (decay / "iter_0000005").mkdir()
    tokenizer = tmp_path / "tokenizer.json"
    tokenizer.write_text("{}")  # only its existence is checked before submission
    res, dt = _script("rl_grpo.sh", tmp_path, OCTO_BRANCH=branch, OCTO_TOKENIZER=tokenizer)
    assert res.returncode == 0 and dt < 30, (res.returncode, dt, res.stderr)
    assert f"preflight ok: recipes/octothinker/llama3.2-3b/{recipe} | rl grpo | world size 8 (tp 1, dp 8)" \
        in res.stdout, res.stdout
    assert f"300 steps of 128 prompts x 16 samples, mini-batch 64 | response cap {stairs}" in res.stdout, res.stdout
    assert f"save {tmp_path / 'out' / ('rl_' + branch)}" in res.stdout and f"starting from {decay}/iter_0000005" \
        in res.stdout, res.stdout
    cmd = [line for line in res.stdout.splitlines() if line.startswith("sbatch ")]
    assert len(cmd) == 1 and cmd[0].strip().endswith("launch_slurm/rl_grpo.sh"), res.stdout
    # the preflight applies the trainer's batch checks against the world size
    res, _ = _script("rl_grpo.sh", tmp_path, OCTO_BRANCH=branch, OCTO_TOKENIZER=tokenizer, OCTO_NODES=3)
    assert res.returncode == 2 and "rl.mini_batch_prompts" in res.stderr, res.stderr


def _in_job(tmp_path, demo_data, **extra):
    """The stage script as the batch shell of job 4242 on node1 with 2 tasks (dry run: prints the srun line)."""
    stub = tmp_path / "bin"
    stub.mkdir(exist_ok=True)
    (stub / "scontrol").write_text("#!/bin/sh\necho node1\n")  # `scontrol show hostnames` without a controller
    (stub / "scontrol").chmod(0o755)
    env = dict(OCTO_PROFILE="cpu", OCTO_DATA=demo_data, SLURM_JOB_ID="4242", SLURM_JOB_NODELIST="node1",
               SLURM_NTASKS="2", SLURM_NTASKS_PER_NODE="2", SLURM_CPUS_PER_TASK="1", SLURM_JOB_NAME="octo-stable",
               PATH=f"{stub}:{os.environ.get('PATH', '')}", **extra)
    res, _ = _script("stable_200b.sh", tmp_path, args=["train.tokens=8192"], **env)
    assert res.returncode == 0, res.stderr
    lines = [line.split() for line in res.stdout.splitlines() if line.startswith("srun ")]
    assert len(lines) == 1, res.stdout
    return lines[0]


def test_dry_run_srun_line_carries_the_container_flags(tmp_path, demo_data):
    out = tmp_path / "out"
    words = _in_job(tmp_path, demo_data, OCTO_CONTAINER="/images/octo+25.11.sqsh",
                    OCTO_CONTAINER_MOUNTS="/data:/data,/ckpt:/ckpt:ro")
    launcher = words.index(str(ROOT / "launch_slurm" / "node_launch.py"))
    srun_opts = words[:launcher - 1]   # srun's own options end at the interpreter
    assert "--container-image=/images/octo+25.11.sqsh" in srun_opts, words
    assert f"--container-workdir={ROOT}" in srun_opts, words
    mounts = [w for w in srun_opts if w.startswith("--container-mounts=")]
    assert len(mounts) == 1, words
    pairs = mounts[0].split("=", 1)[1].split(",")
    assert f"{ROOT}:{ROOT}" in pairs and f"{out}:{out}" in pairs, pairs   # checkout + output at the same paths
    assert "/data:/data" in pairs and "/ckpt:/ckpt:ro" in pairs, pairs
    # the workers use the container's interpreter, not the host's venv
    assert words[launcher - 1] == "python", words
    assert "--nnodes=2" in words and "--rdzv-endpoint=node1:" in " ".join(words), words
    # without OCTO_CONTAINER: no pyxis options, the host interpreter
    plain = _in_job(tmp_path, demo_data)
    assert not [w for w in plain if w.startswith("--container")], plain
    assert plain[plain.index(str(ROOT / "launch_slurm" / "node_launch.py")) - 1] != "python", plain
