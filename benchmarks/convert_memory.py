#!/usr/bin/env python
"""Peak memory of tools/convert_to_hf.py against the checkpoint size (and of the import, for contrast).

    python benchmarks/convert_memory.py [--hidden 1024 --layers 8 --ffn 2816 --heads 16 --kv-heads 4
                                         --vocab 32000] [--workdir DIR] [--keep]

Writes a random untied Llama of that shape as a Hugging Face directory (streamed, fp32), imports it
with tools/convert_from_hf.py (TP=1), then exports it back with tools/convert_to_hf.py. Each tool runs
in its own child process whose peak RSS (``ru_maxrss``) is reported, next to a baseline child that only
imports what the export imports. The claim measured: the export's peak RSS above that baseline stays
near the largest single tensor, far below the size of the model.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import runpy
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _child(argv):
    """Run a tool (or the import baseline) in this process and print its peak RSS."""
    if argv[0] == "--baseline":
        # lazy: the imports are the baseline whose peak RSS this child measures
        import torch  # noqa: F401
        import torch.distributed.checkpoint  # noqa: F401

        from megatron_octo import config  # noqa: F401
        from megatron_octo.data import gpt_data  # noqa: F401
        from megatron_octo.models import hf_config, hf_io, hf_mapping  # noqa: F401
        from megatron_octo.checkpoint import save_load  # noqa: F401
        rc = 0
    else:
        sys.argv = argv
        try:
            runpy.run_path(argv[0], run_name="__main__")
            rc = 0
        except SystemExit as exc:
            rc = exc.code or 0
    print(f"PEAK_RSS_KB={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}", flush=True)
    return rc


def measure(args, label):
    t = time.time()
    res = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", *args], capture_output=True,
                         text=True, env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
    if res.returncode != 0:
        raise SystemExit(f"{label} failed:\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}")
    kb = [int(line.split("=")[1]) for line in res.stdout.splitlines() if line.startswith("PEAK_RSS_KB=")][-1]
    return kb * 1024, time.time() - t


def write_random_hf(path, arch):
    """A random HF Llama directory written one tensor at a time."""
    # lazy: torch loads only after OMP_NUM_THREADS is set for this process
    import torch

    from megatron_octo.models.hf_config import hf_config_from_arch
    from megatron_octo.models.hf_io import ShardedSafetensorsWriter
    from megatron_octo.models.hf_mapping import export_plan

    os.makedirs(path)
    entries = [(n, torch.float32, s) for item in export_plan(arch) for n, s in item.hf]
    w = ShardedSafetensorsWriter(path, entries, 10**12)
    g = torch.Generator().manual_seed(0)
    for name, _, shape in entries:
        w.write(name, torch.randn(shape, generator=g) * 0.02 if len(shape) > 1 else torch.ones(shape))
    w.close()
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(hf_config_from_arch(arch), f)
    return entries


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.exit(_child(sys.argv[2:]))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--ffn", type=int, default=2816)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--workdir", default=None)
    p.add_argument("--keep", action="store_true")
    a = p.parse_args()

    # lazy: torch loads only after OMP_NUM_THREADS is set for this process
    from megatron_octo.models.llama import LlamaArchitecture

    arch = LlamaArchitecture(num_layers=a.layers, hidden_size=a.hidden, ffn_hidden_size=a.ffn,
                             num_attention_heads=a.heads, num_query_groups=a.kv_heads, vocab_size=a.vocab,
                             max_position_embeddings=4096, rotary_base=500000, rope_scaling_factor=0.0,
                             tie_embeddings=False, norm_epsilon=1e-5)
    work = a.workdir or tempfile.mkdtemp(prefix="convert_memory_")
    os.makedirs(work, exist_ok=True)
    hf, ckpt, out = (os.path.join(work, d) for d in ("hf", "ckpt", "hf_out"))
    for d in (hf, ckpt, out):
        shutil.rmtree(d, ignore_errors=True)
    try:
        entries = write_random_hf(hf, arch)
        import torch

        sizes = [torch.Size(s).numel() * 4 for _, _, s in entries]
        model_bytes, largest = sum(sizes), max(sizes)
        base, _ = measure(["--baseline"], "baseline")
        imp, t_imp = measure([os.path.join(ROOT, "tools", "convert_from_hf.py"), hf, "--out", ckpt], "import")
        ckpt_bytes = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(ckpt) for f in fs)
        exp, t_exp = measure([os.path.join(ROOT, "tools", "convert_to_hf.py"), ckpt, "--out", out], "export")
        mb = 2**20
        print(f"model: {len(entries)} tensors, {model_bytes / 4 / 1e6:.1f}M parameters, "
              f"{model_bytes / mb:.0f} MiB fp32 (largest tensor {largest / mb:.0f} MiB); "
              f"dist checkpoint on disk {ckpt_bytes / mb:.0f} MiB")
        print(f"baseline (imports only)     peak RSS {base / mb:7.0f} MiB")
        print(f"convert_from_hf (TP=1)      peak RSS {imp / mb:7.0f} MiB  (+{(imp - base) / mb:.0f} MiB over "
              f"baseline = {(imp - base) / model_bytes:.2f} x model)  {t_imp:.1f}s")
        print(f"convert_to_hf               peak RSS {exp / mb:7.0f} MiB  (+{(exp - base) / mb:.0f} MiB over "
              f"baseline = {(exp - base) / model_bytes:.2f} x model, {(exp - base) / largest:.2f} x largest "
              f"tensor)  {t_exp:.1f}s")
    finally:
        if not a.keep and a.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
