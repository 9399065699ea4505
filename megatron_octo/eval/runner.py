"""Evaluate a checkpoint on math benchmarks with OctoThinker's protocols.

    python -m megatron_octo.eval --checkpoint runs/demo/decay_long --benchmarks gsm8k,math500 \
        [--protocol base|rl] [--limit 50] [--max-new-tokens 1024] [--n 4 --temperature 0.6] [--out DIR]
    torchrun --nproc-per-node 2 -m megatron_octo.eval ... --tp 2

Base models: few-shot, greedy (GSM8K 8-shot "Q:/A:", MATH500/OlympiadBench Minerva 4-shot, AMC23
0-shot). RL models (``--protocol rl``): zero-shot with the RL template (``--template orz_base``).
Sampled decoding (``--n`` > 1) reports mean@n and unbiased pass@k. ``--list-protocols`` prints the
paper's per-benchmark settings with their sources and exits.

Every response is graded twice: by math-verify (``--grader math_verify``, the default and the RL
reward) and by OctoThinker's own rules per benchmark (``--grader octothinker``, the rules behind the
paper's numbers). ``--grader`` selects which verdict is the accuracy; ``--show-disagreements`` lists
the samples on which the two differ in results.md.

Writes ``<out>/<benchmark>.jsonl`` (prompt, response, gold, and per sample ``correct``/``extracted``
of the selected grader plus ``correct_math_verify``, ``correct_octothinker``, ``extracted_math_verify``,
``extracted_octothinker``, ``lenient_octothinker``), ``<out>/summary.json`` and ``<out>/results.md`` (both name
the grader and count, as ``lenient_correct``, the samples the octothinker grader credits only through the
non-strict LaTeX parse of its symbolic fallback)
and TensorBoard scalars ``eval/<benchmark>/...`` under ``<out>/tensorboard`` at the checkpoint's
iteration.

Exit codes: 0 done; 2 bad arguments, benchmark or checkpoint; 75 stopped by SIGTERM/SIGUSR1: the
benchmarks finished before the signal have complete ``.jsonl`` files, nothing else is written (no
summary, no partial file); run it again to evaluate.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import signal
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Optional

import torch.distributed as dist
from megatron.core import parallel_state

from megatron_octo.config import ConfigError
from megatron_octo.eval import passk
from megatron_octo.eval.benchmarks import BenchmarkError, BENCHMARKS, load_benchmark
from megatron_octo.eval.grader import DEFAULT_TIMEOUT, grade_detailed, grade_octothinker, GRADERS, Verdict
from megatron_octo.eval.octothinker_grader import rule_for
from megatron_octo.eval.prompts import exemplar_protocol, get_protocol, Protocol
from megatron_octo.eval.protocols import format_protocol_table
from megatron_octo.generation import SamplingConfig
from megatron_octo.generators import make_generator
from megatron_octo.models.from_checkpoint import load_for_inference
from megatron_octo.runtime import distributed as rt, faults
from megatron_octo.checkpoint.save_load import CheckpointError

EXIT_SIGNALLED = 75  # stopped by SIGTERM/SIGUSR1 (EX_TEMPFAIL: run again)
DISAGREEMENTS_SHOWN = 50  # per benchmark in results.md; the JSONL has them all


class EvalInterrupted(Exception):
    """SIGTERM/SIGUSR1 arrived; raised in the main thread from the signal handler."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.out_dir: Optional[str] = None
        self.done: list = []
        self.pending: list = []


@dataclass
class _Signals:
    """Turns SIGTERM/SIGUSR1 into :class:`EvalInterrupted`, held back while output files are written."""

    deferring: bool = False
    pending: Optional[int] = None
    previous: dict = field(default_factory=dict)

    def install(self) -> "_Signals":
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            with contextlib.suppress(ValueError):  # not the main thread
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.deferring:
            self.pending = signum
            return
        raise EvalInterrupted(signum)

    @contextlib.contextmanager
    def writing(self, final: bool = False):
        """Files written inside are complete; a signal meanwhile is raised afterwards (unless ``final``:
        then the run is complete and the signal changes nothing)."""
        self.deferring = True
        try:
            yield
        finally:
            self.deferring = False
        if self.pending is not None and not final:
            raise EvalInterrupted(self.pending)

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


