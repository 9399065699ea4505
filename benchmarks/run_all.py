#!/usr/bin/env python
"""Run every benchmark of the project and print one table of figures and ratios, with the machine.

    python benchmarks/run_all.py [--quick] [--json out.json] [--markdown] [--only train,tokenize]

Each benchmark script runs as its own subprocess, one after another (they would compete for the
cores otherwise), with its quick options under --quick:

  train      benchmarks/train_throughput.py      the real trainer step (cpu-40m, mock data): tokens/s and
                                                  achieved FLOP/s over an fp32 GEMM measured in the same run
                                                  ("CPU MFU")
  tokenize   benchmarks/tokenize_throughput.py   the preprocess pipeline against the raw batch encoder
  convert    benchmarks/convert_memory.py        peak RSS of the Hugging Face export against the model size
  rollout    benchmarks/rollout_throughput.py    megatron's inference engine against transformers' generate
  rl_step    benchmarks/rl_step.py               one GRPO step's phases (generate, reward, old log-probs, update)
                                                  and the same step with the code the RL optimisations replaced
  eval_process benchmarks/eval_process.py        the eval CLI's whole-process time (GSM8K 8-shot) against a
                                                  plain transformers generate script on the same model

A benchmark whose script does not exist is listed as "not available yet", never estimated. Any
other ``benchmarks/*.py`` whose --help mentions ``--json`` is run with ``--json`` (and ``--quick``
when it has one) and its last stdout line, a JSON object, is shown as is.

Exit code: 0 when every available benchmark ran, 1 otherwise.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.join(ROOT, "benchmarks")


@dataclass
class Row:
    benchmark: str
    figure: str
    value: str
    note: str = ""


@dataclass
class Result:
    name: str
    script: Optional[str]
    status: str  # ok | failed | not available yet
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # user + system of the benchmark's processes: << wall x threads = busy machine
    rows: list = field(default_factory=list)
    raw: dict = field(default_factory=dict)
    error: str = ""


# ----- per-benchmark commands and parsers -----------------------------------------------------

def _train_cmd(quick: bool, tmp: str) -> list[str]:
    args = ["--json"]
    if quick:
        args += ["--seq", "256", "--micro-batch", "4", "--micro-batches", "1", "--steps", "3", "--warmup-steps", "1"]
    return args


def _train_parse(stdout: str, tmp: str) -> tuple[list[Row], dict]:
    d = _last_json(stdout)
    setup = (f"{d['preset']} ({d['params_M']}M params), seq {d['seq']}, batch {d['global_batch']}, "
             f"{d['threads']} threads")
    return [
        Row("train", "training tokens/s", f"{d['tokens_per_s']:,}", setup),
        Row("train", "achieved GFLOP/s (model FLOPs)", f"{d['achieved_GFLOPs']:,}", "Megatron FLOP accounting"),
        Row("train", "fp32 GEMM GFLOP/s (same run)", f"{d['gemm_GFLOPs']:,}", "this machine's practical peak"),
        Row("train", "CPU MFU = achieved / GEMM", f"{d['ratio_vs_gemm']:.3f}", "a prototype reached 0.64"),
    ], d


def _tokenize_cmd(quick: bool, tmp: str) -> list[str]:
    return ["--json", os.path.join(tmp, "tokenize.json")] + (["--rounds", "1"] if quick else [])


def _tokenize_parse(stdout: str, tmp: str) -> tuple[list[Row], dict]:
    with open(os.path.join(tmp, "tokenize.json"), encoding="utf-8") as f:
        d = json.load(f)
    raw, pipe = d["raw"], d["pipeline"]
    base = raw["encode_batch"]
    tok = os.path.basename(os.path.dirname(d["tokenizer"])) or os.path.basename(d["tokenizer"])
    w = d["workers"]
    rows = [Row("tokenize", f"raw encode_batch tok/s ({w} threads)", f"{base:,.0f}",
                f"{tok} tokenizer, {pipe['tokens']:,} tokens")]
    if "encode_batch_fast" in raw:
        rows.append(Row("tokenize", "raw encode_batch_fast tok/s", f"{raw['encode_batch_fast']:,.0f}",
                        f"ratio {raw['encode_batch_fast'] / base:.2f} vs encode_batch"))
    rows += [
        Row("tokenize", f"pipeline end to end tok/s ({w} workers)", f"{pipe['end_to_end']:,.0f}",
            f"ratio {pipe['end_to_end'] / base:.2f} vs raw (start-up and loading included)"),
        Row("tokenize", "pipeline steady tok/s", f"{pipe['steady']:,.0f}",
            f"ratio {pipe['steady'] / base:.2f} vs raw"),
        Row("tokenize", "pipeline tokens per CPU-second", f"{pipe['steady_cpu']:,.0f}",
            f"ratio {pipe['steady_cpu'] / raw['encode_batch_cpu']:.2f} vs raw per CPU-second"),
    ]
    return rows, d


def _convert_cmd(quick: bool, tmp: str) -> list[str]:
    return ["--layers", "2"] if quick else []


_CONV_MODEL = re.compile(r"model: (\d+) tensors, ([\d.]+)M parameters, (\d+) MiB fp32 \(largest tensor (\d+) MiB\)")
_CONV_TOOL = re.compile(r"^(convert_from_hf|convert_to_hf|baseline)\b.*?peak RSS\s+(\d+) MiB"
                        r"(?:\s+\(\+(\d+) MiB over baseline = ([\d.]+) x model(?:, ([\d.]+) x largest tensor)?\))?", re.M)


def _convert_parse(stdout: str, tmp: str) -> tuple[list[Row], dict]:
    m = _CONV_MODEL.search(stdout)
    tools = {t[0]: t for t in _CONV_TOOL.findall(stdout)}
    if not m or "convert_to_hf" not in tools or "convert_from_hf" not in tools:
        raise ValueError("convert_memory.py output not recognised")
    model_mib, largest = int(m.group(3)), int(m.group(4))
    exp, imp = tools["convert_to_hf"], tools["convert_from_hf"]
    d = {"params_M": float(m.group(2)), "model_MiB": model_mib, "largest_tensor_MiB": largest,
         "baseline_MiB": int(tools["baseline"][1]) if "baseline" in tools else None,
         "export_peak_MiB": int(exp[1]), "export_over_baseline_x_model": float(exp[3]),
         "export_over_baseline_x_largest": float(exp[4]), "import_peak_MiB": int(imp[1]),
         "import_over_baseline_x_model": float(imp[3])}
    return [
        Row("convert", "HF export peak RSS above imports", f"{int(exp[2]):,} MiB",
            f"{d['export_over_baseline_x_model']:.2f} x model ({model_mib} MiB fp32), "
            f"{d['export_over_baseline_x_largest']:.2f} x largest tensor"),
        Row("convert", "HF import peak RSS above imports", f"{int(imp[2]):,} MiB",
            f"{d['import_over_baseline_x_model']:.2f} x model (for contrast)"),
    ], d


def _rollout_cmd(quick: bool, tmp: str) -> list[str]:
    return ["--json"] + (["--quick"] if quick else [])


def _rollout_parse(stdout: str, tmp: str) -> tuple[list[Row], dict]:
    d = _last_json(stdout)
    o, h, r = d["ours"], d["hf"], d["ratio"]
    num = lambda v, f=",.0f": "n/a" if v is None else format(v, f)  # noqa: E731 (None: load changed mid-run)
    setup = (f"{d['preset']} ({d['params_M']}M), {d['prompts']} GSM8K 8-shot prompts ({d['prompt_tokens'][0]}-"
             f"{d['prompt_tokens'][1]} tokens), batch {d['batch']}, {d['threads']} threads")
    rows = [Row("rollout", "prefill prompt tok/s (sampled case), ours / transformers",
                f"{o['sampled_prefill_tokens_per_s']:,.0f} / {h['sampled_prefill_tokens_per_s']:,.0f}",
                f"ratio {num(r['sampled_prefill_tokens_per_s'], '.2f')}; {setup}")]
    rows.append(Row("rollout", "prefill prompt tok/s without the shared prefix, ours / transformers",
                    f"{o['unshared_prefill_tokens_per_s']:,.0f} / {h['unshared_prefill_tokens_per_s']:,.0f}",
                    f"ratio {num(r['unshared_prefill_tokens_per_s'], '.2f')}; every row its own 8-shot copy"))
    cases = [("sampled", d["new_tokens"]), ("greedy", d["new_tokens"]), ("unshared", d["new_tokens"])]
    if d.get("long_tokens"):
        cases.append(("long", d["long_tokens"]))
    for name, n in cases:
        k = f"{name}_decode_tokens_per_s"
        rows.append(Row("rollout", f"{name} x {n}: decode tok/s, ours / transformers",
                        f"{num(o[k])} / {num(h[k])}", f"ratio {num(r[k], '.2f')}"))
        k = f"{name}_tokens_per_s"
        rows.append(Row("rollout", f"{name} x {n}: generated tok/s end to end", f"{o[k]:,.1f} / {h[k]:,.1f}",
                        f"ratio {r[k]:.2f}"))
    return rows, d


def _rl_step_cmd(quick: bool, tmp: str) -> list[str]:
    return ["--json", "--workdir", tmp] + (["--quick"] if quick else [])


def _rl_step_parse(stdout: str, tmp: str) -> tuple[list[Row], dict]:
    d = _last_json(stdout)
    a, b, sp = d["after"], d["before"], d["speedup"]
    pa, pb = a["phases"], b["phases"]
    setup = (f"{d['preset']}, {d['prompts']} prompts x {d['samples']} samples x {d['response']} tokens, "
             f"{d['threads']} thread(s), medians of {d['reps']}")
    phases = ("generate", "old_logprob", "update")
    shares = lambda p: " / ".join(f"{100 * p[k]['share']:.0f}" for k in phases)
    return [
        Row("rl_step", "step CPU s, after / before (same step, one run)",
            f"{a['step_cpu_s']:.1f} / {b['step_cpu_s']:.1f}",
            f"{sp['step']:.2f}x (wall {a['step_s']:.1f} / {b['step_s']:.1f} s); {setup}"),
        Row("rl_step", "CPU share % generate / old log-prob / update", shares(pa), f"before: {shares(pb)}"),
        Row("rl_step", "tokens per CPU-s generate / old log-prob / update",
            " / ".join(f"{pa[k]['tokens_per_cpu_s']:,.0f}" for k in phases),
            "speed-up " + " / ".join(f"{sp[k]:.2f}x" for k in phases) + " vs before"),
        Row("rl_step", "rollout engine passes / keys rotated, after (counted)",
            f"{a['engine_passes']:,} / {a['rotated_keys']:,}",
            f"before: {b['engine_passes']:,} / {b['rotated_keys']:,} ({sp['engine_passes']:.2f}x / "
            f"{sp['rotated_keys']:.1f}x fewer)"),
        Row("rl_step", "token_log_probs fwd+bwd, before / after", f"{d['token_log_probs']['speedup']:.2f}x",
            f"logits {d['token_log_probs']['shape']}, max |diff| {d['token_log_probs']['max_abs_diff']:.1e}"),
    ], d


def _eval_process_cmd(quick: bool, tmp: str) -> list[str]:
    return ["--json", "--workdir", tmp] + (["--quick"] if quick else [])


def _eval_process_parse(stdout: str, tmp: str) -> tuple[list[Row], dict]:
    d = _last_json(stdout)
    n = d["new_tokens"]
    setup = (f"{d['problems']} GSM8K 8-shot problems ({d['prompt_tokens'][0]}-{d['prompt_tokens'][1]} tokens), "
             f"batch {d['batch']}, {n['ours']:,} / {n['hf']:,} new tokens, {d['params_M']}M params, "
             f"{d['threads']} threads")
    return [
        Row("eval_process", "eval CLI whole process vs HF script", f"{d['ratio']:.2f}x",
            f"target <= {d['target']}x; {setup}"),
        Row("eval_process", "whole-process wall s, eval CLI / HF script", f"{d['ours_s']:.1f} / {d['hf_s']:.1f}",
            f"CPU s {d['ours_cpu_s']:.1f} / {d['hf_cpu_s']:.1f}"),
    ], d


def _generic_parse(name: str) -> Callable:
    def parse(stdout: str, tmp: str) -> tuple[list[Row], dict]:
        d = _last_json(stdout)
        return [Row(name, str(k), _fmt(v)) for k, v in _flatten(d).items()], d
    return parse


def _last_json(stdout: str) -> dict:
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON line in the output")


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


@dataclass
class Bench:
    name: str
    patterns: tuple  # script globs under benchmarks/, first match wins
    what: str
    cmd: Optional[Callable] = None  # (quick, tmp) -> extra args; None: generic --json protocol
    parse: Optional[Callable] = None


BENCHMARKS = [
    Bench("train", ("train_throughput.py",), "training throughput and CPU MFU", _train_cmd, _train_parse),
    Bench("tokenize", ("tokenize_throughput.py",), "tokenization vs raw encoder", _tokenize_cmd, _tokenize_parse),
    Bench("convert", ("convert_memory.py",), "HF export memory vs model size", _convert_cmd, _convert_parse),
    Bench("rollout", ("rollout_throughput.py",), "rollout vs transformers generate", _rollout_cmd, _rollout_parse),
    Bench("rl_step", ("rl_step*.py", "*rl_step*.py", "rl_phases*.py"), "RL step phase breakdown", _rl_step_cmd,
          _rl_step_parse),
    Bench("eval_process", ("eval_process.py",), "eval CLI whole process vs HF script", _eval_process_cmd,
          _eval_process_parse),
]


def find_script(patterns) -> Optional[str]:
    for pat in patterns:
        hits = sorted(p for p in glob.glob(os.path.join(HERE, pat)) if os.path.basename(p) != "run_all.py")
        if hits:
            return hits[0]
    return None


def _help(script: str) -> str:
    try:
        return subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, timeout=120,
                              cwd=ROOT, env=_env()).stdout
    except subprocess.TimeoutExpired:
        return ""


def _env() -> dict:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("PYTHONWARNINGS", "ignore")
    return env


def run_one(b: Bench, script: str, quick: bool, timeout: float) -> Result:
    with tempfile.TemporaryDirectory(prefix=f"bench_{b.name}_") as tmp:
        if b.cmd is not None:
            args, parse = b.cmd(quick, tmp), b.parse
        else:
            h = _help(script)
            if "--json" not in h:
                return Result(b.name, script, "failed", error="no --json option (see run_all.py's docstring)")
            args, parse = ["--json"] + (["--quick"] if quick and "--quick" in h else []), _generic_parse(b.name)
        cmd = [sys.executable, script, *args]
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.communicate()
            return Result(b.name, script, "failed", time.perf_counter() - t, error=f"timed out after {timeout:.0f}s")
        secs = time.perf_counter() - t
        ru2 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (ru2.ru_utime - ru.ru_utime) + (ru2.ru_stime - ru.ru_stime)
        if proc.returncode != 0:
            tail = (err.strip().splitlines() or out.strip().splitlines() or ["?"])[-1]
            return Result(b.name, script, "failed", secs, cpu, error=f"exit {proc.returncode}: {tail[:200]}")
        try:
            rows, raw = parse(out, tmp)
        except (ValueError, KeyError, OSError, json.JSONDecodeError) as exc:
            return Result(b.name, script, "failed", secs, cpu, error=f"output not parsed: {exc}")
        return Result(b.name, script, "ok", secs, cpu, rows, raw)


# ----- machine ----------------------------------------------------------------------------------

def _version(mod: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(mod)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            kb = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
            mem = round(kb / 2**20, 1)
    except (OSError, StopIteration):
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        commit = "?"
    gpu = "none"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = f"{torch.cuda.device_count()} x {torch.cuda.get_device_name()}"
    except ImportError:
        pass
    return {"cpu": cpu, "logical_cores": os.cpu_count(), "usable_cores": usable, "memory_GiB": mem, "gpu": gpu,
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            "torch": _version("torch"), "megatron-core": _version("megatron-core"),
            "tokenizers": _version("tokenizers"), "transformers": _version("transformers"),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "unset"),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()], "git_commit": commit}


# ----- output -----------------------------------------------------------------------------------

def table_rows(results: list[Result]) -> list[tuple[str, str, str, str]]:
    rows = []
    for r in results:
        label = (f"{r.name} ({r.seconds:.0f}s, {r.cpu_seconds:.0f} CPU-s)" if r.status != "not available yet"
                 else r.name)
        if r.status == "ok":
            for i, row in enumerate(r.rows):
                rows.append((label if i == 0 else "", row.figure, row.value, row.note))
        elif r.status == "not available yet":
            rows.append((label, next(b.what for b in BENCHMARKS if b.name == r.name), "not available yet",
                         "no script in benchmarks/"))
        else:
            rows.append((label, os.path.basename(r.script or "?"), "FAILED", r.error))
    return rows


def render(results: list[Result], mach: dict, quick: bool, wall: float) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    con = Console(width=None if sys.stdout.isatty() else 140, highlight=False)
    t = Table(title=f"megatron-octo benchmarks ({'quick' if quick else 'full'}, {wall:.0f}s)", box=box.SIMPLE_HEAVY,
              title_justify="left")
    for c, j in (("benchmark", "left"), ("figure", "left"), ("value", "right"), ("ratio / context", "left")):
        t.add_column(c, justify=j)
    for row in table_rows(results):
        t.add_row(*row, style="red" if row[2] == "FAILED" else ("dim" if row[2] == "not available yet" else None))
    con.print(t)
    con.print(machine_line(mach))


def machine_line(m: dict) -> str:
    return (f"machine: {m['cpu']}, {m['usable_cores']} usable of {m['logical_cores']} logical cores, "
            f"{m['memory_GiB']} GiB RAM, GPU {m['gpu']}; {m['os']}; Python {m['python']}, torch {m['torch']}, "
            f"megatron-core {m['megatron-core']}, tokenizers {m['tokenizers']}, transformers {m['transformers']}; "
            f"OMP_NUM_THREADS={m['OMP_NUM_THREADS']}; load average at start {m['load_average_at_start']}, "
            f"at end {m.get('load_average_at_end')}; "
            f"commit {m['git_commit']}")


def markdown(results: list[Result], mach: dict, quick: bool, wall: float) -> str:
    lines = [f"`benchmarks/run_all.py{' --quick' if quick else ''}` ({wall:.0f}s):", "",
             "| benchmark | figure | value | ratio / context |", "|---|---|---:|---|"]
    for row in table_rows(results):
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
    lines += ["", machine_line(mach)]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="each benchmark's quick options (a few minutes in all)")
    p.add_argument("--only", default=None, help="comma-separated benchmark names")
    p.add_argument("--timeout", type=float, default=None, help="per benchmark, seconds (default 900 quick, 3600)")
    p.add_argument("--json", default=None, help="also write machine, figures and raw results to this file")
    p.add_argument("--markdown", action="store_true", help="also print the table as Markdown (for the README)")
    args = p.parse_args(argv)
    timeout = args.timeout or (900 if args.quick else 3600)
    wanted = set(args.only.split(",")) if args.only else None

    mach = machine()
    t0 = time.perf_counter()
    results: list[Result] = []
    registered = set()
    benches = list(BENCHMARKS)
    for b in BENCHMARKS:
        s = find_script(b.patterns)
        if s:
            registered.add(os.path.abspath(s))
    for s in sorted(glob.glob(os.path.join(HERE, "*.py"))):
        if os.path.basename(s) != "run_all.py" and os.path.abspath(s) not in registered:
            benches.append(Bench(os.path.splitext(os.path.basename(s))[0], (os.path.basename(s),),
                                 os.path.basename(s)))
    unknown = (wanted or set()) - {b.name for b in benches}
    if unknown:
        p.error(f"--only: unknown benchmark(s) {', '.join(sorted(unknown))}; known: "
                f"{', '.join(b.name for b in benches)}")
    for b in benches:
        if wanted and b.name not in wanted:
            continue
        script = find_script(b.patterns)
        if script is None:
            results.append(Result(b.name, None, "not available yet"))
            continue
        print(f"[run_all] {b.name}: {os.path.relpath(script, ROOT)} ...", file=sys.stderr, flush=True)
        r = run_one(b, script, args.quick, timeout)
        print(f"[run_all] {b.name}: {r.status} in {r.seconds:.0f}s {r.error}", file=sys.stderr, flush=True)
        results.append(r)
    wall = time.perf_counter() - t0
    mach["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    render(results, mach, args.quick, wall)
    if args.markdown:
        print()
        print(markdown(results, mach, args.quick, wall))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"quick": args.quick, "wall_s": wall, "machine": mach,
                       "results": [{"name": r.name, "script": r.script and os.path.relpath(r.script, ROOT),
                                    "status": r.status, "seconds": r.seconds, "cpu_seconds": r.cpu_seconds,
                                    "error": r.error,
                                    "figures": [vars(x) for x in r.rows], "raw": r.raw} for r in results]},
                      f, indent=2)
    return 0 if all(r.status != "failed" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
