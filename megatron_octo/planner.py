"""Cluster planning for Llama-3 training on megatron-core: memory per GPU, FLOPs, time, layouts.

Pure functions and dataclasses; ``tools/plan.py`` is the command line. Every model is stated here
and in docs/planning.md:

* **Parameters per rank** follow megatron-core's sharding exactly (tested against real GPTModels
  at TP=2 and PP=2): per layer ``2h`` RMSNorm weights (replicated) and
  ``(h(h+2kv) + h^2 + 3hf) / TP`` GEMM weights; the embedding ``V_pad*h/TP`` on the first stage;
  the final norm ``h`` and the output layer ``V_pad*h/TP`` on the last stage (with tied embeddings
  the last stage still holds a copy when PP > 1, none when PP = 1); ``V_pad`` is the vocabulary
  padded to a multiple of ``128*TP``.
* **Static memory per parameter** (megatron DDP + optimizer, mixed precision): bf16 weights 2 B,
  main gradients 4 B (``grad_reduce_in_fp32``, the trainer's setting; 2 B with ``grad_dtype=bf16``),
  fp32 master weights + Adam m + v 12 B, divided by DP x CP with the distributed optimizer (megatron
  shards over the data-parallel group with context parallel). That is megatron's documented
  18 B/param without and ``6 + 12/d`` B/param with the distributed optimizer.
  FP8 (Transformer Engine, no ``fp8_param_gather``): the same bf16 weights, plus an FP8 copy and an
  FP8 transpose of every transformer-layer GEMM weight cached across micro-batches (2 B per GEMM
  weight; the output layer stays bf16); scaling state (amax histories) is ignored.
* **Activations** per layer and micro-batch: Korthikanti et al. 2022 ("Reducing Activation
  Recomputation in Large Transformer Models") re-derived for RMSNorm, GQA, SwiGLU, no dropout, fused
  RoPE and TE fused (flash) attention, which keeps only the softmax statistics instead of the
  ``5as/h`` score-matrix term. Bytes per token, bf16::

      replicated (sharded by TP only with sequence parallel):
          2h + 4   attention RMSNorm input + rstd     2h  QKV GEMM input (norm output)
          2h + 4   MLP RMSNorm input + rstd           2h  FC1 GEMM input (norm output)
      sharded by TP:
          2(h + 2kv)  Q, K, V after RoPE (attention inputs)   2h  attention output (proj input)
          4a          softmax log-sum-exp (fp32)              4f  FC1 output (SwiGLU input)
          2f          SwiGLU output (FC2 input)

  FP8 saves the GEMM inputs TE casts (norm outputs, FC2 input) at 1 B and adds a 1 B copy of the
  attention output. ``selective`` recompute is megatron's default (core attention only): with
  flash attention it drops only the log-sum-exp. ``full`` recompute (uniform, 1 layer per
  checkpoint) keeps ``2h`` per token per layer (``/TP`` with sequence parallel) plus one layer's
  full activations as working set. Context parallelism divides the sequence by CP. The last stage
  adds the final norm and output-layer inputs and the logits: ``6 V_pad/TP`` bytes per token
  (megatron's vocab-parallel cross entropy keeps fp32 softmax, plus the bf16 logits/gradient).
  1F1B pipelining keeps ``min(PP - stage, micro-batches)`` micro-batches in flight on a stage.
  Transient buffers (all-gathered SP inputs, GEMM workspaces, NCCL buffers, CUDA context,
  fragmentation) are the configurable reserve.
* **FLOPs per token**: :func:`megatron_octo.models.llama.flops_per_token` (Megatron-Bridge's
  accounting by default; see :data:`ACCOUNTING`).
* **Time** (the efficiency model): the assumed MFU is the fraction of peak the GPU reaches on the
  work it does (GEMMs, attention; recomputation included). A layout loses against it through
  (1) recompute FLOPs that are not model FLOPs, (2) the 1F1B bubble ``(PP-1)/(m+PP-1)`` and
  the slowest pipeline stage, (3) tensor-parallel collectives, not overlapped: 4 all-reduce
  equivalents per layer per micro-batch (6 with full recompute) of ``s/CP * b * h * 2`` bytes,
  ring cost ``2(TP-1)/TP * bytes / bandwidth``, (4) context-parallel ring exchange of K,V
  (forward) and K,V + dK,dV (backward), hidden behind the attention compute when it is shorter,
  (5) the data-parallel gradient reduce-scatter/all-reduce (+ parameter all-gather with the
  distributed optimizer) over DP x CP, overlapped with one micro-batch of compute, the rest
  exposed. Pipeline send/receive is ignored. Intra-node groups use the NVLink bandwidth,
  groups spanning nodes the per-GPU network bandwidth (megatron's rank order tp-cp-dp-pp).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Iterable, Optional

from megatron_octo.models.llama import LlamaArchitecture, flops_per_token, num_parameters, padded_vocab_size

GiB = 2**30

# Published throughput figures and the attention accounting each one uses (tested in
# tests/unit/test_planner.py: the formula turns tokens/s into the published TFLOP/s within 3%).
ACCOUNTING = {
    "causal": "Megatron-Bridge: causal attention counts half the score matrix "
              "(6*N_matmul + 6*L*s*h per token)",
    "full": "NeMo / Megatron-LM classic: the full score matrix (6*N_matmul + 12*L*s*h per token)",
}
ANCHORS = {
    "megatron-bridge-llama3-8b-fp8-h100": dict(
        model="llama3.1-8b", seq_length=8192, gpus=8, precision="fp8", tokens_per_s_per_gpu=14451,
        tflops_per_gpu=744, accounting="causal",
        source="Megatron-Bridge performance summary, Llama-3-8B pre-training, 8x H100, FP8, seq 8192"),
    "nemo-llama3-8b-h100": dict(
        model="llama3.1-8b", seq_length=8192, gpus=8, precision="fp8", tokens_per_s_per_gpu=12036,
        tflops_per_gpu=697, accounting="full",
        source="NeMo performance summary, Llama-3-8B pre-training, 8x H100, seq 8192 (FP8: 697 TFLOP/s "
               "is 70% of the bf16 peak)"),
}


@dataclass(frozen=True)
class Hardware:
    name: str
    memory_gib: float  # as torch.cuda reports the device's total memory
    peak_bf16: float  # dense FLOP/s, no sparsity
    peak_fp8: Optional[float]
    gpus_per_node: int = 8
    intra_node_GBps: float = 360.0  # NCCL bus bandwidth inside a node (NVLink)
    inter_node_GBps: float = 45.0  # per GPU across nodes (one 400 Gb/s NIC per GPU)

    def peak(self, precision: str) -> float:
        if precision == "fp8":
            if self.peak_fp8 is None:
                raise ValueError(f"{self.name} has no FP8 tensor cores; use --precision bf16")
            return self.peak_fp8
        return self.peak_bf16


# Datasheet dense peaks (the same bf16 values as megatron_octo.training.metrics).
HARDWARE = {
    "h100": Hardware("H100 SXM 80GB", 79.1, 989e12, 1979e12),
    "h200": Hardware("H200 SXM 141GB", 131.3, 989e12, 1979e12),
    "a100": Hardware("A100 SXM 80GB", 79.2, 312e12, None, intra_node_GBps=230.0, inter_node_GBps=22.0),
    "b200": Hardware("B200 180GB", 167.6, 2250e12, 4500e12, intra_node_GBps=720.0),
}

# The default assumed MFU: Megatron-Bridge's Llama-3-8B FP8 figure on 8 H100s (744 TFLOP/s) over
# the H100 FP8 dense peak, applied to the peak of whichever precision is planned.
DEFAULT_MFU = round(744e12 / 1979e12, 3)

RECOMPUTE = ("none", "selective", "full")
PRECISIONS = ("bf16", "fp8")


@dataclass(frozen=True)
class Layout:
    tp: int = 1
    pp: int = 1
    cp: int = 1
    dp: int = 1
    sequence_parallel: bool = False
    micro_batch: int = 1
    recompute: str = "none"
    distributed_optimizer: bool = True

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.cp * self.dp

    def short(self) -> str:
        return (f"TP{self.tp} PP{self.pp} CP{self.cp} DP{self.dp} mbs{self.micro_batch}"
                f"{' SP' if self.sequence_parallel else ''} rc={self.recompute}"
                f"{' distopt' if self.distributed_optimizer else ''}")


@dataclass(frozen=True)
class Workload:
    arch: LlamaArchitecture
    seq_length: int
    global_batch: int
    precision: str = "bf16"
    grad_dtype: str = "fp32"
    make_vocab_size_divisible_by: int = 128


# ----------------------------------------------------------------------------------------------
# Validity: megatron_octo.config.validate's layout rules (same wording and keys), plus what a
# planner needs on top (TP inside a node, FFN divisible by TP, FP8 on the hardware).

def layout_problems(w: Workload, lay: Layout, gpus: Optional[int] = None,
                    hw: Optional[Hardware] = None) -> list[str]:
    a = w.arch
    out = []
    for key in ("tp", "pp", "cp", "dp", "micro_batch"):
        if getattr(lay, key) < 1:
            out.append(f"parallel.{key}: must be >= 1, got {getattr(lay, key)}")
    if out:
        return out
    if a.num_attention_heads % lay.tp:
        out.append(f"parallel.tp: tensor parallel size {lay.tp} does not divide "
                   f"model.num_attention_heads={a.num_attention_heads}")
    if a.num_query_groups % lay.tp:
        out.append(f"parallel.tp: tensor parallel size {lay.tp} does not divide "
                   f"model.num_query_groups={a.num_query_groups}")
    if a.ffn_hidden_size % lay.tp:
        out.append(f"parallel.tp: tensor parallel size {lay.tp} does not divide "
                   f"model.ffn_hidden_size={a.ffn_hidden_size}")
    if a.num_layers % lay.pp:
        out.append(f"parallel.pp: pipeline parallel size {lay.pp} does not divide "
                   f"model.num_layers={a.num_layers}")
    if gpus is not None and gpus != lay.gpus:
        out.append(f"parallel.tp: tp*pp*cp*dp = {lay.tp}*{lay.pp}*{lay.cp}*{lay.dp} = {lay.gpus} "
                   f"is not the GPU count {gpus}")
    if lay.sequence_parallel and lay.tp == 1:
        out.append("parallel.sequence_parallel: needs parallel.tp > 1")
    if lay.cp > 1 and w.seq_length % (2 * lay.cp):
        out.append(f"model.seq_length: {w.seq_length} must be divisible by 2*parallel.cp={2 * lay.cp}")
    if w.seq_length > a.max_position_embeddings:
        out.append(f"model.seq_length: {w.seq_length} exceeds model.max_position_embeddings="
                   f"{a.max_position_embeddings}")
    if w.global_batch % (lay.micro_batch * lay.dp):
        out.append(f"train.global_batch_size: {w.global_batch} is not micro_batch_size x micro-batches x "
                   f"data-parallel size ({lay.micro_batch} x n x {lay.dp}) for any whole n")
    if lay.recompute not in RECOMPUTE:
        out.append(f"model.recompute_granularity: {lay.recompute!r} is not one of {', '.join(RECOMPUTE)}")
    if w.precision not in PRECISIONS:
        out.append(f"model.fp8: precision {w.precision!r} is not one of {', '.join(PRECISIONS)}")
    if hw is not None:
        if lay.tp > hw.gpus_per_node:
            out.append(f"parallel.tp: {lay.tp} exceeds the {hw.gpus_per_node} GPUs of a node")
        if w.precision == "fp8" and hw.peak_fp8 is None:
            out.append(f"model.fp8: {hw.name} has no FP8 tensor cores")
    return out


def num_microbatches(w: Workload, lay: Layout) -> int:
    return w.global_batch // (lay.micro_batch * lay.dp)


# ----------------------------------------------------------------------------------------------
# Parameters per rank (exact).

@dataclass(frozen=True)
class RankParams:
    stage: int
    layers: int
    layer_gemm: int  # transformer-layer GEMM weights on this rank (FP8-cast in FP8 runs)
    layer_norm: int  # transformer-layer RMSNorm weights (replicated across TP)
    embedding: int
    final_norm: int
    output_layer: int

    @property
    def total(self) -> int:
        return self.layer_gemm + self.layer_norm + self.embedding + self.final_norm + self.output_layer


def padded_vocab(w: Workload, tp: int) -> int:
    return padded_vocab_size(w.arch.vocab_size, w.make_vocab_size_divisible_by, tp)


def rank_parameters(w: Workload, tp: int, pp: int, stage: int) -> RankParams:
    """Parameter elements on one TP rank of pipeline stage ``stage`` (all TP ranks hold the same)."""
    a = w.arch
    h, f = a.hidden_size, a.ffn_hidden_size
    kv = a.num_query_groups * a.kv_channels
    v = padded_vocab(w, tp)
    layers = a.num_layers // pp
    first, last = stage == 0, stage == pp - 1
    gemm = (h * (h + 2 * kv) + h * h + 3 * h * f) // tp
    return RankParams(
        stage=stage, layers=layers, layer_gemm=layers * gemm, layer_norm=layers * 2 * h,
        embedding=v * h // tp if first else 0,
        final_norm=h if last else 0,
        # Untied: the output layer on the last stage. Tied: shares the embedding when both are on
        # one stage, otherwise the last stage holds its own copy (kept in sync by megatron).
        output_layer=v * h // tp if last and not (a.tie_embeddings and first) else 0,
    )


# ----------------------------------------------------------------------------------------------
# Memory per GPU.

def activation_bytes_per_token_per_layer(w: Workload, lay: Layout, recompute: Optional[str] = None) -> float:
    """Bytes one token keeps alive in one transformer layer on one GPU (no recompute unless asked)."""
    a = w.arch
    h, f, t = a.hidden_size, a.ffn_hidden_size, lay.tp
    kv = a.num_query_groups * a.kv_channels
    heads = a.num_attention_heads
    rc = lay.recompute if recompute is None else recompute
    sp = 1.0 / t if lay.sequence_parallel else 1.0
    if rc == "full":
        return 2 * h * sp
    fp8 = w.precision == "fp8"
    gemm_in = 1 if fp8 else 2  # bytes per element of a GEMM input TE saves
    replicated = (2 * h + 4) * 2 + 2 * gemm_in * h  # two norm inputs + rstd, two norm outputs
    sharded = (2 * (h + 2 * kv)  # q, k, v
               + 2 * h + (h if fp8 else 0)  # attention output (+ its FP8 cast for proj)
               + (0 if rc == "selective" else 4 * heads)  # log-sum-exp, fp32
               + 4 * f  # FC1 output
               + gemm_in * f)  # FC2 input
    return replicated * sp + sharded / t


@dataclass(frozen=True)
class StageMemory:
    stage: int
    params: RankParams
    weights: float
    grads: float
    optimizer: float
    fp8_cache: float
    activations: float
    inflight_microbatches: int

    @property
    def static(self) -> float:
        return self.weights + self.grads + self.optimizer + self.fp8_cache

    @property
    def total(self) -> float:
        return self.static + self.activations


def stage_memory(w: Workload, lay: Layout, stage: int) -> StageMemory:
    rp = rank_parameters(w, lay.tp, lay.pp, stage)
    n = rp.total
    weights = 2.0 * n
    grads = (4.0 if w.grad_dtype == "fp32" else 2.0) * n
    optimizer = 12.0 * n / (lay.dp * lay.cp if lay.distributed_optimizer else 1)
    fp8_cache = 2.0 * rp.layer_gemm if w.precision == "fp8" else 0.0
    m = num_microbatches(w, lay)
    inflight = max(1, min(lay.pp - stage, m))
    tokens = lay.micro_batch * w.seq_length / lay.cp  # per micro-batch on this GPU
    per_layer = activation_bytes_per_token_per_layer(w, lay)
    act = inflight * rp.layers * per_layer * tokens
    if lay.recompute == "full":
        # Working set: one layer's activations rebuilt during its backward.
        act += activation_bytes_per_token_per_layer(w, lay, recompute="none") * tokens
    if stage == lay.pp - 1:
        h = w.arch.hidden_size
        sp = 1.0 / lay.tp if lay.sequence_parallel else 1.0
        # final norm input + rstd, output-layer input; one micro-batch in flight on the last stage
        act += ((2 * h + 4) + 2 * h) * sp * tokens
        act += 6.0 * padded_vocab(w, lay.tp) / lay.tp * tokens  # fp32 softmax + bf16 logits/grad
    return StageMemory(stage, rp, weights, grads, optimizer, fp8_cache, act, inflight)


def memory_per_gpu(w: Workload, lay: Layout) -> list[StageMemory]:
    """Every pipeline stage's memory per GPU (stage 0 .. PP-1)."""
    return [stage_memory(w, lay, s) for s in range(lay.pp)]


