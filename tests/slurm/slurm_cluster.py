"""A throwaway Slurm (Debian 12: Slurm 22.05) for tests, started without systemd: one node, or two.

    python tests/slurm/slurm_cluster.py start    # install (apt, once) + start munged, slurmctld, slurmd
    python tests/slurm/slurm_cluster.py start --nodes 2   # two nodes on this machine (below)
    python tests/slurm/slurm_cluster.py status
    python tests/slurm/slurm_cluster.py stop     # stop only what `start` started (recorded PIDs, namespaces)

Two nodes (``--nodes 2``, root): network namespaces ``octo-n1`` and ``octo-n2``, each with a veth
(``octo0`` inside) on a private bridge ``octo-br0`` (``$OCTO_SLURM_NET``, default 10.219.83: bridge .1,
nodes .2 and .3), its own hostname (a UTS namespace: slurmd and every job step it starts see
``octo-n1``/``octo-n2``) and /etc/hosts (bound over it in a private mount namespace); a
``slurmd -N octo-nK`` in each, NodeAddr= the namespace address; munged and slurmctld shared (on the
host, the controller at the bridge address). Traffic between the nodes can only use the namespace
addresses. `stop` removes exactly the namespaces and links `start` recorded.

State (PID files, daemon logs, slurmctld state, job completion log) lives in ``$OCTO_SLURM_STATE``
(default /tmp/octo-slurm). Outside that directory `start` writes only what the daemons need:
/etc/slurm/slurm.conf (with a marker line; an existing config without the marker is never
overwritten), /etc/munge/munge.key (created if absent) and /run/munge. `start` is idempotent: when
the daemons it started are still up it returns at once; when a Slurm it did not start answers
(``scontrol ping``) it uses that one and `stop` leaves it alone.

Installing needs root and apt (``apt-get install munge slurmctld slurmd slurm-client iproute2``, with a
policy-rc.d that keeps the packages' postinst from starting daemons); about a minute, once.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

STATE = Path(os.environ.get("OCTO_SLURM_STATE", "/tmp/octo-slurm"))
CONF = Path("/etc/slurm/slurm.conf")
MARKER = "# written by megatron-octo tests/slurm/slurm_cluster.py"
# two-node layout: namespaces, their hostnames = Slurm node names, the bridge, the in-namespace interface
NET = os.environ.get("OCTO_SLURM_NET", "10.219.83")
NS_NODES = ("octo-n1", "octo-n2")
BRIDGE = "octo-br0"
NS_IFNAME = "octo0"
PACKAGES = ("munge", "slurmctld", "slurmd", "slurm-client", "iproute2")  # iproute2: ip, ss (two nodes)
BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "srun", "sinfo", "scancel", "squeue", "ip", "ss")

CONF_TEMPLATE = MARKER + """
# Minimal single-node Slurm 22.05: no systemd, no cgroups, no accounting database.
ClusterName=octo-ci
SlurmctldHost={host}({ctld_addr})
AuthType=auth/munge
CredType=cred/munge
SlurmUser=slurm
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation={state}/ctld
SlurmdSpoolDir={state}/spool-%n
SlurmctldPidFile={state}/slurmctld.pidfile
SlurmdPidFile={state}/slurmd-%n.pidfile
SlurmctldLogFile={state}/slurmctld.log
SlurmdLogFile={state}/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
ReturnToService=2
# jobs may be requeued (sbatch --requeue); finished jobs stay visible to scontrol for 1 h
JobRequeue=1
MinJobAge=3600
KillWait=30
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc={state}/jobcomp.log
{nodelines}
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


class SlurmError(RuntimeError):
    pass


def _sh(cmd: list[str], timeout: float = 60, check: bool = True, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and res.returncode != 0:
        raise SlurmError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res


def installed() -> bool:
    return all(shutil.which(b) or os.path.exists(f"/usr/sbin/{b}") for b in BINARIES)


def _bin(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def install() -> None:
    """apt-get install the Slurm packages (root only); keeps postinst from starting any daemon."""
    if installed():
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SlurmError("Slurm is not installed and this is not a root Debian machine with apt-get; "
                         f"install {' '.join(PACKAGES)} first")
    STATE.mkdir(parents=True, exist_ok=True)
    policy = Path("/usr/sbin/policy-rc.d")
    made_policy = not policy.exists()
    if made_policy:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        with open(STATE / "apt.log", "w") as log:
            for cmd in (["apt-get", "update", "-qq"],
                        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]):
                rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=900).returncode
                if rc != 0:
                    raise SlurmError(f"{' '.join(cmd)} failed ({rc}); see {STATE / 'apt.log'}")
    finally:
        if made_policy:
            policy.unlink(missing_ok=True)


