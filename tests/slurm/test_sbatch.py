"""launch_slurm/*.sh on a real single-node Slurm (tests/slurm/slurm_cluster.py).

Runs when OCTO_SLURM_TESTS=1 (installs Slurm with apt if needed, starts it, stops it afterwards)
or when a Slurm controller already answers `scontrol ping`; skips with the reason otherwise.

* `sbatch --wait launch_slurm/stable_200b.sh` with the tiny CPU recipe and 2 Slurm tasks (two torchrun
  agents meeting through c10d rendezvous, one worker each): exit 0, `scontrol show job` COMPLETED 0:0,
  checkpoints, TensorBoard events.
* Preemption: the batch shell gets SIGUSR1 mid-run (`scancel --batch --signal=USR1`, exactly what
  `#SBATCH --signal=B:USR1@N` does before the time limit); the trainers save and exit 75, the script
  requeues the job, the next start resumes and finishes with the configured token count and the same
  losses as the uninterrupted run.
* A decay branch from that stable checkpoint; launch_slurm/eval.sh on it (a benchmark subset: summary JSON,
  per-sample JSONL, markdown table); launch_slurm/rl_grpo.sh with the tiny CPU recipe from it (2 GRPO steps on
  2 tasks: checkpoint, TensorBoard); a bad input submitted with sbatch fails in seconds. Every stage reuses the
  one stable checkpoint the first test trains.

Every wait is bounded; on a time-out the test cancels only the job it submitted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT, env_for_subprocess, read_metrics, read_scalars, run
from tests.slurm import slurm_cluster

STEPS = 24
TOKENS_PER_STEP = 16 * 256
TOKENS = STEPS * TOKENS_PER_STEP
OVERRIDES = (f"model.preset=tiny model.vocab_size=8192 train.tokens={TOKENS} train.eval_interval=0 "
             "train.log_interval=1 checkpoint.save_interval=8")
# CPU sizing of the H100 #SBATCH defaults: one node, 2 tasks x 1 CPU, no GPUs.
SBATCH_CPU = ["--nodes=1", "--ntasks-per-node=2", "--cpus-per-task=1", "--gpus-per-node=0", "--time=30",
              "--signal=B:USR1@60"]


@pytest.fixture(scope="module")
def cluster():
    started = False
    if os.environ.get("OCTO_SLURM_TESTS") == "1":
        try:
            how = slurm_cluster.start()
        except slurm_cluster.SlurmError as exc:
            pytest.fail(f"OCTO_SLURM_TESTS=1 but Slurm could not be started: {exc}")
        started = how == "started"
    elif not slurm_cluster.controller_up():
        pytest.skip("no Slurm controller: set OCTO_SLURM_TESTS=1 (root + apt) to install and start a "
                    "single-node Slurm, or start one with `python tests/slurm/slurm_cluster.py start`")
    yield
    if started and os.environ.get("OCTO_SLURM_KEEP") != "1":
        slurm_cluster.stop()


@pytest.fixture(scope="module")
def work(cluster, tmp_path_factory) -> Path:
    return demo_workdir(tmp_path_factory, "sbatch")


def demo_workdir(tmp_path_factory, name: str) -> Path:
    """A directory every Slurm user can read, with the demo data mixture in data/."""
    d = tmp_path_factory.mktemp(name)
    os.chmod(d, 0o755)
    res = run([_python(), "-m", "tokenization.build_demo_data", "--out", str(d / "data")], timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    return d


def _python() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else "python3"


def _env(work: Path, output: Path, **extra) -> dict:
    env = env_for_subprocess()
    for key in list(env):
        if key.startswith(("OCTO_", "SLURM_", "SBATCH_")):
            env.pop(key)
    env.update(OCTO_PROFILE="cpu", OCTO_OUTPUT=str(output), OCTO_DATA=str(work / "data"), OCTO_OVERRIDES=OVERRIDES,
               OCTO_SIGNAL_REPEAT="5")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _job(job_id: str) -> dict:
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=30).stdout
    return dict(re.findall(r"(\w+)=(\S*)", out))


def _cancel(job_id: str) -> None:
    subprocess.run(["scancel", job_id], capture_output=True, timeout=30)


def _wait_for(pred, timeout: float, what: str, job_id: str, logs: Path):
    t_end = time.time() + timeout
    while time.time() < t_end:
        value = pred()
        if value:
            return value
        time.sleep(0.5)
    _cancel(job_id)
    raise AssertionError(f"{what} not reached within {timeout:.0f}s; job {_job(job_id)}\n{_logs(logs)}")


def start_requeued_now(job_id: str) -> None:
    """Start a requeued (pending) job now instead of after Slurm's 120 s hold (BeginTime).

    Not in the second its last run ended: slurmd revokes a terminated job's credential with a
    one-second timestamp and refuses a batch launch whose credential is not newer ("Job N already
    killed, do not launch batch job": the job FAILS with exit 1:0, seen in CI). The 120 s hold is
    what keeps real clusters clear of that."""
    t_end = time.time() + 60
    while time.time() < t_end and "completing" in subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30).stdout:
        time.sleep(0.5)  # the nodes are still ending the last run
    time.sleep(2.0)
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], capture_output=True, timeout=30)


def _logs(d: Path) -> str:
    """The tails of the job's logs, then of the Slurm daemons' (why a step or a requeue failed)."""
    parts = []
    daemons = sorted(slurm_cluster.STATE.glob("slurm*.log")) if slurm_cluster.STATE.is_dir() else []
    for f in [*sorted(d.rglob("*")), *daemons]:
        if f.is_file() and (f.suffix in (".log", ".out")):
            parts.append(f"--- {f}\n" + "".join(f.read_text(errors="replace").splitlines(True)[-40:]))
    return "\n".join(parts)[-40000:]


def _final(save: Path) -> tuple[int, list]:
    state = json.loads((save / f"iter_{STEPS:07d}" / "trainer_state.json").read_text())
    losses = {r["iteration"]: r["lm loss"] for r in read_metrics(save / "tensorboard") if "lm loss" in r}
    return state["tokens"], [losses[i] for i in sorted(losses)]


@pytest.fixture(scope="module")
def reference(work) -> Path:
    """The uninterrupted stable run: `sbatch --wait launch_slurm/stable_200b.sh` from the checkout."""
    out = work / "uninterrupted"
    res = run(["sbatch", "--wait", "--parsable", f"--output={work}/slurm-%x-%j.out", *SBATCH_CPU,
               "launch_slurm/stable_200b.sh"], timeout=400, cwd=ROOT, env=_env(work, out))
    job_id = res.stdout.strip().split(";")[0]
    assert res.returncode == 0, f"sbatch --wait exit {res.returncode}\n{res.stdout}\n{res.stderr}\n{_logs(work)}"
    info = _job(job_id)
    return out, job_id, info


def test_sbatch_wait_stable_two_tasks_completes(reference, work):
    out, job_id, info = reference
    assert info.get("JobState") == "COMPLETED" and info.get("ExitCode") == "0:0", info
    assert info.get("NumTasks") == "2", info
    save = out / "stable"
    assert (save / "latest_checkpointed_iteration.txt").read_text().strip() == str(STEPS)
    assert sorted(p.name for p in save.glob("iter_*")) == [f"iter_{i:07d}" for i in (8, 16, 24)]
    assert list((save / "tensorboard").glob("events.out.tfevents*")), "no TensorBoard events"
    scalars = read_scalars(str(save / "tensorboard"))
    assert [s for s, _ in scalars["lm loss"]] == list(range(1, STEPS + 1))
    tokens, losses = _final(save)
    assert tokens == TOKENS and len(losses) == STEPS
    assert losses[-1] < losses[0] - 0.5, losses  # it learned something
    task_logs = sorted((out / "logs" / f"octo-stable-{job_id}").glob("restart0_task*.log"))
    assert len(task_logs) == 2, task_logs  # one log per Slurm task (two torchrun agents)
    batch_log = (work / f"slurm-octo-stable-{job_id}.out").read_text()
    assert "2 task(s) x 1 process(es)" in batch_log and "done: stable finished" in batch_log, batch_log


def test_preempted_job_saves_requeues_resumes_and_matches(reference, work):
    ref_out = reference[0]
    out = work / "preempted"
    res = run(["sbatch", "--parsable", f"--output={work}/slurm-%x-%j.out", *SBATCH_CPU, "launch_slurm/stable_200b.sh"],
              timeout=60, cwd=ROOT, env=_env(work, out))
    assert res.returncode == 0, res.stderr
    job_id = res.stdout.strip().split(";")[0]
    log1 = out / "logs" / f"octo-stable-{job_id}"

    def at_step(n):
        def pred():
            for f in log1.glob("restart0_task*.log"):
                m = re.findall(r"iteration\s+(\d+)/", f.read_text(errors="replace"))
                if m and int(m[-1]) >= n:
                    return True
            return False
        return pred

    _wait_for(at_step(3), 240, "training step 3", job_id, work)
    # What `#SBATCH --signal=B:USR1@N` does before the time limit: SIGUSR1 to the batch shell only.
    subprocess.run(["scancel", "--batch", "--signal=USR1", job_id], check=True, timeout=30)
    _wait_for(lambda: (lambda j: j.get("Restarts") == "1" and j.get("JobState") == "PENDING")(_job(job_id)),
              180, "requeue after the signal", job_id, work)
    start_requeued_now(job_id)
    info = _wait_for(lambda: (lambda j: j if j.get("JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT")
                              else None)(_job(job_id)), 300, "the resumed job's end", job_id, work)
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", f"{info}\n{_logs(work)}"
    assert info["Restarts"] == "1", info

    first = "".join(f.read_text() for f in log1.glob("restart0_task*.log"))
    m = re.search(r"signal received: saved \S+ at iteration (\d+); exiting with 75", first)
    assert m, first[-4000:]
    stopped_at = int(m.group(1))
    assert 3 <= stopped_at < STEPS, stopped_at
    second = "".join(f.read_text() for f in log1.glob("restart1_task*.log"))
    assert f"resumed from {out / 'stable'}/iter_{stopped_at:07d}" in second, second[-4000:]
    batch_log = (work / f"slurm-octo-stable-{job_id}.out").read_text()
    assert "got SIGUSR1" in batch_log and "requeueing job" in batch_log and "done: stable finished" in batch_log

    tokens, losses = _final(out / "stable")
    ref_tokens, ref_losses = _final(ref_out / "stable")
    assert tokens == ref_tokens == TOKENS
    assert losses == ref_losses, (losses, ref_losses)  # bitwise: same data order, RNG and optimizer state


def test_decay_branch_from_stable_checkpoint(reference, work):
    out = reference[0]
    env = _env(work, out, OCTO_OVERRIDES="model.preset=tiny model.vocab_size=8192 train.tokens=8192 "
               "train.eval_interval=0 train.log_interval=1")
    res = run(["sbatch", "--wait", "--parsable", f"--output={work}/slurm-%x-%j.out", *SBATCH_CPU,
               "launch_slurm/decay_short_20b.sh"], timeout=300, cwd=ROOT, env=env)
    job_id = res.stdout.strip().split(";")[0]
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr}\n{_logs(work)}"
    assert _job(job_id).get("JobState") == "COMPLETED"
    state = json.loads((out / "decay_short" / "iter_0000026" / "trainer_state.json").read_text())
    assert state["stage"] == "decay" and state["stage_tokens"] == 8192 and state["tokens"] == TOKENS + 8192


def _sbatch_wait(work: Path, script: str, env: dict, args=(), tasks: int = 2, timeout: float = 400) -> dict:
    """`sbatch --wait` a stage script with the CPU sizing and `tasks` tasks; the finished job's record."""
    opts = [o if not o.startswith("--ntasks-per-node=") else f"--ntasks-per-node={tasks}" for o in SBATCH_CPU]
    res = run(["sbatch", "--wait", "--parsable", f"--output={work}/slurm-%x-%j.out", *opts, script, *args],
              timeout=timeout, cwd=ROOT, env=env)
    job_id = res.stdout.strip().split(";")[0]
    assert res.returncode == 0, f"sbatch --wait exit {res.returncode}\n{res.stdout}\n{res.stderr}\n{_logs(work)}"
    info = _job(job_id)
    assert info.get("JobState") == "COMPLETED" and info.get("ExitCode") == "0:0", info
    assert info.get("NumTasks") == str(tasks), info
    return info


def test_sbatch_eval_on_the_stable_checkpoint(reference, work):
    """launch_slurm/eval.sh on the stable run's checkpoint: a small benchmark subset, default output place."""
    stable = reference[0] / "stable"
    env = _env(work, reference[0], OCTO_CHECKPOINT=stable, OCTO_BENCHMARKS="gsm8k,amc23")
    info = _sbatch_wait(work, "launch_slurm/eval.sh", env, args=["--limit", "2", "--max-new-tokens", "8"], tasks=1)
    out = stable / "eval" / f"iter_{STEPS:07d}"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["iteration"] == STEPS and sorted(summary["benchmarks"]) == ["amc23", "gsm8k"], summary
    for name in ("gsm8k", "amc23"):
        rows = [json.loads(line) for line in (out / f"{name}.jsonl").read_text().splitlines()]
        assert len(rows) == 2 and {"prompt", "response", "extracted", "gold", "correct"} <= set(rows[0]), rows
        assert summary["benchmarks"][name]["num_examples"] == 2
    table = (out / "results.md").read_text()
    assert "| gsm8k |" in table and "| amc23 |" in table, table
    assert list((out / "tensorboard").glob("events.out.tfevents*"))
    batch_log = (work / f"slurm-octo-eval-{info['JobId']}.out").read_text()
    assert "preflight ok: eval" in batch_log and "done: eval finished" in batch_log, batch_log


def test_sbatch_rl_grpo_tiny_two_tasks(reference, work):
    """launch_slurm/rl_grpo.sh with the tiny CPU recipe from the stable checkpoint: 2 GRPO steps on 2 tasks."""
    out = work / "rl"
    env = _env(work, out, OCTO_INIT_FROM=reference[0] / "stable",
               OCTO_OVERRIDES="model.preset=tiny model.vocab_size=8192 rl.steps=2 rl.val_interval=0")
    info = _sbatch_wait(work, "launch_slurm/rl_grpo.sh", env)
    save = out / "rl_long"
    latest = (save / "latest_checkpointed_iteration.txt").read_text().strip()
    state = json.loads((save / f"iter_{int(latest):07d}" / "trainer_state.json").read_text())
    assert state["stage"] == "rl" and state["stage_iteration"] == 2, state
    scalars = read_scalars(str(save / "tensorboard"))
    assert [s for s, _ in scalars["critic/score/mean"]] == [1, 2], sorted(scalars)
    # (actor/* only when a step had a learning signal: the tiny model's groups may all score -1)
    assert {"response_length/mean", "response_length/clip_ratio"} <= set(scalars), sorted(scalars)
    assert len(list((out / "logs" / f"octo-rl-grpo-{info['JobId']}").glob("restart0_task*.log"))) == 2
    batch_log = (work / f"slurm-octo-rl-grpo-{info['JobId']}.out").read_text()
    assert "preflight ok: recipes/tiny/rl_grpo.yaml | rl grpo | world size 2" in batch_log, batch_log
    assert "done: rl_long finished" in batch_log, batch_log


def test_sbatch_with_bad_input_fails_in_seconds(work):
    out = work / "bad"
    t0 = time.time()
    res = run(["sbatch", "--wait", "--parsable", f"--output={work}/slurm-%x-%j.out", *SBATCH_CPU,
               "launch_slurm/decay_long_20b.sh"], timeout=120, cwd=ROOT, env=_env(work, out))
    job_id = res.stdout.strip().split(";")[0]
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert _job(job_id).get("ExitCode") == "2:0"
    batch_log = (work / f"slurm-octo-decay-long-{job_id}.out").read_text()
    assert "checkpoint.init_from" in batch_log and "not found" in batch_log, batch_log
    assert not (out / "logs" / f"octo-decay-long-{job_id}").exists() or \
        not list((out / "logs" / f"octo-decay-long-{job_id}").glob("*.log")), "training was started"
    assert time.time() - t0 < 90


def test_cluster_tool_is_idempotent(cluster):
    t0 = time.time()
    res = run([_python(), str(Path(__file__).with_name("slurm_cluster.py")), "start"], timeout=120)
    assert res.returncode == 0, res.stderr
    assert re.search(r"slurm (running|external)", res.stdout), res.stdout
    assert time.time() - t0 < 30
