#!/usr/bin/env python
"""Weighted average of checkpoints' model weights ("model souping") -> one dist checkpoint.

    python tools/merge_checkpoints.py CKPT [CKPT ...] --out OUT [--weights W1,W2,...] [--force]
                                      [--verify checksum|size|off]

Each CKPT is a save directory (its latest checkpoint, by the tracker) or one ``iter_NNNNNNN``
directory, saved at any TP/PP. OUT receives a checkpoint of ours at TP=1 PP=1 (``OUT/iter_NNNNNNN`` +
``latest_checkpointed_iteration.txt``, written by ``checkpoint.save_load.save``), which
``checkpoint.init_from=OUT`` (a decay, stable or RL stage), ``python -m megatron_octo.eval
--checkpoint OUT`` and ``tools/convert_to_hf.py OUT`` take like a trained checkpoint.

* Weights: uniform by default; ``--weights`` gives one non-negative finite weight per CKPT, in order,
  summing to 1 (within 1e-6; used as given, not normalised). Every parameter tensor of the model is
  sum_i w_i * theta_i, accumulated in float64 and cast to the dtype the inputs store it in (so N
  copies of one checkpoint merge to it bit for bit, and 0.5/0.5 is the exactly rounded (a+b)/2).
* Model parameters only: the optimizer state (Adam moments) is not merged and OUT holds none
  (``trainer_state.json``: ``optimizer_state: false``); a stage started from OUT with
  ``checkpoint.init_from`` starts a fresh optimizer. A PPO critic stored beside an actor is not
  merged either. The RNG state is not restored from OUT. ``trainer_state.json`` takes iteration,
  tokens, stage and LR schedule from the input with the most tokens, and records the merge
  (``merge``: inputs, weights, method); ``config.yaml`` is the first input's, at TP=1 PP=1, with the
  tokenizer path made absolute.
* Refused with exit status 2 and a message naming the item and both checkpoints: a different
  tokenizer (library, vocabulary size or file content by SHA-256; the same file at another path is
  the same tokenizer), a different architecture (any ``LlamaArchitecture`` field), a different set
  of model tensors, shapes or dtypes, a non-finite value in an input; also a bad ``--weights``, a
  missing or partial checkpoint, or a corrupt one (its manifest is checked, ``--verify``).

Inputs are read tensor by tensor (one layer of a stacked tensor at a time) from the dist checkpoints
with PyTorch DCP, as ``tools/convert_to_hf.py`` reads them: megatron stores global tensors, so any
TP/PP layout reads the same; a vocabulary padded for a larger TP is cut to the TP=1 padding (the
extra rows are padding). One process, no torchrun. The output is written to ``OUT.partial`` and
renamed at the end; a failure removes it. An existing non-empty OUT is refused without ``--force``.

References: Megatron-LM ``tools/checkpoint`` (its loader/saver pair reads a checkpoint at any TP/PP into
whole tensors and writes them at another layout; here megatron-core's dist checkpointing stores global
tensors, so the reading is per tensor), and OLMo 2's model souping (Team OLMo, "2 OLMo 2 Furious",
arXiv:2501.00656: the final base models average the weights of several mid-training annealing runs
that differ in their data order).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import warnings
from collections import defaultdict
from dataclasses import dataclass, field, fields

from megatron_octo import config as cfgmod
from megatron_octo.checkpoint import save_load as ckpt
from megatron_octo.checkpoint.save_load import CheckpointError
from megatron_octo.config import ConfigError, tokenizer_library
from megatron_octo.models import hf_mapping as hm
from megatron_octo.models import llama
from megatron_octo.models.hf_io import DistCheckpointReader
from megatron_octo.runtime import distributed as rt
from tokenization.tokenizer import TokenizerError, encoder_spec

MODEL_PREFIXES = ("embedding.", "decoder.", "output_layer.")
VOCAB_KEYS = (hm.MG_EMBED, hm.MG_OUTPUT)  # rows padded to a multiple of make_vocab_size_divisible_by x TP
DTYPE_NAMES = {"torch.float32": "fp32", "torch.bfloat16": "bf16"}
WEIGHT_SUM_TOLERANCE = 1e-6


class MergeError(ValueError):
    """The inputs cannot be merged; the message names the item and the checkpoints."""


@dataclass
class Source:
    """One input checkpoint, read up to its tensors' metadata."""

    path: str  # as given
    ckpt_dir: str  # the iter_NNNNNNN directory
    state: object = None  # TrainerState
    cfg: object = None
    arch: object = None
    tokenizer: dict = field(default_factory=dict)  # library, vocab_size, eod, sha256, path
    tensors: dict = field(default_factory=dict)  # model tensor key -> (shape, dtype)
    reader: object = None


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="tools/merge_checkpoints.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ckpts", nargs="+", metavar="CKPT", help="checkpoint save directory or iter_NNNNNNN directory")
    p.add_argument("--out", required=True, help="output save directory (a TP=1 PP=1 checkpoint of model weights)")
    p.add_argument("--weights", default=None,
                   help="comma-separated weights, one per CKPT in order: finite, >= 0, summing to 1 "
                        "(default: uniform)")
    p.add_argument("--verify", default="checksum", choices=("checksum", "size", "off"),
                   help="check each input against its manifest first (default: checksum)")
    p.add_argument("--force", action="store_true", help="replace an existing non-empty output directory")
    return p.parse_args(argv)