@dataclass
class BenchResult:
    name: str
    protocol: str
    num_examples: int
    accuracy: float  # greedy accuracy, or mean@n when sampling
    pass_at_k: dict
    mean_response_tokens: float
    truncated: float  # share of responses that hit the token limit
    grader: str = "math_verify"  # which grader's verdicts ``accuracy`` and ``pass_at_k`` use
    octothinker_rule: str = ""
    accuracy_math_verify: float = 0.0
    accuracy_octothinker: float = 0.0
    disagreements: int = 0  # samples the two graders judge differently
    # Samples the octothinker grader credits only through the non-strict LaTeX parse of its symbolic
    # fallback (a strict parse says wrong), e.g. "The answer is $144$. I hope it is correct." for a gold of 4;
    # included in accuracy_octothinker, as in OctoThinker's own harness.
    lenient_correct: int = 0


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m megatron_octo.eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="a save directory (latest) or one iter_NNNNNNN directory (required)")
    p.add_argument("--benchmarks", default="gsm8k,math500,olympiadbench,amc23",
                   help="comma-separated names (gsm8k, math500, olympiadbench, amc23, aime24, minerva_math, "
                        "college_math) or JSONL paths (with --fields)")
    p.add_argument("--fields", default=None, help="field mapping for JSONL paths, e.g. question=problem,answer=sol")
    p.add_argument("--protocol", choices=("base", "rl"), default="base",
                   help="base: few-shot per benchmark; rl: zero-shot RL template")
    p.add_argument("--template", default="orz_base", help="RL template for --protocol rl (orz_base, simple, few_shot)")
    p.add_argument("--shots-from", default=None, metavar="JSONL",
                   help="--protocol base: a few-shot probe whose exemplars are the first --shots records (question, "
                        "answer = worked solution, final_answer) of this file, in the 'simple' layout, for every "
                        "benchmark (the demo's probe of its mid-trained models; disjoint from the problems asked)")
    p.add_argument("--shots", type=int, default=4, help="exemplars taken from --shots-from")
    p.add_argument("--limit", type=int, default=None, help="first N examples of each benchmark")
    p.add_argument("--max-new-tokens", type=int, default=None, help="default: the protocol's (1024 base)")
    p.add_argument("--n", type=int, default=1, help="samples per problem (sampled decoding)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--pass-k", default="1", help="comma-separated k for pass@k (k <= n)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-seq-len", type=int, default=None,
                   help="prompt + response tokens, the KV cache's length (default: the longest prompt + max new "
                        "tokens)")
    p.add_argument("--tp", type=int, default=1)
    p.add_argument("--pp", type=int, default=1)
    p.add_argument("--grade-timeout", type=float, default=DEFAULT_TIMEOUT,
                   help=f"seconds per graded response, both graders (default {DEFAULT_TIMEOUT:g}, as OctoThinker's "
                        "harness); a time-out counts as wrong")
    p.add_argument("--grader", choices=GRADERS, default="math_verify",
                   help="whose verdicts make the accuracy: math_verify (default, as the RL reward) or octothinker "
                        "(the paper's extraction and equivalence per benchmark); both are recorded per sample")
    p.add_argument("--show-disagreements", action="store_true",
                   help="list in results.md the samples the two graders judge differently")
    p.add_argument("--list-protocols", action="store_true",
                   help="print the paper's per-benchmark evaluation settings with their sources, then exit")
    p.add_argument("--out", default=None, help="default: <checkpoint save dir>/eval/<iter>")
    p.add_argument("--seed", type=int, default=1234)
    args = p.parse_args(argv)
    if not args.list_protocols and not args.checkpoint:
        p.error("the following arguments are required: --checkpoint")
    return args


def _check_args(args) -> None:
    ks = [int(k) for k in args.pass_k.split(",") if k]
    if any(k < 1 or k > args.n for k in ks):
        raise ValueError(f"--pass-k {args.pass_k}: every k must be in [1, --n={args.n}]")
    if args.n > 1 and args.temperature == 0:
        raise ValueError("--n > 1 needs sampling: set --temperature > 0")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    if getattr(args, "shots_from", None) and args.protocol != "base":
        raise ValueError("--shots-from is a few-shot probe of a base model: use it with --protocol base")


