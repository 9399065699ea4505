"""Cluster planner: published throughput anchors, megatron's memory accounting, layouts, CLI (its ``main`` in
this process; tools/plan.py as a user runs it: tests/process/test_planner_cli.py)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import random

import pytest

from megatron_octo import config as cfgmod
from megatron_octo import planner as pl
from megatron_octo.cli import plan
from megatron_octo.models import llama
from megatron_octo.training import checks

pytestmark = pytest.mark.timeout(120)

PRESETS = ("llama3.2-1b", "llama3.2-3b", "llama3.1-8b")
# Hugging Face parameter counts of the released checkpoints (equal to megatron-core's: test_models).
PUBLISHED = {"llama3.2-1b": 1_235_814_400, "llama3.2-3b": 3_212_749_824, "llama3.1-8b": 8_030_261_248}
H100 = pl.HARDWARE["h100"]


def wl(preset="llama3.2-3b", seq=8192, gbs=512, **kw) -> pl.Workload:
    return pl.Workload(llama.PRESETS[preset], seq, gbs, **kw)


# ----- published anchors ---------------------------------------------------------------------

@pytest.mark.parametrize("name", list(pl.ANCHORS))
def test_published_anchor_within_3_percent(name):
    a = pl.ANCHORS[name]
    w = wl(a["model"], a["seq_length"], 128)
    got = pl.tflops_per_gpu(w, a["tokens_per_s_per_gpu"], a["accounting"])
    assert got == pytest.approx(a["tflops_per_gpu"], rel=0.03), (name, got)
    # The other accounting misses it: the accounting is what the figure means, not a free knob.
    other = "full" if a["accounting"] == "causal" else "causal"
    assert abs(pl.tflops_per_gpu(w, a["tokens_per_s_per_gpu"], other) / a["tflops_per_gpu"] - 1) > 0.03


def test_flops_per_token_values_and_formula():
    w = wl("llama3.1-8b")
    causal, full = pl.model_flops_per_token(w, "causal"), pl.model_flops_per_token(w, "full")
    assert causal / 1e9 == pytest.approx(51.47, abs=0.01) and full / 1e9 == pytest.approx(57.91, abs=0.01)
    assert full - causal == 6 * 32 * 8192 * 4096  # half the score matrix
    assert causal == llama.flops_per_token(w.arch, 8192, 128256, causal=True)
    # Full recompute executes one more forward of every layer; selective one more attention forward.
    gemm, attn = pl._layer_flops(w, "causal")
    assert pl.hardware_flops_per_token(w, "full") - causal == pytest.approx(32 * (gemm + attn) / 3)
    assert pl.hardware_flops_per_token(w, "selective") - causal == pytest.approx(32 * attn / 3)


# ----- parameters and static memory ----------------------------------------------------------

@pytest.mark.parametrize("preset", PRESETS)
def test_unsharded_rank_is_megatrons_count(preset):
    w = wl(preset)
    rp = pl.rank_parameters(w, 1, 1, 0)
    assert rp.total == PUBLISHED[preset] == llama.num_parameters(w.arch)
    m = pl.stage_memory(w, pl.Layout(dp=8, distributed_optimizer=False), 0)
    assert m.weights == 2 * PUBLISHED[preset]


# Only layouts whose PP divides the layer count (planner.py rejects the others).
@pytest.mark.parametrize("preset,tp,pp", [
    (preset, tp, pp) for preset in PRESETS for tp, pp in [(2, 1), (4, 1), (8, 1), (1, 2), (1, 4), (2, 4), (8, 2)]
    if llama.PRESETS[preset].num_layers % pp == 0])
def test_ranks_partition_the_model(preset, tp, pp):
    """Summed over TP ranks and stages (RMSNorm weights are replicated across TP: once), the shards
    are the model at V padded to 128*TP, plus the last stage's embedding copy when tied embeddings
    span stages."""
    w = wl(preset)
    total = 0
    for s in range(pp):
        rp = pl.rank_parameters(w, tp, pp, s)
        total += tp * (rp.layer_gemm + rp.embedding + rp.output_layer) + rp.layer_norm + rp.final_norm
    v = llama.padded_vocab_size(w.arch.vocab_size, 128, tp)
    copy = v * w.arch.hidden_size if (w.arch.tie_embeddings and pp > 1) else 0
    assert total == llama.num_parameters(w.arch, v) + copy


def test_static_bytes_per_parameter_are_megatrons():
    """Megatron's distributed-optimizer docs: 18 B/param without, 6 + 12/d with (bf16 + fp32 grads)."""
    w = wl("llama3.2-1b")
    n = PUBLISHED["llama3.2-1b"]
    plain = pl.stage_memory(w, pl.Layout(dp=8, distributed_optimizer=False), 0)
    dist = pl.stage_memory(w, pl.Layout(dp=8, distributed_optimizer=True), 0)
    assert plain.static == 18 * n
    assert dist.static == (6 + 12 / 8) * n
    # The optimizer is sharded over DP x CP (megatron's dp_cp group).
    assert pl.stage_memory(w, pl.Layout(dp=4, cp=2), 0).optimizer == 12 * n / 8
    assert pl.stage_memory(wl("llama3.2-1b", grad_dtype="bf16"), pl.Layout(dp=8), 0).grads == 2 * n
    fp8 = pl.stage_memory(wl("llama3.2-1b", precision="fp8"), pl.Layout(dp=8), 0)
    a = w.arch
    gemm = a.num_layers * (a.hidden_size * (a.hidden_size + 2 * 512) + a.hidden_size**2
                           + 3 * a.hidden_size * a.ffn_hidden_size)
    assert fp8.fp8_cache == 2 * gemm and fp8.weights == 2 * n


