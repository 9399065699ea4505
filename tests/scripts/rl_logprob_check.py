"""Rollout log-probs (megatron inference engine paths) vs the training forward's log-probs, and the
vocab-parallel log-prob/entropy helpers vs a dense computation, at the process group's TP: megatron set up
at TP=int(argv[1]), seed 11, then tests/rl_cases.rollout_logprobs (what it checks is described there; the
single-process run of tests/distributed/test_rl_logprobs.py calls it in-process). Prints ``RESULT {json}``
on rank 0.

Usage: torchrun --nproc-per-node TP tests/scripts/rl_logprob_check.py TP"""
import json
import sys
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
import torch  # noqa: E402

sys.path.append(str(Path(__file__).resolve().parents[2]))  # the checkout, whose tests/ is a package
from tests.rl_cases import rollout_logprobs  # noqa: E402


def main():
    from megatron_octo.runtime import distributed as rt

    tp = int(sys.argv[1])
    rt.initialize(tp, 1, seed=11)
    result = rollout_logprobs(tp)
    if torch.distributed.get_rank() == 0:  # the test compares these (tests/distributed/test_rl_logprobs.py)
        print("RESULT " + json.dumps(result))
    rt.shutdown()


if __name__ == "__main__":
    main()