def peak_memory(w: Workload, lay: Layout) -> StageMemory:
    return max(memory_per_gpu(w, lay), key=lambda s: s.total)


# ----------------------------------------------------------------------------------------------
# FLOPs and time.

def model_flops_per_token(w: Workload, accounting: str = "causal", tp: int = 1) -> float:
    return flops_per_token(w.arch, w.seq_length, padded_vocab(w, tp), causal=accounting == "causal")


def tflops_per_gpu(w: Workload, tokens_per_s_per_gpu: float, accounting: str = "causal") -> float:
    """Model TFLOP/s per GPU implied by a measured tokens/s per GPU (unpadded vocabulary: TP=1)."""
    return tokens_per_s_per_gpu * model_flops_per_token(w, accounting) / 1e12


def _layer_flops(w: Workload, accounting: str) -> tuple[float, float]:
    """(GEMM, attention) training FLOPs per token of one layer (forward + backward)."""
    a = w.arch
    h, f = a.hidden_size, a.ffn_hidden_size
    kv = a.num_query_groups * a.kv_channels
    gemm = 6.0 * (h * (h + 2 * kv) + h * h + 3 * h * f)
    attn = 12.0 * w.seq_length * h * (0.5 if accounting == "causal" else 1.0)
    return gemm, attn


