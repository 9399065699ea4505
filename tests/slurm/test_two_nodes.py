"""launch_slurm/stable_200b.sh across two Slurm nodes on one machine (tests/slurm/slurm_cluster.py start --nodes 2).

The nodes are two network namespaces on a private bridge, each with its own hostname, address and slurmd
(see slurm_cluster.py). Runs when OCTO_SLURM_TESTS=1 (root: namespaces, daemons; stopped and removed
afterwards, also on failure); skips otherwise.

* `sbatch -N 2 --ntasks-per-node=1` of the tiny recipe: one torchrun agent per node, DP=2 across the nodes,
  COMPLETED 0:0; while it runs, the workers found in each namespace (their environment) and the TCP
  connections between the namespace addresses show: rank 0 in octo-n1, rank 1 in octo-n2, MASTER_ADDR the
  head node's namespace address, GLOO_SOCKET_IFNAME the namespace's veth, the rendezvous store and gloo
  connected over the namespace addresses. Its losses equal a one-node DP=2 run's (both tasks on octo-n1).
* The same two-node job gets the preemption signal (`scancel --batch --signal=USR1`, what `#SBATCH
  --signal=B:USR1@N` does): it saves once, is requeued, resumes on two nodes and ends with the
  uninterrupted run's losses, every iteration logged once.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT, read_metrics, run
from tests.slurm import slurm_cluster
from tests.slurm.test_sbatch import _cancel, _env, _job, _logs, _wait_for, demo_workdir, start_requeued_now

STEPS = 12
TOKENS = STEPS * 16 * 256
# No periodic checkpoints: the only saves are the preemption's and the final one.
OVERRIDES = (f"model.preset=tiny model.vocab_size=8192 train.tokens={TOKENS} train.eval_interval=0 "
             "train.log_interval=1 checkpoint.save_interval=0")
SBATCH = ["--cpus-per-task=1", "--gpus-per-node=0", "--time=20", "--signal=B:USR1@60"]
TWO_NODES = ["--nodes=2", "--ntasks-per-node=1", *SBATCH]
ONE_NODE = ["--nodes=1", "--ntasks-per-node=2", *SBATCH]
ENDED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY")

pytestmark = pytest.mark.timeout(420)


@pytest.fixture(scope="module")
def cluster2():
    if os.environ.get("OCTO_SLURM_TESTS") != "1":
        pytest.skip("set OCTO_SLURM_TESTS=1 (root + apt, network namespaces) to start a two-node Slurm")
    try:
        slurm_cluster.start(nodes=2)
    except slurm_cluster.SlurmError as exc:
        pytest.fail(f"OCTO_SLURM_TESTS=1 but the two-node Slurm could not be started: {exc}")
    try:
        yield
    finally:
        if os.environ.get("OCTO_SLURM_KEEP") != "1":
            slurm_cluster.stop()


@pytest.fixture(scope="module")
def work(cluster2, tmp_path_factory) -> Path:
    return demo_workdir(tmp_path_factory, "two_nodes")


def _env2(work: Path, out: Path) -> dict:
    # gloo binds to the namespace's veth: its address is the node's own (slurm_cluster.NS_IFNAME)
    return _env(work, out, OCTO_OVERRIDES=OVERRIDES, GLOO_SOCKET_IFNAME=slurm_cluster.NS_IFNAME)


def _submit(work: Path, out: Path, opts: list[str]) -> str:
    res = run(["sbatch", "--parsable", f"--output={work}/slurm-%x-%j.out", *opts, "launch_slurm/stable_200b.sh"],
              timeout=60, cwd=ROOT, env=_env2(work, out))
    assert res.returncode == 0, res.stderr
    return res.stdout.strip().split(";")[0]


def _ended(job_id: str):
    info = _job(job_id)
    return info if info.get("JobState") in ENDED else None


def _observe(observed: dict) -> None:
    """One look into each namespace: the trainer workers' environment and the TCP connections."""
    for ns in slurm_cluster.NS_NODES:
        for pid in slurm_cluster.ns_pids(ns):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                env = dict(kv.split("=", 1) for kv in
                           Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0") if "=" in kv)
            except OSError:
                continue
            if b"megatron_octo.train" in cmd and "RANK" in env and "node_launch.py" not in str(cmd):
                observed["workers"].setdefault(ns, {})[env["RANK"]] = {
                    k: env.get(k) for k in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "GLOO_SOCKET_IFNAME")}
        ss = subprocess.run(["ip", "netns", "exec", ns, "ss", "-Htn", "state", "established"],
                            capture_output=True, text=True, timeout=30).stdout
        for line in ss.splitlines():
            parts = line.split()
            if len(parts) >= 4:
                # "[::ffff:10.0.0.2]:29400" (an IPv4 peer of a dual-stack socket) -> "10.0.0.2:29400"
                local, peer = (re.sub(r"^\[::ffff:([0-9.]+)\]", r"\1", a) for a in parts[-2:])
                observed["conns"].add((ns, local, peer))


def _iterations_and_losses(save: Path) -> tuple[list[int], list[float]]:
    recs = [r for r in read_metrics(save / "tensorboard") if "lm loss" in r]
    return [r["iteration"] for r in recs], [r["lm loss"] for r in recs]


