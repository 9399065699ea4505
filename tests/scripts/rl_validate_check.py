"""RLTrainer.validate() at this process group's layout (set-up as ``python -m megatron_octo.rl`` does):
tests/rl_cases.rl_validation (the DP=1 run of tests/distributed/test_rl_validation_dp.py calls it
in-process), printing on rank 0 ``RESULT {json}``: the gathered greedy responses, the val/* metrics, and how
many validation prompts each rank's generator generated itself.

Usage: [torchrun --nproc-per-node 2] python tests/scripts/rl_validate_check.py --config RECIPE [a.b=c ...]"""
import json
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
warnings.filterwarnings("ignore")

import torch.distributed as dist  # noqa: E402

sys.path.append(str(Path(__file__).resolve().parents[2]))  # the checkout, whose tests/ is a package
from megatron_octo.runtime import distributed as rt  # noqa: E402
from tests.rl_cases import rl_validation  # noqa: E402


def main():
    result = rl_validation(sys.argv[2], sys.argv[3:])
    if dist.get_rank() == 0:
        print("RESULT " + json.dumps(result), flush=True)
    rt.shutdown()


if __name__ == "__main__":  # not in the processes multiprocessing spawns (they re-import this file)
    main()
