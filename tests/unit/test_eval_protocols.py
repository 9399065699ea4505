"""The paper's per-benchmark settings table and the runner's verdict fields. The eval CLI's flags and the
runner's grading and report pieces, which start processes: tests/process/test_eval_protocols_cli.py."""

from __future__ import annotations

import pytest

from megatron_octo.eval import octothinker_grader as og
from megatron_octo.eval import runner
from megatron_octo.eval.benchmarks import BENCHMARKS
from megatron_octo.eval.grader import Verdict
from megatron_octo.eval.prompts import GSM8K_8SHOT_EXEMPLARS, MINERVA_4SHOT_EXEMPLARS, PROTOCOLS, build_prompt
from megatron_octo.eval.protocols import PAPER_PROTOCOLS, SOURCES, Cited, format_protocol_table, paper_protocol

pytestmark = pytest.mark.timeout(120)

PAPER_SETS = ("gsm8k", "math500", "olympiadbench", "amc23")


def test_table_covers_the_paper_sets_for_both_kinds_of_model():
    assert sorted((p.benchmark, p.model) for p in PAPER_PROTOCOLS) == sorted(
        (b, m) for b in PAPER_SETS for m in ("base", "rl"))


@pytest.mark.parametrize("p", PAPER_PROTOCOLS, ids=lambda p: f"{p.benchmark}-{p.model}")
def test_every_value_cites_a_known_source(p):
    cited = [v for v in vars(p).values() if isinstance(v, Cited)]
    assert len(cited) == 7
    assert all(v.source in SOURCES for v in cited)


@pytest.mark.parametrize("p", PAPER_PROTOCOLS, ids=lambda p: f"{p.benchmark}-{p.model}")
def test_table_matches_the_prompts_we_run(p):
    proto = PROTOCOLS[p.prompt.value]
    assert proto.stop == p.stop.value
    assert proto.max_new_tokens == p.max_new_tokens.value
    assert proto.greedy is p.greedy.value
    spec = BENCHMARKS[p.benchmark]
    assert p.prompt.value == (spec.base_protocol if p.model == "base" else spec.rl_protocol)
    rule = og.RULES[og.rule_for(p.benchmark, p.prompt.value)]
    assert p.equivalence.value == rule.equivalence
    if p.model == "base":
        assert p.extraction.value == rule.extraction
        assert callable(getattr(og, rule.extraction)) and callable(getattr(og, rule.equivalence))
    else:
        assert rule.name == "rl_boxed"


def test_shot_counts_match_the_exemplars():
    assert paper_protocol("gsm8k", "base").shots.value == GSM8K_8SHOT_EXEMPLARS.count("Q: ") == 8
    assert paper_protocol("math500", "base").shots.value == MINERVA_4SHOT_EXEMPLARS.count("Problem:\n") == 4
    assert paper_protocol("amc23", "base").shots.value == 0 == build_prompt("amc_0shot", "x").count("Q: ") - 1
    with pytest.raises(KeyError, match="aime24"):
        paper_protocol("aime24", "base")


def test_formatted_table_lists_rows_and_sources():
    text = format_protocol_table()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == len(PAPER_PROTOCOLS)
    assert "'\\nQ:' [gsm-prompt]" in text and "8192 [rl-script]" in text
    for tag in SOURCES:
        assert f"[{tag}]" in text


# ---------------------------------------------------------------------------------------
# Runner pieces (no model): the selected verdict
# ---------------------------------------------------------------------------------------


def test_verdict_fields_select_the_grader():
    mv, oc = Verdict(True, "18"), Verdict(False, "20.")
    chosen = runner.verdict_fields(mv, oc, "octothinker")
    assert (chosen["correct"], chosen["extracted"]) == (False, "20.")
    assert (chosen["correct_math_verify"], chosen["correct_octothinker"]) == (True, False)
    assert runner.verdict_fields(mv, oc, "math_verify")["correct"] is True