def shot_protocol(path: str, shots: int) -> Protocol:
    """The few-shot probe of ``--shots-from``: the first ``shots`` records of ``path`` as exemplars."""
    if shots < 1:
        raise ValueError(f"--shots must be >= 1, got {shots}")
    records = load_benchmark(path, fields="question=question,answer=answer", limit=shots)
    if len(records) < shots:
        raise BenchmarkError(f"{path}: --shots {shots} but the file has {len(records)} records")
    finals = load_benchmark(path, fields="question=question,answer=final_answer", limit=shots)
    return exemplar_protocol([(r.question, r.answer, f.answer) for r, f in zip(records, finals)])


def eval_sets(args) -> list[tuple[str, Protocol, list]]:
    """(label, protocol, examples) of each benchmark in ``args.benchmarks`` (bad names/files raise)."""
    probe = shot_protocol(args.shots_from, args.shots) if getattr(args, "shots_from", None) else None
    sets = []
    for name in [b.strip() for b in args.benchmarks.split(",") if b.strip()]:
        examples = load_benchmark(name, fields=args.fields, limit=args.limit)
        spec = BENCHMARKS.get(name)
        if args.protocol == "rl":
            protocol = get_protocol(args.template)
        else:
            protocol = probe or get_protocol(spec.base_protocol if spec else "minerva_4shot")
        label = os.path.splitext(os.path.basename(name))[0] if spec is None else name
        sets.append((label, protocol, examples))
    return sets


def prompt_budgets(sets, tokenizer, max_new_tokens: Optional[int] = None) -> list[tuple[str, int, int]]:
    """(label, longest prompt in tokens, max new tokens) of each set, its prompts rendered by its protocol as
    :func:`_run_benchmarks` renders them; tokenizer None: the prompt lengths are 0 (the caller knows them)."""
    out = []
    for name, proto, examples in sets:
        longest = 0 if tokenizer is None else max(
            (len(tokenizer.tokenize(proto.build(ex.question))) for ex in examples), default=0)
        out.append((name, longest, max_new_tokens or proto.max_new_tokens))
    return out


def kv_sequence_length(sets, tokenizer, max_new_tokens: Optional[int], max_positions: int) -> int:
    """The static engine's max_sequence_length without --max-seq-len: the longest prompt + its max new tokens
    over all sets (the KV cache is max_sequence_length x batch per layer), at most the model's positions."""
    need = max((longest + budget for _, longest, budget in prompt_budgets(sets, tokenizer, max_new_tokens)),
               default=1)
    return min(need, max_positions)


def generate_sharded(gen, prompts: list[str], sc: SamplingConfig) -> list:
    """``gen.generate`` with the prompts dealt out over the data-parallel ranks (DP rank r takes prompts
    r, r + DP, ...; TP/PP ranks of one replica generate together), the results gathered back on every rank in
    prompt order. Greedy results equal one rank's; sampled ones come from each replica's own stream."""
    dp = parallel_state.get_data_parallel_world_size()
    if dp == 1:
        return gen.generate(prompts, sc)
    r = parallel_state.get_data_parallel_rank()
    mine = gen.generate(prompts[r::dp], sc)
    if parallel_state.get_tensor_model_parallel_rank() == 0 and parallel_state.is_pipeline_first_stage():
        print(f"[eval] data-parallel rank {r} of {dp}: generated {len(mine)} of {len(prompts)} prompts", flush=True)
    parts: list = [None] * dp
    dist.all_gather_object(parts, mine, group=parallel_state.get_data_parallel_group())
    out: list = [None] * len(prompts)
    for k, part in enumerate(parts):
        out[k::dp] = part
    return out