def parse_weights(text, n: int) -> list[float]:
    """The merge weights: uniform without ``--weights``; else one per checkpoint, finite, >= 0, sum 1."""
    if text is None:
        return [1.0 / n] * n
    items = [t.strip() for t in str(text).split(",")]
    if len(items) != n:
        raise MergeError(f"--weights: {len(items)} weight(s) ({text}) for {n} checkpoint(s); give one per CKPT")
    out = []
    for t in items:
        try:
            w = float(t)
        except ValueError:
            raise MergeError(f"--weights: {t!r} is not a number") from None
        if not math.isfinite(w):
            raise MergeError(f"--weights: {t} is not finite")
        if w < 0:
            raise MergeError(f"--weights: {t} is negative (a merge is a weighted average: every weight >= 0)")
        out.append(w)
    total = math.fsum(out)
    if abs(total - 1.0) > WEIGHT_SUM_TOLERANCE:
        raise MergeError(f"--weights: they sum to {total:g}, not 1 (they are used as given, not normalised)")
    return out


# ----- reading and comparing the inputs ---------------------------------------------------------

def _find_beside(path: str, ckpt_dir: str):
    """A path recorded in a checkpoint's config.yaml: as given, or relative to the checkpoint or its save dir."""
    for cand in (path, os.path.join(ckpt_dir, path), os.path.join(os.path.dirname(ckpt_dir.rstrip("/")), path)):
        if os.path.exists(cand):
            return os.path.abspath(cand)
    return None


def _tokenizer(cfg, ckpt_dir: str) -> tuple[object, dict]:
    """(the config with tokenizer.path absolute, the tokenizer's description)."""
    lib = tokenizer_library(cfg)
    if lib == "null" or cfg.tokenizer.path is None:
        return cfg, {"library": "null"}
    found = _find_beside(cfg.tokenizer.path, ckpt_dir)
    if found is None:
        raise MergeError(f"{ckpt_dir}: its tokenizer {cfg.tokenizer.path} (config.yaml tokenizer.path) is not "
                         "found, so it cannot be compared; fix the path in that config.yaml")
    cfg = cfgmod.load(os.path.join(ckpt_dir, "config.yaml"), [f"tokenizer.path={found}"])
    try:
        desc = encoder_spec(found, lib).describe()
    except (TokenizerError, OSError) as exc:
        raise MergeError(f"{ckpt_dir}: cannot read its tokenizer {found}: {exc}") from None
    return cfg, desc


