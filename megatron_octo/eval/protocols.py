"""The paper's evaluation settings per benchmark, each value with the place it was read.

OctoThinker reports base models few-shot and RL models zero-shot on GSM8K, MATH500, OlympiadBench
and AMC23. This table is what a run must match for its numbers to be put next to the paper's;
``python -m megatron_octo.eval --list-protocols`` prints it. The prompt texts themselves live in
:mod:`megatron_octo.eval.prompts` (pinned byte for byte by tests/unit/test_prompts.py); the tests
check that the stop strings and token limits below are the ones those protocols use.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

__all__ = ["PAPER_PROTOCOLS", "SOURCES", "Cited", "PaperProtocol", "format_protocol_table", "paper_protocol"]

# Short tags used in the table; the files are in the public GAIR-NLP/OctoThinker repository (the
# eval/ files were read in its fork marvinfli/OctoThinker, the only copy in the index).
SOURCES: dict[str, str] = {
    "paper": "arXiv 2506.20512 (OctoThinker), evaluation setup: base models few-shot, RL models zero-shot, greedy",
    "eval-config": "eval/configs/en_math_cot_few_shot_test_configs.json (few_shot_prompt, answer_extraction_fn, "
                   "eval_fn)",
    "eval-run": "eval/infer/run_cot_eval.py: vLLM SamplingParams(temperature=args.temperature, top_p=1.0, "
                "max_tokens=1024, n=1, stop=[eos] + prompting.stop_words())",
    "eval-script": "eval/scripts/en_math_cot_eval_last4dir.sh (README's entry point): temperature=0, n_repeats=1, "
                   "prompt_format=few_shot",
    "gsm-prompt": "eval/few_shot_prompts/cot_gsm_8_shot.py: 8 exemplars, stop_words() == ['\\nQ:']",
    "minerva-prompt": "eval/few_shot_prompts/cot_minerva_math_4_shot.py: 4 exemplars, stop_words() == ['\\nProblem:']",
    "amc-prompt": "eval/few_shot_prompts/cot_amc_0_shot.py: no exemplars, stop_words() == ['\\nQ:']",
    "rl-script": "rl/scripts/llama_3b_long.sh: data.template_type=orz_base, max_gen_length=8192, "
                 "length_scheduler_dict {0: 2048, 100: 4096, 160: 8192}",
    "rl-rollout": "training/rl/verl/workers/rollout/vllm_rollout/vllm_rollout_spmd.py: stop=['User:', 'Assistant:', "
                  "'Question:', 'Answer:']; validation (do_sample=False) uses temperature 0, top_p 1.0, top_k -1, n 1; "
                  "max_tokens = the stair schedule's length at the step",
    "rl-reward": "rl/verl/utils/reward_score/math_verifier.py: correctness_score_default (last boxed_pattern match, "
                 "is_equiv)",
}


@dataclass(frozen=True)
class Cited:
    """A setting and the tag (key of :data:`SOURCES`) of where it was read."""

    value: Any
    source: str


@dataclass(frozen=True)
class PaperProtocol:
    """How the paper evaluates one benchmark for one kind of model (``model``: "base" or "rl")."""

    benchmark: str
    model: str
    prompt: Cited  # a key of megatron_octo.eval.prompts.PROTOCOLS
    shots: Cited
    max_new_tokens: Cited
    stop: Cited  # excluding the tokenizer's EOS, which is always a stop
    greedy: Cited
    extraction: Cited
    equivalence: Cited


_GREEDY_BASE = Cited(True, "eval-script")
_MAX_BASE = Cited(1024, "eval-run")
_GREEDY_RL = Cited(True, "rl-rollout")
_MAX_RL = Cited(8192, "rl-script")
_RL_STOP = Cited(("User:", "Assistant:", "Question:", "Answer:"), "rl-rollout")
_RL_EXTRACT = Cited("last \\boxed{} (math_verifier boxed_pattern)", "rl-reward")
_RL_EQUIV = Cited("math_verifier.is_equiv", "rl-reward")


def _base(benchmark: str, prompt: str, shots: int, prompt_src: str, stop: str, extraction: str,
          equivalence: str) -> PaperProtocol:
    return PaperProtocol(benchmark, "base", Cited(prompt, "eval-config"), Cited(shots, prompt_src), _MAX_BASE,
                         Cited((stop,), prompt_src), _GREEDY_BASE, Cited(extraction, "eval-config"),
                         Cited(equivalence, "eval-config"))


def _rl(benchmark: str) -> PaperProtocol:
    return PaperProtocol(benchmark, "rl", Cited("orz_base", "rl-script"), Cited(0, "paper"), _MAX_RL, _RL_STOP,
                         _GREEDY_RL, _RL_EXTRACT, _RL_EQUIV)


PAPER_PROTOCOLS: tuple[PaperProtocol, ...] = (
    _base("gsm8k", "gsm8k_8shot", 8, "gsm-prompt", "\nQ:", "extract_gsm_few_shot_cot_answer",
          "eval_last_single_answer"),
    _base("math500", "minerva_4shot", 4, "minerva-prompt", "\nProblem:", "extract_math_few_shot_cot_answer",
          "eval_math"),
    _base("olympiadbench", "minerva_4shot", 4, "minerva-prompt", "\nProblem:", "extract_olympiad_math_answer",
          "eval_olympiad_math"),
    _base("amc23", "amc_0shot", 0, "amc-prompt", "\nQ:", "extract_gsm_few_shot_cot_answer",
          "eval_last_single_answer"),
    *(_rl(b) for b in ("gsm8k", "math500", "olympiadbench", "amc23")),
)


def paper_protocol(benchmark: str, model: str) -> PaperProtocol:
    for p in PAPER_PROTOCOLS:
        if p.benchmark == benchmark and p.model == model:
            return p
    known = sorted({(p.benchmark, p.model) for p in PAPER_PROTOCOLS})
    raise KeyError(f"no paper protocol for {benchmark!r} with {model!r} models; known: {known}")


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "greedy" if value else "sampled"
    if isinstance(value, tuple):
        return ", ".join(repr(v) for v in value)
    return str(value)


def format_protocol_table() -> str:
    """The table as Markdown, each cell "value [source]", followed by the sources."""
    columns = [f.name for f in fields(PaperProtocol)]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for p in PAPER_PROTOCOLS:
        cells = []
        for name in columns:
            v = getattr(p, name)
            cells.append(f"{_show(v.value)} [{v.source}]" if isinstance(v, Cited) else str(v))
        lines.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", "\\n") for c in cells) + " |")
    lines += ["", "Sources (GAIR-NLP/OctoThinker unless noted):"]
    lines += [f"  [{tag}] {text}" for tag, text in SOURCES.items()]
    return "\n".join(lines)
