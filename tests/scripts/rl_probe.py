"""python -m megatron_octo.rl, in this process, with probes the tests read (each on when its variable is set):

* ``OCTO_TEST_GENERATE_LOG``: one JSON line per ``Generator.generate`` call (an RL rollout engine batch or a
  validation set), the generated tokens of each sample, and the bytes of the static KV buffer it left;
* ``OCTO_TEST_KV_LOG``: one JSON line per actor update (``RLTrainer._update``): the static context's KV
  entries and bytes at that moment, and how many of the last generate's KV tensors are still alive;
* ``OCTO_TEST_NO_KV_RELEASE=1``: the trainer's KV release made a no-op (the comparison run).

Usage: python tests/scripts/rl_probe.py --config RECIPE [a.b=c ...]"""
import gc
import json
import os
import sys
import weakref

from megatron_octo import generation
from megatron_octo.rl import __main__ as rl_main, trainer

GEN_LOG, KV_LOG = os.environ.get("OCTO_TEST_GENERATE_LOG"), os.environ.get("OCTO_TEST_KV_LOG")
last_kv = []  # weak references to the KV tensors the last generate call used


def kv_tensors(gen):
    return [t for kv in gen.context.key_value_memory_dict.values() for t in kv]


def append(path, record):
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


generate = generation.Generator.generate


def probed_generate(self, prompts, sc):
    out = generate(self, prompts, sc)
    kv = kv_tensors(self)
    last_kv[:] = [weakref.ref(t) for t in kv]
    if GEN_LOG:
        append(GEN_LOG, {"tokens": [[g.tokens for g in per] for per in out],
                         "kv_bytes": sum(t.numel() * t.element_size() for t in kv)})
    return out


update = trainer.RLTrainer._update


def probed_update(self, batch):
    gc.collect()
    kv = kv_tensors(self.generator)
    append(KV_LOG, {"kv_entries": len(self.generator.context.key_value_memory_dict),
                    "kv_bytes": sum(t.numel() * t.element_size() for t in kv),
                    "rollout_kv_alive": sum(r() is not None for r in last_kv), "rollout_kv": len(last_kv)})
    del kv
    return update(self, batch)


if __name__ == "__main__":  # not in the processes multiprocessing spawns (they re-import this file)
    generation.Generator.generate = probed_generate
    if KV_LOG:
        trainer.RLTrainer._update = probed_update
    if os.environ.get("OCTO_TEST_NO_KV_RELEASE") == "1":
        trainer.release_kv_cache = lambda generator: None
    sys.exit(rl_main.main(sys.argv[1:]))
