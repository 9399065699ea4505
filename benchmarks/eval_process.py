"""Whole-process wall time of the eval CLI against a plain Hugging Face ``transformers`` generate script,
same model, same problems, same thread count.

    python benchmarks/eval_process.py [--quick] [--problems 16] [--new-tokens 256] [--threads 2] [--json]

What a user waits for, start to exit: interpreter start, imports, model load, generation, grading and
writing the results. The target (issue): the eval CLI at <= 0.5x the transformers script's time on 16
GSM8K 8-shot problems.

  ours  ``python -m megatron_octo.eval --checkpoint CKPT --benchmarks gsm8k --limit P --batch-size P
        --max-new-tokens N`` (base protocol: GSM8K 8-shot, greedy; it grades every answer with both
        graders and writes its JSONL, summary.json, results.md and TensorBoard scalars)
  hf    this file's ``--hf-worker``: what a user of transformers writes: ``AutoTokenizer`` and
        ``AutoModelForCausalLM.from_pretrained`` on the HF export, ``torch.set_num_threads``, the same
        prompts (``megatron_octo.eval.prompts.build_prompt("gsm8k_8shot", q)`` over
        ``load_benchmark("gsm8k")``), left padding, greedy ``generate`` (KV cache on, the protocol's stop
        string), decode, grade with the project's grader (math-verify), write a JSONL

Both run as subprocesses, one after the other, with OMP_NUM_THREADS set to --threads; the wall time of
each process is the figure, the ratio is ours / hf.

Model: SmolLM2-135M's shape (``rollout_throughput.PRESETS["realistic"]``: Llama, 30 layers, hidden 576,
9 heads / 3 KV heads, MLP 1536, vocabulary 49,152, tied embeddings, RoPE theta 1e5), random weights,
fp32, the bundled 8K SentencePiece tokenizer. Built before the timed region, in a temporary directory
removed at the end: an initial checkpoint from the train CLI (``train.tokens=0``), and its export by
``tools/convert_to_hf.py``.

Ids beyond the tokenizer: random weights pick ids >= 8,192 almost every step. Both sides leave them out
of the text (Hugging Face's fast tokenizers do; the project's tokenizers do since 2026-12-03: before,
SentencePiece raised ``IndexError: OUT_OF_RANGE: piece id is out of range`` at the eval CLI's first decode
step). The README's figures were taken with the checkpoint's embedding rows of those ids zeroed (tied: also
the output rows): their logits are 0 while the largest of 8,192 random logits is positive, so greedy
decoding never picks them and both sides generate text of the tokenizer's ids; that stays the default. The
model and the work are unchanged (49,152-way output layer and argmax, same GEMMs on both sides);
``--unmasked-vocab`` keeps the rows.

Checks (the benchmark fails otherwise): both sides tokenize the prompts to the same ids (the export's
``tokenizer.json`` against the checkpoint's tokenizer), and generate the same number of new tokens within
3% (random weights hit neither EOS nor the stop string in practice; counted from both JSONL files).
``--quick``: 8 problems x 32 new tokens (same model and prompts).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from rollout_throughput import PRESETS  # noqa: E402  (this script's folder is on sys.path)

TOKENIZER = os.path.join(ROOT, "data", "tokenizer", "octo_sp8k.model")
PROTOCOL = "gsm8k_8shot"
TOKEN_TOLERANCE = 0.03


def prompt_ids_digest(ids: list[list[int]]) -> str:
    return hashlib.sha256(json.dumps(ids).encode()).hexdigest()[:16]


# ----- untimed set-up -----------------------------------------------------------------------------

def prepare_worker(args) -> int:
    """Checkpoint ``args.prepare_worker`` (the train CLI's) -> ``args.out`` with the embedding rows of ids
    the tokenizer does not know zeroed (unless --unmasked-vocab), and the prompts' ids for the check."""
    # lazy: torch and megatron-core load in the worker process only, after OMP_NUM_THREADS is set
    import torch

    from megatron_octo import config as cfgmod
    from megatron_octo.checkpoint import save_load as ckpt
    from megatron_octo.eval.benchmarks import load_benchmark
    from megatron_octo.eval.prompts import build_prompt
    from megatron_octo.models.from_checkpoint import load_for_inference
    from megatron_octo.models.llama import num_parameters
    from megatron_octo.runtime import distributed as rt

    loaded = load_for_inference(args.prepare_worker)
    known = loaded.tokenizer.vocab_size
    if not args.unmasked_vocab:
        embedding = loaded.model.embedding.word_embeddings.weight
        output = getattr(loaded.model.output_layer, "weight", None)  # None when tied
        with torch.no_grad():
            for w in [embedding] + ([output] if output is not None and output is not embedding else []):
                w[known:].zero_()
    ckpt.save(args.out, loaded.model, None, loaded.state, cfgmod.to_yaml(loaded.cfg))
    ids = [loaded.tokenizer.tokenize(build_prompt(PROTOCOL, ex.question))
           for ex in load_benchmark("gsm8k", limit=args.problems)]
    with open(os.path.join(args.out, "prepared.json"), "w") as f:
        json.dump({"prompt_lengths": [len(x) for x in ids], "prompt_digest": prompt_ids_digest(ids),
                   "tokenizer_vocab": known, "vocab": loaded.arch.vocab_size,
                   "params_M": round(num_parameters(loaded.arch) / 1e6, 1)}, f)
    rt.shutdown()
    # Both timed processes then start from a warm page cache, the transformers side included.
    import transformers.models.llama.modeling_llama  # noqa: F401
    return 0


def run_step(cmd: list[str], env: dict, what: str, timeout: float) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise SystemExit(f"[eval_process] {what} failed (exit {res.returncode}): {' '.join(cmd)}\n"
                         f"--- stdout (tail)\n{res.stdout[-3000:]}\n--- stderr (tail)\n{res.stderr[-5000:]}")
    return res


def set_up(tmp: str, args, env: dict) -> tuple[str, str, dict]:
    init, ckpt, hf = (os.path.join(tmp, d) for d in ("init", "ckpt", "hf"))
    run_step([sys.executable, "-m", "megatron_octo.train", "--config", "recipes/tiny/stable.yaml",
              *PRESETS["realistic"], "model.seq_length=2048", "data.mock=true", "train.tokens=0",
              "train.eval_interval=0", "tokenizer.library=sentencepiece", f"tokenizer.path={TOKENIZER}",
              "parallel.tp=1", "parallel.pp=1", f"checkpoint.save={init}", "checkpoint.save_interval=0",
              "run_name=eval-process-bench"], env, "initial checkpoint (train CLI, train.tokens=0)", args.timeout)
    prep = [sys.executable, os.path.abspath(__file__), "--prepare-worker", init, "--out", ckpt,
            "--problems", str(args.problems)] + (["--unmasked-vocab"] if args.unmasked_vocab else [])
    run_step(prep, env, "checkpoint preparation", args.timeout)
    shutil.rmtree(init)  # its Adam state is twice the model
    run_step([sys.executable, "tools/convert_to_hf.py", ckpt, "--out", hf], env, "HF export", args.timeout)
    with open(os.path.join(ckpt, "prepared.json")) as f:
        return ckpt, hf, json.load(f)


# ----- the transformers script (timed as a whole process) -------------------------------------------

def hf_worker(args) -> int:
    """A plain transformers eval of GSM8K 8-shot, as a user writes it; the JSONL goes to ``args.out``."""
    t0 = time.perf_counter()
    # lazy: the imports are part of the timed whole process, as in a user's script
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from megatron_octo.eval.benchmarks import load_benchmark
    from megatron_octo.eval.grader import grade_detailed
    from megatron_octo.eval.prompts import build_prompt, get_protocol

    torch.set_num_threads(args.threads)
    t_import = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(args.hf_worker)
    model = AutoModelForCausalLM.from_pretrained(args.hf_worker, dtype=torch.float32).eval()
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    t_load = time.perf_counter()

    proto = get_protocol(PROTOCOL)
    examples = load_benchmark("gsm8k", limit=args.problems)
    prompts = [build_prompt(PROTOCOL, ex.question) for ex in examples]
    responses, new_tokens, prompt_ids = [], [], []
    with torch.inference_mode():
        for i in range(0, len(prompts), args.batch_size):
            enc = tok(prompts[i:i + args.batch_size], return_tensors="pt", padding=True)
            out = model.generate(**enc, max_new_tokens=args.new_tokens, do_sample=False, use_cache=True,
                                 stop_strings=list(proto.stop), tokenizer=tok, pad_token_id=tok.pad_token_id)
            width = enc["input_ids"].shape[1]
            for row, mask, gen in zip(enc["input_ids"].tolist(), enc["attention_mask"].tolist(),
                                      out[:, width:].tolist()):
                prompt_ids.append([t for t, m in zip(row, mask) if m])  # the benchmark's tokenizer check
                # Finished rows are padded with EOS (= pad here): the sequence ends at the first one.
                n = gen.index(tok.eos_token_id) + 1 if tok.eos_token_id in gen else len(gen)
                new_tokens.append(n)
                text = tok.decode(gen[:n], skip_special_tokens=True)
                for s in proto.stop:
                    text = text.split(s)[0]
                responses.append(text)
    t_gen = time.perf_counter()
    verdicts = grade_detailed(responses, [ex.answer for ex in examples], style=proto.answer_style)
    t_grade = time.perf_counter()
    with open(args.out, "w") as f:
        for ex, p, r, v, n in zip(examples, prompts, responses, verdicts, new_tokens):
            f.write(json.dumps({"id": ex.id, "prompt": p, "response": r, "gold": ex.answer, "correct": v.correct,
                                "extracted": v.extracted, "response_tokens": n}) + "\n")
    print(json.dumps({"import_s": t_import - t0, "load_s": t_load - t_import, "generate_s": t_gen - t_load,
                      "grade_s": t_grade - t_gen, "write_s": time.perf_counter() - t_grade,
                      "prompt_digest": prompt_ids_digest(prompt_ids)}))
    return 0


# ----- timing and report ---------------------------------------------------------------------------

def timed(cmd: list[str], env: dict, what: str, timeout: float) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall s, CPU s of the process and the children it waited for, result) of one whole process."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    res = run_step(cmd, env, what, timeout)
    wall = time.perf_counter() - t
    ru2 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (ru2.ru_utime - ru.ru_utime) + (ru2.ru_stime - ru.ru_stime), res


