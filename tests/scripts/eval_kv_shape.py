"""python -m megatron_octo.eval, in this process, with the generator it builds kept: after the run, prints the
shapes of the static engine's KV buffers (megatron's StaticInferenceContext.key_value_memory_dict) as JSON.

Usage: python tests/scripts/eval_kv_shape.py <eval arguments>"""
import json
import sys

from megatron_octo.eval import runner

made = []
build = runner.make_generator


def keep(*args, **kwargs):
    made.append(build(*args, **kwargs))
    return made[-1]


runner.make_generator = keep
rc = runner.main(sys.argv[1:])
memory = made[0].context.key_value_memory_dict if made else {}
buffers = [t for kv in memory.values() for t in kv]
print(json.dumps({"rc": rc, "max_sequence_length": made[0].max_sequence_length if made else None,
                  "shapes": sorted({tuple(t.shape) for t in buffers}), "buffers": len(buffers),
                  "batch_first": bool(memory) and all(isinstance(tag, tuple) for tag in memory)}))
