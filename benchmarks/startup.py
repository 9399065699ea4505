#!/usr/bin/env python
"""Start-up cost: what an entry point pays before its first step, with and without the deferred
``torch.compile`` decorators of ``megatron_octo/runtime/lazy_jit.py``.

    python benchmarks/startup.py [--rounds 5] [--quick] [--json]

Each case runs in a fresh interpreter, "before" and "after" interleaved ``--rounds`` times (the
machine may be shared), wall clock from process start to exit; medians and after/before ratios are
printed for wall time and for the child's CPU time (user + system, which load on a shared machine
inflates far less), with whether ``torch._dynamo`` was imported. "Before" takes the hook out
(``lazy_jit.uninstall()``) before the entry point runs, so megatron keeps its import-time
``torch.compile`` exactly as shipped; "after" is the entry point as users run it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Each case: the statements of its "after" interpreter; "before" prepends ``import megatron.core.jit``.
CASES = {
    "import megatron.core": "import megatron_octo, megatron.core",
    "train --help": "import runpy; sys.argv = ['train', '--help']; runpy.run_module('megatron_octo.train', run_name='__main__')",
    "trainer import": "import megatron_octo.training.trainer, megatron_octo.rl.trainer",
    "eval --help": "import runpy; sys.argv = ['eval', '--help']; runpy.run_module('megatron_octo.eval', run_name='__main__')",
}
REPORT = ("import atexit, sys; "
          "atexit.register(lambda: sys.stderr.write(f\"\\nDYNAMO={'torch._dynamo' in sys.modules}\\n\"))")


def one(code: str) -> tuple[float, float, bool]:
    """Wall seconds, CPU seconds (user + system of the child: what load on a shared machine inflates
    least) and whether dynamo was imported."""
    env = dict(os.environ, PYTHONWARNINGS="ignore", PYTHONPATH=ROOT)
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", f"{REPORT}; {code}"], cwd=ROOT, env=env, timeout=300,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    if proc.returncode != 0 or "DYNAMO=" not in proc.stderr:
        raise SystemExit(f"{code!r} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return seconds, cpu, proc.stderr.rsplit("DYNAMO=", 1)[1].strip() == "True"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="one round")
    p.add_argument("--json", action="store_true", help="also print the figures as one JSON line (run_all.py)")
    args = p.parse_args(argv)
    rounds = 1 if args.quick else args.rounds
    figures = {}
    print(f"{'case':<16} {'wall before':>11} {'after':>6} {'ratio':>6} {'CPU before':>11} {'after':>6} {'ratio':>6}"
          "  dynamo imported (before/after)")
    for name, code in CASES.items():
        before, after = [], []
        for _ in range(rounds):
            before.append(one("import sys; from megatron_octo.runtime import lazy_jit; lazy_jit.uninstall(); " + code))
            after.append(one("import sys; " + code))
        wb, wa = (statistics.median(r[0] for r in rs) for rs in (before, after))
        cb, ca = (statistics.median(r[1] for r in rs) for rs in (before, after))
        print(f"{name:<16} {wb:11.2f} {wa:6.2f} {wa / wb:6.2f} {cb:11.2f} {ca:6.2f} {ca / cb:6.2f}"
              f"  {before[-1][2]}/{after[-1][2]}")
        figures[name] = {"wall_before_s": round(wb, 3), "wall_after_s": round(wa, 3), "cpu_before_s": round(cb, 3),
                         "cpu_after_s": round(ca, 3), "cpu_ratio": round(ca / cb, 3),
                         "dynamo_before": before[-1][2], "dynamo_after": after[-1][2]}
    if args.json:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
