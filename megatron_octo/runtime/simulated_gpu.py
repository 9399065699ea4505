"""Simulated-GPU mode: on a CPU machine, take the GPU code paths and fail where CUDA and NCCL would.

``OCTO_SIMULATE_GPU=1`` makes :func:`megatron_octo.runtime.distributed.install_device_mode` (run by
the entry points before their checks, and by ``initialize``) install this instead of the plain
CUDA->CPU redirect (:mod:`megatron_octo.runtime.cpu`). Then
``torch.cuda.is_available()`` is true (so bf16 params, GPU-side initialisation, the GPU branches of
our code and megatron's are taken), every tensor carries the device a GPU run would give it, and:

* an op mixing a "CUDA" tensor with a CPU tensor that is not a 0-dim scalar raises
  :class:`SimulatedDeviceError` with CUDA's message (``cat``/``stack``/``embedding`` and the matmuls
  refuse even 0-dim CPU tensors, as CUDA does; ``copy_`` and indexing with CPU indices are allowed);
* a collective (``torch.distributed.all_reduce``, ``broadcast``, ``send`` ...) given a CPU tensor
  raises as NCCL does, and ``torch.distributed.get_backend()`` answers "nccl"; underneath it is
  gloo over the same (host) memory;
* ``.numpy()`` of a "CUDA" tensor raises as on a GPU; device->host syncs (``.item()``,
  ``.tolist()``, ``float()``/``int()``/``bool()``) and host<->device copies (``.cpu()``,
  ``.cuda()``, ``.to()``, cross-device ``copy_``) are counted (:func:`counts`, :func:`reset_counts`).

Why a ``TorchFunctionMode`` that tags real CPU tensors rather than ``FakeTensorMode``: fake tensors
carry no values, and the bugs this mode exists for sit in code that needs them: RL builds its batches
from sampled tokens and graded rewards, skips steps on reward statistics, and the trainers decide
on ``.item()`` of losses. With real values the whole GRPO/PPO step, a pretraining step and a
checkpoint round trip run unchanged under the mode. The price is that the device is our model of
it: a tensor is tagged "cuda" when a GPU run would put it there (``device="cuda"`` or
``torch.cuda.current_device()`` factories, ``.cuda()``, ``.to("cuda")``, parameters and buffers of
a module after ``module.cuda()``), "cpu" when it is made on the host (a factory without a CUDA
device, ``torch.tensor``, ``from_numpy``), and an op's outputs take the device of its inputs.
Tensors made outside any Python-visible torch call (autograd's gradients, C++ internals) are
untagged and mix with either; ``.grad`` and ``.data`` read through Python take their owner's tag.
Not modelled: kernels (megatron's ``torch.compile``d fusions run eagerly; no TE, apex or
flash-attn), ``isend``/``irecv`` called outside ``batch_isend_irecv`` (P2POp accepts only torch's
own functions), streams and memory.

The GPU's identity (compute capability, device name) is what :func:`install` is given, so code that
selects kernels by capability can be run as an H100 (9.0, default) or a B200 (10.0) would run it.
Checked against megatron-core ``cpu.CHECKED_MCORE_VERSION`` (same list of CUDA entry points).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections import Counter

import torch
import torch.cuda.nccl
import torch.distributed as dist
from torch.overrides import TorchFunctionMode

from megatron_octo.runtime import cpu

ENV_VAR = "OCTO_SIMULATE_GPU"
_ATTR = "_octo_sim_device"  # "cuda" | "cpu" on tensors whose device the mode knows
_CUDA = torch.device("cuda", 0)
# CUDA takes a 0-dim CPU tensor as a scalar operand of elementwise ops, not of these.
_STRICT = frozenset({"cat", "concat", "concatenate", "stack", "hstack", "vstack", "embedding", "matmul",
                     "mm", "bmm", "linear", "addmm", "baddbmm", "einsum", "gather", "scatter", "scatter_add",
                     "index_select", "take_along_dim"})
# Ops that read only the other tensor's shape: no device rule applies.
_SHAPE_ONLY = frozenset({"expand_as", "view_as", "reshape_as"})
_SYNCS = frozenset({"item", "tolist", "__float__", "__int__", "__bool__", "__index__"})
_COLLECTIVES = ("all_reduce", "all_gather", "all_gather_into_tensor", "_all_gather_base", "reduce_scatter",
                "reduce_scatter_tensor", "_reduce_scatter_base", "broadcast", "reduce", "all_to_all",
                "all_to_all_single", "gather", "scatter", "send", "recv", "all_reduce_coalesced",
                # isend/irecv stay torch's own: P2POp accepts no other function (megatron's pipeline
                # sends go through batch_isend_irecv, checked here).
                "batch_isend_irecv")

_counts: Counter = Counter()
_state: dict = {}  # what install() replaced, for uninstall()


class SimulatedDeviceError(RuntimeError):
    """What CUDA or NCCL would have raised on a GPU."""


class _CurrentDevice(str):
    """``torch.cuda.current_device()`` under the mode: the string "cpu" to code the mode never sees
    (``torch.Generator(device=...)``), a CUDA device to every torch call it does."""


def requested(environ=None) -> bool:
    return (os.environ if environ is None else environ).get(ENV_VAR, "") not in ("", "0")


def is_active() -> bool:
    return bool(_state)


def device_of(t: torch.Tensor) -> str | None:
    """"cuda", "cpu", or None (a tensor the mode has not seen made)."""
    return getattr(t, _ATTR, None)


def mark(t: torch.Tensor, device: str | None) -> torch.Tensor:
    if device is not None and isinstance(t, torch.Tensor):
        try:
            object.__setattr__(t, _ATTR, device)
        except (AttributeError, TypeError):  # e.g. a tensor subclass with __slots__
            pass
    return t


def counts() -> dict:
    """Host<->device traffic since the last reset: ``sync`` (.item(), .tolist(), float() ... of a
    CUDA tensor), ``d2h`` and ``h2d`` copies."""
    return dict(_counts)


def reset_counts() -> dict:
    out = counts()
    _counts.clear()
    return out


def step_counts(steps: int = 1) -> dict:
    """The host traffic since the previous call, per step over ``steps``, as metrics ``sim/sync``,
    ``sim/h2d``, ``sim/d2h`` (resets the counts); ``{}`` outside the mode, so trainers can always
    merge it into a step's metrics."""
    if not _state:
        return {}
    c = reset_counts()
    return {f"sim/{k}": c.get(k, 0) / max(steps, 1) for k in ("sync", "h2d", "d2h")}