def evaluate(args, signals: Optional[_Signals] = None) -> int:
    signals = signals or _Signals()
    _check_args(args)
    sets = eval_sets(args)  # bad benchmark names/files fail here, before any model is built
    loaded = load_for_inference(args.checkpoint, [f"parallel.tp={args.tp}", f"parallel.pp={args.pp}"])
    rank0 = dist.get_rank() == 0
    max_len = args.max_seq_len or kv_sequence_length(sets, loaded.tokenizer, args.max_new_tokens,
                                                     loaded.arch.max_position_embeddings)
    gen = make_generator(loaded.model, loaded.tokenizer, engine="static", max_sequence_length=max_len,
                         max_batch_size=args.batch_size, seed=args.seed)
    if parallel_state.get_data_parallel_world_size() > 1:  # one sampling stream per replica (greedy: unused)
        gen.reseed(args.seed + parallel_state.get_data_parallel_rank())
    iteration = loaded.state.iteration
    out_dir = args.out or os.path.join(os.path.dirname(loaded.checkpoint), "eval", f"iter_{iteration:07d}")
    results: list[BenchResult] = []
    disagreements: list[dict] = []
    t0 = time.perf_counter()
    try:
        _run_benchmarks(args, sets, gen, rank0, out_dir, results, signals, t0, disagreements)
    except EvalInterrupted as exc:
        exc.out_dir, exc.done = out_dir, [r.name for r in results]
        exc.pending = [name for name, _, _ in sets if name not in exc.done]
        for tmp in glob.glob(os.path.join(out_dir, ".*.tmp")) if rank0 else ():
            os.remove(tmp)
        raise
    if rank0:
        with signals.writing(final=True):
            _write_reports(out_dir, results, loaded, args, iteration, disagreements)
        print(f"[eval] wrote {out_dir}/summary.json, results.md and per-sample JSONL", flush=True)
    rt.shutdown()
    return 0


def grade_both(texts: list[str], examples, n: int, name: str, protocol_name: str, answer_style: str,
               timeout: float) -> tuple[list[Verdict], list[Verdict], str]:
    """math-verify and OctoThinker verdicts for ``n`` responses per example, and the OctoThinker rule used."""
    golds = [ex.answer for ex in examples for _ in range(n)]
    questions = [ex.question for ex in examples for _ in range(n)]
    rule = rule_for(name, protocol_name)
    by_math_verify = grade_detailed(texts, golds, style=answer_style, timeout=timeout)
    by_octothinker = grade_octothinker(texts, golds, rule, questions=questions, timeout=timeout)
    return by_math_verify, by_octothinker, rule


def verdict_fields(mv: Verdict, oc: Verdict, grader: str) -> dict:
    """The per-sample JSONL fields of both graders; ``correct``/``extracted``/``grade_timed_out`` are the
    selected grader's."""
    chosen = oc if grader == "octothinker" else mv
    return {"extracted": chosen.extracted, "correct": chosen.correct, "grade_timed_out": chosen.timed_out,
            "correct_math_verify": mv.correct, "correct_octothinker": oc.correct,
            "extracted_math_verify": mv.extracted, "extracted_octothinker": oc.extracted,
            "lenient_octothinker": oc.lenient}


def lenient_count(verdicts: list[Verdict]) -> int:
    """Correct verdicts that rest on the non-strict LaTeX parse (``Verdict.lenient``): summary.json's
    ``lenient_correct``."""
    return sum(v.correct and v.lenient for v in verdicts)


def disagreement_rows(name: str, examples, n: int, by_math_verify: list[Verdict],
                      by_octothinker: list[Verdict]) -> list[dict]:
    rows = []
    for i, ex in enumerate(examples):
        for j in range(n):
            mv, oc = by_math_verify[i * n + j], by_octothinker[i * n + j]
            if mv.correct != oc.correct:
                rows.append({"benchmark": name, "id": ex.id, "sample": j, "gold": ex.answer,
                             "extracted_math_verify": mv.extracted, "correct_math_verify": mv.correct,
                             "extracted_octothinker": oc.extracted, "correct_octothinker": oc.correct})
    return rows


