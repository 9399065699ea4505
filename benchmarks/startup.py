#!/usr/bin/env python
"""Start-up cost: what an entry point pays before its first step, with and without the deferred
``torch.compile`` decorators of ``megatron_octo/runtime/lazy_jit.py``.

    python benchmarks/startup.py [--rounds 5]

Each case runs in a fresh interpreter, "before" and "after" interleaved ``--rounds`` times (the
machine may be shared), wall clock from process start to exit; medians and after/before ratios are
printed, with whether ``torch._dynamo`` was imported. "Before" imports ``megatron.core.jit`` ahead of
our package, so megatron keeps its import-time ``torch.compile`` exactly as shipped (the hook then
declines to install); "after" is the entry point as users run it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Each case: the statements of its "after" interpreter; "before" prepends ``import megatron.core.jit``.
CASES = {
    "import megatron.core": "import megatron_octo, megatron.core",
    "train --help": "import runpy; sys.argv = ['train', '--help']; runpy.run_module('megatron_octo.train', run_name='__main__')",
    "eval --help": "import runpy; sys.argv = ['eval', '--help']; runpy.run_module('megatron_octo.eval', run_name='__main__')",
}
REPORT = ("import atexit, sys; "
          "atexit.register(lambda: sys.stderr.write(f\"\\nDYNAMO={'torch._dynamo' in sys.modules}\\n\"))")


def one(code: str) -> tuple[float, bool]:
    env = dict(os.environ, PYTHONWARNINGS="ignore", PYTHONPATH=ROOT)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", f"{REPORT}; {code}"], cwd=ROOT, env=env, timeout=300,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0 or "DYNAMO=" not in proc.stderr:
        raise SystemExit(f"{code!r} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return seconds, proc.stderr.rsplit("DYNAMO=", 1)[1].strip() == "True"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    print(f"{'case':<22} {'before s':>9} {'after s':>9} {'after/before':>13}  dynamo imported (before/after)")
    for name, code in CASES.items():
        before, after = [], []
        flags = (None, None)
        for _ in range(args.rounds):
            b, fb = one("import sys; import megatron.core.jit; " + code)
            a, fa = one("import sys; " + code)
            before.append(b)
            after.append(a)
            flags = (fb, fa)
        mb, ma = statistics.median(before), statistics.median(after)
        print(f"{name:<22} {mb:9.2f} {ma:9.2f} {ma / mb:13.2f}  {flags[0]}/{flags[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
