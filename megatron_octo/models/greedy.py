"""Greedy decoding from a megatron checkpoint with plain full forward passes (no KV cache).

For checking converted or trained weights, not for serving: every new token re-runs the whole
sequence. Works at any tensor-parallel size (vocab-parallel logits are gathered); pipeline
parallelism is not supported here.
"""

from __future__ import annotations

from typing import Optional

import torch
from megatron_octo.models.from_checkpoint import checkpoint_config, load_into_runtime


def load_model(ckpt_path: str, *, tp: int = 1, overrides: Optional[list[str]] = None):
    """(model, cfg, arch) of a trainer/converter checkpoint at ``tp`` (the process group must
    already be initialised with that TP and PP=1)."""

    ckpt_dir, cfg = checkpoint_config(ckpt_path, [f"parallel.tp={tp}", "parallel.pp=1", *(overrides or [])])
    loaded = load_into_runtime(ckpt_dir, cfg)
    return loaded.model, loaded.cfg, loaded.arch


@torch.no_grad()
def logits(model, tokens: torch.Tensor) -> torch.Tensor:
    """Full-vocabulary logits [b, s, V_padded] of a batch of token ids [b, s]."""
    from megatron.core import parallel_state as ps
    from megatron.core.tensor_parallel.mappings import gather_from_tensor_model_parallel_region

    b, s = tokens.shape
    position_ids = torch.arange(s, dtype=torch.long).unsqueeze(0).expand(b, s)
    out = model(tokens, position_ids, None)
    if ps.get_tensor_model_parallel_world_size() > 1:
        out = gather_from_tensor_model_parallel_region(out)
    return out.float()


@torch.no_grad()
def greedy_generate(model, prompt: list[int], max_new_tokens: int, vocab_size: int,
                    eos_id: Optional[int] = None) -> list[int]:
    """The prompt followed by up to max_new_tokens argmax tokens over the real (unpadded) vocabulary."""
    ids = list(prompt)
    for _ in range(max_new_tokens):
        nxt = int(logits(model, torch.tensor([ids]))[0, -1, :vocab_size].argmax())
        ids.append(nxt)
        if eos_id is not None and nxt == eos_id:
            break
    return ids
