"""RLTrainer.validate() at this process group's layout (set-up as ``python -m megatron_octo.rl`` does), printing
on rank 0 ``RESULT {json}``: the gathered greedy responses, the val/* metrics, and how many validation
prompts each rank's generator generated itself.

Usage: [torchrun --nproc-per-node 2] python tests/scripts/rl_validate_check.py --config RECIPE [a.b=c ...]"""
import json
import os
import sys
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")
warnings.filterwarnings("ignore")

import torch.distributed as dist  # noqa: E402

from megatron_octo import config as cfgmod, generation  # noqa: E402
from megatron_octo.rl import trainer  # noqa: E402
from megatron_octo.runtime import distributed as rt  # noqa: E402

own = []  # prompts this rank generated, per generate call
generate = generation.Generator.generate


def counted(self, prompts, sc):
    own.append(len(prompts))
    return generate(self, prompts, sc)


gathered = []  # per validation set: (text, tokens) of every prompt, as every rank got them back
sharded = trainer.generate_sharded


def keep(gen, prompts, sc):
    out = sharded(gen, prompts, sc)
    gathered.append([[(g.text, g.tokens) for g in per] for per in out])
    return out


def main():
    generation.Generator.generate = counted
    trainer.generate_sharded = keep

    cfg = cfgmod.load(sys.argv[2], sys.argv[3:])
    t = trainer.RLTrainer(cfg)
    t.setup()
    metrics = t.validate()
    counts = [None] * dist.get_world_size()
    dist.all_gather_object(counts, sum(own))
    every = [None] * dist.get_world_size()
    dist.all_gather_object(every, gathered)
    if dist.get_rank() == 0:
        print("RESULT " + json.dumps({"metrics": metrics, "responses": gathered, "generated_per_rank": counts,
                                      "ranks_agree": all(e == gathered for e in every)}), flush=True)
    rt.shutdown()


if __name__ == "__main__":  # not in the processes multiprocessing spawns (they re-import this file)
    main()