def hardware_flops_per_token(w: Workload, recompute: str, accounting: str = "causal", tp: int = 1) -> float:
    """Model FLOPs plus what recomputation adds: full = one more forward of every layer (1/3 of
    its training FLOPs); selective (core attention) = one more attention forward."""
    gemm, attn = _layer_flops(w, accounting)
    extra = {"none": 0.0, "selective": attn / 3, "full": (gemm + attn) / 3}[recompute]
    return model_flops_per_token(w, accounting, tp) + w.arch.num_layers * extra


@dataclass(frozen=True)
class Throughput:
    mfu_assumed: float
    peak_flops: float
    microbatches: int
    microbatch_compute_s: float  # slowest stage, per micro-batch
    tp_comm_s: float  # per micro-batch, slowest stage
    cp_exposed_s: float
    dp_comm_s: float  # per step
    dp_exposed_s: float
    bubble_fraction: float
    step_s: float
    tokens_per_s: float
    model_flops_per_token: float
    hardware_flops_per_token: float
    gpus: int

    @property
    def tokens_per_s_per_gpu(self) -> float:
        return self.tokens_per_s / self.gpus

    @property
    def model_tflops_per_gpu(self) -> float:
        return self.tokens_per_s_per_gpu * self.model_flops_per_token / 1e12

    @property
    def mfu(self) -> float:
        return self.model_tflops_per_gpu * 1e12 / self.peak_flops

    @property
    def ideal_step_s(self) -> float:
        """Step time at exactly the assumed MFU (no layout losses)."""
        return self.step_s * self.mfu / self.mfu_assumed


