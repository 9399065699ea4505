"""Training metrics: TensorBoard scalars with Megatron-LM's names, and one console line per interval.

Scalars are written against the global iteration (Megatron-LM's x axis) and, for the curves that
span stable and decay stages, also against global tokens ("... vs tokens").
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Optional

import torch

# Dense bf16 peak FLOP/s per device (datasheet, without sparsity). FP8 doubles on Hopper/Blackwell.
_GPU_PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "B200": 2250e12, "GH200": 989e12}


def measure_cpu_matmul_flops(n: int = 1024, repeats: int = 4) -> float:
    """FLOP/s of a large fp32 GEMM on this process's threads: the CPU's practical peak."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return repeats * 2 * n**3 / (time.perf_counter() - t)


def peak_flops_per_device(configured: Optional[float], fp8: bool) -> float:
    if configured:
        return float(configured)
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        for key, peak in _GPU_PEAK_BF16.items():
            if key in name:
                return peak * (2 if fp8 else 1)
        return float("nan")
    return measure_cpu_matmul_flops()


def memory_gb() -> tuple[str, float]:
    if torch.cuda.is_available():
        return "mem-max-allocated-gigabytes", torch.cuda.max_memory_allocated() / 2**30
    import psutil

    return "mem-rss-gigabytes", psutil.Process().memory_info().rss / 2**30


class MetricsWriter:
    """Writes on one rank (the last, which holds the loss under pipeline parallelism)."""

    def __init__(self, log_dir: Optional[str], enabled: bool):
        self.enabled = enabled
        self.tb = None
        self.jsonl = None
        if enabled and log_dir:
            from torch.utils.tensorboard import SummaryWriter

            os.makedirs(log_dir, exist_ok=True)
            self.tb = SummaryWriter(log_dir=log_dir, max_queue=100)
            # TensorBoard keeps float32; metrics.jsonl keeps every logged value at full precision.
            self.jsonl = open(os.path.join(log_dir, "metrics.jsonl"), "a")

    def scalars(self, values: dict, iteration: int, tokens: int, vs_tokens=("lm loss", "learning-rate"),
                extra: Optional[dict] = None):
        """``extra``: values for metrics.jsonl only (not TensorBoard scalars)."""
        if self.tb is None:
            return
        record = {"iteration": iteration, "tokens": tokens}
        record.update({k: float(v) for k, v in values.items() if v is not None})
        record.update(extra or {})
        self.jsonl.write(json.dumps(record) + "\n")
        self.jsonl.flush()
        for name, value in values.items():
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            self.tb.add_scalar(name, value, iteration)
            if name in vs_tokens:
                self.tb.add_scalar(f"{name} vs tokens", value, tokens)

    def text(self, tag: str, text: str):
        if self.tb is not None:
            self.tb.add_text(tag, text, 0)

    def console(self, line: str):
        if self.enabled:
            print(line, flush=True)

    def close(self):
        if self.jsonl is not None:
            self.jsonl.close()
        if self.tb is not None:
            self.tb.flush()
            self.tb.close()


def format_line(*, iteration: int, total: int, tokens: int, ms_per_iter: float, tflops: float,
                tokens_per_sec: float, lr: float, batch_size: int, loss: float, grad_norm: Optional[float],
                skipped: int) -> str:
    gn = "nan" if grad_norm is None else f"{grad_norm:.3f}"
    return (f" iteration {iteration:>7d}/{total:>7d} | consumed tokens: {tokens:>12d} | "
            f"elapsed time per iteration (ms): {ms_per_iter:.1f} | throughput per device (TFLOP/s): "
            f"{tflops:.3f} | tokens/s: {tokens_per_sec:.0f} | learning rate: {lr:.6E} | "
            f"global batch size: {batch_size:5d} | lm loss: {loss:.6E} | grad norm: {gn} | "
            f"skipped iterations: {skipped}")
