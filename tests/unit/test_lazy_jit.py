"""megatron's torch.compile decorators deferred to the first call (runtime/lazy_jit.py); the import-time
effect is tested in fresh interpreters in tests/process/test_startup.py."""

from __future__ import annotations

import torch

from megatron_octo.runtime import lazy_jit


def test_lazy_compile_compiles_the_same_function_once_at_its_first_call(monkeypatch):
    made = []

    def fake_compile(fn):
        made.append(fn)
        return lambda *a, **k: ("compiled", fn(*a, **k))

    monkeypatch.setattr(torch, "compile", fake_compile)

    def geglu_like(x, scale=2):
        return x * scale

    wrapped = lazy_jit.lazy_compile(geglu_like)
    assert made == [] and wrapped.__name__ == "geglu_like" and wrapped.__wrapped__ is geglu_like
    assert wrapped(3) == ("compiled", 6)  # compiled at the first call, with the function itself
    assert wrapped(4, scale=3) == ("compiled", 12)
    assert made == [geglu_like]  # and only once


def test_install_declines_once_megatron_jit_is_imported():
    import megatron.core.jit  # noqa: F401  (the test process has imported megatron already)

    assert lazy_jit.install() is False
