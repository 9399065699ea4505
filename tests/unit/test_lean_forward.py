"""The GEMM backend's choice for generation's lean forward (megatron_octo/models/lean_forward.py,
generation.gemm): forced choices and OCTO_INFERENCE_GEMM honoured, auto keeping the faster of the two timings,
measured once per process.

Generation's lean forward (megatron_octo/models/lean_forward.py) computes megatron's GPTModel forward:
with torch's GEMM (``OCTO_INFERENCE_GEMM=torch``) every generated token and log-prob equals megatron's
path bit for bit on prompts generated alone, and to <= 1e-5 in a left-padded batch (its prefill attends
row by row) and on few-shot prompts whose shared prefix it feeds once (counted); with oneDNN's GEMM (forced;
the CPU default is the faster one) the tokens are the same and the log-probs within 1e-5, and the profiler
sees oneDNN's GEMMs run. The passes are counted on each path (the lean one really ran,
megatron's module forward did not), and a pipeline stage is left to megatron's forward with the reason
(tests/generation_cases.lean_forward_against_megatron, tiny model, megatron set up in-process)."""

from __future__ import annotations

import pytest

import torch

from megatron_octo.models import lean_forward
from tests.generation_cases import lean_forward_against_megatron
from tests.megatron_state import megatron_in_process

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


def _check(gemm: str, monkeypatch) -> dict:
    monkeypatch.setenv(lean_forward.GEMM_ENV, gemm)
    with megatron_in_process(seed=11):
        torch.set_num_threads(1)  # as the fresh interpreter it ran in had it (OMP_NUM_THREADS=1); restored after
        return lean_forward_against_megatron()


def _max_diff(a, b) -> float:
    return max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))


@pytest.mark.parametrize("gemm", ["torch", "onednn"])
def test_lean_forward_generates_what_megatron_forward_generates(gemm, monkeypatch):
    r = _check(gemm, monkeypatch)
    assert r["unsupported"] is None, r
    lean, meg = r["runs"]["lean"], r["runs"]["megatron"]
    # What ran: every pass through the lean forward, none through GPTModel.forward (and the reverse).
    assert lean["lean_passes"] > 0 and lean["megatron_passes"] == 0, lean
    assert meg["lean_passes"] == 0 and meg["megatron_passes"] == lean["lean_passes"] - 2, (lean, meg)  # the prefixes
    assert lean["shared_prefix_eod"]["reasons"][0] == "eod", lean["shared_prefix_eod"]  # row 0 left first
    for case in ("padded_sampled", "single_greedy", "shared_prefix", "shared_prefix_eod"):
        assert lean[case]["tokens"] == meg[case]["tokens"], case
        assert case.endswith("eod") or all(len(t) == 16 for t in lean[case]["tokens"]), case
        assert _max_diff(lean[case]["log_probs"], meg[case]["log_probs"]) <= 1e-5, case
    # The few-shot prompts' shared prefix fed once, not once per row (2 prompts x 2 samples, 16 tokens each).
    shared = r["shared_prefix_tokens"]
    lengths = lean["shared_prefix"]["prompt_lengths"]
    rows, width = 2 * len(lengths), max(lengths)
    assert shared >= 32, r
    assert meg["shared_prefix"]["positions"] == rows * width + rows * 15, meg["shared_prefix"]
    assert lean["shared_prefix"]["positions"] == shared + rows * (width - shared) + rows * 15, lean["shared_prefix"]
    assert lean["shared_prefix"]["passes"] == meg["shared_prefix"]["passes"] + 1  # the prefix's own pass
    if gemm == "torch":
        assert lean["single_greedy"]["log_probs"] == meg["single_greedy"]["log_probs"]  # bit for bit
        assert lean["onednn_gemms"] == 0, lean
    else:
        assert r["onednn"], "this torch has no oneDNN linear"
        assert lean["onednn_gemms"] > 0 and meg["onednn_gemms"] == 0, (lean["onednn_gemms"], meg["onednn_gemms"])
    assert r["stage_unsupported"] and "pipeline" in r["stage_unsupported"], r
