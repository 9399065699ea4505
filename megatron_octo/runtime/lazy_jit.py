"""Defer megatron-core's ``torch.compile`` decorators to their first call, on machines without a GPU.

megatron-core 0.16.1 sets ``megatron.core.jit.jit_fuser = torch.compile`` and decorates its fused
kernels with it at import; ``torch.compile(fn)`` imports ``torch._dynamo`` and ``torch._inductor`` on
the spot (about 1.2 of ``import megatron.core``'s 3.2 s here), although the function is only compiled at
its first call, and the CPU runs never call one. ``megatron.core.jit.disable_jit_fuser()`` comes too late
(``megatron/core/__init__`` imports the fusions before anyone can call it) and would change what runs.

``install()`` puts a one-shot import hook in front of ``megatron.core.jit``: once that module has run,
its ``jit_fuser`` becomes :func:`lazy_compile`, which calls ``torch.compile`` with the same function at
the first call; the compiled function and its behaviour are the same, only the import moves. It does
nothing when CUDA is available (GPU runs keep megatron exactly as shipped) or when megatron.core.jit
is already imported.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import sys

MODULE = "megatron.core.jit"


def lazy_compile(fn):
    """``torch.compile(fn)``, made at the first call instead of at decoration."""
    import torch

    compiled = None

    @functools.wraps(fn)
    def call(*args, **kwargs):
        nonlocal compiled
        if compiled is None:
            compiled = torch.compile(fn)
        return compiled(*args, **kwargs)

    return call


class _DeferCompileLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def __getattr__(self, name):  # get_source, get_code, is_package, ...: the file loader's own
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        import torch

        self.loader.exec_module(module)
        if getattr(module, "jit_fuser", None) is torch.compile:
            module.jit_fuser = lazy_compile


class _JitFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != MODULE:
            return None
        sys.meta_path.remove(self)
        import torch  # megatron.core has imported it by now

        if torch.cuda.is_available():
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = _DeferCompileLoader(spec.loader)
        return spec


def install() -> bool:
    """Put the hook in place (importing nothing); False when megatron.core.jit is already imported. The
    CUDA check is made when megatron imports the module, after torch is loaded."""
    if MODULE in sys.modules:
        return False
    if not any(isinstance(f, _JitFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _JitFinder())
    return True


def uninstall() -> None:
    """Take the hook out before megatron.core.jit is imported, leaving megatron as shipped
    (benchmarks/startup.py measures the difference)."""
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _JitFinder)]
