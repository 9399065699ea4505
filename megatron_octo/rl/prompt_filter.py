"""RL prompt set-up: render every problem with the RL template and drop those over the length limit.

Every rank needs the same kept list, and counting tokens is the only costly part (MATH8K is 8.5K
prompts, ~2.5M tokens: a few seconds with a Llama-3/Qwen tokenizer). Each rank counts an
interleaved 1/world share and the counts are all-gathered, so set-up does the work once per job,
not once per rank.
"""

from __future__ import annotations

from typing import Sequence

import torch.distributed as dist
from megatron_octo.eval.prompts import rl_prompt


def prompt_lengths(tokenizer, texts: Sequence[str]) -> list[int]:
    """``[len(tokenizer.tokenize(t)) for t in texts]``, shared out over the ranks of the default
    process group when there is one."""
    world = dist.get_world_size() if dist.is_initialized() else 1
    if world == 1:
        return [len(tokenizer.tokenize(t)) for t in texts]
    rank = dist.get_rank()
    mine = [len(tokenizer.tokenize(t)) for t in texts[rank::world]]
    shares: list = [None] * world
    dist.all_gather_object(shares, mine)
    out = [0] * len(texts)
    for r, share in enumerate(shares):
        out[r::world] = share
    return out


def render_and_filter(cfg, tokenizer, problems) -> tuple[list[str], list[str], int]:
    """(prompts, gold answers, number dropped) for ``rl.template`` and ``rl.max_prompt_length``."""

    r = cfg.rl
    texts = [rl_prompt(p.question, r.template) for p in problems]
    lengths = prompt_lengths(tokenizer, texts)
    keep = [i for i, n in enumerate(lengths) if n <= r.max_prompt_length]
    return [texts[i] for i in keep], [problems[i].answer for i in keep], len(texts) - len(keep)
