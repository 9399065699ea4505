"""Rollouts and log-probs of a checkpoint at the process group's pipeline size: megatron set up at
PP=int(argv[1]), seed 11, then tests/rl_cases.pipeline_rollout_logprobs (the sampled tokens, the engine's
log-probs and the training forward's log-probs and entropy; the PP=1 run of tests/distributed/
test_rl_logprobs.py calls it in-process). Every rank writes ``<out_dir>/result-<rank>.json`` (files, not
stdout: two ranks' lines interleave on torchrun's shared pipe); the test compares PP=2 with PP=1 and the
ranks with each other.

Usage: torchrun --nproc-per-node PP tests/scripts/rl_pp_logprob_check.py PP CKPT_DIR OUT_DIR"""
import json
import os
import sys
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")

sys.path.append(str(Path(__file__).resolve().parents[2]))  # the checkout, whose tests/ is a package
from tests.rl_cases import pipeline_rollout_logprobs  # noqa: E402


def main():
    from megatron_octo.runtime import distributed as rt

    pp, ckpt_dir, out_dir = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    rt.install_device_mode()
    rt.initialize(1, pp, seed=11)
    result = pipeline_rollout_logprobs(pp, ckpt_dir)
    path = os.path.join(out_dir, f"result-{result['rank']}.json")
    with open(path + ".tmp", "w") as f:
        f.write(json.dumps(result))
    os.replace(path + ".tmp", path)
    rt.shutdown()


if __name__ == "__main__":
    main()
