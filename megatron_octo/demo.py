"""`make demo`: the OctoThinker mid-training stages in miniature on the built-in data.

    python -m megatron_octo.demo --out runs/demo [--nproc 2]

Stages, each its own process as on a cluster: tokenize the bundled corpus and write the mixture,
the stable stage, then the decay branches from the one stable checkpoint. Every stage writes its
checkpoints and TensorBoard events under ``--out``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train_cmd(nproc: int, recipe: str, overrides: list[str]) -> list[str]:
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
                if nproc > 1 else [sys.executable])
    return [*launcher, "-m", "megatron_octo.train", "--config", recipe, *overrides]


def stages(out: str, nproc: int, branches: list[str]) -> list[tuple[str, list[str]]]:
    data = os.path.join(out, "data")
    common = [f"data.mixture={data}/mixture.yaml"]
    plan = [
        ("tokenize the built-in corpus", [sys.executable, "-m", "tokenization.build_demo_data", "--out", data]),
        ("stable stage", _train_cmd(nproc, "recipes/tiny/stable.yaml",
                                    [*common, f"checkpoint.save={out}/stable"])),
    ]
    for b in branches:
        plan.append((f"decay branch '{b}'", _train_cmd(nproc, f"recipes/tiny/decay_{b}.yaml", [
            *common, f"checkpoint.save={out}/decay_{b}", f"checkpoint.init_from={out}/stable"])))
    return plan


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m megatron_octo.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/demo", help="run directory (default runs/demo)")
    p.add_argument("--nproc", type=int, default=2, help="processes per stage (data parallel on CPU)")
    p.add_argument("--branches", default="long,short,hybrid", help="decay branches to run")
    args = p.parse_args(argv)
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"), PYTHONWARNINGS="ignore")
    plan = stages(out, args.nproc, [b for b in args.branches.split(",") if b])
    t0 = time.perf_counter()
    for i, (name, cmd) in enumerate(plan, 1):
        print(f"\n=== [{i}/{len(plan)}] {name} (elapsed {time.perf_counter() - t0:.0f}s)", flush=True)
        log_path = os.path.join(out, f"stage{i}.log")
        with open(log_path, "w") as log:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
            for line in proc.stdout:
                log.write(line)
                if line.startswith((" iteration", " validation", "[megatron-octo]", "{", "wrote", "  ")) or i == 1:
                    print(line.rstrip(), flush=True)
            rc = proc.wait()
        if rc != 0:
            print(f"stage '{name}' failed with exit code {rc}; its log: {log_path}", file=sys.stderr)
            with open(log_path) as f:
                sys.stderr.write("".join(f.readlines()[-25:]))
            return rc
    print(f"\nDone in {time.perf_counter() - t0:.0f}s. Checkpoints and logs under {out}\n"
          f"TensorBoard: tensorboard --logdir {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