def _is_cuda_request(device) -> bool | None:
    """True: a CUDA device; False: the CPU; None: not a device argument."""
    if isinstance(device, _CurrentDevice):
        return True
    if isinstance(device, torch.device):
        return device.type == "cuda"
    if isinstance(device, str):
        return device.startswith("cuda") if device.split(":")[0] in ("cuda", "cpu", "meta") else None
    if isinstance(device, int) and not isinstance(device, bool):
        return True  # an ordinal is a CUDA device
    return None


def _tensors(args, kwargs):
    """The tensors among an op's or a collective's arguments (lists of tensors and of P2P ops too)."""
    for a in (*args, *kwargs.values()):
        if isinstance(a, torch.Tensor):
            yield a
        elif isinstance(a, (list, tuple)):
            for x in a:
                if isinstance(x, torch.Tensor):
                    yield x
                elif isinstance(x, dist.P2POp):
                    yield x.tensor


def _mark_all(out, device):
    if isinstance(out, torch.Tensor):
        mark(out, device)
    elif isinstance(out, (list, tuple)):
        for x in out:
            if isinstance(x, torch.Tensor):
                mark(x, device)
    return out


def _mismatch(name: str) -> SimulatedDeviceError:
    return SimulatedDeviceError(
        f"Expected all tensors to be on the same device, but found at least two devices, cuda:0 and cpu! "
        f"(simulated GPU, in {name})")


def _copy(t: torch.Tensor, device: str) -> torch.Tensor:
    """A copy of ``t`` on the other side: a new tensor (autograd-preserving), never ``t`` itself."""
    _counts["h2d" if device == "cuda" else "d2h"] += 1
    return mark(t.clone(), device)