def read_jsonl(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10).stdout.strip() or "?"
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "megatron_octo"], cwd=ROOT,
                               timeout=10).returncode != 0
        return out + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "?"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--problems", type=int, default=None, help="GSM8K problems (default 16, quick 8)")
    p.add_argument("--batch-size", type=int, default=None, help="default: --problems")
    p.add_argument("--new-tokens", type=int, default=None, help="max new tokens (default 256, quick 32)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="8 problems x 32 new tokens, same model")
    p.add_argument("--unmasked-vocab", action="store_true",
                   help="keep random weights for ids beyond the tokenizer (the eval CLI then crashes)")
    p.add_argument("--timeout", type=float, default=1800, help="per subprocess, seconds")
    p.add_argument("--workdir", default=None, help="parent of the temporary directory (default: the system's)")
    p.add_argument("--json", action="store_true", help="last stdout line: the figures as a JSON object")
    p.add_argument("--hf-worker", metavar="HF_DIR", default=None, help="(internal) the timed transformers script")
    p.add_argument("--prepare-worker", metavar="CKPT", default=None, help="(internal) untimed checkpoint set-up")
    p.add_argument("--out", default=None, help="(internal) the workers' output")
    args = p.parse_args(argv)
    args.problems = args.problems or (8 if args.quick else 16)
    args.batch_size = args.batch_size or args.problems
    args.new_tokens = args.new_tokens or (32 if args.quick else 256)
    if args.hf_worker:
        return hf_worker(args)
    if args.prepare_worker:
        return prepare_worker(args)

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), TQDM_DISABLE="1", PYTHONWARNINGS="ignore",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with tempfile.TemporaryDirectory(prefix="eval_process_", dir=args.workdir) as tmp:
        t = time.perf_counter()
        ckpt, hf, prep = set_up(tmp, args, env)
        setup_s = time.perf_counter() - t
        print(f"[eval_process] set-up (checkpoint, export) {setup_s:.0f}s; timing the eval CLI ...",
              file=sys.stderr, flush=True)
        ours_out = os.path.join(tmp, "ours")
        ours_s, ours_cpu, ours_res = timed(
            [sys.executable, "-m", "megatron_octo.eval", "--checkpoint", ckpt, "--benchmarks", "gsm8k",
             "--limit", str(args.problems), "--batch-size", str(args.batch_size),
             "--max-new-tokens", str(args.new_tokens), "--out", ours_out], env, "eval CLI", args.timeout)
        print(f"[eval_process] eval CLI {ours_s:.1f}s; timing the transformers script ...", file=sys.stderr,
              flush=True)
        hf_out = os.path.join(tmp, "hf.jsonl")
        hf_s, hf_cpu, hf_res = timed(
            [sys.executable, os.path.abspath(__file__), "--hf-worker", hf, "--problems", str(args.problems),
             "--batch-size", str(args.batch_size), "--new-tokens", str(args.new_tokens),
             "--threads", str(args.threads), "--out", hf_out], env, "transformers script", args.timeout)
        ours_rows, hf_rows = read_jsonl(os.path.join(ours_out, "gsm8k.jsonl")), read_jsonl(hf_out)
    hf_phases = json.loads(hf_res.stdout.strip().splitlines()[-1])
    m = re.search(r"^\[eval\] gsm8k .*\((\d+)s\)\s*$", ours_res.stdout, re.M)

    # An EOD ends a sequence inside the eval's count (not in response_tokens); HF's count includes it.
    ours_tokens = sum(r["response_tokens"] + (r["finish_reason"] == "eod") for r in ours_rows)
    hf_tokens = sum(r["response_tokens"] for r in hf_rows)
    problems = [len(ours_rows), len(hf_rows)]
    if problems != [args.problems] * 2:
        raise SystemExit(f"[eval_process] expected {args.problems} answers per side, got ours/hf {problems}")
    if hf_phases["prompt_digest"] != prep["prompt_digest"]:
        raise SystemExit("[eval_process] the export's tokenizer gives other prompt ids than the checkpoint's")
    if abs(ours_tokens - hf_tokens) > TOKEN_TOLERANCE * max(ours_tokens, hf_tokens):
        raise SystemExit(f"[eval_process] new tokens differ by more than {TOKEN_TOLERANCE:.0%}: ours {ours_tokens}, "
                         f"hf {hf_tokens} (max {args.problems * args.new_tokens})")
    same = sum(a["response"] == b["response"] for a, b in zip(ours_rows, hf_rows))
    lengths = prep["prompt_lengths"]
    result = {
        "ours_s": round(ours_s, 2), "hf_s": round(hf_s, 2), "ratio": round(ours_s / hf_s, 3), "target": 0.5,
        "ours_cpu_s": round(ours_cpu, 1), "hf_cpu_s": round(hf_cpu, 1),
        "problems": args.problems, "batch": args.batch_size, "max_new_tokens": args.new_tokens,
        "new_tokens": {"ours": ours_tokens, "hf": hf_tokens}, "same_responses": same,
        "correct": {"ours": sum(bool(r["correct"]) for r in ours_rows), "hf": sum(bool(r["correct"]) for r in hf_rows)},
        "prompt_tokens": [min(lengths), max(lengths)], "params_M": prep["params_M"], "vocab": prep["vocab"],
        "masked_vocab": not args.unmasked_vocab, "threads": args.threads, "commit": commit(),
        "ours_after_load_s": int(m.group(1)) if m else None,
        "hf_phases_s": {k: round(v, 2) for k, v in hf_phases.items() if k.endswith("_s")},
        "setup_s": round(setup_s, 1),
    }
    print(f"eval_process: realistic Llama ({prep['params_M']}M params, vocab {prep['vocab']:,}, random weights, "
          f"fp32), {args.problems} GSM8K 8-shot problems ({min(lengths)}-{max(lengths)} prompt tokens), batch "
          f"{args.batch_size}, greedy, max {args.new_tokens} new tokens, {args.threads} threads; commit "
          f"{result['commit']}")
    print(f"  {'whole process':34s} {'wall s':>8s} {'CPU s':>8s} {'new tokens':>11s} {'correct':>8s}")
    for label, s, cpu, key in (("eval CLI (python -m megatron_octo.eval)", ours_s, ours_cpu, "ours"),
                               ("transformers generate script", hf_s, hf_cpu, "hf")):
        print(f"  {label[:34]:34s} {s:8.1f} {cpu:8.1f} {result['new_tokens'][key]:11d} "
              f"{result['correct'][key]:8d}")
    print(f"  ratio ours / transformers: {result['ratio']:.2f}x (target <= 0.5x); identical responses {same}/"
          f"{args.problems}")
    print(f"  eval CLI after model load (its own clock): {result['ours_after_load_s']} s; transformers phases: "
          + ", ".join(f"{k[:-2]} {v:.1f}" for k, v in result["hf_phases_s"].items()))
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
