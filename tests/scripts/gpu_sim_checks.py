"""Under OCTO_SIMULATE_GPU=1 as a run starts it (runtime.distributed.initialize, one gloo rank): the
mode refuses what a GPU would and lets the GPU-correct version through. Prints one JSON line."""

from __future__ import annotations

import json
import os

import torch
import torch.distributed as dist

from megatron_octo import config as cfgmod
from megatron_octo.models import llama
from megatron_octo.runtime import distributed as rt
from megatron_octo.runtime import simulated_gpu


def raises(fn) -> str:
    try:
        fn()
    except simulated_gpu.SimulatedDeviceError as exc:
        return str(exc)
    return ""


def main() -> None:
    assert os.environ.get("OCTO_SIMULATE_GPU") == "1"
    rt.initialize(1, 1)
    out = {"cuda_available": torch.cuda.is_available(), "backend": dist.get_backend()}
    cfg = cfgmod.load(None, ["model.preset=tiny", "model.num_layers=1", "train.tokens=0"])
    model = llama.build_gpt_model(cfg, llama.resolve_architecture(cfg.model), pre_process=True, post_process=True)
    model.cuda(torch.cuda.current_device())
    out["params_dtype"] = str(next(model.parameters()).dtype)
    out["param_device"] = str(next(model.parameters()).device)
    host_tokens = torch.randint(0, 100, (2, 8))
    positions = torch.arange(8).unsqueeze(0).expand(2, -1)
    out["cpu_tokens_error"] = raises(lambda: model(host_tokens, positions, None))
    gpu_tokens, gpu_positions = host_tokens.to(rt.device()), positions.to(rt.device())
    logits = model(gpu_tokens, gpu_positions, None)
    out["logits_device"] = str(logits.device)
    out["cpu_all_reduce_error"] = raises(lambda: dist.all_reduce(torch.ones(3)))
    t = torch.ones(3, device=rt.device())
    dist.all_reduce(t)
    out["cuda_all_reduce"] = t.tolist()
    out["all_reduce_values"] = rt.all_reduce_values([1.0, 2.0])
    simulated_gpu.reset_counts()
    logits.sum().item()
    logits[0, 0, :2].tolist()
    logits.cpu()
    out["counts"] = simulated_gpu.counts()
    print("CHECKS " + json.dumps(out), flush=True)
    rt.shutdown()


if __name__ == "__main__":
    main()
