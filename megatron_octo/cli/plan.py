#!/usr/bin/env python
"""Plan a Llama-3 training run on a GPU cluster: memory per GPU, FLOPs, time, GPU-hours, layouts.

    python tools/plan.py --model llama3.2-3b --gpus 64 --tokens 200e9
    python tools/plan.py --model llama3.1-8b --gpus 8 --tp 2 --cp 2 --precision fp8 --global-batch 128
    python tools/plan.py --model llama3.2-3b --gpus 64 --tokens octothinker --json

Without --tp/--pp/--cp the plan uses the fastest layout that fits; the ranked list follows.

FLOPs per token (training, forward + backward, megatron_octo.models.llama.flops_per_token):
    6 * (L*(h*(h + 2*kv) + h*h + 3*h*f) + V_pad*h) + 6*L*s*h * (1/2 causal | 1 full)
  --attention-flops causal (default) is Megatron-Bridge's accounting (its published 744 TFLOP/s for
  Llama-3-8B FP8 = 14,451 tokens/s/GPU x 51.5 GFLOP); full is NeMo's (697 TFLOP/s = 12,036 x 57.9).

Memory per GPU (megatron-core sharding, exact parameter counts per TP/PP rank):
  bf16 weights 2 B + fp32 main grads 4 B (--grad-dtype bf16: 2 B) + fp32 master/Adam m/v 12 B
  (/ DP*CP with the distributed optimizer); FP8 adds 2 B per transformer-layer GEMM weight (FP8 copy
  and transpose). Activations: Korthikanti et al. 2022 adapted to RMSNorm/GQA/SwiGLU and TE flash
  attention (no s^2 term), selective/full recompute, sequence parallel, 1F1B in-flight micro-batches,
  logits of the vocab-parallel cross entropy on the last stage. --reserve-gib covers the rest.

Time: step = (micro-batches + PP - 1) x slowest-stage micro-batch time (compute at the assumed MFU,
recompute FLOPs included, plus unoverlapped TP collectives and exposed CP ring traffic) + the
DP gradient reduction not hidden behind one micro-batch. See docs/planning.md.

Exit codes: 0 plan printed; 1 the layout (or every layout) does not fit in memory; 2 bad arguments.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

import yaml

from megatron_octo import config as cfgmod, planner as pl
from megatron_octo.models.llama import PRESETS, LlamaArchitecture, resolve_architecture
from megatron_octo.rl.length_schedule import parse_stairs



def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("model")
    g.add_argument("--model", default="llama3.2-3b",
                   help=f"a preset ({', '.join(PRESETS)}) or 'custom' (then give the shape below)")
    g.add_argument("--layers", type=int)
    g.add_argument("--hidden", type=int)
    g.add_argument("--ffn", type=int)
    g.add_argument("--heads", type=int)
    g.add_argument("--groups", type=int, help="query groups (KV heads)")
    g.add_argument("--vocab", type=int)
    g.add_argument("--tie-embeddings", action=argparse.BooleanOptionalAction, default=None)
    g = p.add_argument_group("workload")
    g.add_argument("--seq", type=int, default=8192, help="sequence length (default 8192)")
    g.add_argument("--global-batch", type=int, default=512, help="sequences per step (default 512 = 4M tokens)")
    g.add_argument("--tokens", default="octothinker",
                   help="token budget: 200e9, or name=tokens,... ; 'octothinker' = stable 200e9 + "
                        "3 decay branches of 20e9 (default)")
    g.add_argument("--precision", choices=pl.PRECISIONS, default="bf16")
    g.add_argument("--grad-dtype", choices=("fp32", "bf16"), default="fp32",
                   help="megatron DDP main-grad dtype (grad_reduce_in_fp32; the trainer uses fp32)")
    g = p.add_argument_group("layout (omit --tp/--pp/--cp to use the best-ranked layout)")
    g.add_argument("--gpus", type=int, help="GPU count (default: tp*pp*cp, or 8)")
    g.add_argument("--tp", type=int)
    g.add_argument("--pp", type=int)
    g.add_argument("--cp", type=int)
    g.add_argument("--micro-batch", type=int)
    g.add_argument("--recompute", choices=pl.RECOMPUTE)
    g.add_argument("--sequence-parallel", action=argparse.BooleanOptionalAction, default=None,
                   help="default: on when TP > 1")
    g.add_argument("--distributed-optimizer", action=argparse.BooleanOptionalAction, default=None,
                   help="default: on (ranking tries both)")
    g = p.add_argument_group("hardware and efficiency")
    g.add_argument("--gpu", choices=sorted(pl.HARDWARE), default="h100")
    g.add_argument("--memory-gib", type=float, help="memory per GPU (default: the GPU's)")
    g.add_argument("--reserve-gib", type=float, default=8.0,
                   help="kept free for CUDA context, NCCL, workspaces, fragmentation (default 8)")
    g.add_argument("--gpus-per-node", type=int)
    g.add_argument("--intra-node-GBps", type=float, help="NVLink bus bandwidth per GPU")
    g.add_argument("--inter-node-GBps", type=float, help="network bandwidth per GPU")
    e = g.add_mutually_exclusive_group()
    e.add_argument("--mfu", type=float,
                   help=f"assumed MFU on the work done (default {pl.DEFAULT_MFU}: Megatron-Bridge Llama-3-8B "
                        f"FP8, 744 / 1979 TFLOP/s)")
    e.add_argument("--tflops", type=float, help="assumed TFLOP/s per GPU instead of --mfu")
    g.add_argument("--attention-flops", choices=("causal", "full"), default="causal",
                   help="causal: Megatron-Bridge accounting (default); full: NeMo's")
    o = p.add_argument_group("output")
    o.add_argument("--top", type=int, default=10, help="ranked layouts to print (default 10)")
    o.add_argument("--json", action="store_true", help="print the plan as JSON")
    r = p.add_argument_group("RL and evaluation memory (per GPU, at each length stair / for the longest prompt)")
    r.add_argument("--rl", metavar="RECIPE", help="an RL recipe (rl_grpo.yaml): memory at each rl.max_response_length "
                                                  "stair and which TP/PP/micro-batch fits on --gpus")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="--rl: a config override (repeatable), e.g. --set rl.rollout_batch_size=16")
    r.add_argument("--engine", choices=("static", "dynamic"),
                   help="--rl: the rollout engine whose KV buffer counts (default: rl.rollout_engine; 'auto' is "
                        "dynamic, what runs on a GPU with flash-attn)")
    r.add_argument("--eval", metavar="BENCH[,BENCH]", help="benchmarks (names or JSONL paths) for the eval CLI's memory")
    r.add_argument("--tokenizer", help="--eval: tokenizer file to measure the longest prompt with")
    r.add_argument("--tokenizer-library", default="auto", help="--eval: sentencepiece, huggingface, tiktoken, auto")
    r.add_argument("--prompt-tokens", type=int, help="--eval: the longest prompt in tokens (instead of --tokenizer)")
    r.add_argument("--protocol", choices=("base", "rl"), default="base", help="--eval: as python -m megatron_octo.eval")
    r.add_argument("--max-new-tokens", type=int, help="--eval: default the protocol's (1024 base)")
    r.add_argument("--batch-size", type=int, default=16, help="--eval: as python -m megatron_octo.eval (default 16)")
    return p.parse_args(argv)


def build_arch(args) -> LlamaArchitecture:
    if args.model == "custom":
        missing = [k for k in ("layers", "hidden", "ffn", "heads", "groups", "vocab") if getattr(args, k) is None]
        if missing:
            raise ValueError(f"--model custom needs --{' --'.join(missing)}")
        base = dataclasses.replace(PRESETS["llama3.1-8b"], tie_embeddings=False)
    elif args.model in PRESETS:
        base = PRESETS[args.model]
    else:
        raise ValueError(f"--model: unknown preset {args.model!r}; known: {', '.join(PRESETS)}, custom")
    changes = {k: v for k, v in dict(num_layers=args.layers, hidden_size=args.hidden, ffn_hidden_size=args.ffn,
                                     num_attention_heads=args.heads, num_query_groups=args.groups,
                                     vocab_size=args.vocab, tie_embeddings=args.tie_embeddings).items()
               if v is not None}
    arch = dataclasses.replace(base, **changes)
    for k in ("num_layers", "hidden_size", "ffn_hidden_size", "num_attention_heads", "num_query_groups", "vocab_size"):
        if getattr(arch, k) < 1:
            raise ValueError(f"{k} must be >= 1")
    if arch.hidden_size % arch.num_attention_heads or arch.num_attention_heads % arch.num_query_groups:
        raise ValueError("heads must divide hidden and groups must divide heads")
    return arch


def build(args):
    arch = build_arch(args)
    hw = pl.HARDWARE[args.gpu]
    hw = dataclasses.replace(hw, **{k: v for k, v in dict(
        gpus_per_node=args.gpus_per_node, intra_node_GBps=args.intra_node_GBps,
        inter_node_GBps=args.inter_node_GBps).items() if v is not None})
    w = pl.Workload(arch, args.seq, args.global_batch, args.precision, args.grad_dtype)
    if args.precision == "fp8" and hw.peak_fp8 is None:
        raise ValueError(f"--precision fp8: {hw.name} has no FP8 tensor cores")
    mfu = args.tflops * 1e12 / hw.peak(args.precision) if args.tflops else (args.mfu or pl.DEFAULT_MFU)
    if not 0 < mfu <= 1:
        raise ValueError(f"--mfu/--tflops: the MFU must be in (0, 1], got {mfu:.3f}")
    stages = pl.parse_tokens(args.tokens)
    explicit = any(getattr(args, k) is not None for k in ("tp", "pp", "cp"))
    gpus = args.gpus or ((args.tp or 1) * (args.pp or 1) * (args.cp or 1) if explicit else 8)
    kw = dict(reserve_gib=args.reserve_gib, mfu=mfu, accounting=args.attention_flops, memory_gib=args.memory_gib)
    enum = dict(
        micro_batches=(args.micro_batch,) if args.micro_batch else (1, 2, 4),
        recompute=(args.recompute,) if args.recompute else pl.RECOMPUTE,
        distributed_optimizer=(args.distributed_optimizer,) if args.distributed_optimizer is not None else (True, False))
    ranked = pl.rank_layouts(w, gpus, hw, **kw, **enum)
    if explicit:
        tp, pp, cp = args.tp or 1, args.pp or 1, args.cp or 1
        if gpus % (tp * pp * cp):
            raise ValueError(f"parallel.tp: tp*pp*cp = {tp}*{pp}*{cp} = {tp * pp * cp} does not divide --gpus {gpus}")
        lay = pl.Layout(tp, pp, cp, gpus // (tp * pp * cp),
                        args.sequence_parallel if args.sequence_parallel is not None else tp > 1,
                        args.micro_batch or 1, args.recompute or "none",
                        True if args.distributed_optimizer is None else args.distributed_optimizer)
        problems = pl.layout_problems(w, lay, gpus, hw)
        if problems:
            raise ValueError("; ".join(problems))
    elif ranked:
        lay = ranked[0].layout
    else:
        return None, w, hw, stages, kw, ranked, gpus
    return lay, w, hw, stages, kw, ranked, gpus


def _h(hours: float) -> str:
    return f"{hours:,.1f} h ({hours / 24:,.1f} d)" if hours >= 24 else f"{hours:,.1f} h"


def render(result: dict, explicit: bool) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    con = Console(width=None if sys.stdout.isatty() else 120, highlight=False)
    m, wl, hw, lay = result["model"], result["workload"], result["hardware"], result["layout"]
    fl, mem, tp, bud = result["flops"], result["memory"], result["throughput"], result["budget"]

    t = Table(title="Plan", box=box.SIMPLE_HEAVY, show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    tie = "tied" if m["tie_embeddings"] else "untied"
    t.add_row("model", f"{result['model_name']}: {m['parameters']:,} parameters; L={m['num_layers']} "
                       f"h={m['hidden_size']} f={m['ffn_hidden_size']} heads={m['num_attention_heads']} "
                       f"kv groups={m['num_query_groups']} V={m['vocab_size']:,} (padded {m['padded_vocab']:,}), "
                       f"{tie} embeddings")
    t.add_row("workload", f"seq {wl['seq_length']:,} x global batch {wl['global_batch']} = "
                          f"{wl['tokens_per_step']:,} tokens/step; {wl['precision']}, {wl['grad_dtype']} main grads")
    t.add_row("hardware", f"{lay['gpus']} x {hw['name']} ({hw['gpus_per_node']}/node, {hw['memory_GiB_used']:.1f} GiB, "
                          f"reserve {hw['reserve_GiB']:.1f} GiB), NVLink {hw['intra_node_GBps']:.0f} GB/s, "
                          f"network {hw['inter_node_GBps']:.0f} GB/s per GPU")
    how = "as given" if explicit else "best ranked layout"
    t.add_row("layout", f"TP {lay['tp']}  PP {lay['pp']}  CP {lay['cp']}  DP {lay['dp']}  "
                        f"sequence parallel {'on' if lay['sequence_parallel'] else 'off'}  micro-batch "
                        f"{lay['micro_batch']} x {lay['microbatches']} micro-batches  recompute {lay['recompute']}  "
                        f"distributed optimizer {'on' if lay['distributed_optimizer'] else 'off'}  ({how})")
    t.add_row("FLOPs/token", f"{fl['model_flops_per_token'] / 1e9:.2f} GFLOP model "
                             f"({fl['hardware_flops_per_token'] / 1e9:.2f} executed with recompute); "
                             f"{fl['formula']}; {fl['accounting']}: {fl['accounting_note']}")
    con.print(t)

    mt = Table(title="Memory per GPU (GiB) — " + mem["activation_model"], box=box.SIMPLE_HEAVY,
               title_justify="left")
    for c in ("PP stage", "params/rank", "bf16 weights", "main grads", "optimizer", "fp8 cache",
              "activations", "total", "in flight"):
        mt.add_column(c, justify="right")
    rows = mem["stages"]
    shown = [rows[0]] + ([rows[-1]] if len(rows) > 1 else [])
    for r in shown:
        style = "bold" if r["stage"] == mem["peak_stage"] else None
        mt.add_row(f"{r['stage']}{' (first)' if r['stage'] == 0 and len(rows) > 1 else ''}"
                   f"{' (last)' if r['stage'] == len(rows) - 1 and len(rows) > 1 else ''}",
                   f"{r['parameters']:,}", f"{r['weights_GiB']:.2f}", f"{r['grads_GiB']:.2f}",
                   f"{r['optimizer_GiB']:.2f}", f"{r['fp8_cache_GiB']:.2f}", f"{r['activations_GiB']:.2f}",
                   f"{r['total_GiB']:.2f}", str(r["inflight_microbatches"]), style=style)
    con.print(mt)
    verdict = "[green]fits[/green]" if mem["fits"] else "[bold red]DOES NOT FIT[/bold red]"
    con.print(f"  peak {mem['peak_GiB']:.1f} GiB on stage {mem['peak_stage']} of {mem['available_GiB']:.1f} GiB "
              f"available: {verdict}")

    th = Table(title="Throughput", box=box.SIMPLE_HEAVY, show_header=False, title_justify="left")
    th.add_column(style="bold")
    th.add_column()
    th.add_row("assumed", f"MFU {tp['mfu_assumed']:.1%} of {tp['peak_TFLOPs']:.0f} TFLOP/s "
                          f"({tp['mfu_assumed'] * tp['peak_TFLOPs']:.0f} TFLOP/s on the work done) -> "
                          f"step {tp['ideal_step_s']:.2f} s without layout losses")
    th.add_row("layout losses", f"pipeline bubble {tp['bubble_fraction']:.1%}; TP comm "
                                f"{tp['tp_comm_s_per_microbatch'] * 1e3:.1f} ms and CP exposed "
                                f"{tp['cp_exposed_s_per_microbatch'] * 1e3:.1f} ms per micro-batch "
                                f"(compute {tp['microbatch_compute_s'] * 1e3:.0f} ms); DP reduction "
                                f"{tp['dp_comm_s'] * 1e3:.0f} ms, exposed {tp['dp_exposed_s'] * 1e3:.0f} ms")
    th.add_row("step time", f"{tp['step_s']:.2f} s")
    th.add_row("tokens/s", f"{tp['tokens_per_s']:,.0f} ({tp['tokens_per_s_per_gpu']:,.0f} per GPU)")
    th.add_row("model TFLOP/s/GPU", f"{tp['model_TFLOPs_per_gpu']:.0f} (MFU {tp['mfu_modelled']:.1%})")
    con.print(th)

    bt = Table(title="Token budget", box=box.SIMPLE_HEAVY, title_justify="left")
    for c in ("stage", "tokens", "steps", "wall-clock", "GPU-hours"):
        bt.add_column(c, justify="right")
    for b in bud:
        bt.add_row(b["name"], f"{b['tokens'] / 1e9:,.1f}B", f"{b['steps']:,}", _h(b["hours"]), f"{b['gpu_hours']:,.0f}")
    tot = result["budget_total"]
    if len(bud) > 1:
        bt.add_row("total", f"{tot['tokens'] / 1e9:,.1f}B", f"{tot['steps']:,}", _h(tot["hours"]),
                   f"{tot['gpu_hours']:,.0f}", style="bold")
    con.print(bt)
    if len(bud) > 1:
        con.print("  wall-clock is sequential; the decay branches are independent and can run at the same time "
                  "on separate allocations (same GPU-hours).")

    if result["ranked_layouts"]:
        rt = Table(title=f"Ranked layouts for {lay['gpus']} GPUs (top {len(result['ranked_layouts'])}; each "
                         f"TP/PP/CP/micro-batch with its fastest fitting recompute/optimizer choice; "
                         f"equal estimates folded into the simplest; #mb = micro-batches per step)",
                   box=box.SIMPLE_HEAVY, title_justify="left")
        for c in ("#", "TP", "PP", "CP", "DP", "mbs", "#mb", "recompute", "distopt", "GiB/GPU",
                  "MFU", "tok/s/GPU", "step s", "budget"):
            rt.add_column(c, justify="right")
        for i, r in enumerate(result["ranked_layouts"], 1):
            rt.add_row(str(i), str(r["tp"]), str(r["pp"]), str(r["cp"]), str(r["dp"]), str(r["micro_batch"]),
                       str(r["microbatches"]), r["recompute"], "on" if r["distributed_optimizer"] else "off",
                       f"{r['memory_GiB']:.1f}", f"{r['mfu']:.1%}", f"{r['tokens_per_s_per_gpu']:,.0f}",
                       f"{r['step_s']:.2f}", f"{r['hours']:,.1f} h")
        con.print(rt)
    con.print(f"[bold]Run it[/bold] ({result['nodes']} node(s) x {hw['gpus_per_node']} GPUs, torchrun or "
              f"launch_slurm/): python -m megatron_octo.train --config <recipe> {' '.join(result['train_overrides'])}")
    con.print("[dim]Estimates, not measurements: memory excludes transient buffers (the reserve covers them); "
              "time assumes the stated MFU and a simple communication model (docs/planning.md).[/dim]")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.rl or args.eval:
        try:
            return rl_main(args) if args.rl else eval_main(args)
        except (ValueError, FileNotFoundError) as exc:  # ConfigError, BenchmarkError, TokenizerError are ValueErrors
            print(f"plan: error: {exc}", file=sys.stderr)
            return 2
    try:
        lay, w, hw, stages, kw, ranked, gpus = build(args)
    except ValueError as exc:
        print(f"plan: error: {exc}", file=sys.stderr)
        return 2
    if lay is None:
        msg = (f"no layout of {gpus} GPUs fits {(args.memory_gib or hw.memory_gib) - args.reserve_gib:.1f} GiB per "
               f"GPU for {args.model} at seq {args.seq}, global batch {args.global_batch} ({args.precision})")
        if args.json:
            print(json.dumps({"error": msg, "ranked_layouts": []}))
        print(f"plan: {msg}", file=sys.stderr)
        return 1
    result = pl.plan(w, lay, hw, stages, top=args.top, ranked=ranked, **kw)
    result["model_name"] = args.model
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        render(result, explicit=any(getattr(args, k) is not None for k in ("tp", "pp", "cp")))
    return 0 if result["memory"]["fits"] else 1


# ---- --rl / --eval ---------------------------------------------------------------------------------

def _gib(x: float) -> str:
    return f"{x / pl.GiB:.1f}"


def rl_workload(cfg, engine: str | None) -> pl.RLWorkload:
    r = cfg.rl
    arch = resolve_architecture(cfg.model)
    engine = engine or ("dynamic" if r.rollout_engine == "auto" else r.rollout_engine)
    return pl.RLWorkload(
        arch=arch, prompt_tokens=r.max_prompt_length, stairs=tuple(parse_stairs(dict(r.max_response_length))),
        sequences_per_update=r.mini_batch_prompts * r.samples_per_prompt, rollout_batch=r.rollout_batch_size,
        algorithm=r.algorithm, kl_coef=r.kl_coef, engine=engine, kv_cache_gib=r.kv_cache_gb,
        recompute=cfg.model.recompute_granularity or "none")


def rl_main(args) -> int:
    cfg = cfgmod.load(args.rl, args.overrides)
    with open(args.rl) as f:
        if "rl" not in (yaml.safe_load(f) or {}):
            raise ValueError(f"--rl {args.rl}: not an RL recipe (no 'rl:' section)")
    rw = rl_workload(cfg, args.engine)
    gpus = args.gpus or 8
    hw = pl.HARDWARE[args.gpu]
    avail = ((args.memory_gib or hw.memory_gib) - args.reserve_gib) * pl.GiB
    lay = pl.Layout(cfg.parallel.tp, cfg.parallel.pp, 1, gpus // (cfg.parallel.tp * cfg.parallel.pp),
                    cfg.parallel.tp > 1, cfg.rl.micro_batch_size, rw.recompute, cfg.parallel.use_distributed_optimizer)
    if lay.gpus != gpus:
        raise ValueError(f"parallel.tp: tp*pp = {cfg.parallel.tp}*{cfg.parallel.pp} does not divide --gpus {gpus}")
    rows = pl.rl_memory(rw, lay)
    cands = pl.rl_candidates(rw, gpus, hw)
    best = pl.rl_verdict(cands, avail)
    if args.json:
        print(json.dumps({"recipe": args.rl, "workload": dataclasses.asdict(rw) | {"arch": None},
                          "layout": dataclasses.asdict(lay), "available_GiB": avail / pl.GiB,
                          "stairs": [dataclasses.asdict(x) | {"total": x.total} for x in rows],
                          "candidates": [{**dataclasses.asdict(c.layout), "peak_GiB": c.peak / pl.GiB,
                                          "supported": c.supported, "fits": c.peak <= avail} for c in cands],
                          "verdict": dataclasses.asdict(best.layout) if best else None}, indent=1))
        return 0 if best else 1
    print(f"RL memory per GPU: {args.rl} on {gpus} x {hw.name} ({avail / pl.GiB:.1f} GiB usable, reserve "
          f"{args.reserve_gib:.0f} GiB); {rw.algorithm}, {rw.sequences_per_update} sequences per update, prompts <= "
          f"{rw.prompt_tokens} tokens, {rw.engine} engine KV buffer for {rw.rollout_batch} x {rw.longest} tokens "
          f"(the longest stair; built once, held through the update), recompute {rw.recompute}; total = the "
          f"rest + the larger of (activations + logits) of an update micro-batch and the rollout's logits")
    print(f"recipe layout TP {lay.tp} PP {lay.pp} DP {lay.dp} micro-batch {lay.micro_batch}, last pipeline stage, GiB:")
    head = ("step", "response", "seq", "weights", "grads", "optimizer", "critic", "reference", "KV buffer",
            "activations", "logits", "rollout lgt", "total")
    print("  " + " ".join(f"{h:>11}" for h in head))
    for x in rows:
        vals = (x.step, x.response_cap, x.seq_length) + tuple(_gib(v) for v in (
            x.actor_weights, x.actor_grads, x.actor_optimizer, x.critic, x.reference, x.kv_buffer, x.activations,
            x.logits, x.rollout_logits, x.total))
        print("  " + " ".join(f"{v:>11}" for v in vals) + ("" if x.total <= avail else "  DOES NOT FIT"))
    print("peak GiB at the longest stair per layout (TP/PP/micro-batch; PP > 1: the RL trainer does not run it yet):")
    for c in sorted(cands, key=lambda c: (c.layout.tp, c.layout.pp, c.layout.micro_batch)):
        state = "fits" if c.peak <= avail else "no"
        print(f"  TP {c.layout.tp} PP {c.layout.pp} DP {c.layout.dp} mbs {c.layout.micro_batch}: "
              f"{c.peak / pl.GiB:6.1f}  {state}{'' if c.supported else ' (PP: not supported by RL)'}")
    if best is None:
        print(f"verdict: no supported layout fits {gpus} x {hw.name}: lower rl.rollout_batch_size or "
              f"rl.kv_cache_gb, or add GPUs")
        return 1
    b = best.layout
    print(f"verdict: on {gpus} x {hw.name} run TP {b.tp} PP {b.pp} (DP {b.dp}) with "
          f"rl.micro_batch_size={b.micro_batch}: peak {best.peak / pl.GiB:.1f} of {avail / pl.GiB:.1f} GiB "
          f"(parallel.tp={b.tp} parallel.pp={b.pp} rl.micro_batch_size={b.micro_batch})")
    return 0


def eval_main(args) -> int:
    arch = build_arch(args)
    hw = pl.HARDWARE[args.gpu]
    avail = ((args.memory_gib or hw.memory_gib) - args.reserve_gib) * pl.GiB
    if args.prompt_tokens is None and not args.tokenizer:
        raise ValueError("--eval needs --tokenizer (to measure the longest prompt) or --prompt-tokens")
    # lazy: the eval runner and the tokenizers import megatron-core (seconds, warnings); only --eval needs them
    from megatron_octo.eval.runner import eval_sets, prompt_budgets
    from tokenization.megatron_wrappers import load_tokenizer

    ns = argparse.Namespace(benchmarks=args.eval, fields=None, limit=None, protocol=args.protocol,
                            template="orz_base")
    sets = eval_sets(ns)
    tok = None if args.prompt_tokens is not None else load_tokenizer(args.tokenizer, args.tokenizer_library)
    if args.batch_size < 1 or (args.prompt_tokens is not None and args.prompt_tokens < 1):
        raise ValueError("--batch-size and --prompt-tokens must be >= 1")
    tps = [tp for tp in (1, 2, 4, 8) if not (arch.num_query_groups % tp or arch.num_attention_heads % tp)]
    rows = []  # (benchmark, longest prompt, max new tokens, TP, memory)
    for name, longest, budget in prompt_budgets(sets, tok, args.max_new_tokens):
        longest = args.prompt_tokens if args.prompt_tokens is not None else longest
        rows += [(name, longest, budget, tp, pl.eval_memory(arch, tp=tp, pp=1, batch=args.batch_size,
                                                             prompt_tokens=longest, max_new_tokens=budget))
                 for tp in tps]
    fitting = [tp for tp in tps if all(m.total <= avail for *_, t, m in rows if t == tp)]
    best = min(fitting, default=None)
    if args.json:
        print(json.dumps({"available_GiB": avail / pl.GiB, "verdict_tp": best, "rows": [
            {"benchmark": name, "prompt_tokens": longest, "max_new_tokens": budget, "tp": tp,
             "batch": args.batch_size, **dataclasses.asdict(m), "total": m.total, "fits": m.total <= avail}
            for name, longest, budget, tp, m in rows]}, indent=1))
        return 0 if best else 1
    print(f"eval memory per GPU ({args.model}, --batch-size {args.batch_size}, {hw.name} {avail / pl.GiB:.1f} GiB "
          f"usable); KV cache sized for the longest prompt + max new tokens, GiB:")
    for name, longest, budget, tp, m in rows:
        print(f"  {name}: prompt {longest} + {budget} new = {longest + budget} tokens, TP {tp}: weights "
              f"{_gib(m.weights)} KV {_gib(m.kv_buffer)} logits {_gib(m.logits)} total {_gib(m.total)} "
              f"{'fits' if m.total <= avail else 'DOES NOT FIT'}")
    old = pl.kv_static_bytes(arch, tp=1, pp=1, max_batch_size=args.batch_size,
                             max_sequence_length=arch.max_position_embeddings)
    print(f"  (sized by max_position_embeddings={arch.max_position_embeddings} instead: KV {_gib(old)} GiB at TP 1)")
    if best is None:
        print(f"verdict: no TP fits every benchmark at --batch-size {args.batch_size}: lower it")
        return 1
    print(f"verdict: --tp {best} --batch-size {args.batch_size} fits every benchmark (peak "
          f"{max(m.total for *_, t, m in rows if t == best) / pl.GiB:.1f} of {avail / pl.GiB:.1f} GiB)")
    return 0

if __name__ == "__main__":
    sys.exit(main())