class SimulatedGpuMode(TorchFunctionMode):
    """Tags tensors with their simulated device, checks every op's devices, counts host traffic."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name == "__get__":
            return self._property(func, args)
        if name == "pin_memory":
            return args[0]
        if name in ("cuda", "cpu") and args and isinstance(args[0], torch.Tensor):
            t = args[0]
            want = "cuda" if name == "cuda" else "cpu"
            return t if device_of(t) == want else _copy(t, want)
        target = None  # the device a factory / .to() asks for
        if "device" in kwargs:
            target = _is_cuda_request(kwargs["device"])
            if target is not None:
                kwargs = dict(kwargs, device="cpu")
        if name == "to" and args and isinstance(args[0], torch.Tensor):
            return self._to(func, args, kwargs, target)
        if name in _SHAPE_ONLY:
            return mark(func(*args, **kwargs), device_of(args[0]))
        if name == "type_as" and len(args) == 2:  # a copy to the other tensor's type and device
            have, want = device_of(args[0]), device_of(args[1])
            if have and want and have != want:
                _counts["h2d" if want == "cuda" else "d2h"] += 1
            out = func(*args, **kwargs)
            return mark(out if out is not args[0] or have == want else out.clone(), want)
        self._check(name, args, kwargs)
        t0 = args[0] if args and isinstance(args[0], torch.Tensor) else None
        if t0 is not None and device_of(t0) == "cuda":
            if name == "numpy":
                raise SimulatedDeviceError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() "
                                           "to copy the tensor to host memory first. (simulated GPU)")
            if name in _SYNCS:
                _counts["sync"] += 1
            if name == "type" and len(args) == 1 and not kwargs:
                t = func(*args)
                return t if t.startswith("torch.cuda.") else t.replace("torch.", "torch.cuda.", 1)
            if name == "get_device":
                return 0
        out = func(*args, **kwargs)
        if target is not None:
            return _mark_all(out, "cuda" if target else "cpu")
        devices = {device_of(t) for t in _tensors(args, kwargs)}
        if "cuda" in devices:
            return _mark_all(out, "cuda")
        if "cpu" in devices or not any(True for _ in _tensors(args, kwargs)):
            return _mark_all(out, "cpu")  # host data, or a factory without a device: the host
        return out

    @staticmethod
    def _property(func, args):
        prop = func.__self__.__name__
        t = args[0]
        if prop == "device" and device_of(t) == "cuda":
            return _CUDA
        if prop == "is_cuda":
            return device_of(t) == "cuda"
        return _mark_all(func(*args), device_of(t))  # .data, .grad, .T ... live with their tensor

    @staticmethod
    def _check(name, args, kwargs):
        if name in ("copy_", "__setitem__", "__getitem__", "index_put_", "index_put"):
            # Cross-device copies are legal (counted); CPU index tensors are moved by CUDA itself.
            if name == "copy_" and len(args) > 1 and isinstance(args[1], torch.Tensor):
                src, dst = device_of(args[1]), device_of(args[0])
                if src and dst and src != dst:
                    _counts["h2d" if dst == "cuda" else "d2h"] += 1
            return
        on_cuda = on_cpu = False
        for t in _tensors(args, kwargs):
            d = device_of(t)
            if d == "cuda":
                on_cuda = True
            elif d == "cpu" and (t.dim() > 0 or name in _STRICT):
                on_cpu = True
        if on_cuda and on_cpu:
            raise _mismatch(name)

    @staticmethod
    def _to(func, args, kwargs, target):
        t = args[0]
        rest = list(args[1:])
        for i, a in enumerate(rest):
            if isinstance(a, torch.Tensor):  # .to(other): other's device and dtype
                target = device_of(a) == "cuda"
                rest[i] = a.dtype
            else:
                req = _is_cuda_request(a)
                if req is not None:
                    target, rest[i] = req, "cpu"
        out = func(t, *rest, **kwargs)
        have = device_of(t)
        if target is None:
            return mark(out, have) if out is not t else out
        want = "cuda" if target else "cpu"
        if have == want or (have is None and out is not t):
            return mark(out, want)
        if out is t:
            return _copy(t, want)
        _counts["h2d" if want == "cuda" else "d2h"] += 1
        return mark(out, want)


def _module_cuda(module, device=None):
    for t in (*module.parameters(), *module.buffers()):
        mark(t, "cuda")
        if t.grad is not None:
            mark(t.grad, "cuda")
    return module


def _module_to(original):
    @functools.wraps(original)
    def to(module, *args, **kwargs):
        device = torch._C._nn._parse_to(*args, **kwargs)[0] if (args or kwargs) else None
        is_cuda = device is not None and device.type == "cuda"
        if is_cuda:
            args = tuple(a for a in args if _is_cuda_request(a) is None)
            kwargs.pop("device", None)
        out = original(module, *args, **kwargs) if (args or kwargs) else module
        return _module_cuda(out) if is_cuda else out
    return to


def _checked_collective(name, original):
    @functools.wraps(original)
    def collective(*args, **kwargs):
        for t in _tensors(args, kwargs):
            if device_of(t) == "cpu":
                raise SimulatedDeviceError(
                    f"torch.distributed.{name}: a CPU tensor under the NCCL backend (simulated GPU); NCCL "
                    "only takes CUDA tensors (\"No backend type associated with device type cpu\")")
        # Underneath it is gloo: torch.distributed must see the tensors' real (host) device.
        with torch._C.DisableTorchFunction():
            return original(*args, **kwargs)
    return collective


def _nccl_backend_name(original):
    @functools.wraps(original)
    def get_backend(*args, **kwargs):
        name = original(*args, **kwargs)
        return "nccl" if name == "gloo" else name
    return get_backend


def install(capability: tuple[int, int] = (9, 0), name: str = "NVIDIA H100 80GB HBM3 (simulated)",
            announce: bool = True) -> None:
    """Enter the mode in this process (idempotent). ``capability``: what the GPU reports to
    ``torch.cuda.get_device_capability()``; ``announce``: say so on stdout (a run's log shows it)."""
    if _state:
        return
    cpu.check_version()
    patches = cpu.cuda_patches(current_device=lambda: _CurrentDevice("cpu"))
    cuda = torch.cuda
    patches += [
        (cuda, "is_available", lambda: True),
        (cuda, "get_device_capability", lambda device=None: tuple(capability)),
        (cuda, "get_device_name", lambda device=None: name),
        (cuda, "is_bf16_supported", lambda *a, **k: True),
        (torch.nn.Module, "cuda", _module_cuda),
        (torch.nn.Module, "to", _module_to(torch.nn.Module.to)),
        # megatron's fusions are torch.compile'd on a GPU; compiled on the host under a Python mode
        # they fail in dynamo itself, so they run eagerly here (their ops are still checked).
        (torch._dynamo.config, "disable", True),
    ]
    patches += [(dist, n, _checked_collective(n, getattr(dist, n))) for n in _COLLECTIVES if hasattr(dist, n)]
    # Callers branching on the backend (megatron's pipeline p2p, its timers) take the NCCL branch;
    # torch.distributed's own logging then asks for the NCCL version (on every checkpoint).
    patches.append((dist, "get_backend", _nccl_backend_name(dist.get_backend)))
    patches.append((torch.cuda.nccl, "version", lambda: (2, 21, 5)))
    # A class's own attribute (not an inherited one) is what uninstall() must put back.
    _state["saved"] = [(owner, attr, owner.__dict__.get(attr, _MISSING) if isinstance(owner, type)
                        else getattr(owner, attr, _MISSING)) for owner, attr, _ in patches]
    for owner, attr, value in patches:
        setattr(owner, attr, value)
    # The CPU generator stands in for the CUDA one, so megatron's RNG tracker sees "the CPU RNG
    # changed inside a GPU RNG context" on every fork: true here, meaningless on a GPU.
    rng_log = logging.getLogger("megatron.core.tensor_parallel.random")
    _state["rng_log_level"] = rng_log.level
    rng_log.setLevel(logging.ERROR)
    mode = SimulatedGpuMode()
    mode.__enter__()
    _state["mode"] = mode
    if announce:
        print(f"[megatron-octo] simulated GPU ({ENV_VAR}=1): {name}, compute capability "
              f"{capability[0]}.{capability[1]}; CUDA and NCCL device rules enforced on CPU tensors", flush=True)


_MISSING = object()


def uninstall() -> None:
    """Leave the mode and restore everything install() replaced (tests use the mode in-process)."""
    if not _state:
        return
    _state["mode"].__exit__(None, None, None)
    logging.getLogger("megatron.core.tensor_parallel.random").setLevel(_state["rng_log_level"])
    for owner, attr, value in reversed(_state["saved"]):
        if value is _MISSING:
            delattr(owner, attr)
        else:
            setattr(owner, attr, value)
    _state.clear()
    _counts.clear()


@contextlib.contextmanager
def simulated_gpu(**install_kwargs):
    """The mode for a ``with`` block (in-process tests)."""
    install(**{"announce": False, **install_kwargs})
    try:
        yield
    finally:
        uninstall()
