"""A throwaway single-node Slurm (Debian 12: Slurm 22.05) for tests, started without systemd.

    python tests/slurm/slurm_cluster.py start    # install (apt, once) + start munged, slurmctld, slurmd
    python tests/slurm/slurm_cluster.py status
    python tests/slurm/slurm_cluster.py stop     # stop only the daemons `start` started (recorded PIDs)

State (PID files, daemon logs, slurmctld state, job completion log) lives in ``$OCTO_SLURM_STATE``
(default /tmp/octo-slurm). Outside that directory `start` writes only what the daemons need:
/etc/slurm/slurm.conf (with a marker line; an existing config without the marker is never
overwritten), /etc/munge/munge.key (created if absent) and /run/munge. `start` is idempotent: when
the daemons it started are still up it returns at once; when a Slurm it did not start answers
(``scontrol ping``) it uses that one and `stop` leaves it alone.

Installing needs root and apt (``apt-get install munge slurmctld slurmd slurm-client``, with a
policy-rc.d that keeps the packages' postinst from starting daemons); about a minute, once.
"""

from __future__ import annotations

import argparse
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
DAEMONS = ("munged", "slurmctld", "slurmd")
PACKAGES = ("munge", "slurmctld", "slurmd", "slurm-client")
BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "srun", "sinfo", "scancel", "squeue")

CONF_TEMPLATE = MARKER + """
# Minimal single-node Slurm 22.05: no systemd, no cgroups, no accounting database.
ClusterName=octo-ci
SlurmctldHost={host}(127.0.0.1)
AuthType=auth/munge
CredType=cred/munge
SlurmUser=slurm
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation={state}/ctld
SlurmdSpoolDir={state}/spool
SlurmctldPidFile={state}/slurmctld.pidfile
SlurmdPidFile={state}/slurmd.pidfile
SlurmctldLogFile={state}/slurmctld.log
SlurmdLogFile={state}/slurmd.log
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
{nodeline} NodeAddr=127.0.0.1 State=UNKNOWN
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


def node_state() -> str:
    try:
        return _sh(["sinfo", "-h", "-N", "-o", "%T"], timeout=15, check=False).stdout.strip().split("\n")[0]
    except (OSError, subprocess.SubprocessError):
        return ""


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


def _ours_running() -> bool:
    return all(_pid(d) for d in DAEMONS)


def start() -> str:
    """Start (or find) a single-node Slurm; returns 'started', 'running' or 'external'."""
    if _ours_running() and controller_up() and node_state() in ("idle", "mixed", "allocated"):
        return "running"
    if not any(_pid(d) for d in DAEMONS) and controller_up():
        return "external"
    stop()  # a half-started cluster of ours: clean it up first
    install()
    if os.geteuid() != 0:
        raise SlurmError("starting Slurm daemons needs root")
    STATE.mkdir(parents=True, exist_ok=True)

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
    nodeline = _sh([_bin("slurmd"), "-C"]).stdout.splitlines()[0]
    host = socket.gethostname().split(".")[0]
    CONF.parent.mkdir(parents=True, exist_ok=True)
    CONF.write_text(CONF_TEMPLATE.format(host=host, state=STATE, nodeline=nodeline))
    for sub in ("ctld", "spool"):
        (STATE / sub).mkdir(exist_ok=True)
    shutil.chown(STATE, "slurm", "slurm")
    shutil.chown(STATE / "ctld", "slurm", "slurm")
    STATE.chmod(0o755)

    # daemons in the foreground (-D), so the recorded PID is the daemon's own; -c: fresh job state
    _spawn("slurmctld", [_bin("slurmctld"), "-D", "-c"])
    _wait(controller_up, 30, "slurmctld did not answer", [STATE / "slurmctld.out", STATE / "slurmctld.log"])
    _spawn("slurmd", [_bin("slurmd"), "-D"])
    _wait(lambda: node_state() == "idle", 45, "the node did not become idle",
          [STATE / "slurmd.out", STATE / "slurmd.log", STATE / "slurmctld.log"])
    return "started"


def stop() -> list[str]:
    """Stop only the daemons recorded in STATE (cancelling the jobs of that cluster first)."""
    stopped = []
    if _pid("slurmctld") and controller_up():
        ids = _sh(["squeue", "-h", "-o", "%i"], check=False).stdout.split()
        if ids:
            _sh(["scancel", "--full", *ids], check=False)
    pids = {name: _pid(name) for name in ("slurmd", "slurmctld", "munged")}
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

    # One 10-second grace period for all three (they exit independently), then SIGKILL.
    t_end = time.time() + 10
    while time.time() < t_end and any(pid and alive(pid) for pid in pids.values()):
        time.sleep(0.2)
    for name, pid in pids.items():
        if pid and alive(pid):
            os.kill(pid, signal.SIGKILL)
        (STATE / f"{name}.pid").unlink(missing_ok=True)
    return stopped


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("start", "stop", "status", "install"))
    args = p.parse_args(argv)
    try:
        if args.action == "install":
            install()
            print("installed")
        elif args.action == "start":
            t0 = time.time()
            how = start()
            pids = " ".join(f"{d}={_pid(d)}" for d in DAEMONS) if how != "external" else "not ours"
            print(f"slurm {how} in {time.time() - t0:.1f}s ({pids}); state in {STATE}")
            print(_sh(["sinfo"], check=False).stdout, end="")
        elif args.action == "stop":
            print("stopped: " + (", ".join(stop()) or "nothing of ours was running"))
        else:
            up = controller_up()
            print(f"controller {'up' if up else 'down'}; node {node_state() or '-'}; "
                  + " ".join(f"{d}={_pid(d)}" for d in DAEMONS))
            return 0 if up else 1
    except SlurmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
