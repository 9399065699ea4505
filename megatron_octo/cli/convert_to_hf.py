#!/usr/bin/env python
"""Megatron dist checkpoint (any TP/PP: stable, decay, RL, or convert_from_hf output) -> Hugging Face.

    python tools/convert_to_hf.py CKPT --out OUT [--dtype auto|fp32|bf16|fp16] [--max-shard-size 5GB]
                                  [--tokenizer PATH] [--force]

CKPT is a save directory (its latest checkpoint) or one ``iter_NNNNNNN`` directory. OUT receives
``config.json`` (LlamaForCausalLM, rope_scaling, tie_word_embeddings, dtype), ``model.safetensors``
(or ``model-0000i-of-0000n.safetensors`` + ``model.safetensors.index.json`` past
``--max-shard-size``), ``generation_config.json`` and the run's tokenizer files (from its
``config.yaml`` ``tokenizer.path``, or ``--tokenizer``).

One process, no process group, no model built: tensors are read from the checkpoint one at a time
(one layer of one stacked tensor; PyTorch DCP reads only the stored chunks it needs), converted to
the Hugging Face layout and appended to the safetensors file, whose header is computed up front.
Peak memory is about the largest tensor, not the model (``benchmarks/convert_memory.py``).

The output is written to ``OUT.partial`` and renamed at the end; an existing OUT is refused without
``--force``. Exit status 0 on success, 2 on a bad input (message on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import warnings
from megatron_octo import config as cfgmod
from megatron_octo.config import ConfigError, tokenizer_library
from megatron_octo.models import hf_mapping as hm
from megatron_octo.models.hf_config import hf_config_from_arch, run_architecture
from megatron_octo.models.hf_io import DistCheckpointReader, parse_size, ShardedSafetensorsWriter
from megatron_octo.models.hf_tokenizer import sentencepiece_to_tokenizer
from megatron_octo.models.llama import load_tokenizer
from megatron_octo.checkpoint import save_load as ckpt
from megatron_octo.checkpoint.save_load import CheckpointError


DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


class ConvertError(ValueError):
    pass


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="tools/convert_to_hf.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ckpt", help="checkpoint save directory or iter_NNNNNNN directory")
    p.add_argument("--out", required=True, help="output Hugging Face directory")
    p.add_argument("--dtype", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                   help="dtype of the exported weights (auto: as stored in the checkpoint)")
    p.add_argument("--max-shard-size", default="5GB", help="split model.safetensors past this size (default 5GB)")
    p.add_argument("--tokenizer", default=None, help="tokenizer file/dir to copy instead of the run's tokenizer.path")
    p.add_argument("--force", action="store_true", help="replace an existing output directory")
    return p.parse_args(argv)


def _find(path: str, ckpt_dir: str):
    for cand in (path, os.path.join(ckpt_dir, path), os.path.join(os.path.dirname(ckpt_dir.rstrip("/")), path)):
        if os.path.exists(cand):
            return cand
    return None


def load_checkpoint_config(ckpt_dir: str, tokenizer: str | None):
    """The run's config, with tokenizer.path pointing at a file that exists (or no tokenizer)."""

    ckpt.read_trainer_state(ckpt_dir)  # raises on a partial checkpoint
    for name in ("metadata.json", ".metadata"):
        if not os.path.isfile(os.path.join(ckpt_dir, name)):
            raise ckpt.CheckpointError(f"{ckpt_dir}: missing {name} (not a complete dist checkpoint)")
    path = os.path.join(ckpt_dir, "config.yaml")
    if not os.path.isfile(path):
        raise ckpt.CheckpointError(f"{ckpt_dir}: missing config.yaml (cannot tell the architecture)")
    cfg = cfgmod.load(path)
    if tokenizer is not None:
        found = _find(tokenizer, ckpt_dir)
        if found is None:
            raise ConvertError(f"--tokenizer {tokenizer}: not found")
        library = "auto" if cfgmod.tokenizer_library(cfg) == "null" else cfg.tokenizer.library
        return cfgmod.load(path, [f"tokenizer.path={found}", f"tokenizer.library={library}"])
    if cfgmod.tokenizer_library(cfg) == "null" or cfg.tokenizer.path is None:
        return cfg
    found = _find(cfg.tokenizer.path, ckpt_dir)
    if found is not None:
        return cfgmod.load(path, [f"tokenizer.path={found}"])
    if cfg.model.vocab_size is None:
        raise ConvertError(f"the run's tokenizer {cfg.tokenizer.path} is not found (it sets the vocabulary "
                           "size); pass --tokenizer PATH")
    print(f"warning: the run's tokenizer {cfg.tokenizer.path} is not found; exporting without tokenizer files",
          file=sys.stderr)
    return cfgmod.load(path, ["tokenizer.library=null"])


