"""Run megatron-core on a machine without a GPU.

megatron-core 0.16.1 assumes CUDA in a handful of places (hard-coded ``device="cuda"`` tensors,
``.cuda()`` calls, ``torch.cuda`` RNG/stream calls, a ``grad.type() == 'torch.cuda.FloatTensor'``
assert in grad clipping, megatron's own CUDA RNG helpers). This module redirects exactly those to
the CPU. It is installed by :func:`megatron_octo.runtime.distributed.initialize` only when
``torch.cuda.is_available()`` is false, so GPU runs never see it.

Why a ``TorchFunctionMode``: the cuda device strings are scattered through megatron-core; one mode
that rewrites the ``device`` argument catches all of them without patching megatron's source.
The list of what is covered was checked against megatron-core ``CHECKED_MCORE_VERSION``; another
version refuses to install unless ``MEGATRON_OCTO_ALLOW_UNCHECKED_MCORE=1`` is set.
"""

from __future__ import annotations

import os

import torch
from torch.overrides import TorchFunctionMode

CHECKED_MCORE_VERSION = "0.16.1"

_installed = False
_mode: "CudaToCpuMode | None" = None
_originals: list[tuple[object, str, object]] = []


def _to_cpu_device(device):
    if isinstance(device, torch.device) and device.type == "cuda":
        return torch.device("cpu")
    if isinstance(device, str) and device.startswith("cuda"):
        return "cpu"
    # megatron passes torch.cuda.current_device() (an int ordinal) as a device.
    if isinstance(device, int) and not isinstance(device, bool):
        return "cpu"
    return device


class CudaToCpuMode(TorchFunctionMode):
    """Rewrites CUDA device requests to CPU for every torch call made while it is active."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if "device" in kwargs:
            kwargs = dict(kwargs, device=_to_cpu_device(kwargs["device"]))
        name = getattr(func, "__name__", "")
        if name in ("cuda", "pin_memory") and args and isinstance(args[0], torch.Tensor):
            return args[0]
        if name == "to" and args:
            args = tuple(_to_cpu_device(a) if isinstance(a, (str, torch.device)) else a for a in args)
        if name == "type" and len(args) == 1 and not kwargs and isinstance(args[0], torch.Tensor):
            # clip_grads asserts grad.type() == 'torch.cuda.FloatTensor'.
            t = func(*args)
            return t if t.startswith("torch.cuda.") else t.replace("torch.", "torch.cuda.", 1)
        return func(*args, **kwargs)


class _NoOpStreamOrEvent:
    """Stands in for torch.cuda.Stream / Event: on CPU every op is already synchronous."""

    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def wait_stream(self, *args, **kwargs):
        pass

    def wait_event(self, *args, **kwargs):
        pass

    def record_event(self, *args, **kwargs):
        return _NoOpStreamOrEvent()

    def record(self, *args, **kwargs):
        pass

    def synchronize(self):
        pass

    def query(self):
        return True

    def elapsed_time(self, other):
        return 0.0


def cuda_patches(current_device=lambda: "cpu") -> list[tuple[object, str, object]]:
    """``(owner, attribute, replacement)`` for the ``torch.cuda`` RNG/stream/device functions and
    megatron's two CUDA RNG helpers; the simulated-GPU mode applies the same list (and undoes it).

    ``current_device``: "cpu", not an ordinal: some callers build objects no mode sees from it
    (torch.Generator(device=torch.cuda.current_device()) in the inference controller)."""
    from megatron.core.inference import communication_utils
    from megatron.core.tensor_parallel import random as mcore_random

    cuda = torch.cuda
    cpu_rng = lambda device="cuda": torch.get_rng_state()
    set_cpu_rng = lambda state, device="cuda": torch.set_rng_state(state)
    return [
        (cuda, "current_device", current_device),
        (cuda, "device_count", lambda: 1),
        (cuda, "set_device", lambda *a, **k: None),
        (cuda, "get_rng_state", cpu_rng),
        (cuda, "set_rng_state", set_cpu_rng),
        (cuda.random, "get_rng_state", cpu_rng),
        (cuda.random, "set_rng_state", set_cpu_rng),
        # The CPU generator stands in for the device generator: megatron's RNG tracker seeds it,
        # snapshots it per stream (data-parallel, model-parallel) and restores the original.
        # (torch.manual_seed itself calls torch.cuda.manual_seed_all, which must stay a no-op.)
        (cuda, "manual_seed", lambda seed: torch.default_generator.manual_seed(int(seed))),
        (cuda, "manual_seed_all", lambda seed: None),
        (cuda, "synchronize", lambda *a, **k: None),
        (cuda, "empty_cache", lambda: None),
        (cuda, "Stream", _NoOpStreamOrEvent),
        (cuda, "Event", _NoOpStreamOrEvent),
        (cuda, "current_stream", lambda *a, **k: _NoOpStreamOrEvent()),
        (cuda, "default_stream", lambda *a, **k: _NoOpStreamOrEvent()),
        (cuda, "stream", lambda *a, **k: _NoOpStreamOrEvent()),
        (cuda, "memory_allocated", lambda *a, **k: 0),
        (cuda, "max_memory_allocated", lambda *a, **k: 0),
        (mcore_random, "_get_cuda_rng_state",
         lambda device="cuda", clone=False, graph_safe=False: torch.get_rng_state()),
        (mcore_random, "_set_cuda_rng_state",
         lambda new_state, device=-1, graph_safe=False: torch.set_rng_state(new_state)),
        # The static engine's pipeline broadcasts / sends assert their tensors are CUDA tensors.
        (communication_utils, "_is_cuda", _is_tensor),
    ]


def _is_tensor(tensor) -> None:
    assert tensor is not None


def check_version() -> None:
    import megatron.core

    found = megatron.core.__version__
    if found != CHECKED_MCORE_VERSION and os.environ.get("MEGATRON_OCTO_ALLOW_UNCHECKED_MCORE") != "1":
        raise RuntimeError(
            f"megatron_octo.runtime.cpu was checked against megatron-core {CHECKED_MCORE_VERSION}, "
            f"found {found}. Install megatron-core=={CHECKED_MCORE_VERSION} or set "
            "MEGATRON_OCTO_ALLOW_UNCHECKED_MCORE=1 to try anyway."
        )


def install(force: bool = False) -> bool:
    """Install the redirect if there is no GPU. Returns True when it is active.

    ``force`` installs it even when CUDA is available; only tests use it.
    """
    global _installed, _mode
    if _installed:
        return True
    if torch.cuda.is_available() and not force:
        return False
    check_version()

    for owner, name, value in cuda_patches():
        _originals.append((owner, name, getattr(owner, name)))
        setattr(owner, name, value)

    _mode = CudaToCpuMode()
    _mode.__enter__()
    _installed = True
    return True


def uninstall() -> None:
    """Undo :func:`install`: the mode leaves the torch-function stack and every patched attribute gets its
    original back. For tests that set megatron up in-process and must leave the interpreter as they found
    it; a run never needs it (the redirect lives as long as the process)."""
    global _installed, _mode
    if not _installed:
        return
    _mode.__exit__(None, None, None)
    for owner, name, value in reversed(_originals):
        setattr(owner, name, value)
    _originals.clear()
    _mode = None
    _installed = False


def is_active() -> bool:
    return _installed