def _run_benchmarks(args, sets, gen, rank0, out_dir, results, signals, t0, disagreements=None) -> None:
    ks = sorted({int(k) for k in args.pass_k.split(",") if k})
    for index, (name, proto, examples) in enumerate(sets, start=1):
        faults.hit("eval:generate", index)  # OCTO_FAULT_INJECT (tests only; inert otherwise)
        protocol_name = proto.name
        prompts = [proto.build(ex.question) for ex in examples]
        sc = SamplingConfig(max_new_tokens=args.max_new_tokens or proto.max_new_tokens,
                            temperature=args.temperature, top_p=args.top_p, n=args.n, stop=list(proto.stop))
        gens = generate_sharded(gen, prompts, sc)
        if not rank0:
            continue
        flat = [g for per in gens for g in per]
        by_mv, by_oc, rule = grade_both([g.text for g in flat], examples, args.n, name, protocol_name,
                                        proto.answer_style, args.grade_timeout)

        def matrix(verdicts: list[Verdict]) -> list[list[bool]]:
            return [[verdicts[i * args.n + j].correct for j in range(args.n)] for i in range(len(examples))]

        correct = matrix(by_oc if args.grader == "octothinker" else by_mv)
        diffs = disagreement_rows(name, examples, args.n, by_mv, by_oc)
        os.makedirs(out_dir, exist_ok=True)
        tmp = os.path.join(out_dir, f".{name}.jsonl.tmp")
        with signals.writing():  # a signal now is raised once the file is complete and counted
            with open(tmp, "w") as f:
                for i, ex in enumerate(examples):
                    for j in range(args.n):
                        k = i * args.n + j
                        g = flat[k]
                        f.write(json.dumps({"id": ex.id, "sample": j, "prompt": prompts[i], "response": g.text,
                                            "gold": ex.answer, "grader": args.grader,
                                            **verdict_fields(by_mv[k], by_oc[k], args.grader),
                                            "octothinker_rule": rule, "finish_reason": g.finish_reason,
                                            "response_tokens": len(g.tokens)}) + "\n")
            os.replace(tmp, os.path.join(out_dir, f"{name}.jsonl"))
            results.append(BenchResult(
                name=name, protocol=protocol_name, num_examples=len(examples),
                accuracy=passk.mean_at_n(correct),
                pass_at_k={f"pass@{k}": passk.pass_at_k(correct, k) for k in ks},
                mean_response_tokens=sum(len(g.tokens) for g in flat) / max(len(flat), 1),
                truncated=sum(g.finish_reason == "length" for g in flat) / max(len(flat), 1),
                grader=args.grader, octothinker_rule=rule, accuracy_math_verify=passk.mean_at_n(matrix(by_mv)),
                accuracy_octothinker=passk.mean_at_n(matrix(by_oc)), disagreements=len(diffs),
                lenient_correct=lenient_count(by_oc)))
            if disagreements is not None:
                disagreements.extend(diffs)
        r = results[-1]
        print(f"[eval] {name} ({protocol_name}, {len(examples)} problems): accuracy {r.accuracy:.4f} "
              f"[{args.grader}] (math_verify {r.accuracy_math_verify:.4f}, octothinker {r.accuracy_octothinker:.4f}, "
              f"{r.disagreements} disagreements, {r.lenient_correct} octothinker-correct only by a lenient parse) "
              f"({time.perf_counter() - t0:.0f}s)", flush=True)