def read_source(path: str, verify: str = "checksum") -> Source:
    """An input's config, architecture, tokenizer and model tensor metadata (its manifest verified)."""
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    if not os.path.exists(path):
        raise MergeError(f"{path}: checkpoint directory not found")
    ckpt_dir = ckpt.resolve_checkpoint(path)
    state = ckpt.read_trainer_state(ckpt_dir)
    for name in ("metadata.json", ".metadata"):
        if not os.path.isfile(os.path.join(ckpt_dir, name)):
            raise CheckpointError(f"{ckpt_dir}: missing {name} (not a complete dist checkpoint)")
    cfg_path = os.path.join(ckpt_dir, "config.yaml")
    if not os.path.isfile(cfg_path):
        raise CheckpointError(f"{ckpt_dir}: missing config.yaml (cannot tell the architecture)")
    cfg, tok = _tokenizer(cfgmod.load(cfg_path), ckpt_dir)
    arch = llama.run_architecture(cfg)
    reader = DistCheckpointReader(ckpt_dir, verify=verify)
    tensors = {k: (tuple(v.size), v.properties.dtype) for k, v in reader.metadata.state_dict_metadata.items()
               if isinstance(v, TensorStorageMetadata) and k.startswith(MODEL_PREFIXES)}
    if not tensors:
        raise MergeError(f"{ckpt_dir}: no model tensors (embedding., decoder., output_layer.) in the checkpoint")
    return Source(path=path, ckpt_dir=ckpt_dir, state=state, cfg=cfg, arch=arch, tokenizer=tok, tensors=tensors,
                  reader=reader)


def _differ(what: str, a: Source, va, b: Source, vb) -> MergeError:
    return MergeError(f"{what} differs: {va} in {a.ckpt_dir}, {vb} in {b.ckpt_dir}")


def check_tokenizers(a: Source, b: Source) -> None:
    ta, tb = a.tokenizer, b.tokenizer
    for key in ("library", "vocab_size", "eod", "sha256"):
        if ta.get(key) != tb.get(key):
            raise MergeError(f"tokenizer differs: {key} {ta.get(key)} (tokenizer {ta.get('path')}) in {a.ckpt_dir}, "
                             f"{tb.get(key)} (tokenizer {tb.get('path')}) in {b.ckpt_dir}")


def check_architectures(a: Source, b: Source) -> None:
    for f in fields(type(a.arch)):
        va, vb = getattr(a.arch, f.name), getattr(b.arch, f.name)
        if va != vb:
            raise MergeError(f"architecture differs: model.{f.name} is {va} (preset {a.cfg.model.preset}) in "
                             f"{a.ckpt_dir}, {vb} (preset {b.cfg.model.preset}) in {b.ckpt_dir}")


def check_tensors(a: Source, b: Source) -> None:
    """The same model tensors, shapes (the vocabulary rows may be padded differently) and dtypes."""
    for x, y in ((a, b), (b, a)):
        extra = sorted(set(x.tensors) - set(y.tensors))
        if extra:
            raise MergeError(f"tensor set differs: {extra[0]!r}{f' (and {len(extra) - 1} more)' if len(extra) > 1 else ''}"
                             f" is in {x.ckpt_dir} but not in {y.ckpt_dir}")
    for key in sorted(a.tensors):
        (sa, da), (sb, db) = a.tensors[key], b.tensors[key]
        same = sa[1:] == sb[1:] if key in VOCAB_KEYS else sa == sb
        if not same:
            raise MergeError(f"shape of tensor {key!r} differs: {list(sa)} in {a.ckpt_dir}, {list(sb)} in {b.ckpt_dir}")
        if da != db:
            raise MergeError(f"dtype of tensor {key!r} differs: {da} in {a.ckpt_dir}, {db} in {b.ckpt_dir}")


def check_compatible(sources: list[Source]) -> None:
    """Every input against the first: tokenizer, then architecture, then tensors. Raises MergeError."""
    first = sources[0]
    for other in sources[1:]:
        check_tokenizers(first, other)
        check_architectures(first, other)
        check_tensors(first, other)
    dtypes = {d for _, d in first.tensors.values()}
    if len(dtypes) != 1 or str(next(iter(dtypes))) not in DTYPE_NAMES:
        raise MergeError(f"{first.ckpt_dir}: model tensors stored as {sorted(map(str, dtypes))}; merging handles "
                         "checkpoints stored in one of float32, bfloat16")
    rows = llama.padded_vocab_size(first.arch.vocab_size, first.cfg.model.make_vocab_size_divisible_by, 1)
    for s in sources:
        for key in VOCAB_KEYS:
            if key in s.tensors and s.tensors[key][0][0] < rows:
                raise MergeError(f"{s.ckpt_dir}: {key} has {s.tensors[key][0][0]} rows, fewer than the {rows} of the "
                                 f"TP=1 output (vocab {first.arch.vocab_size} padded to a multiple of "
                                 f"model.make_vocab_size_divisible_by={first.cfg.model.make_vocab_size_divisible_by})")


