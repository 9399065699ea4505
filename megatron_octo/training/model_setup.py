"""This rank's model stage wrapped in megatron DDP, and the megatron optimizer over it.

Shared by pretraining and RL: the same GPTModel object later serves rollouts through the
inference engine.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from megatron_octo.models import llama


@dataclass
class ModelAndOptimizer:
    model: object  # megatron DistributedDataParallel around the GPTModel
    optimizer: object  # megatron optimizer (optionally distributed)
    config: object  # the model's TransformerConfig


def build_model_and_optimizer(cfg, arch, *, model=None) -> ModelAndOptimizer:
    """``model``: an already built module of this rank's stage (e.g. the RL critic) instead of the
    Llama GPTModel of ``arch``. The optimizer applies no learning rate until a schedule is bound
    to it (``schedule.build_scheduler``), after any checkpoint load."""
    from megatron.core import parallel_state as ps
    from megatron.core.distributed import (DistributedDataParallel, DistributedDataParallelConfig,
                                           finalize_model_grads)
    from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer

    gpu = torch.cuda.is_available()
    par = cfg.parallel
    if model is None:
        model = llama.build_gpt_model(cfg, arch, pre_process=ps.is_pipeline_first_stage(),
                                      post_process=ps.is_pipeline_last_stage())
    if gpu:
        model.cuda(torch.cuda.current_device())
    # Overlap pays on GPUs with NCCL; on CPU/gloo it only adds hooks.
    overlap_grad = par.overlap_grad_reduce if par.overlap_grad_reduce is not None else gpu
    overlap_param = par.use_distributed_optimizer and (
        par.overlap_param_gather if par.overlap_param_gather is not None else gpu)
    ddp_cfg = DistributedDataParallelConfig(
        grad_reduce_in_fp32=True,
        overlap_grad_reduce=overlap_grad,
        overlap_param_gather=overlap_param,
        use_distributed_optimizer=par.use_distributed_optimizer,
        check_for_nan_in_grad=False,
    )
    tconfig = model.config
    ddp = DistributedDataParallel(config=tconfig, ddp_config=ddp_cfg, module=model)
    o = cfg.optimizer
    optimizer = get_megatron_optimizer(
        OptimizerConfig(
            # LR 0 until schedule.py binds the stage's schedule: it is the one owner of LR and weight decay.
            optimizer=o.name, lr=0.0, min_lr=0.0, weight_decay=o.weight_decay,
            adam_beta1=o.adam_beta1, adam_beta2=o.adam_beta2, adam_eps=o.adam_eps, clip_grad=o.clip_grad,
            bf16=tconfig.bf16, params_dtype=tconfig.params_dtype,
            use_distributed_optimizer=par.use_distributed_optimizer,
        ),
        [ddp],
    )
    # Megatron-LM wires these into the model config for the pipeline schedules.
    tconfig.grad_scale_func = optimizer.scale_loss
    tconfig.finalize_model_grads_func = finalize_model_grads
    if overlap_grad:
        tconfig.no_sync_func = ddp.no_sync
    if overlap_param:
        tconfig.param_sync_func = ddp.start_param_sync
    return ModelAndOptimizer(model=ddp, optimizer=optimizer, config=tconfig)
