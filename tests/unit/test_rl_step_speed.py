"""The RL-step speed-ups keep the numbers: the log-prob kernel against a dense log-softmax (values
and gradients), the engine-batch plan (every sequence once, similar prompt lengths together) and
the prompt-length filter against the tokenizer. (Rollout vs forward log-probs and the cached-RoPE
attention against megatron's, at TP=1 and 2: tests/distributed/test_rl_logprobs.py.)"""

from __future__ import annotations

import pytest
import torch

from megatron_octo.generation import plan_batches
from megatron_octo.rl.logprobs import token_log_probs
from tests.helpers import ROOT


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_token_log_probs_equal_dense_log_softmax_with_gradients(temperature):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 11, 257, generator=g) * 4
    labels = torch.randint(0, 257, (3, 11), generator=g)
    weights = torch.randn(3, 11, generator=g)
    a, b = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    ours = token_log_probs(a, labels, temperature)
    dense = torch.log_softmax(b / temperature, -1).gather(-1, labels[..., None])[..., 0]
    (ours * weights).sum().backward()
    (dense * weights).sum().backward()
    assert (ours - dense).abs().max() <= 1e-5
    assert (a.grad - b.grad).abs().max() <= 1e-5
    assert torch.equal(a.detach(), logits)  # the logits are not modified in place
    with torch.no_grad():  # the old-log-prob path: no graph, same values
        assert torch.equal(token_log_probs(logits, labels, temperature), ours.detach())


def test_plan_batches_groups_similar_prompt_lengths():
    lengths = [138] * 4 + [253] * 4 + [182] * 4 + [164] * 4  # four prompts x four samples, as RL expands them
    batches = plan_batches(lengths, max_batch_size=16, budget=32)
    assert sorted(i for b in batches for i in b) == list(range(16))
    assert all(len(b) <= 16 for b in batches)
    spans = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches]
    # One batch would decode 253 - 138 + 32 = 147 steps; the plan decodes 32 + 50 + 32.
    assert [sorted({lengths[i] for i in b}) for b in batches] == [[138], [164, 182], [253]]
    assert max(spans) == 182 - 164
    # Equal lengths stay together up to the batch limit; no batch exceeds it.
    assert plan_batches([100] * 16, 16, 32) == [list(range(16))]
    assert max(len(b) for b in plan_batches([100] * 40, 16, 32)) <= 16
    assert plan_batches([], 16, 32) == []


def test_render_and_filter_drops_and_counts_over_long_prompts():
    from omegaconf import OmegaConf

    from megatron_octo.eval.prompts import rl_prompt
    from megatron_octo.rl.prompt_filter import render_and_filter
    from megatron_octo.rl.trainer import Problem
    from tokenization.megatron_wrappers import load_tokenizer

    tok = load_tokenizer(str(ROOT / "data/tokenizer/octo_sp8k.model"), "sentencepiece")
    problems = [Problem("What is 1 + 1?", "2"), Problem("Compute " + "x + " * 200 + "1.", "201"),
                Problem("Find the root of x - 3.", "3")]
    limit = len(tok.tokenize(rl_prompt(problems[2].question))) + 5
    cfg = OmegaConf.create({"rl": {"template": "orz_base", "max_prompt_length": limit}})
    prompts, golds, dropped = render_and_filter(cfg, tok, problems)
    assert dropped == 1 and golds == ["2", "3"]
    assert prompts == [rl_prompt(problems[0].question), rl_prompt(problems[2].question)]