def check_output_path(out: str, sources: list[Source], force: bool) -> None:
    real = os.path.realpath(out)
    for s in sources:
        for p in {s.path, s.ckpt_dir, os.path.dirname(s.ckpt_dir.rstrip("/"))}:
            rp = os.path.realpath(p)
            if real == rp or rp.startswith(real + os.sep):
                raise MergeError(f"--out {out}: is (or contains) the input {p}; write the merge elsewhere")
        if real.startswith(os.path.realpath(s.ckpt_dir) + os.sep):
            raise MergeError(f"--out {out}: is inside the input checkpoint {s.ckpt_dir}; write the merge elsewhere")
    if os.path.isfile(out):
        raise MergeError(f"--out {out}: is a file")
    if os.path.isdir(out) and os.listdir(out) and not force:
        raise MergeError(f"--out {out}: already exists and is not empty (use --force to replace it)")


# ----- merging ----------------------------------------------------------------------------------

def _layout_overrides(first: Source, out: str) -> list[str]:
    """OUT's config.yaml: the first input's at TP=1 PP=1, its tokenizer path absolute, no init_from."""
    overrides = ["parallel.tp=1", "parallel.pp=1", "parallel.cp=1", "parallel.sequence_parallel=false",
                 "checkpoint.init_from=null", "checkpoint.load=null", f"checkpoint.save={os.path.abspath(out)}"]
    if first.tokenizer.get("path"):
        overrides.append(f"tokenizer.path={first.tokenizer['path']}")
    return overrides


def output_state(sources: list[Source], weights: list[float], dtype_name: str):
    latest = max(sources, key=lambda s: (s.state.tokens, s.state.iteration))  # the first of equals
    merge = {
        "inputs": [{"checkpoint": os.path.abspath(s.ckpt_dir), "weight": w, "iteration": s.state.iteration,
                    "tokens": s.state.tokens, "stage": s.state.stage} for s, w in zip(sources, weights)],
        "method": f"weighted average of the model parameters (float64 accumulation, stored as {dtype_name})",
        "optimizer_state": "not merged: a stage started from this checkpoint starts a fresh optimizer",
        "tool": "tools/merge_checkpoints.py",
    }
    return ckpt.TrainerState(iteration=max(s.state.iteration for s in sources), tokens=latest.state.tokens,
                             schedule=dict(latest.state.schedule), layout={"tp": 1, "pp": 1},
                             stage=latest.state.stage, run_name=latest.state.run_name, merge=merge)


def _targets(model) -> dict:
    """(key, layer or None) -> [(index into the global tensor's layer, local tensor)] of the model's
    sharded state dict (megatron's ShardedTensorFactory, e.g. the fused SwiGLU fc1, expanded)."""
    from megatron.core.dist_checkpointing.mapping import ShardedTensor, ShardedTensorFactory

    out = defaultdict(list)
    pending = list(ckpt.unwrap(model).sharded_state_dict().values())
    while pending:
        sh = pending.pop()
        if isinstance(sh, ShardedTensorFactory):
            built = sh.build()
            pending.extend(built.values() if isinstance(built, dict) else built)
            continue
        if not isinstance(sh, ShardedTensor):
            continue  # _extra_state objects
        if sh.flattened_range is not None or sh.prepend_axis_num > 1:
            raise MergeError(f"{sh.key}: unsupported sharded tensor (flattened or with {sh.prepend_axis_num} "
                             "prepended axes)")
        layer = sh.global_offset[0] if sh.prepend_axis_num == 1 else None
        inner = sh.global_offset[sh.prepend_axis_num:]
        index = tuple(slice(o, o + n) for o, n in zip(inner, sh.data.shape))
        out[(sh.key, layer)].append((index, sh.data))
    return out