# ----- activations -----------------------------------------------------------------------------

def test_activation_bytes_hand_derived_3b():
    w = wl("llama3.2-3b")
    h, f, kv, a = 3072, 8192, 1024, 24
    per_token = (8 * h + 8) + (2 * (h + 2 * kv) + 2 * h + 4 * a + 6 * f)
    assert pl.activation_bytes_per_token_per_layer(w, pl.Layout()) == per_token
    m = pl.stage_memory(w, pl.Layout(dp=64), 0)
    logits = 6 * 128256 * 8192
    assert m.activations == 28 * per_token * 8192 + (4 * h + 4) * 8192 + logits


def test_sequence_parallel_tp_and_recompute_scaling():
    w = wl("llama3.1-8b")
    base = pl.activation_bytes_per_token_per_layer(w, pl.Layout())
    tp2 = pl.activation_bytes_per_token_per_layer(w, pl.Layout(tp=2))
    tp2sp = pl.activation_bytes_per_token_per_layer(w, pl.Layout(tp=2, sequence_parallel=True))
    assert tp2sp == pytest.approx(base / 2)  # SP shards the replicated part too
    assert base / 2 < tp2 < base
    assert pl.activation_bytes_per_token_per_layer(w, pl.Layout(tp=4, sequence_parallel=True, recompute="full")) \
        == 2 * 4096 / 4
    # Selective (core attention) with flash attention only drops the fp32 log-sum-exp.
    assert base - pl.activation_bytes_per_token_per_layer(w, pl.Layout(recompute="selective")) == 4 * 32
    # FP8 keeps the norm outputs and the FC2 input at 1 byte, adds a 1-byte copy of the attention output.
    fp8 = pl.activation_bytes_per_token_per_layer(wl("llama3.1-8b", precision="fp8"), pl.Layout())
    assert base - fp8 == 2 * 4096 + 14336 - 4096
    # CP divides the tokens per GPU.
    assert pl.stage_memory(w, pl.Layout(cp=2, dp=4), 0).activations == pytest.approx(
        pl.stage_memory(w, pl.Layout(dp=8), 0).activations / 2)


def test_one_f_one_b_keeps_pp_microbatches_on_the_first_stage():
    w = wl("llama3.1-8b", gbs=64)
    lay = pl.Layout(pp=4, dp=2)  # 32 micro-batches
    stages = pl.memory_per_gpu(w, lay)
    assert [s.inflight_microbatches for s in stages] == [4, 3, 2, 1]
    per_layer_mb = pl.activation_bytes_per_token_per_layer(w, lay) * 8192
    assert stages[0].activations == 4 * 8 * per_layer_mb
    assert stages[1].activations == 3 * 8 * per_layer_mb
    # Fewer micro-batches than stages: only those can be in flight.
    few = pl.memory_per_gpu(wl("llama3.1-8b", gbs=4), pl.Layout(pp=4, dp=2))
    assert [s.inflight_microbatches for s in few] == [2, 2, 2, 1]
    # Full recompute: layer inputs of every in-flight micro-batch + one layer's working set.
    full = pl.stage_memory(w, dataclasses.replace(lay, recompute="full"), 0)
    assert full.activations == 4 * 8 * 2 * 4096 * 8192 + per_layer_mb


