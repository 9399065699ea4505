"""Build this rank's model from one of our checkpoints, at any TP/PP, for inference or RL.

The checkpoint's own ``config.yaml`` gives the architecture and tokenizer; the caller's overrides
set the parallel layout (``parallel.tp=2``) or anything else. The model is loaded through dist
checkpointing, so a checkpoint saved at one layout loads at another.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

from megatron_octo import config as cfgmod
from megatron_octo.models import llama
from megatron_octo.runtime import distributed as rt
from megatron_octo.checkpoint import save_load as ckpt


@dataclass
class LoadedModel:
    cfg: object
    arch: object
    model: object  # megatron GPTModel of this rank's pipeline stage
    tokenizer: object
    state: ckpt.TrainerState
    checkpoint: str


def checkpoint_config(path: str, overrides: Sequence[str] = ()):
    """The run config saved with a checkpoint (a save directory or an iter_NNNNNNN directory)."""
    ckpt_dir = ckpt.resolve_checkpoint(path)
    cfg_path = os.path.join(ckpt_dir, "config.yaml")
    if not os.path.isfile(cfg_path):
        raise ckpt.CheckpointError(f"{ckpt_dir}: missing config.yaml (not written by megatron-octo?)")
    # The saved config is complete; train.tokens etc. are irrelevant for inference.
    return ckpt_dir, cfgmod.load(cfg_path, list(overrides))


def load_for_inference(path: str, overrides: Sequence[str] = ()) -> LoadedModel:
    """Initialise the runtime for the config's layout and load the checkpoint's weights."""

    ckpt_dir, cfg = checkpoint_config(path, overrides)
    par = cfg.parallel
    world = rt.launch_env().world_size
    if world % (par.tp * par.pp) != 0:
        raise cfgmod.ConfigError(f"config key 'parallel.tp': tp*pp = {par.tp * par.pp} does not divide the "
                                 f"world size {world}")
    arch = llama.run_architecture(cfg)
    if arch.num_attention_heads % par.tp or arch.num_query_groups % par.tp:
        raise cfgmod.ConfigError(f"config key 'parallel.tp': {par.tp} does not divide the attention heads "
                                 f"({arch.num_attention_heads}) and KV groups ({arch.num_query_groups})")
    rt.initialize(par.tp, par.pp, par.cp, seed=cfg.train.seed)
    return load_into_runtime(ckpt_dir, cfg)


def load_into_runtime(ckpt_dir: str, cfg) -> LoadedModel:
    """Build this rank's stage of the run's model (runtime already initialised) and load weights."""
    import torch
    from megatron.core import parallel_state as ps

    tokenizer = llama.load_tokenizer(cfg)
    arch = llama.run_architecture(cfg, tokenizer)
    model = llama.build_gpt_model(cfg, arch, pre_process=ps.is_pipeline_first_stage(),
                                  post_process=ps.is_pipeline_last_stage())
    if torch.cuda.is_available():
        model.cuda(torch.cuda.current_device())
    # An unmatched layout: training RNG state is not restored for inference.
    state = ckpt.load(ckpt_dir, model, None, with_optimizer=False, layout={"tp": None, "pp": None, "dp": None})
    model.eval()
    return LoadedModel(cfg=cfg, arch=arch, model=model, tokenizer=tokenizer, state=state, checkpoint=ckpt_dir)