def results_markdown(header: str, results: list[BenchResult], grader: str,
                     disagreements: Optional[list[dict]] = None) -> str:
    """results.md: the accuracy table (selected grader, both graders side by side) and, when
    ``disagreements`` is given, the samples the two graders judge differently."""
    ks = list(results[0].pass_at_k) if results else []
    lines = [header, "", f"Accuracy and pass@k use the `{grader}` grader "
             + ("(OctoThinker's extraction and equivalence per benchmark, as in the paper)." if grader == "octothinker"
                else "(math-verify, as the RL reward; `--grader octothinker` applies the paper's rules)."), "",
             "| benchmark | protocol | problems | accuracy | " + " | ".join(ks)
             + " | mean response tokens | truncated | math_verify | octothinker | lenient | disagreements |",
             "|---|---|---|---|" + "---|" * len(ks) + "---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.name} | {r.protocol} | {r.num_examples} | {100 * r.accuracy:.1f} | "
                     + " | ".join(f"{100 * v:.1f}" for v in r.pass_at_k.values())
                     + f" | {r.mean_response_tokens:.1f} | {100 * r.truncated:.1f}% "
                     f"| {100 * r.accuracy_math_verify:.1f} | {100 * r.accuracy_octothinker:.1f} ({r.octothinker_rule}) "
                     f"| {r.lenient_correct} | {r.disagreements} |")
    lines += ["", "`lenient`: responses the octothinker grader credits only through the non-strict LaTeX parse "
              "of its symbolic fallback (a strict parse says wrong), e.g. \"The answer is $144$. I hope it is "
              "correct.\" read as 1*4 for a gold of 4. OctoThinker's own harness credits them too, so they are "
              "in its accuracy; `lenient_octothinker` marks them in the JSONL."]
    if disagreements is not None:
        lines += ["", "## Samples the graders disagree on", ""]
        if not disagreements:
            lines.append("None.")
        for r in results:
            rows = [d for d in disagreements if d["benchmark"] == r.name]
            if not rows:
                continue
            lines += [f"### {r.name} ({len(rows)})", "",
                      "| id | sample | gold | math_verify extracted | math_verify | octothinker extracted "
                      "| octothinker |",
                      "|---|---|---|---|---|---|---|"]
            for d in rows[:DISAGREEMENTS_SHOWN]:
                cells = [d["id"], d["sample"], d["gold"], d["extracted_math_verify"], d["correct_math_verify"],
                         d["extracted_octothinker"], d["correct_octothinker"]]
                lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
            if len(rows) > DISAGREEMENTS_SHOWN:
                lines.append(f"\n{len(rows) - DISAGREEMENTS_SHOWN} more in {r.name}.jsonl (rows whose "
                             "correct_math_verify and correct_octothinker differ).")
            lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def _md_cell(value) -> str:
    text = json.dumps(value, ensure_ascii=False) if isinstance(value, list) else str(value)
    return ("`" + text.replace("`", "'") + "`" if text else "").replace("|", "\\|").replace("\n", " ")


def _write_reports(out_dir, results, loaded, args, iteration, disagreements=None) -> None:
    from torch.utils.tensorboard import SummaryWriter

    summary = {"checkpoint": loaded.checkpoint, "iteration": iteration, "tokens": loaded.state.tokens,
               "protocol": args.protocol, "n": args.n, "temperature": args.temperature, "grader": args.grader,
               "benchmarks": {r.name: r.__dict__ for r in results}}
    tmp = os.path.join(out_dir, ".summary.json.tmp")
    with open(tmp, "w") as f:
        json.dump(summary, f, indent=2)
    os.replace(tmp, os.path.join(out_dir, "summary.json"))
    header = (f"Checkpoint `{loaded.checkpoint}` (iteration {iteration}), protocol {args.protocol}, "
              f"n={args.n}, temperature={args.temperature}, grader {args.grader}")
    text = results_markdown(header, results, args.grader, disagreements if args.show_disagreements else None)
    with open(os.path.join(out_dir, ".results.md.tmp"), "w") as f:
        f.write(text)
    os.replace(os.path.join(out_dir, ".results.md.tmp"), os.path.join(out_dir, "results.md"))
    tb = SummaryWriter(os.path.join(out_dir, "tensorboard"))
    for r in results:
        tb.add_scalar(f"eval/{r.name}/accuracy", r.accuracy, iteration)
        for k, v in r.pass_at_k.items():
            tb.add_scalar(f"eval/{r.name}/{k}", v, iteration)
        tb.add_scalar(f"eval/{r.name}/response_length/mean", r.mean_response_tokens, iteration)
    tb.close()


def main(argv=None) -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    warnings.filterwarnings("ignore")
    args = parse_args(argv)
    if args.list_protocols:
        print(format_protocol_table())
        return 0

    signals = _Signals().install()
    try:
        return evaluate(args, signals)
    except EvalInterrupted as exc:
        where = (f"; finished benchmarks with complete files in {exc.out_dir}: {', '.join(exc.done) or 'none'}; "
                 f"not evaluated: {', '.join(exc.pending)}" if exc.out_dir else " before any benchmark started")
        print(f"[eval] stopped by {signal.Signals(exc.signum).name}{where}. No summary.json or results.md was "
              f"written and no partial file is left. Exiting with {EXIT_SIGNALLED}; run it again to evaluate.",
              file=sys.stderr, flush=True)
        return EXIT_SIGNALLED
    except (BenchmarkError, CheckpointError, ConfigError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        signals.restore()


if __name__ == "__main__":
    sys.exit(main())