# ----- time ------------------------------------------------------------------------------------

def test_ideal_layout_runs_at_the_assumed_mfu():
    w = wl("llama3.2-3b", gbs=64)
    t = pl.throughput(w, pl.Layout(dp=1), H100, mfu=0.4)
    assert t.mfu == pytest.approx(0.4, rel=1e-12)
    assert t.step_s == pytest.approx(64 * 8192 * t.model_flops_per_token / (989e12 * 0.4), rel=1e-12)


def test_bubble_recompute_and_communication_losses():
    fast = dataclasses.replace(H100, intra_node_GBps=1e9, inter_node_GBps=1e9)  # free communication
    w = wl("llama3.1-8b", gbs=64, seq=4096)
    one = pl.throughput(w, pl.Layout(dp=1), fast, mfu=0.5)
    pp4 = pl.throughput(w, pl.Layout(pp=4), fast, mfu=0.5)
    m = 64
    # Four stages: each micro-batch takes a quarter (the last stage also runs the output layer).
    assert pp4.bubble_fraction == pytest.approx(3 / (m + 3))
    assert pp4.step_s == pytest.approx((m + 3) * pp4.microbatch_compute_s, rel=1e-12)
    assert pp4.step_s * 4 > one.step_s * (m + 3) / m * 0.99
    rc = pl.throughput(w, pl.Layout(recompute="full"), fast, mfu=0.5)
    assert rc.mfu == pytest.approx(0.5 * rc.model_flops_per_token / rc.hardware_flops_per_token, rel=1e-9)
    # Real bandwidths: TP costs time, more across fewer GPUs' worth of compute; DP over the network
    # is exposed when a micro-batch is short.
    tp8 = pl.throughput(w, pl.Layout(tp=8, sequence_parallel=True), H100, mfu=0.5)
    assert tp8.tp_comm_s > 0 and tp8.mfu < 0.5
    dp = pl.throughput(wl("llama3.2-1b", gbs=256, seq=1024), pl.Layout(dp=256), H100, mfu=0.5)
    assert dp.dp_exposed_s > 0 and dp.mfu < 0.5


def test_budget_steps_match_the_trainer():
    w = wl("llama3.2-3b")
    stages = pl.parse_tokens("octothinker")
    assert stages == list(pl.OCTOTHINKER_STAGES)
    b = pl.budget(stages, w, step_s=4.0, gpus=64)
    assert b[0].steps == 47_684  # README: 200B at 4M-token batches
    assert b[1].steps == math.ceil(20e9 / 4_194_304)
    assert b[0].hours == pytest.approx(47_684 * 4 / 3600) and b[0].gpu_hours == pytest.approx(b[0].hours * 64)
    assert pl.parse_tokens("200e9") == [("run", 200e9)]
    assert pl.parse_tokens("a=1e9, b=2e9") == [("a", 1e9), ("b", 2e9)]
    with pytest.raises(ValueError, match="--tokens"):
        pl.parse_tokens("lots")


# ----- validity and ranking ---------------------------------------------------------------------