def merge_into(model, sources: list[Source], weights: list[float]) -> int:
    """Fill ``model`` (TP=1 PP=1) with the weighted average of the inputs; returns the number of tensors."""
    import torch

    targets = _targets(model)
    keys = {k for k, _ in targets}
    missing, unused = sorted(keys - set(sources[0].tensors)), sorted(set(sources[0].tensors) - keys)
    if missing or unused:
        what = (f"{missing[0]!r} is not in the checkpoint" if missing
                else f"the checkpoint's {unused[0]!r} is not in the model")
        raise MergeError(f"{sources[0].ckpt_dir}: its tensors do not fit the model its config.yaml describes: {what}")
    with torch.no_grad():
        for (key, layer), places in sorted(targets.items(), key=lambda kv: (kv[0][0], -1 if kv[0][1] is None
                                                                            else kv[0][1])):
            acc = None
            for s, w in zip(sources, weights):
                t = s.reader.read(key, layer)
                if not torch.isfinite(t).all():
                    where = f"tensor {key!r}" + (f" (layer {layer})" if layer is not None else "")
                    raise MergeError(f"{s.ckpt_dir}: {where} has non-finite values (NaN or Inf); refusing to merge it")
                term = t.to(torch.float64) * w
                acc = term if acc is None else acc.add_(term)
                del t, term
            for index, local in places:
                part = acc[index]
                if tuple(part.shape) != tuple(local.shape):
                    raise MergeError(f"{key}: the checkpoints hold {list(part.shape)} where the model built from "
                                     f"{sources[0].ckpt_dir}/config.yaml has {list(local.shape)}")
                local.copy_(part.to(local.dtype))
            del acc
    return len(keys)


def merge(args) -> str:
    weights = parse_weights(args.weights, len(args.ckpts))
    sources = [read_source(p, args.verify) for p in args.ckpts]
    check_compatible(sources)
    check_output_path(args.out, sources, args.force)
    first = sources[0]
    stored = next(iter(first.tensors.values()))[1]
    dtype_name = DTYPE_NAMES[str(stored)]
    cfg_path = os.path.join(first.ckpt_dir, "config.yaml")
    out_cfg = cfgmod.load(cfg_path, _layout_overrides(first, args.out))
    state = output_state(sources, weights, str(stored).replace("torch.", ""))
    # The merge's own model: megatron's local layer spec (it writes Transformer Engine's key names and needs no
    # GPU library), in the inputs' dtype, without FP8.
    build_cfg = cfgmod.load(cfg_path, [*_layout_overrides(first, args.out), "model.transformer_impl=local",
                                       f"model.params_dtype={dtype_name}", "model.fp8=null",
                                       "model.recompute_granularity=null"])

    if rt.launch_env().world_size != 1:
        raise MergeError("run merge_checkpoints in one process (not under torchrun): it reads any layout itself")
    partial = args.out.rstrip("/") + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        rt.initialize(1, 1, seed=out_cfg.train.seed)
        model = llama.build_gpt_model(build_cfg, first.arch, pre_process=True, post_process=True)
        n = merge_into(model, sources, weights)
        final = ckpt.save(partial, model, None, state, cfgmod.to_yaml(out_cfg))
        if os.path.isdir(args.out):
            shutil.rmtree(args.out)  # empty, or --force
        os.rename(partial, args.out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        rt.shutdown()
    listed = ", ".join(f"{w:g} x {s.ckpt_dir}" for s, w in zip(sources, weights))
    print(f"merged {len(sources)} checkpoint(s) ({listed}) -> {os.path.join(args.out, os.path.basename(final))} "
          f"(TP=1 PP=1, {n} tensors, {str(stored).replace('torch.', '')}; model weights only, no optimizer state)")
    return args.out


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    warnings.filterwarnings("ignore")
    try:
        merge(args)
    except (MergeError, ConfigError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