def throughput(w: Workload, lay: Layout, hw: Hardware, mfu: float = DEFAULT_MFU,
               accounting: str = "causal") -> Throughput:
    a = w.arch
    h = a.hidden_size
    kv = a.num_query_groups * a.kv_channels
    peak = hw.peak(w.precision)
    rate = peak * mfu
    m = num_microbatches(w, lay)
    tokens_mb = lay.micro_batch * w.seq_length  # tokens of one micro-batch (before CP split)
    gemm, attn = _layer_flops(w, accounting)
    rc = {"none": 0.0, "selective": attn / 3, "full": (gemm + attn) / 3}[lay.recompute]
    layer_hw = gemm + attn + rc
    v = padded_vocab(w, lay.tp)
    stage_layers = a.num_layers // lay.pp
    intra, inter = hw.intra_node_GBps * 1e9, hw.inter_node_GBps * 1e9

    # TP collectives per micro-batch on a stage (not overlapped).
    tp_coll = (6 if lay.recompute == "full" else 4) * stage_layers
    msg = tokens_mb / lay.cp * h * 2
    tp_comm = tp_coll * 2 * (lay.tp - 1) / lay.tp * msg / intra if lay.tp > 1 else 0.0
    # CP ring: K,V forward, K,V + dK,dV backward, (cp-1) hops each; hidden behind attention.
    cp_exposed = 0.0
    if lay.cp > 1:
        bw = intra if lay.tp * lay.cp <= hw.gpus_per_node else inter
        kv_bytes = tokens_mb / lay.cp * 2 * kv / lay.tp * 2
        comm = 3 * (lay.cp - 1) * kv_bytes / bw
        attn_s = (attn + (attn / 3 if lay.recompute != "none" else 0)) * tokens_mb / (lay.tp * lay.cp) / rate
        cp_exposed = stage_layers * max(0.0, comm - attn_s)
    stage_times = []
    for s in range(lay.pp):
        flops = stage_layers * layer_hw * tokens_mb
        if s == lay.pp - 1:
            flops += 6.0 * v * h * tokens_mb  # output layer (not recomputed)
        stage_times.append(flops / (lay.tp * lay.cp) / rate + tp_comm + cp_exposed)
    t_mb = max(stage_times)
    pipeline_s = (m + lay.pp - 1) * t_mb
    # Data-parallel gradient reduction over DP x CP, overlapped with one micro-batch.
    n = lay.dp * lay.cp
    params = max(rank_parameters(w, lay.tp, lay.pp, s).total for s in range(lay.pp))
    gbytes = (4 if w.grad_dtype == "fp32" else 2) * params
    if n > 1:
        bw = intra if lay.tp * lay.cp * lay.dp <= hw.gpus_per_node else inter
        vol = (gbytes + 2 * params) if lay.distributed_optimizer else 2 * gbytes
        dp_comm = (n - 1) / n * vol / bw
    else:
        dp_comm = 0.0
    dp_exposed = max(0.0, dp_comm - t_mb)
    step = pipeline_s + dp_exposed
    return Throughput(
        mfu_assumed=mfu, peak_flops=peak, microbatches=m, microbatch_compute_s=t_mb - tp_comm - cp_exposed,
        tp_comm_s=tp_comm, cp_exposed_s=cp_exposed, dp_comm_s=dp_comm, dp_exposed_s=dp_exposed,
        bubble_fraction=(lay.pp - 1) / (m + lay.pp - 1), step_s=step,
        tokens_per_s=w.global_batch * w.seq_length / step,
        model_flops_per_token=model_flops_per_token(w, accounting, lay.tp),
        hardware_flops_per_token=hardware_flops_per_token(w, lay.recompute, accounting, lay.tp),
        gpus=lay.gpus)


