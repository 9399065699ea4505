"""Mid-training entry point (stable or decay stage).

    torchrun --nproc-per-node N -m megatron_octo.train --config recipes/tiny/stable.yaml [a.b=c ...]

Exit codes: 0 done; 2 bad config/input, or a corrupt/unsafe checkpoint (nothing trained); 3 stopped on
a non-finite loss/grad or a grad-norm spike (train.nan_policy=stop; saved first); 4 a checkpoint could
not be written (disk full, I/O error: the previous checkpoint and the tracker are unchanged); 75 saved
after SIGTERM/SIGUSR1 (requeue and it resumes).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from megatron_octo import config as cfgmod
from megatron_octo.runtime import distributed as rt
from megatron_octo.checkpoint.save_load import CheckpointError
from megatron_octo.checkpoint.integrity import CheckpointSaveError


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m megatron_octo.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", "-c", required=True, help="YAML recipe (e.g. recipes/tiny/stable.yaml)")
    p.add_argument("--print-config", action="store_true", help="print the merged config and exit")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.tokens=1e6 parallel.tp=2")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    warnings.filterwarnings("ignore", module="megatron")
    warnings.filterwarnings("ignore", category=UserWarning, message=".*(Apex|Transformer Engine|TE).*")

    try:
        cfg = cfgmod.load(args.config, args.overrides)
    except cfgmod.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        print(cfgmod.to_yaml(cfg))
        return 0

    # lazy: imports megatron-core, which config errors and --print-config do not need
    from megatron_octo.training.trainer import EXIT_SAVE_FAILED, Trainer

    trainer = Trainer(cfg)
    try:
        trainer.setup()
        result = trainer.train()
    except CheckpointSaveError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_SAVE_FAILED
    except (cfgmod.ConfigError, CheckpointError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        rt_shutdown_quietly(rt)
    return result.exit_code


def rt_shutdown_quietly(rt) -> None:
    try:
        rt.shutdown()
    except Exception:  # a peer may already be gone; the exit code says what happened
        pass


if __name__ == "__main__":
    sys.exit(main())
