"""The GEMM backend's choice for generation's lean forward (megatron_octo/models/lean_forward.py,
generation.gemm): forced choices and OCTO_INFERENCE_GEMM honoured, auto keeping the faster of the two timings,
measured once per process. That the lean forward generates what megatron's forward generates (a fresh
interpreter): tests/process/test_lean_forward_generation.py."""

from __future__ import annotations

import pytest

import torch

from megatron_octo.models import lean_forward

pytestmark = pytest.mark.timeout(300)


class _Linear:
    def __init__(self, out_features: int, in_features: int, dtype=torch.float32):
        self.weight = torch.randn(out_features, in_features, dtype=dtype)


class _Group:
    def size(self):
        return 1


def _fake_model(hidden=32, ffn=64, vocab=100, layers=2, dtype=torch.float32):
    """What gemm_backend reads of a GPTModel: the first layer's four linear weights, the layer count, the
    output layer (untied) and its TP group."""
    from types import SimpleNamespace as NS

    layer = NS(self_attention=NS(linear_qkv=_Linear(3 * hidden, hidden, dtype), linear_proj=_Linear(hidden, hidden, dtype)),
               mlp=NS(linear_fc1=_Linear(2 * ffn, hidden, dtype), linear_fc2=_Linear(hidden, ffn, dtype)))
    out = _Linear(vocab, hidden, dtype)
    out.tp_group = _Group()
    return NS(decoder=NS(layers=[layer] * layers), share_embeddings_and_output_weights=False, output_layer=out)


def _never(*_):
    raise AssertionError("a forced GEMM choice timed something")


@pytest.fixture
def fresh_measurements(monkeypatch):
    monkeypatch.delenv(lean_forward.GEMM_ENV, raising=False)
    monkeypatch.setattr(lean_forward, "_MEASURED", {})


def test_forced_gemm_choices_are_honoured(fresh_measurements, monkeypatch):
    if not lean_forward.onednn_gemm_available():
        pytest.skip("this torch has no oneDNN linear: every choice is torch")
    model = _fake_model()
    assert lean_forward.gemm_backend(model, "onednn", timer=_never) == "onednn"
    assert lean_forward.gemm_backend(model, "torch", timer=_never) == "torch"
    monkeypatch.setenv(lean_forward.GEMM_ENV, "torch")  # the environment variable wins over the config
    assert lean_forward.gemm_backend(model, "onednn", timer=_never) == "torch"
    monkeypatch.setenv(lean_forward.GEMM_ENV, "mkl")
    with pytest.raises(ValueError, match="OCTO_INFERENCE_GEMM"):
        lean_forward.gemm_backend(model, "auto", timer=_never)
    monkeypatch.delenv(lean_forward.GEMM_ENV)
    with pytest.raises(ValueError, match="generation.gemm"):
        lean_forward.gemm_backend(model, "fastest", timer=_never)
    # Only fp32 CPU weights have a choice.
    assert lean_forward.gemm_backend(_fake_model(dtype=torch.bfloat16), "onednn", timer=_never) == "torch"


@pytest.mark.parametrize("faster", ["onednn", "torch"])
def test_auto_keeps_the_faster_timing_measured_once(fresh_measurements, faster):
    if not lean_forward.onednn_gemm_available():
        pytest.skip("this torch has no oneDNN linear: every choice is torch")
    calls, logged = [], []

    def timer(gemms, rows, onednn):
        calls.append((rows, onednn, [tuple(w.shape) for w, _ in gemms], [n for _, n in gemms]))
        return 0.001 if (onednn == (faster == "onednn")) else 0.002

    model = _fake_model()
    assert lean_forward.gemm_backend(model, "auto", rows=64, timer=timer, log=logged.append) == faster
    # Both backends timed once, on the model's own shapes (layer GEMMs x layers, the output layer once),
    # at most PROBE_MAX_ROWS rows.
    assert sorted(c[1] for c in calls) == [False, True]
    assert calls[0][0] == lean_forward.PROBE_MAX_ROWS
    assert calls[0][2] == [(96, 32), (32, 32), (128, 32), (32, 64), (100, 32)] and calls[0][3] == [2, 2, 2, 2, 1.0]
    assert len(logged) == 1 and f"generation GEMM: {faster}" in logged[0] and "1.00 ms" in logged[0], logged
    # Cached for the process: another generator of the model (any batch size) asks again without timing.
    assert lean_forward.gemm_backend(model, "auto", rows=4, timer=_never, log=logged.append) == faster
    assert len(calls) == 2 and len(logged) == 1
    assert lean_forward.measured() == [{"backend": faster, "seconds": {"onednn": 0.001 if faster == "onednn" else 0.002,
                                                                       "torch": 0.002 if faster == "onednn" else 0.001},
                                        "rows": lean_forward.PROBE_MAX_ROWS}]


def test_gemm_timer_times_the_real_gemms():
    model = _fake_model()
    gemms = lean_forward.step_gemms(model)
    for onednn in ([False, True] if lean_forward.onednn_gemm_available() else [False]):
        assert 0 < lean_forward.time_gemms(gemms, 4, onednn, repeats=1) < 1.0