# ----------------------------------------------------------------------------------------------
# Token budgets.

OCTOTHINKER_STAGES = (("stable", 200e9), ("decay_long", 20e9), ("decay_short", 20e9), ("decay_hybrid", 20e9))


@dataclass(frozen=True)
class StageBudget:
    name: str
    tokens: float
    steps: int
    hours: float
    gpu_hours: float


def budget(stages: Iterable[tuple[str, float]], w: Workload, step_s: float, gpus: int) -> list[StageBudget]:
    """Steps (the trainer rounds a budget up to whole steps), wall-clock and GPU-hours per stage."""
    per_step = w.global_batch * w.seq_length
    out = []
    for name, tokens in stages:
        steps = math.ceil(tokens / per_step)
        hours = steps * step_s / 3600
        out.append(StageBudget(name, tokens, steps, hours, hours * gpus))
    return out


def parse_tokens(spec: str) -> list[tuple[str, float]]:
    """'200e9' | 'octothinker' | 'stable=200e9,decay_long=20e9,...'."""
    spec = spec.strip()
    if spec.lower() == "octothinker":
        return list(OCTOTHINKER_STAGES)
    out = []
    for i, part in enumerate(p for p in spec.split(",") if p.strip()):
        name, _, value = part.rpartition("=")
        try:
            tokens = float(value)
        except ValueError:
            raise ValueError(f"--tokens: {value!r} is not a number (e.g. 200e9)") from None
        if tokens <= 0:
            raise ValueError(f"--tokens: must be > 0, got {value}")
        out.append((name.strip() or ("run" if i == 0 else f"stage{i + 1}"), tokens))
    if not out:
        raise ValueError("--tokens: empty")
    return out


# ----------------------------------------------------------------------------------------------
# Ranked layouts.

@dataclass(frozen=True)
class Candidate:
    layout: Layout
    memory: StageMemory
    throughput: Throughput


def enumerate_layouts(w: Workload, gpus: int, hw: Hardware, *, micro_batches=(1, 2, 4),
                      recompute=RECOMPUTE, distributed_optimizer=(True, False),
                      cps=(1, 2, 4, 8)) -> Iterable[Layout]:
    for tp in (1, 2, 4, 8):
        if tp > hw.gpus_per_node or gpus % tp:
            continue
        for pp in range(1, w.arch.num_layers + 1):
            if w.arch.num_layers % pp or gpus % (tp * pp):
                continue
            for cp in cps:
                if gpus % (tp * pp * cp):
                    continue
                dp = gpus // (tp * pp * cp)
                for mbs in micro_batches:
                    for rc in recompute:
                        for dopt in distributed_optimizer:
                            lay = Layout(tp, pp, cp, dp, tp > 1, mbs, rc, dopt)
                            if not layout_problems(w, lay, gpus, hw):
                                yield lay