def test_layout_rules_agree_with_config_validate():
    """The planner accepts exactly the layouts megatron_octo.config.validate accepts."""
    checked = 0
    cases = list(itertools.product((4, 8, 12), (1, 2, 3, 8), (1, 2, 3, 4), (1, 2), (False, True), (1, 2), (24, 32),
                                   (4096, 4098)))
    for world, tp, pp, cp, sp, mbs, gbs, seq in random.Random(0).sample(cases, 160):  # load+validate ~40 ms
        overrides = ["train.tokens=0", "tokenizer.library=null", "data.mock=true", "model.preset=llama3.2-3b", f"model.seq_length={seq}", f"parallel.tp={tp}",
                     f"parallel.pp={pp}", f"parallel.cp={cp}", f"parallel.sequence_parallel={sp}",
                     f"train.micro_batch_size={mbs}", f"train.global_batch_size={gbs}"]
        try:
            checks.validate(cfgmod.load(None, overrides), world, have_gpu=True, have_te=True)
            ok = True
        except cfgmod.ConfigError:
            ok = False
        mp = tp * pp * cp
        lay = pl.Layout(tp, pp, cp, max(1, world // mp), sp, mbs)
        problems = pl.layout_problems(wl("llama3.2-3b", seq, gbs), lay, world)
        assert ok == (not problems), (world, tp, pp, cp, sp, mbs, gbs, seq, problems)
        checked += ok
    assert checked > 20  # the sweep contains valid layouts, not only rejections


def test_ranked_layouts_fit_and_are_ordered():
    w = wl("llama3.2-3b")
    ranked = pl.rank_layouts(w, 64, H100, reserve_gib=8)
    assert ranked
    top = ranked[0].layout
    assert (top.tp, top.pp, top.cp, top.dp) == (1, 1, 1, 64)
    speeds = [c.throughput.tokens_per_s for c in ranked]
    assert all(a >= b * (1 - 1e-9) for a, b in zip(speeds, speeds[1:]))
    for c in ranked:
        assert c.memory.total <= (H100.memory_gib - 8) * pl.GiB
        assert not pl.layout_problems(w, c.layout, 64, H100)


def test_memory_pressure_forces_model_parallelism_or_recompute():
    w = wl("llama3.1-8b", gbs=128)
    ranked = pl.rank_layouts(w, 8, H100, memory_gib=40, reserve_gib=4)
    assert ranked
    for c in ranked:
        lay = c.layout
        assert lay.tp * lay.pp > 1 or lay.recompute == "full", lay
        assert c.memory.total <= 36 * pl.GiB
    # Nothing fits: 8B on one 24 GiB GPU.
    assert pl.rank_layouts(wl("llama3.1-8b", gbs=8), 1, H100, memory_gib=24, reserve_gib=2) == []


# ----- command line ----------------------------------------------------------------------------

def _main(argv, capsys):
    rc = plan.main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_json_explicit_layout(capsys):
    rc, out, _ = _main(["--model", "llama3.1-8b", "--gpus", "16", "--tp", "2", "--pp", "2", "--precision", "fp8",
                        "--tokens", "octothinker", "--json", "--attention-flops", "full"], capsys)
    assert rc == 0
    d = json.loads(out)
    assert d["layout"]["dp"] == 4 and d["layout"]["sequence_parallel"] is True
    assert d["flops"]["accounting"] == "full"
    assert [b["name"] for b in d["budget"]] == ["stable", "decay_long", "decay_short", "decay_hybrid"]
    assert d["budget_total"]["tokens"] == 260e9
    assert d["memory"]["stages"][0]["fp8_cache_GiB"] > 0
    assert d["throughput"]["tokens_per_s"] == pytest.approx(
        512 * 8192 / d["throughput"]["step_s"])


def test_cli_errors(capsys):
    rc, _, err = _main(["--model", "llama3.2-3b", "--gpus", "10", "--tp", "5"], capsys)
    assert rc == 2 and "parallel.tp" in err
    rc, _, err = _main(["--model", "llama3.1-8b", "--gpus", "1", "--tp", "1", "--global-batch", "8"], capsys)
    assert rc == 1  # printed, but does not fit on one 80 GB GPU
    rc, _, err = _main(["--model", "llama3.1-8b", "--gpus", "1", "--memory-gib", "24", "--global-batch", "8"],
                       capsys)
    assert rc == 1 and "no layout" in err
    rc, _, err = _main(["--model", "custom", "--layers", "4"], capsys)
    assert rc == 2 and "--hidden" in err
    rc, out, _ = _main(["--model", "custom", "--layers", "24", "--hidden", "2048", "--ffn", "5632", "--heads", "16",
                        "--groups", "4", "--vocab", "32000", "--gpus", "8", "--tokens", "1e9", "--tflops", "400",
                        "--json"], capsys)
    assert rc == 0 and json.loads(out)["throughput"]["mfu_assumed"] == pytest.approx(400 / 989)


@pytest.mark.parametrize("gpus,extra", [(64, []), (16, ["--tp", "2", "--pp", "2", "--recompute", "full"]),
                                        (8, ["--cp", "2", "--precision", "fp8", "--global-batch", "128"])])
def test_printed_overrides_validate_in_the_trainer_config(capsys, gpus, extra):
    rc, out, _ = _main(["--model", "llama3.1-8b", "--gpus", str(gpus), "--tokens", "1e9", "--json", *extra], capsys)
    d = json.loads(out)
    cfg = cfgmod.load(None, ["train.tokens=0", "tokenizer.library=null", "data.mock=true", "model.preset=llama3.1-8b",
                             *d["train_overrides"]])
    checks.validate(cfg, gpus, have_gpu=True, have_te=True)  # raises ConfigError naming the key otherwise
    assert cfgmod.num_microbatches(cfg, gpus) == d["layout"]["microbatches"]
    assert cfgmod.data_parallel_size(cfg, gpus) == d["layout"]["dp"]
