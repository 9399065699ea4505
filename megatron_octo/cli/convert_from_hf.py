#!/usr/bin/env python
"""Hugging Face Llama directory -> megatron dist checkpoint at a chosen TP/PP.

    python tools/convert_from_hf.py HF_DIR --out OUT [--tp 2] [--pp 1] [--dtype auto|fp32|bf16]
                                    [--recipe recipes/...yaml] [--force] [a.b=c ...]

HF_DIR holds config.json and safetensors weights (``model.safetensors`` or shards with
``model.safetensors.index.json``). The model is built with the project's own
``llama.build_gpt_model`` at TP x PP (one process per model-parallel rank: with more than one the
tool starts itself under torchrun, or run it under ``torchrun --nproc-per-node TP*PP`` yourself);
each rank fills its shard tensor by tensor and the project's ``checkpointing.save`` writes
``OUT/iter_0000000`` + ``latest_checkpointed_iteration.txt``, with a ``config.yaml`` whose
``model.*`` keys reproduce the architecture. Tokenizer files in HF_DIR (tokenizer.json & co, or a
SentencePiece tokenizer.model) are copied to ``OUT/tokenizer`` and named by ``tokenizer.path``.
Start a stable stage from it with::

    python -m megatron_octo.train --config RECIPE checkpoint.init_from=OUT checkpoint.init_weights_only=true

(the run's ``model.*`` must resolve to the same architecture, e.g. ``model.preset=llama3.2-3b``).
The output is written to ``OUT.partial`` and renamed at the end; an existing OUT is refused
without ``--force``. Exit status 0 on success, 2 on a bad input (message on stderr).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import warnings
from megatron_octo import config as cfgmod
from megatron_octo.config import ConfigError
from megatron_octo.models import hf_mapping as hm, llama
from megatron_octo.models.hf_config import arch_from_hf_config, HFConfigError, model_overrides, read_hf_config
from megatron_octo.models.hf_io import HFWeights, HFWeightsError
from megatron_octo.models.hf_mapping import export_plan
from megatron_octo.runtime import distributed as rt
from megatron_octo.checkpoint import save_load as ckpt
from megatron_octo.checkpoint.save_load import CheckpointError


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "generation_config.json")


class ConvertError(ValueError):
    pass


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="tools/convert_from_hf.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("hf_dir", help="Hugging Face model directory (config.json + safetensors)")
    p.add_argument("--out", required=True, help="output checkpoint directory")
    p.add_argument("--tp", type=int, default=1, help="tensor parallel size (default 1)")
    p.add_argument("--pp", type=int, default=1, help="pipeline parallel size (default 1)")
    p.add_argument("--dtype", default="auto", choices=("auto", "fp32", "bf16"),
                   help="parameter dtype of the checkpoint (auto: bf16 with a GPU, fp32 without)")
    p.add_argument("--recipe", default=None, help="recipe whose settings go into config.yaml (optional)")
    p.add_argument("--force", action="store_true", help="replace an existing output directory")
    p.add_argument("overrides", nargs="*", help="config overrides recorded in config.yaml (a.b=c)")
    return p.parse_args(argv)


def _expected_hf_tensors(arch) -> dict[str, tuple[int, ...]]:
    return {name: shape for item in export_plan(arch) for name, shape in item.hf}


def check_inputs(args):
    """Everything checkable before a process group exists. Returns (arch, weights)."""

    if os.path.exists(args.out) and not args.force:
        raise ConvertError(f"output {args.out} already exists (use --force to replace it)")
    if not os.path.isdir(args.hf_dir):
        raise ConvertError(f"{args.hf_dir}: Hugging Face model directory not found")
    arch = arch_from_hf_config(read_hf_config(args.hf_dir))
    for flag, n in (("--tp", args.tp), ("--pp", args.pp)):
        if n < 1:
            raise ConvertError(f"{flag} must be >= 1, got {n}")
    for key, value in (("num_attention_heads", arch.num_attention_heads),
                       ("num_key_value_heads", arch.num_query_groups)):
        if value % args.tp:
            raise ConvertError(f"--tp {args.tp} does not divide {key}={value}")
    if arch.num_layers % args.pp:
        raise ConvertError(f"--pp {args.pp} does not divide num_hidden_layers={arch.num_layers}")

    weights = HFWeights(args.hf_dir)
    expected = _expected_hf_tensors(arch)
    missing = [n for n in expected if n not in weights]
    if missing:
        raise ConvertError(f"{args.hf_dir}: missing tensor(s) {', '.join(missing[:5])}"
                           f"{' ...' if len(missing) > 5 else ''} (partial checkpoint or not this config)")
    for name, shape in expected.items():
        got = weights.shape(name)
        if got != shape:
            if name in (hm.HF_EMBED, hm.HF_LM_HEAD) and got[1:] == shape[1:]:
                raise ConvertError(f"vocab mismatch: {name} has {got[0]} rows but config.json vocab_size="
                                   f"{arch.vocab_size}")
            raise ConvertError(f"shape mismatch: {name} is {list(got)}, config.json implies {list(shape)}")
    ignorable = {hm.HF_LM_HEAD} if arch.tie_embeddings else set()
    unexpected = [n for n in weights.names()
                  if n not in expected and n not in ignorable and not n.endswith("rotary_emb.inv_freq")]
    if unexpected:
        raise ConvertError(f"not a plain Llama checkpoint: unexpected tensor(s) {', '.join(sorted(unexpected)[:5])}")
    if arch.tie_embeddings and hm.HF_LM_HEAD in weights:
        import torch

        if not torch.equal(weights.get(hm.HF_LM_HEAD), weights.get(hm.HF_EMBED)):
            raise ConvertError(f"config.json tie_word_embeddings=true but {hm.HF_LM_HEAD} differs from {hm.HF_EMBED}")
    return arch, weights


def _tokenizer_overrides(hf_dir: str, out: str) -> tuple[list[str], list[str]]:
    """(files to copy, config overrides) for the tokenizer found in hf_dir."""
    present = [f for f in TOKENIZER_FILES if os.path.isfile(os.path.join(hf_dir, f))]
    tok_dir = os.path.join(os.path.abspath(out), "tokenizer")
    if "tokenizer.json" in present:
        return present, [f"tokenizer.path={tok_dir}", "tokenizer.library=huggingface"]
    if "tokenizer.model" in present:
        return present, [f"tokenizer.path={os.path.join(tok_dir, 'tokenizer.model')}",
                         "tokenizer.library=sentencepiece"]
    return [], ["tokenizer.library=null"]


def build_config(args, arch):
    files, tok = _tokenizer_overrides(args.hf_dir, args.out)
    overrides = (["train.tokens=0", f"parallel.tp={args.tp}", f"parallel.pp={args.pp}",
                  f"model.params_dtype={args.dtype}", "checkpoint.init_from=null", "checkpoint.save=null"]
                 + model_overrides(arch) + tok + list(args.overrides))
    cfg = cfgmod.load(args.recipe, overrides)
    return cfg, files


def convert(args, arch, weights) -> str:
    import torch
    import torch.distributed as dist
    from megatron.core import parallel_state as ps

    cfg, tok_files = build_config(args, arch)
    run_arch = llama.resolve_architecture(cfg.model)
    if run_arch != arch:
        raise ConvertError(f"the overrides change the architecture: {run_arch} != {arch}")
    rt.initialize(args.tp, args.pp, seed=cfg.train.seed)
    tp, tp_rank = ps.get_tensor_model_parallel_world_size(), ps.get_tensor_model_parallel_rank()
    padded = llama.padded_vocab_size(arch.vocab_size, cfg.model.make_vocab_size_divisible_by, tp)
    model = llama.build_gpt_model(cfg, arch, pre_process=ps.is_pipeline_first_stage(),
                                  post_process=ps.is_pipeline_last_stage())
    layers = list(model.decoder.layers)
    with torch.no_grad():
        for name, param in model.named_parameters():
            src = hm.param_source(name, arch.tie_embeddings)
            glayer = None if src.local_layer is None else layers[src.local_layer].layer_number - 1
            hf = [weights.get(n).to(param.dtype) for n in hm.hf_names_for_layer(src, glayer)]
            local = hm.megatron_local_tensor(src.kind, hf, num_heads=arch.num_attention_heads,
                                             num_groups=arch.num_query_groups, padded_vocab=padded,
                                             tp=tp, rank=tp_rank)
            if tuple(local.shape) != tuple(param.shape):
                raise ConvertError(f"{name}: built {tuple(local.shape)} for a parameter of shape {tuple(param.shape)}")
            param.copy_(local)
            del hf, local

    rank0 = dist.get_rank() == 0
    tmp = args.out.rstrip("/") + ".partial"
    if rank0:
        shutil.rmtree(tmp, ignore_errors=True)
    dist.barrier()
    state = ckpt.TrainerState(stage="stable", run_name=cfg.run_name, layout={})
    ckpt.save(tmp, model, None, state, cfgmod.to_yaml(cfg))
    if rank0:
        if tok_files:
            os.makedirs(os.path.join(tmp, "tokenizer"))
            for f in tok_files:
                shutil.copy2(os.path.join(args.hf_dir, f), os.path.join(tmp, "tokenizer", f))
        if os.path.exists(args.out):
            shutil.rmtree(args.out)
        os.rename(tmp, args.out)
        n = llama.num_parameters(arch)
        print(f"converted {args.hf_dir} -> {args.out} (TP={args.tp} PP={args.pp}, {n:,} parameters, "
              f"vocab {arch.vocab_size} padded to {padded}, tied={arch.tie_embeddings}, "
              f"rope_scaling_factor={arch.rope_scaling_factor:g})")
    dist.barrier()
    return args.out


def _relaunch(argv, nproc: int) -> int:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "megatron_octo.cli.convert_from_hf", *argv]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    return subprocess.run(cmd, env=env).returncode


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    warnings.filterwarnings("ignore")

    errors = (ConvertError, HFConfigError, HFWeightsError, ConfigError, CheckpointError)
    try:
        arch, weights = check_inputs(args)
    except errors as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    nproc = args.tp * args.pp
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world != nproc:
        if "WORLD_SIZE" in os.environ:
            print(f"error: started with {world} processes; --tp {args.tp} x --pp {args.pp} needs {nproc}",
                  file=sys.stderr)
            return 2
        return _relaunch(argv, nproc)

    try:
        convert(args, arch, weights)
    except errors as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        try:
            rt.shutdown()
        except Exception:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