def rank_layouts(w: Workload, gpus: int, hw: Hardware, *, reserve_gib: float = 8.0, mfu: float = DEFAULT_MFU,
                 accounting: str = "causal", memory_gib: Optional[float] = None,
                 **enum_kwargs) -> list[Candidate]:
    """Layouts that fit ``memory_gib - reserve_gib`` per GPU, fastest first (ties: less memory, then
    fewer model-parallel GPUs). For each (TP, PP, CP, micro-batch) only the fastest fitting
    recompute/optimizer choice is kept, and layouts whose estimate equals a simpler one's are folded."""
    budget_bytes = ((memory_gib if memory_gib is not None else hw.memory_gib) - reserve_gib) * GiB
    best: dict[tuple, Candidate] = {}
    for lay in enumerate_layouts(w, gpus, hw, **enum_kwargs):
        mem = peak_memory(w, lay)
        if mem.total > budget_bytes:
            continue
        c = Candidate(lay, mem, throughput(w, lay, hw, mfu, accounting))
        key = (lay.tp, lay.pp, lay.cp, lay.micro_batch)
        if key not in best or _order(c) < _order(best[key]):
            best[key] = c
    out, seen = [], set()
    for c in sorted(best.values(), key=_order):
        # A layout with the same estimate as a simpler one (e.g. CP=2 with twice the micro-batch)
        # adds nothing to the list: keep the simpler one (fewer model-parallel GPUs sort first).
        sig = (round(c.throughput.tokens_per_s), round(c.memory.total / GiB, 2))
        if sig not in seen:
            seen.add(sig)
            out.append(c)
    return out


def _order(c: Candidate):
    return (-round(c.throughput.tokens_per_s, 6), c.memory.total, c.layout.tp * c.layout.pp * c.layout.cp)


def train_overrides(w: Workload, lay: Layout) -> list[str]:
    """The ``megatron_octo.train`` overrides that run this layout."""
    out = [f"parallel.tp={lay.tp}", f"parallel.pp={lay.pp}", f"parallel.cp={lay.cp}",
           f"parallel.sequence_parallel={str(lay.sequence_parallel).lower()}",
           f"parallel.use_distributed_optimizer={str(lay.distributed_optimizer).lower()}",
           f"train.micro_batch_size={lay.micro_batch}", f"train.global_batch_size={w.global_batch}",
           f"model.seq_length={w.seq_length}",
           f"model.recompute_granularity={'null' if lay.recompute == 'none' else lay.recompute}"]
    if w.precision == "fp8":
        out.append("model.fp8=hybrid")
    return out


# ----------------------------------------------------------------------------------------------
# One plan, as a dict (the JSON output; the CLI renders it).

def plan(w: Workload, lay: Layout, hw: Hardware, stages: list[tuple[str, float]], *, mfu: float = DEFAULT_MFU,
         accounting: str = "causal", reserve_gib: float = 8.0, memory_gib: Optional[float] = None,
         top: int = 10, ranked: Optional[list[Candidate]] = None) -> dict:
    cap = memory_gib if memory_gib is not None else hw.memory_gib
    stages_mem = memory_per_gpu(w, lay)
    peak = max(stages_mem, key=lambda s: s.total)
    tput = throughput(w, lay, hw, mfu, accounting)
    bud = budget(stages, w, tput.step_s, lay.gpus)
    a = w.arch

    def mem_row(s: StageMemory) -> dict:
        return {"stage": s.stage, "parameters": s.params.total, "weights_GiB": s.weights / GiB,
                "grads_GiB": s.grads / GiB, "optimizer_GiB": s.optimizer / GiB, "fp8_cache_GiB": s.fp8_cache / GiB,
                "activations_GiB": s.activations / GiB, "total_GiB": s.total / GiB,
                "inflight_microbatches": s.inflight_microbatches}

    def cand_row(c: Candidate) -> dict:
        return {**dataclasses.asdict(c.layout), "microbatches": c.throughput.microbatches,
                "memory_GiB": c.memory.total / GiB, "mfu": c.throughput.mfu,
                "tokens_per_s_per_gpu": c.throughput.tokens_per_s_per_gpu, "step_s": c.throughput.step_s,
                "hours": sum(b.steps for b in bud) * c.throughput.step_s / 3600}

    return {
        "model": {**dataclasses.asdict(a), "parameters": num_parameters(a),
                  "padded_vocab": padded_vocab(w, lay.tp)},
        "workload": {"seq_length": w.seq_length, "global_batch": w.global_batch,
                     "tokens_per_step": w.global_batch * w.seq_length, "precision": w.precision,
                     "grad_dtype": w.grad_dtype},
        "hardware": {**dataclasses.asdict(hw), "memory_GiB_used": cap, "reserve_GiB": reserve_gib},
        "layout": {**dataclasses.asdict(lay), "gpus": lay.gpus, "microbatches": num_microbatches(w, lay)},
        "flops": {"accounting": accounting, "accounting_note": ACCOUNTING[accounting],
                  "model_flops_per_token": tput.model_flops_per_token,
                  "hardware_flops_per_token": tput.hardware_flops_per_token,
                  "formula": "6*(L*(h*(h+2*kv) + h*h + 3*h*f) + V_pad*h) + 6*L*s*h*(1/2 if causal else 1)"},
        "memory": {"stages": [mem_row(s) for s in stages_mem], "peak_stage": peak.stage,
                   "peak_GiB": peak.total / GiB, "available_GiB": cap - reserve_gib,
                   "fits": peak.total <= (cap - reserve_gib) * GiB,
                   "activation_model": "Korthikanti et al. 2022 for RMSNorm/GQA/SwiGLU with TE fused (flash) "
                                       "attention: no s^2 term; selective = core attention only; full = "
                                       "layer inputs only; sequence parallel shards the norm/GEMM inputs; "
                                       "1F1B keeps min(PP - stage, micro-batches) in flight"},
        "throughput": {"mfu_assumed": mfu, "peak_TFLOPs": tput.peak_flops / 1e12, "mfu_modelled": tput.mfu,
                       "step_s": tput.step_s, "ideal_step_s": tput.ideal_step_s,
                       "tokens_per_s": tput.tokens_per_s, "tokens_per_s_per_gpu": tput.tokens_per_s_per_gpu,
                       "model_TFLOPs_per_gpu": tput.model_tflops_per_gpu,
                       "bubble_fraction": tput.bubble_fraction, "tp_comm_s_per_microbatch": tput.tp_comm_s,
                       "cp_exposed_s_per_microbatch": tput.cp_exposed_s, "dp_comm_s": tput.dp_comm_s,
                       "dp_exposed_s": tput.dp_exposed_s,
                       "microbatch_compute_s": tput.microbatch_compute_s},
        "train_overrides": train_overrides(w, lay),
        "nodes": math.ceil(lay.gpus / hw.gpus_per_node),
        "budget": [dataclasses.asdict(b) for b in bud],
        "budget_total": {"tokens": sum(b.tokens for b in bud), "steps": sum(b.steps for b in bud),
                         "hours": sum(b.hours for b in bud), "gpu_hours": sum(b.gpu_hours for b in bud)},
        "ranked_layouts": [cand_row(c) for c in (ranked or [])[:top]],
    }


