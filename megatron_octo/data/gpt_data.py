"""Training and validation data: megatron indexed datasets blended by weight.

megatron-core's ``BlendedMegatronDatasetBuilder`` builds ``GPTDataset`` (or its mock) splits from
the blend. Batches are cut the way Megatron-LM's pretraining sampler cuts them: global sample
``consumed + j * micro_batch_size * dp + dp_rank * micro_batch_size`` starts micro-batch ``j`` of
data-parallel rank ``dp_rank``. The position is a plain sample count, so it is saved with the
checkpoint and resuming at any parallel layout continues at the same sample.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator, Optional

import torch
from megatron_octo.data.mixture import load_mixture, to_megatron_blend


@dataclass
class Splits:
    train: object
    valid: Optional[object]
    tokenizer: object


def blend_from_config(cfg) -> tuple[list[str], list[float]]:
    d = cfg.data
    if d.mixture is not None:
        return to_megatron_blend(load_mixture(d.mixture, d.stage))
    return [s.prefix for s in d.blend], [float(s.weight) for s in d.blend]


def build_splits(cfg, tokenizer, *, train_samples: int, valid_samples: int, cache_dir: Optional[str]) -> Splits:
    """``tokenizer``: the run's (``models.llama.load_tokenizer``); megatron's datasets read its EOD id."""
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig, MockGPTDataset

    d = cfg.data
    blend = None if d.mock else blend_from_config(cfg)
    if cache_dir:
        os.makedirs(cache_dir, exist_ok=True)
    ds_cfg = GPTDatasetConfig(
        random_seed=cfg.train.seed,
        sequence_length=cfg.model.seq_length,
        blend=blend,
        split=d.split,
        path_to_cache=cache_dir,
        tokenizer=tokenizer,
        reset_position_ids=d.reset_position_ids,
        reset_attention_mask=d.reset_attention_mask,
        eod_mask_loss=d.eod_mask_loss,
        # The causal mask is built by the attention kernel unless documents are masked apart.
        create_attention_mask=d.reset_attention_mask,
        mid_level_dataset_surplus=0.005,
    )
    sizes = [train_samples, valid_samples, 0]
    cls = MockGPTDataset if d.mock else GPTDataset
    train, valid, _ = BlendedMegatronDatasetBuilder(cls, sizes, lambda: True, ds_cfg).build()
    return Splits(train=train, valid=valid if valid_samples > 0 else None, tokenizer=tokenizer)


def _collate(samples: list[dict]) -> dict:
    out = {}
    for key in samples[0]:
        vals = [torch.as_tensor(s[key]) for s in samples]
        out[key] = torch.stack(vals)
    return out


def micro_batches(dataset, *, start_sample: int, micro_batch_size: int, dp_rank: int, dp_size: int,
                  num_samples: Optional[int] = None) -> Iterator[dict]:
    """Micro-batches for one data-parallel rank, starting at global sample ``start_sample``."""
    end = len(dataset) if num_samples is None else min(len(dataset), start_sample + num_samples)
    step = micro_batch_size * dp_size
    pos = start_sample
    while pos + step <= end:
        first = pos + dp_rank * micro_batch_size
        yield _collate([dataset[i] for i in range(first, first + micro_batch_size)])
        pos += step