def check_tensors(reader, arch, plan) -> None:
    """Every tensor the plan reads exists with the shape the architecture implies; no other model
    tensor is in the checkpoint (a bias or an MoE expert means it is not a plain Llama)."""

    keys = reader.tensor_keys()
    h, L = arch.hidden_size, arch.num_layers
    needed = {}
    for item in plan:
        if item.kind == "qkv":
            shape = (arch.num_query_groups * (arch.num_attention_heads // arch.num_query_groups + 2)
                     * arch.kv_channels, h)
        elif item.kind == "fc1":
            shape = (2 * arch.ffn_hidden_size, h)
        else:
            shape = item.hf[0][1]
        needed[item.ckpt_key] = ((L,) + shape) if item.layer is not None else shape
    for key, shape in needed.items():
        if key not in keys:
            raise ConvertError(f"{reader.dir}: no tensor {key!r} in the checkpoint (not a Llama GPTModel checkpoint)")
        got = keys[key][0]
        if key in (hm.MG_EMBED, hm.MG_OUTPUT):
            if len(got) != 2 or got[1] != h or got[0] < arch.vocab_size:
                raise ConvertError(f"vocab mismatch: {key} is {list(got)} in the checkpoint; its config.yaml "
                                   f"gives vocab {arch.vocab_size} x hidden {h}")
        elif got != shape:
            raise ConvertError(f"shape mismatch: {key} is {list(got)} in the checkpoint, config.yaml implies "
                               f"{list(shape)}")
    model_prefixes = ("embedding.", "decoder.", "output_layer.")
    extra = sorted(k for k in keys if k.startswith(model_prefixes) and k not in needed)
    if extra:
        raise ConvertError(f"{reader.dir}: not a plain Llama checkpoint, unexpected tensor(s): {', '.join(extra[:5])}")


def _tokenizer_files(cfg) -> tuple[list[tuple[str, str]], dict, dict]:
    """([(src, dst name)], tokenizer_config.json contents or {}, {bos_token_id, eos_token_id})."""

    path, lib = cfg.tokenizer.path, tokenizer_library(cfg)
    if lib == "null" or path is None:
        return [], {}, {}

    tok = load_tokenizer(cfg)
    ids = {"eos_token_id": int(tok.eod)}
    if os.path.isdir(path):
        path = os.path.join(path, "tokenizer.json")
    base = os.path.dirname(path)
    if path.endswith(".json") and os.path.basename(path) == "tokenizer.json" or lib == "huggingface":
        files = [(path, "tokenizer.json")]
        for extra in ("tokenizer_config.json", "special_tokens_map.json"):
            if os.path.isfile(os.path.join(base, extra)):
                files.append((os.path.join(base, extra), extra))
        tcfg = {} if len(files) > 1 else {"tokenizer_class": "PreTrainedTokenizerFast"}
        return files, tcfg, ids
    if path.endswith(".model"):
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor(model_file=path)
        tcfg = {"tokenizer_class": "LlamaTokenizer", "add_bos_token": False, "add_eos_token": False,
                "legacy": True, "model_max_length": cfg.model.seq_length,
                "clean_up_tokenization_spaces": False}
        for name, i in (("bos_token", sp.bos_id()), ("eos_token", sp.eos_id()), ("unk_token", sp.unk_id()),
                        ("pad_token", sp.pad_id())):
            if i >= 0:
                tcfg[name] = sp.id_to_piece(i)
        if sp.bos_id() >= 0:
            ids["bos_token_id"] = sp.bos_id()
        files = [(path, "tokenizer.model")]

        fast = sentencepiece_to_tokenizer(path)
        if fast is not None:  # transformers 5 loads tokenizer.json; 4.x can also use tokenizer.model
            files.append((fast, "tokenizer.json"))
            tcfg["tokenizer_class"] = "PreTrainedTokenizerFast"
        return files, tcfg, ids
    # tiktoken and other files: copied under their own name (transformers cannot load them directly)
    return [(path, os.path.basename(path))], {}, ids


def convert(args) -> str:
    import torch

    if os.path.exists(args.out) and not args.force:
        raise ConvertError(f"output {args.out} already exists (use --force to replace it)")
    if not os.path.exists(args.ckpt):
        raise ckpt.CheckpointError(f"{args.ckpt}: checkpoint directory not found")
    ckpt_dir = ckpt.resolve_checkpoint(args.ckpt)
    cfg = load_checkpoint_config(ckpt_dir, args.tokenizer)
    arch = run_architecture(cfg)
    reader = DistCheckpointReader(ckpt_dir)
    plan = hm.export_plan(arch)
    check_tensors(reader, arch, plan)
    stored = reader.tensor_keys()[hm.MG_EMBED][1]
    dtype = stored if args.dtype == "auto" else getattr(torch, DTYPES[args.dtype])
    dtype_name = str(dtype).replace("torch.", "")
    tok_files, tok_cfg, tok_ids = _tokenizer_files(cfg)

    tmp = args.out.rstrip("/") + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    entries = [(name, dtype, shape) for item in plan for name, shape in item.hf]
    writer = ShardedSafetensorsWriter(tmp, entries, parse_size(args.max_shard_size))
    for item in plan:
        t = reader.read(item.ckpt_key, item.layer)
        outs = hm.hf_tensors_from_megatron(item, t, arch)
        del t
        for (name, _), hf_t in zip(item.hf, outs):
            writer.write(name, hf_t.to(dtype))
        del outs
    writer.close()

    hf_cfg = hf_config_from_arch(arch, dtype_name, tok_ids.get("bos_token_id"), tok_ids.get("eos_token_id"))
    with open(os.path.join(tmp, "config.json"), "w") as f:
        json.dump(hf_cfg, f, indent=2)
    gen = {"_from_model_config": True, **tok_ids}
    with open(os.path.join(tmp, "generation_config.json"), "w") as f:
        json.dump(gen, f, indent=2)
    for src, dst in tok_files:
        if isinstance(src, str):
            shutil.copy2(src, os.path.join(tmp, dst))
        else:  # a tokenizers.Tokenizer built from a SentencePiece model
            src.save(os.path.join(tmp, dst))
    if tok_cfg:
        with open(os.path.join(tmp, "tokenizer_config.json"), "w") as f:
            json.dump(tok_cfg, f, indent=2)
    if os.path.exists(args.out):
        shutil.rmtree(args.out)
    os.rename(tmp, args.out)
    size = writer.total
    print(f"exported {ckpt_dir} -> {args.out} ({len(entries)} tensors, {size / 1e6:.1f} MB {dtype_name} in "
          f"{len(writer.names)} file(s), vocab {arch.vocab_size}, tied={arch.tie_embeddings}, "
          f"tokenizer: {', '.join(d for _, d in tok_files) or 'none'})")
    return args.out


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    warnings.filterwarnings("ignore")

    try:
        convert(args)
    except (ConvertError, ConfigError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