# ----------------------------------------------------------------------------------------------
# RL and evaluation memory: the inference engine's KV buffer next to the training state.

KV_BLOCK_TOKENS = 256  # megatron's dynamic-batching block size (generation_dynamic.BLOCK_SIZE_TOKENS)
REQUEST_ROUNDER = 4  # DynamicInferenceContext.REQUEST_ROUNDER


def kv_static_bytes(arch: LlamaArchitecture, *, tp: int, pp: int, max_batch_size: int, max_sequence_length: int,
                    dtype_bytes: int = 2) -> int:
    """megatron's StaticInferenceContext on one GPU: every attention layer of the stage allocates a key and a
    value buffer of (max_sequence_length, max_batch_size, query groups / TP, head dim) on its first forward
    (``Attention._allocate_memory``); they stay until the context is dropped."""
    layers = arch.num_layers // pp
    return (2 * layers * max_sequence_length * max_batch_size * (arch.num_query_groups // tp)
            * arch.kv_channels * dtype_bytes)


def dynamic_requests(max_batch_size: int, tp: int) -> int:
    """``DynamicInferenceContext.round_up_requests``: a multiple of 4 that TP divides."""
    rounder = math.ceil(REQUEST_ROUNDER / tp) * tp
    return rounder * math.ceil(max_batch_size / rounder)


def kv_dynamic_bytes(arch: LlamaArchitecture, *, tp: int, pp: int, max_batch_size: int, max_sequence_length: int,
                     block_size_tokens: int = KV_BLOCK_TOKENS, buffer_gib: float = 0.0, dtype_bytes: int = 2) -> int:
    """megatron's DynamicInferenceContext memory_buffer on one GPU: (2, layers, blocks, block_size_tokens,
    query groups / TP, head dim). ``buffer_gib`` 0 is this project's default (rl.kv_cache_gb=0): one full-length
    sequence per request plus megatron's dummy block; otherwise megatron takes int(GiB * 2**30) // block bytes."""
    block = dtype_bytes * 2 * (arch.num_layers // pp) * block_size_tokens * (arch.num_query_groups // tp) * arch.kv_channels
    if buffer_gib > 0:
        blocks = max(2, int(buffer_gib * GiB) // block)
    else:
        requests = dynamic_requests(max_batch_size, tp)
        blocks = requests * math.ceil(max_sequence_length / block_size_tokens) + 1
    return blocks * block


def kv_bytes(engine: str, arch: LlamaArchitecture, **kw) -> int:
    if engine == "static":
        kw.pop("buffer_gib", None)
        return kv_static_bytes(arch, **kw)
    if engine == "dynamic":
        return kv_dynamic_bytes(arch, **kw)
    raise ValueError(f"rl.rollout_engine: {engine!r} is not static or dynamic")


def logits_bytes(w: Workload, tp: int, tokens: float) -> float:
    """The vocab-parallel cross entropy of a micro-batch: fp32 softmax + bf16 logits/gradient per token."""
    return 6.0 * padded_vocab(w, tp) / tp * tokens


@dataclass(frozen=True)
class RLWorkload:
    arch: LlamaArchitecture
    prompt_tokens: int  # rl.max_prompt_length
    stairs: tuple[tuple[int, int], ...]  # (from step, rl.max_response_length)
    sequences_per_update: int  # rl.mini_batch_prompts x rl.samples_per_prompt (one optimizer step)
    rollout_batch: int  # rl.rollout_batch_size: sequences per engine batch (its KV buffer)
    algorithm: str = "grpo"  # ppo adds a critic
    kl_coef: float = 0.0  # > 0 adds a frozen reference model
    engine: str = "static"  # the rollout engine (its KV buffer)
    kv_cache_gib: float = 0.0  # rl.kv_cache_gb (dynamic engine)
    recompute: str = "full"
    grad_dtype: str = "fp32"

    @property
    def longest(self) -> int:
        """The engine's max_sequence_length: the trainer builds it once for the longest stair."""
        return self.prompt_tokens + max(cap for _, cap in self.stairs)


@dataclass(frozen=True)
class RLStepMemory:
    step: int
    response_cap: int
    seq_length: int
    actor_weights: float
    actor_grads: float
    actor_optimizer: float
    critic: float  # weights + grads + optimizer of the value model (PPO)
    reference: float  # bf16 weights of the reference model (kl_coef > 0)
    kv_buffer: float  # the rollout engine's KV cache, held through the update
    activations: float  # one update micro-batch's saved activations (with the recipe's recompute)
    logits: float  # the longest update micro-batch's logits
    rollout_logits: float = 0.0  # the engine's logits during a rollout (not at the same time as the update's)

    @property
    def total(self) -> float:
        return (self.actor_weights + self.actor_grads + self.actor_optimizer + self.critic + self.reference
                + self.kv_buffer + max(self.activations + self.logits, self.rollout_logits))


def rl_memory(rw: RLWorkload, lay: Layout) -> list[RLStepMemory]:
    """Per-GPU memory at each length stair on the last pipeline stage (it holds the logits). The KV buffer is
    megatron's allocation for the longest stair, kept through the update (the trainer builds its engine once)."""
    rows = []
    kv = kv_bytes(rw.engine, rw.arch, tp=lay.tp, pp=lay.pp, max_batch_size=rw.rollout_batch,
                  max_sequence_length=rw.longest, buffer_gib=rw.kv_cache_gib)
    vocab = padded_vocab(Workload(rw.arch, rw.longest, 1), lay.tp)
    # Rollouts ask for log-probs: the static engine materializes the prompt's logits (full vocabulary, gathered
    # over TP) for a whole batch; the dynamic one the last position of each request only.
    rollout_rows = (rw.rollout_batch * rw.prompt_tokens if rw.engine == "static"
                    else dynamic_requests(rw.rollout_batch, lay.tp))
    rollout_logits = 6.0 * vocab * rollout_rows
    for step, cap in rw.stairs:
        seq = rw.prompt_tokens + cap
        w = Workload(rw.arch, seq, rw.sequences_per_update, "bf16", rw.grad_dtype)
        sm = stage_memory(w, dataclasses.replace(lay, recompute=rw.recompute), lay.pp - 1)
        logits = logits_bytes(w, lay.tp, lay.micro_batch * seq)
        critic = 0.0
        if rw.algorithm == "ppo":
            # the same body with a scalar value head instead of the output layer
            n = sm.params.total - sm.params.output_layer + rw.arch.hidden_size
            critic = n * ((4.0 if rw.grad_dtype == "fp32" else 2.0) + 2.0
                          + 12.0 / (lay.dp * lay.cp if lay.distributed_optimizer else 1))
        ref = 2.0 * sm.params.total if rw.kl_coef > 0 else 0.0
        rows.append(RLStepMemory(step, cap, seq, sm.weights, sm.grads, sm.optimizer, critic, ref, float(kv),
                                 sm.activations - logits, logits, rollout_logits))
    return rows


@dataclass(frozen=True)
class RLCandidate:
    layout: Layout
    rows: list[RLStepMemory]
    supported: bool  # the RL trainer runs it (pipeline parallelism: not yet)

    @property
    def peak(self) -> float:
        return max(r.total for r in self.rows)


def rl_candidates(rw: RLWorkload, gpus: int, hw: Hardware, *, micro_batches=(1, 2, 4, 8),
                  pps=(1, 2, 4)) -> list[RLCandidate]:
    out = []
    for tp in (1, 2, 4, 8):
        for pp in pps:
            if gpus % (tp * pp):
                continue
            for mbs in micro_batches:
                lay = Layout(tp, pp, 1, gpus // (tp * pp), tp > 1, mbs, rw.recompute, True)
                w = Workload(rw.arch, rw.longest, rw.sequences_per_update)
                if layout_problems(w, lay, gpus, hw):
                    continue
                out.append(RLCandidate(lay, rl_memory(rw, lay), supported=pp == 1))
    return out


def rl_verdict(cands: list[RLCandidate], available_bytes: float) -> Optional[RLCandidate]:
    """The layout to run: supported, fits at every stair; the least model parallelism, then the largest
    micro-batch (fewest forward/backward passes)."""
    fit = [c for c in cands if c.supported and c.peak <= available_bytes]
    return min(fit, key=lambda c: (c.layout.tp * c.layout.pp, c.layout.pp, -c.layout.micro_batch)) if fit else None


@dataclass(frozen=True)
class EvalMemory:
    weights: float
    kv_buffer: float
    logits: float

    @property
    def total(self) -> float:
        return self.weights + self.kv_buffer + self.logits


def eval_memory(arch: LlamaArchitecture, *, tp: int, pp: int, batch: int, prompt_tokens: int,
                max_new_tokens: int) -> EvalMemory:
    """python -m megatron_octo.eval on one GPU: bf16 weights, the static engine's KV cache for the longest
    prompt + max new tokens (what the eval CLI allocates without --max-seq-len), and the logits: eval asks for
    no log-probs, so megatron materializes the last position only (``materialize_only_last_token_logits``):
    batch x full vocabulary, bf16 gathered over TP + fp32 for sampling."""
    w = Workload(arch, prompt_tokens + max_new_tokens, batch)
    weights = 2.0 * rank_parameters(w, tp, pp, pp - 1).total
    kv = kv_static_bytes(arch, tp=tp, pp=pp, max_batch_size=batch,
                         max_sequence_length=prompt_tokens + max_new_tokens)
    logits = 6.0 * padded_vocab(w, tp) * batch
    return EvalMemory(weights, float(kv), logits)
