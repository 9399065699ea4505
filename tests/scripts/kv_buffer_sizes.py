"""The KV buffers megatron-core itself allocates for given engine arguments (tiny model, CPU, one process):
the static engine's StaticInferenceContext buffers after a generation (they are allocated on the first
forward; by the Generator's lean forward, batch first, where it covers the model) and the dynamic engine's DynamicInferenceContext memory_buffer. Prints one JSON object that
tests/process/test_planner_kv_megatron.py compares with megatron_octo.planner's arithmetic for the same arguments.

Usage: python tests/scripts/kv_buffer_sizes.py"""
import json
import sys
import warnings

warnings.filterwarnings("ignore")
import torch  # noqa: E402

from dynamic_generation_check import install_cpu_standins  # noqa: E402  (this script's folder is on sys.path)

from megatron_octo import config as cfgmod  # noqa: E402
from megatron_octo.generation import Generator, SamplingConfig  # noqa: E402
from megatron_octo.generation_dynamic import DynamicGenerator  # noqa: E402
from megatron_octo.models import llama  # noqa: E402
from megatron_octo.runtime import distributed as rt  # noqa: E402

STATIC = [(3, 40), (5, 97)]  # (max_batch_size, max_sequence_length)
DYNAMIC = [(3, 40, 16, 0.0), (6, 97, 32, 0.0), (5, 200, 16, 0.001)]  # (+ block_size_tokens, kv_cache_gb)


def main():
    cfg = cfgmod.load(None, ["train.tokens=0", "model.preset=tiny", "tokenizer.library=sentencepiece",
                             "tokenizer.path=data/tokenizer/octo_sp8k.model"])
    rt.initialize(1, 1, seed=3)
    if not torch.cuda.is_available():
        install_cpu_standins()
    tok = llama.load_tokenizer(cfg)
    arch = llama.run_architecture(cfg, tok)
    model = llama.build_gpt_model(cfg, arch, pre_process=True, post_process=True)
    out = {"arch": {"num_layers": arch.num_layers, "num_query_groups": arch.num_query_groups,
                    "kv_channels": arch.kv_channels},
           "dtype_bytes": model.config.params_dtype.itemsize, "static": [], "dynamic": []}
    for batch, seq in STATIC:
        gen = Generator(model, tok, max_sequence_length=seq, max_batch_size=batch, seed=1)
        gen.generate(["Problem: 2 + 2 = ?"], SamplingConfig(max_new_tokens=2, temperature=0.0))
        memory = gen.context.key_value_memory_dict
        bufs = [t for kv in memory.values() for t in kv]
        out["static"].append({"batch": batch, "seq": seq, "bytes": sum(t.numel() * t.element_size() for t in bufs),
                              "shape": list(bufs[0].shape), "buffers": len(bufs),
                              # megatron's [positions, batch, ...] or the lean forward's batch-first tagged ones
                              "batch_first": all(isinstance(tag, tuple) for tag in memory)})
    for batch, seq, block, gb in DYNAMIC:
        gen = DynamicGenerator(model, tok, max_sequence_length=seq, max_batch_size=batch, seed=1, cuda_graphs=False,
                               kv_cache_gb=gb, block_size_tokens=block)
        buf = gen.context.memory_buffer
        out["dynamic"].append({"batch": batch, "seq": seq, "block": block, "gb": gb,
                               "bytes": buf.numel() * buf.element_size(), "shape": list(buf.shape)})
    print(json.dumps(out))
    rt.shutdown()


if __name__ == "__main__":
    main()
