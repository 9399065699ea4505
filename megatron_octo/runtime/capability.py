"""What the GPU and its optional kernels can do: the probes behind the choices that depend on the
cluster rather than the recipe (tests replace these functions to answer as an H100, a B200 or a
machine without apex)."""

from __future__ import annotations

import functools
from typing import Optional

import torch


def compute_capability() -> Optional[tuple[int, int]]:
    """(major, minor) of the current GPU (9.0 an H100, 10.0 a B200), None without one."""
    if not torch.cuda.is_available():
        return None
    return tuple(torch.cuda.get_device_capability())


@functools.lru_cache(maxsize=None)
def apex_wgrad_fusion_available() -> bool:
    """apex's ``fused_weight_gradient_mlp_cuda`` imports: megatron's own linear layers (the output
    layer even with Transformer Engine) need it for ``gradient_accumulation_fusion``. A pip install
    of Transformer Engine brings no apex; an NGC container has it."""
    try:
        import fused_weight_gradient_mlp_cuda  # noqa: F401
    except ImportError:
        return False
    return True
