"""Check a launch before anything is submitted or started (used by launch_slurm/common.sh).

    python launch_slurm/preflight.py train --world-size N [--gpu auto|yes|no] --config RECIPE [a.b=c ...]
    python launch_slurm/preflight.py eval --checkpoint DIR [--benchmarks a,b] [--tp N --pp N --world-size N]
    python launch_slurm/preflight.py rl --world-size N --config RECIPE [a.b=c ...]

``train`` loads the recipe with its overrides and runs the trainer's own validation
(``megatron_octo.training.checks.validate``: keys, parallel layout against the world size, tokenizer,
mixture and dataset files), then checks that a decay stage's ``checkpoint.init_from`` (or a weights-only
start) really holds a checkpoint. ``rl`` does the same with the RL trainer's validation
(``megatron_octo.rl.checks.validate_rl``: batch arithmetic against the data-parallel size, response-length
stairs, prompts file) plus the tokenizer and the start checkpoint. ``eval`` checks the checkpoint and the
benchmark data. Exit 0 with a one-line summary, or exit 2 with a message naming what is wrong — in
seconds, with no process group and no GPU touched (``--gpu yes`` on a login node assumes the compute
nodes have GPUs and Transformer Engine; the trainer checks again there).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings


def _fail(msg: str) -> int:
    print(f"preflight: error: {msg}", file=sys.stderr)
    return 2


def _have_gpu(choice: str) -> tuple[bool, bool]:
    if choice == "no":
        return False, False
    if choice == "yes":
        return True, True
    import torch

    from megatron_octo.models import llama

    gpu = torch.cuda.is_available()
    return gpu, gpu and llama.transformer_engine_available()


def check_train(args, overrides) -> int:
    from megatron_octo import config as cfgmod
    from megatron_octo.training import checks
    from megatron_octo.checkpoint.save_load import CheckpointError, latest_checkpoint, resolve_checkpoint

    try:
        cfg = cfgmod.load(args.config, overrides)
        gpu, te = _have_gpu(args.gpu)
        checks.validate(cfg, args.world_size, have_gpu=gpu, have_te=te)
    except cfgmod.ConfigError as exc:
        return _fail(str(exc))
    except CheckpointError as exc:
        return _fail(str(exc))
    ck = cfg.checkpoint
    try:
        resume = None
        for d in (ck.load, ck.save):
            if d and latest_checkpoint(d) is not None:
                resume = latest_checkpoint(d)
                break
        if resume is None and ck.init_from is not None:
            start = resolve_checkpoint(ck.init_from)
        else:
            start = None
    except CheckpointError as exc:
        return _fail(f"config key 'checkpoint.init_from': {exc}")
    steps = -(-cfg.train.tokens // cfgmod.tokens_per_step(cfg))
    how = (f"resuming {resume}" if resume else f"starting from {start}" if start else "starting fresh")
    print(f"preflight ok: {args.config} | stage {cfg.schedule.stage} | world size {args.world_size} "
          f"(tp {cfg.parallel.tp}, pp {cfg.parallel.pp}, dp {cfgmod.data_parallel_size(cfg, args.world_size)}) "
          f"| {cfg.train.tokens} tokens = {steps} steps | save {ck.save} | {how}", flush=True)
    return 0


def check_eval(args) -> int:
    from megatron_octo.eval.benchmarks import BenchmarkError, load_benchmark
    from megatron_octo.checkpoint.save_load import CheckpointError, resolve_checkpoint

    if not os.path.isdir(args.checkpoint):
        return _fail(f"--checkpoint: checkpoint directory not found: {args.checkpoint}")
    try:
        ckpt = resolve_checkpoint(args.checkpoint)
    except CheckpointError as exc:
        return _fail(f"--checkpoint: {exc}")
    if args.world_size % (args.tp * args.pp) != 0:
        return _fail(f"--tp {args.tp} x --pp {args.pp} does not divide the world size {args.world_size}")
    names = [b for b in args.benchmarks.split(",") if b]
    for name in names:
        try:
            load_benchmark(name, fields=args.fields, limit=1)
        except BenchmarkError as exc:
            return _fail(f"--benchmarks: {exc}")
    print(f"preflight ok: eval {ckpt} on {','.join(names)} | world size {args.world_size} (tp {args.tp}, pp {args.pp})",
          flush=True)
    return 0


def check_rl(args, overrides) -> int:
    from megatron_octo import config as cfgmod
    from megatron_octo.rl.checks import validate_rl
    from megatron_octo.rl.length_schedule import parse_stairs
    from megatron_octo.checkpoint.save_load import CheckpointError, latest_checkpoint, resolve_checkpoint

    try:
        cfg = cfgmod.load(args.config, overrides)
        gpu, te = _have_gpu(args.gpu)
        validate_rl(cfg, args.world_size, have_gpu=gpu, have_te=te)
    except (cfgmod.ConfigError, CheckpointError) as exc:
        return _fail(str(exc))
    if cfgmod.tokenizer_library(cfg) != "null" and not (cfg.tokenizer.path and os.path.exists(cfg.tokenizer.path)):
        return _fail(f"config key 'tokenizer.path': file not found: {cfg.tokenizer.path}")
    ck, r = cfg.checkpoint, cfg.rl
    try:
        resume = latest_checkpoint(ck.save) if ck.save else None
        if resume is None and ck.init_from is None:
            return _fail(f"config key 'checkpoint.init_from': not set, and checkpoint.save={ck.save} holds no checkpoint")
        start = resolve_checkpoint(ck.init_from) if resume is None else None
    except CheckpointError as exc:
        return _fail(f"config key 'checkpoint.init_from': {exc}")
    stairs = ", ".join(f"{s}: {n}" for s, n in parse_stairs(dict(r.max_response_length)))
    print(f"preflight ok: {args.config} | rl {r.algorithm} | world size {args.world_size} (tp {cfg.parallel.tp}, "
          f"dp {cfgmod.data_parallel_size(cfg, args.world_size)}) | {r.steps} steps of {r.prompts_per_step} prompts "
          f"x {r.samples_per_prompt} samples, mini-batch {r.mini_batch_prompts} | response cap {{{stairs}}} "
          f"| save {ck.save} | {f'resuming {resume}' if resume else f'starting from {start}'}", flush=True)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="launch_slurm/preflight.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    for name in ("train", "rl"):
        t = sub.add_parser(name)
        t.add_argument("--world-size", type=int, required=True)
        t.add_argument("--gpu", choices=("auto", "yes", "no"), default="auto")
        t.add_argument("--config", required=True)
    e = sub.add_parser("eval")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--benchmarks", default="gsm8k,math500,olympiadbench,amc23")
    e.add_argument("--fields", default=None)
    e.add_argument("--tp", type=int, default=1)
    e.add_argument("--pp", type=int, default=1)
    e.add_argument("--world-size", type=int, default=1)
    args, rest = p.parse_known_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    warnings.filterwarnings("ignore")
    if args.what == "train":
        return check_train(args, rest)
    if args.what == "rl":
        return check_rl(args, rest)
    if rest:
        return _fail(f"unexpected arguments: {' '.join(rest)}")
    return check_eval(args)


if __name__ == "__main__":
    sys.exit(main())