@pytest.fixture(scope="module")
def two_node_run(work):
    """The uninterrupted two-node job, watched from outside while it runs."""
    out = work / "two_nodes"
    job_id = _submit(work, out, TWO_NODES)
    observed = {"workers": {}, "conns": set()}
    t_end = time.time() + 240
    info = None
    while time.time() < t_end:
        _observe(observed)
        info = _ended(job_id)
        if info:
            break
        time.sleep(0.5)
    else:
        _cancel(job_id)
        raise AssertionError(f"the two-node job did not end within 240 s; {_job(job_id)}\n{_logs(work)}")
    return out, job_id, info, observed


def test_two_node_job_runs_one_agent_per_node_over_namespace_addresses(two_node_run, work):
    out, job_id, info, observed = two_node_run
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", f"{info}\n{_logs(work)}"
    assert info["NumNodes"] == "2" and info["NumTasks"] == "2" and info["NodeList"] == "octo-n[1-2]", info
    n1, n2 = slurm_cluster.NS_NODES
    a1, a2 = slurm_cluster.node_addr(n1), slurm_cluster.node_addr(n2)
    # one worker per node: rank 0 in the head node's namespace, rank 1 in the other (DP=2 across nodes)
    workers = observed["workers"]
    assert sorted(workers) == [n1, n2] and list(workers[n1]) == ["0"] and list(workers[n2]) == ["1"], workers
    hosts = dict(reversed(line.split()) for line in (slurm_cluster.STATE / "hosts").read_text().splitlines())
    for ns in (n1, n2):
        w = next(iter(workers[ns].values()))
        assert w["WORLD_SIZE"] == "2" and w["GLOO_SOCKET_IFNAME"] == slurm_cluster.NS_IFNAME, w
        # MASTER_ADDR (published by the rendezvous) is the head node, i.e. its namespace address
        assert hosts.get(w["MASTER_ADDR"], w["MASTER_ADDR"]) == a1, (w, hosts)
    # the c10d rendezvous store (head node, the script's port) and gloo: connections between the two
    # namespace addresses, seen from octo-n2
    rdzv_port = 29400 + (int(job_id) % 1000) * 10
    conns = observed["conns"]
    assert (n2, f"{a1}:{rdzv_port}") in {(ns, peer) for ns, _, peer in conns}, sorted(conns)
    gloo = {c for c in conns if c[0] == n2 and c[1].startswith(f"{a2}:") and c[2].startswith(f"{a1}:")
            and not c[2].endswith(f":{rdzv_port}")}
    assert gloo, conns
    # nothing in the namespaces talked to anything but the namespace addresses and loopback
    allowed = (f"{a1}:", f"{a2}:", f"{slurm_cluster.NET}.1:", "127.0.0.1:", "[::1]:")
    assert all(c[1].startswith(allowed) and c[2].startswith(allowed) for c in conns), conns
    iters, losses = _iterations_and_losses(out / "stable")
    assert iters == list(range(1, STEPS + 1)), iters
    assert losses[-1] < losses[0], losses


def test_two_node_losses_equal_one_node_dp2(two_node_run, work):
    out1 = work / "one_node"
    job_id = _submit(work, out1, ONE_NODE)
    info = _wait_for(lambda: _ended(job_id), 240, "the one-node job's end", job_id, work)
    assert info["JobState"] == "COMPLETED" and info["NumNodes"] == "1" and info["NumTasks"] == "2", info
    assert _iterations_and_losses(out1 / "stable") == _iterations_and_losses(two_node_run[0] / "stable")


def test_two_node_preemption_saves_once_requeues_and_resumes(two_node_run, work):
    out = work / "preempted"
    job_id = _submit(work, out, TWO_NODES)
    save = out / "stable"

    def at_step(n):
        try:
            return max(_iterations_and_losses(save)[0], default=0) >= n
        except OSError:
            return False

    _wait_for(lambda: at_step(3), 200, "training step 3", job_id, work)
    subprocess.run(["scancel", "--batch", "--signal=USR1", job_id], check=True, timeout=30)
    _wait_for(lambda: (lambda j: j.get("Restarts") == "1" and j.get("JobState") == "PENDING")(_job(job_id)),
              150, "requeue after the signal", job_id, work)
    saved = sorted(int(p.name[5:]) for p in save.glob("iter_*"))
    assert len(saved) == 1 and 3 <= saved[0] < STEPS, saved  # saved once, at the step it stopped after
    start_requeued_now(job_id)
    info = _wait_for(lambda: _ended(job_id), 240, "the resumed job's end", job_id, work)
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", f"{info}\n{_logs(work)}"
    assert info["Restarts"] == "1" and info["NumNodes"] == "2", info
    assert sorted(int(p.name[5:]) for p in save.glob("iter_*")) == [saved[0], STEPS]
    # resumed, not restarted: every iteration logged once, losses those of the uninterrupted run
    assert _iterations_and_losses(save) == _iterations_and_losses(two_node_run[0] / "stable")
    logs = out / "logs" / f"octo-stable-{job_id}"
    assert len(list(logs.glob("restart1_task*.log"))) == 2