def _pid(name: str):
    f = STATE / f"{name}.pid"
    try:
        pid = int(f.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except OSError:
        return None
    return pid


def controller_up() -> bool:
    if not shutil.which("scontrol"):
        return False
    try:
        return "UP" in _sh(["scontrol", "ping"], timeout=15, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return False


def node_states() -> list[str]:
    try:
        return _sh(["sinfo", "-h", "-N", "-o", "%T"], timeout=15, check=False).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return []


def node_state() -> str:
    states = node_states()
    return states[0] if states else ""


def _wait(pred, timeout: float, what: str, logs=()) -> None:
    t_end = time.time() + timeout
    while time.time() < t_end:
        if pred():
            return
        time.sleep(0.25)
    tails = []
    for p in logs:
        try:
            tails.append(f"--- {p}\n" + "".join(open(p).readlines()[-30:]))
        except OSError:
            pass
    raise SlurmError(f"{what} within {timeout:.0f}s\n" + "\n".join(tails))


def _spawn(name: str, cmd: list[str], user: str | None = None) -> int:
    if user:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    out = open(STATE / f"{name}.out", "w")
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)
    (STATE / f"{name}.pid").write_text(str(proc.pid))
    return proc.pid


def layout() -> int:
    """How many nodes the cluster this tool started has (1 when none is recorded)."""
    try:
        return int((STATE / "nodes").read_text())
    except (OSError, ValueError):
        return 1


def node_addr(node: str) -> str:
    """The address of a two-node cluster's node (its namespace's veth address)."""
    return f"{NET}.{NS_NODES.index(node) + 2}"


def _slurmds(nodes: int) -> list[str]:
    return ["slurmd"] if nodes == 1 else [f"slurmd-{n}" for n in NS_NODES]


def _ours_running(nodes: int) -> bool:
    return layout() == nodes and all(_pid(d) for d in ("munged", "slurmctld", *_slurmds(nodes)))


def _any_ours() -> bool:
    return any(_pid(d) for d in ("munged", "slurmctld", "slurmd", *_slurmds(2)))


# ---- two-node layout: namespaces on a private bridge ----------------------------------------------
def _net_record() -> list[list[str]]:
    try:
        return json.loads((STATE / "net.json").read_text())
    except (OSError, ValueError):
        return []


def _net_note(kind: str, name: str) -> None:
    rec = _net_record()
    rec.append([kind, name])
    (STATE / "net.json").write_text(json.dumps(rec))


def _net_up() -> None:
    """Bridge + two namespaces (veth, address, hostname file); every object made is recorded first."""
    existing_ns = _sh(["ip", "netns", "list"]).stdout.split()
    for ns in NS_NODES:
        if ns in existing_ns:
            raise SlurmError(f"network namespace {ns} exists and was not made by this tool; not touching it")
    if _sh(["ip", "link", "show", BRIDGE], check=False).returncode == 0:
        raise SlurmError(f"interface {BRIDGE} exists and was not made by this tool; not touching it")
    if f" {NET}." in _sh(["ip", "-4", "-o", "addr"]).stdout:
        raise SlurmError(f"{NET}.0/24 is already in use here: set OCTO_SLURM_NET to a free /24 prefix")
    _net_note("link", BRIDGE)
    _sh(["ip", "link", "add", BRIDGE, "type", "bridge"])
    _sh(["ip", "addr", "add", f"{NET}.1/24", "dev", BRIDGE])
    _sh(["ip", "link", "set", BRIDGE, "up"])
    hosts = "127.0.0.1 localhost\n" + "".join(f"{node_addr(n)} {n}\n" for n in NS_NODES) + \
        f"{NET}.1 {socket.gethostname().split('.')[0]}\n"
    for i, ns in enumerate(NS_NODES, start=1):
        veth = f"octo-h{i}"
        _net_note("netns", ns)
        _sh(["ip", "netns", "add", ns])
        _net_note("link", veth)
        _sh(["ip", "link", "add", veth, "type", "veth", "peer", "name", NS_IFNAME, "netns", ns])
        _sh(["ip", "link", "set", veth, "master", BRIDGE, "up"])
        _sh(["ip", "-n", ns, "addr", "add", f"{node_addr(ns)}/24", "dev", NS_IFNAME])
        _sh(["ip", "-n", ns, "link", "set", NS_IFNAME, "up"])
        _sh(["ip", "-n", ns, "link", "set", "lo", "up"])
    (STATE / "hosts").write_text(hosts)  # bound over /etc/hosts in the slurmds' own mount namespaces
    # bridged frames may go through iptables (br_netfilter); the two nodes must reach each other
    if shutil.which("ping"):
        ns, peer = NS_NODES
        _wait(lambda: _sh(["ip", "netns", "exec", ns, "ping", "-c1", "-W1", node_addr(peer)],
                          check=False).returncode == 0, 10, f"{ns} cannot reach {peer} over {BRIDGE}")


def ns_pids(ns: str) -> list[int]:
    res = _sh(["ip", "netns", "pids", ns], check=False)
    return [int(x) for x in res.stdout.split()] if res.returncode == 0 else []


def _net_down() -> list[str]:
    """Undo what `_net_up` recorded (newest first); processes still inside our namespaces are ours."""
    removed = []
    for kind, name in reversed(_net_record()):
        if kind == "netns":
            for pid in ns_pids(name):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            _sh(["ip", "netns", "del", name], check=False)
        elif kind == "link":
            _sh(["ip", "link", "del", name], check=False)
        removed.append(name)
    (STATE / "net.json").unlink(missing_ok=True)
    return removed


def start(nodes: int = 1) -> str:
    """Start (or find) a Slurm of `nodes` nodes (1, or 2 in network namespaces); 'started', 'running'
    or 'external' (a Slurm this tool did not start answers: used as it is, single-node only)."""
    if nodes not in (1, 2):
        raise SlurmError(f"nodes={nodes}: 1 or 2")
    if _ours_running(nodes) and controller_up() and node_states() and \
            all(s in ("idle", "mixed", "allocated") for s in node_states()):
        return "running"
    if not _any_ours() and controller_up():
        if nodes == 1:
            return "external"
        raise SlurmError("a Slurm this tool did not start is running; the two-node cluster needs its own")
    stop()  # a half-started cluster of ours, or the other layout: clean it up first
    install()
    if os.geteuid() != 0:
        raise SlurmError("starting Slurm daemons needs root")
    STATE.mkdir(parents=True, exist_ok=True)
    (STATE / "nodes").write_text(str(nodes))
    try:
        _start(nodes)
    except BaseException:
        stop()
        raise
    return "started"


def _start(nodes: int) -> None:
    # munge: key, runtime dirs, daemon in the foreground as user munge
    key = Path("/etc/munge/munge.key")
    if not key.exists() or key.stat().st_size == 0:
        key.write_bytes(os.urandom(1024))
    shutil.chown(key, "munge", "munge")
    key.chmod(0o400)
    for d, mode in (("/run/munge", 0o755), ("/var/lib/munge", 0o700), ("/var/log/munge", 0o700)):
        os.makedirs(d, exist_ok=True)
        shutil.chown(d, "munge", "munge")
        os.chmod(d, mode)
    _spawn("munged", [_bin("munged"), "--foreground"], user="munge")

    def munge_ok():
        enc = subprocess.run(["munge", "-n"], capture_output=True)
        return enc.returncode == 0 and subprocess.run(["unmunge"], input=enc.stdout,
                                                      capture_output=True).returncode == 0
    _wait(munge_ok, 15, "munged did not answer", [STATE / "munged.out"])

    # slurm.conf from the real hardware (slurmd -C)
    if CONF.exists() and MARKER not in CONF.read_text():
        raise SlurmError(f"{CONF} exists and was not written by this tool; refusing to overwrite it")
    hw = _sh([_bin("slurmd"), "-C"]).stdout.splitlines()[0]
    host = socket.gethostname().split(".")[0]
    if nodes == 1:
        ctld_addr, nodelines = "127.0.0.1", f"{hw} NodeAddr=127.0.0.1 State=UNKNOWN"
    else:
        _net_up()
        ctld_addr = f"{NET}.1"
        hw_rest = hw.split(None, 1)[1]  # drop "NodeName=<this host>"
        nodelines = "\n".join(f"NodeName={n} NodeHostname={n} NodeAddr={node_addr(n)} {hw_rest} State=UNKNOWN"
                              for n in NS_NODES)
    CONF.parent.mkdir(parents=True, exist_ok=True)
    CONF.write_text(CONF_TEMPLATE.format(host=host, state=STATE, nodelines=nodelines, ctld_addr=ctld_addr))
    (STATE / "ctld").mkdir(exist_ok=True)
    shutil.chown(STATE, "slurm", "slurm")
    shutil.chown(STATE / "ctld", "slurm", "slurm")
    STATE.chmod(0o755)

    # daemons in the foreground (-D), so the recorded PID is the daemon's own; -c: fresh job state
    _spawn("slurmctld", [_bin("slurmctld"), "-D", "-c"])
    _wait(controller_up, 30, "slurmctld did not answer", [STATE / "slurmctld.out", STATE / "slurmctld.log"])
    if nodes == 1:
        (STATE / f"spool-{host}").mkdir(exist_ok=True)
        _spawn("slurmd", [_bin("slurmd"), "-D"])
    else:
        for n in NS_NODES:
            (STATE / f"spool-{n}").mkdir(exist_ok=True)
            # nsenter: the node's network namespace (not `ip netns exec`: it remounts /sys without the
            # cgroup mount slurmd needs); unshare: own hostname (UTS) and a private mount namespace in
            # which the cluster's hosts file covers /etc/hosts. Each exec replaces the process, so the
            # recorded PID is slurmd's.
            _spawn(f"slurmd-{n}", ["nsenter", f"--net=/run/netns/{n}", "unshare", "--uts", "--mount", "--",
                                   "sh", "-c", f"hostname {n} && mount --bind {STATE / 'hosts'} /etc/hosts && "
                                   f"exec {_bin('slurmd')} -D -N {n}"])
    logs = [STATE / f"{d}.out" for d in _slurmds(nodes)] + [STATE / "slurmctld.log"]
    _wait(lambda: (lambda s: len(s) == nodes and all(x == "idle" for x in s))(node_states()), 45,
          f"the {nodes} node(s) did not become idle", logs)


def stop() -> list[str]:
    """Stop only the daemons recorded in STATE (cancelling the jobs of that cluster first), then remove
    the namespaces, bridge and files the two-node layout recorded."""
    stopped = []
    if _pid("slurmctld") and controller_up():
        ids = _sh(["squeue", "-h", "-o", "%i"], check=False).stdout.split()
        if ids:
            _sh(["scancel", "--full", *ids], check=False)
    names = ("slurmd", *_slurmds(2), "slurmctld", "munged")
    pids = {name: _pid(name) for name in names}
    for name, pid in pids.items():
        if pid:
            os.kill(pid, signal.SIGTERM)
            stopped.append(f"{name} ({pid})")

    def alive(pid):
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False

    # One 10-second grace period for all of them (they exit independently), then SIGKILL.
    t_end = time.time() + 10
    while time.time() < t_end and any(pid and alive(pid) for pid in pids.values()):
        time.sleep(0.2)
    for name, pid in pids.items():
        if pid and alive(pid):
            os.kill(pid, signal.SIGKILL)
        (STATE / f"{name}.pid").unlink(missing_ok=True)
    stopped += [f"{n} (removed)" for n in _net_down()]
    (STATE / "nodes").unlink(missing_ok=True)
    return stopped


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("start", "stop", "status", "install"))
    p.add_argument("--nodes", type=int, default=1, choices=(1, 2),
                   help="start: 1 (this host) or 2 (two network namespaces on this host)")
    args = p.parse_args(argv)
    try:
        if args.action == "install":
            install()
            print("installed")
        elif args.action == "start":
            t0 = time.time()
            how = start(args.nodes)
            names = ("munged", "slurmctld", *_slurmds(layout()))
            pids = " ".join(f"{d}={_pid(d)}" for d in names) if how != "external" else "not ours"
            print(f"slurm {how} in {time.time() - t0:.1f}s ({pids}); state in {STATE}")
            print(_sh(["sinfo"], check=False).stdout, end="")
        elif args.action == "stop":
            print("stopped: " + (", ".join(stop()) or "nothing of ours was running"))
        else:
            up = controller_up()
            print(f"controller {'up' if up else 'down'}; node(s) {' '.join(node_states()) or '-'}; "
                  + " ".join(f"{d}={_pid(d)}" for d in ("munged", "slurmctld", *_slurmds(layout()))))
            return 0 if up else 1
    except SlurmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
