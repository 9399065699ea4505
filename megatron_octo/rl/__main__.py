"""RL entry point (GRPO, or PPO with a critic: rl.algorithm=ppo, recipes/tiny/rl_ppo.yaml):

    torchrun --nproc-per-node N -m megatron_octo.rl --config recipes/tiny/rl_grpo.yaml [a.b=c ...]
    python -m megatron_octo.rl --config RECIPE --print-config [a.b=c ...]   # the merged config, then exit

Starts from checkpoint.init_from (a stable, decay or converted checkpoint; weights only) or resumes
checkpoint.save. Exit codes: 0 done, 2 bad config/input, 3 stopped on non-finite rollout log-probs
(rl.nan_policy=stop), 75 checkpoint saved after SIGTERM/SIGUSR1 (requeue and it resumes).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from megatron_octo import config as cfgmod
from megatron_octo.runtime import distributed as rt
from megatron_octo.checkpoint.save_load import CheckpointError


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m megatron_octo.rl", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", "-c", required=True)
    p.add_argument("--print-config", action="store_true", help="print the merged config and exit")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    warnings.filterwarnings("ignore")
    from megatron_octo.rl.trainer import RLTrainer  # lazy: megatron-core loads after the environment is set

    try:
        cfg = cfgmod.load(args.config, args.overrides)
        if args.print_config:  # as the training CLI: the merged config, nothing started
            print(cfgmod.to_yaml(cfg))
            return 0
        trainer = RLTrainer(cfg)
        trainer.setup()
        trainer.train()
        return trainer.exit_code
    except (cfgmod.ConfigError, CheckpointError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        try:
            rt.shutdown()
        except Exception:  # a peer may be gone already; the exit code says what happened
            pass


if __name__ == "__main__":
    sys.exit(main())
