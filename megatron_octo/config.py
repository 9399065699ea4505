"""One typed config tree for every entry point.

A recipe is YAML; any key can be overridden on the command line as ``a.b=c``. Everything that can
be checked without a process group is checked in :func:`validate`, and every error names the key
(and the recipe file) it is about.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """A recipe or override is wrong; the message names the key."""


@dataclass
class ModelConfig:
    # A name from megatron_octo.models.llama.PRESETS; the fields below override it when set.
    preset: str = "tiny"
    num_layers: Optional[int] = None
    hidden_size: Optional[int] = None
    ffn_hidden_size: Optional[int] = None
    num_attention_heads: Optional[int] = None
    num_query_groups: Optional[int] = None
    vocab_size: Optional[int] = None
    max_position_embeddings: Optional[int] = None
    rotary_base: Optional[int] = None
    rope_scaling_factor: Optional[float] = None  # 0 disables llama3 rope scaling
    tie_embeddings: Optional[bool] = None
    norm_epsilon: Optional[float] = None
    init_method_std: float = 0.02
    seq_length: int = 128
    make_vocab_size_divisible_by: int = 128
    # auto: Transformer Engine on a GPU when importable, megatron's local spec otherwise.
    transformer_impl: str = "auto"  # auto | transformer_engine | local
    # Core attention of the local spec: sdpa (torch's fused kernels) or megatron's unfused module.
    local_attention: str = "sdpa"  # sdpa | unfused
    # FP8 needs Transformer Engine on a GPU. null disables it.
    fp8: Optional[str] = None  # e4m3 | hybrid
    fp8_recipe: str = "delayed"  # delayed | tensorwise | blockwise | mxfp8 (mxfp8: Blackwell, capability 10+)
    # Megatron-LM's FP8 settings and defaults (--fp8-amax-history-len, --fp8-amax-compute-algo,
    # --fp8-param-gather): the delayed recipe's amax window and reduction, and FP8 weights
    # (master copies stay in the optimizer; saves memory and the all-gather of the parameters).
    fp8_amax_history_len: int = 1
    fp8_amax_compute_algo: str = "most_recent"  # most_recent | max
    fp8_param: bool = False
    # auto: bf16 on GPU, fp32 on CPU.
    params_dtype: str = "auto"  # auto | fp32 | bf16
    recompute_granularity: Optional[str] = None  # full | selective
    recompute_num_layers: Optional[int] = None


# The compute capability each FP8 recipe needs (Transformer Engine's support checks): FP8 GEMMs from
# Ada/Hopper on, 1x128/128x128 block scaling from Hopper, MXFP8 (hardware micro-scaling) from Blackwell.
FP8_RECIPE_MIN_CAPABILITY = {"delayed": (8, 9), "tensorwise": (8, 9), "blockwise": (9, 0), "mxfp8": (10, 0)}


@dataclass
class ParallelConfig:
    tp: int = 1
    pp: int = 1
    cp: int = 1
    sequence_parallel: bool = False
    use_distributed_optimizer: bool = False
    # null: overlap on a GPU, not on CPU (gloo gains nothing from it).
    overlap_grad_reduce: Optional[bool] = None
    overlap_param_gather: Optional[bool] = None


@dataclass
class SourceConfig:
    prefix: str = MISSING
    weight: float = 1.0
    name: str = ""


@dataclass
class TokenizerConfig:
    # tokenizer.json (or its directory), SentencePiece .model, tiktoken file; null with library=null.
    path: Optional[str] = None
    # auto | huggingface | sentencepiece | tiktoken | null (YAML null too: megatron's null
    # tokenizer, for pre-tokenized synthetic data; needs model.vocab_size or the preset's).
    library: Optional[str] = "auto"


@dataclass
class DataConfig:
    # Either an inline blend, or a mixture YAML file and a stage name in it.
    blend: List[SourceConfig] = field(default_factory=list)
    mixture: Optional[str] = None
    stage: Optional[str] = None
    split: str = "98,2,0"  # train, validation, test weights (megatron's --split)
    # Where megatron's GPTDataset caches its index files; default: <checkpoint.save>/data_cache.
    cache_dir: Optional[str] = None
    # Megatron's mock dataset (random tokens): for benchmarks and smoke tests only.
    mock: bool = False
    reset_position_ids: bool = False
    reset_attention_mask: bool = False
    eod_mask_loss: bool = False


@dataclass
class TrainConfig:
    tokens: int = MISSING  # this stage's token budget; 0 = initialise, save and stop
    micro_batch_size: int = 1
    global_batch_size: int = 8
    seed: int = 1234
    eval_interval: int = 0  # steps; 0 = no validation
    eval_iters: int = 1
    log_interval: int = 1
    # Loss policy: skip (count and drop the update) or stop (save, then exit non-zero). Applies to a
    # non-finite loss or gradient norm, and to a gradient norm above grad_norm_spike_threshold.
    nan_policy: str = "stop"
    # Pre-clipping gradient norm above which a step counts as a spike (null: no spike check).
    grad_norm_spike_threshold: Optional[float] = None


@dataclass
class OptimizerConfig:
    name: str = "adam"  # adam (AdamW) | sgd
    weight_decay: float = 0.1
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_eps: float = 1e-8
    clip_grad: float = 1.0


@dataclass
class ScheduleConfig:
    # stable: linear warmup then constant lr. decay: from the LR the stable stage ended at down to
    # min_lr over this stage's tokens, with decay_style.
    stage: str = "stable"  # stable | decay
    lr: float = 3e-5
    init_lr: float = 0.0
    warmup_tokens: int = 0
    min_lr: float = 0.0
    decay_style: str = "cosine"  # cosine | linear | minus_sqrt | exponential
    # decay only: the LR the decay starts from. null: the LR the stable checkpoint ended at, which
    # makes stable + decay one continuous WSD schedule.
    start_lr: Optional[float] = None


@dataclass
class CheckpointConfig:
    save: Optional[str] = None
    save_interval: int = 0  # steps; 0 = only at the end
    # Resume from here when it holds a checkpoint (default: save).
    load: Optional[str] = None
    # Start a new stage from another run's checkpoint (a stable checkpoint for a decay branch).
    # A directory with a tracker file (latest iteration) or one iter_NNNNNNN directory.
    init_from: Optional[str] = None
    # Take only model weights from init_from (e.g. converted from Hugging Face).
    init_weights_only: bool = False
    keep_last: int = 0  # 0 keeps every checkpoint
    # At load, check every file against the checkpoint's manifest.json: checksum (SHA-256), size, off.
    verify: str = "checksum"
    # Resuming, a corrupt latest checkpoint falls back to the newest intact older one (false: stop
    # with an error naming the bad files).
    fallback_on_corrupt: bool = False
    # Resuming with a schedule value (schedule.*, train.tokens of a decay, optimizer.weight_decay,
    # rl.lr, rl.critic_lr) that differs from the checkpoint's: refuse (exit 2 naming the key), config
    # (apply the config's from the resume point, with a line saying so) or checkpoint (continue the
    # checkpoint's, with a line saying so). A new stage (init_from) always takes its config's.
    schedule_on_resume: str = "refuse"  # refuse | config | checkpoint


@dataclass
class LoggingConfig:
    tensorboard_dir: Optional[str] = None  # default: <checkpoint.save>/tensorboard
    # FLOP/s of one device at the run's precision, for MFU. null: a table for known GPUs, or a
    # GEMM measured at start-up on CPU.
    peak_flops_per_device: Optional[float] = None


@dataclass
class RLConfig:
    """RL stage (python -m megatron_octo.rl). Defaults: OctoThinker's GRPO on MATH8K."""

    # grpo: group-normalised outcome advantages, no critic (OctoThinker). ppo: a critic (value model,
    # the actor's architecture and initial weights with a scalar head) and GAE advantages.
    algorithm: str = "grpo"  # grpo | ppo
    prompts: str = "data/rl/math8k.jsonl.gz"  # JSONL(.gz) of problems with gold answers
    question_key: str = "question"
    answer_key: str = "answer"
    template: str = "orz_base"  # orz_base | simple | few_shot
    steps: int = 300
    prompts_per_step: int = 128
    samples_per_prompt: int = 16
    mini_batch_prompts: int = 64  # PPO mini-batch, in prompts (verl's ppo_mini_batch_size)
    ppo_epochs: int = 1
    micro_batch_size: int = 4  # sequences per forward/backward micro-batch
    # > 0: the update's micro-batches by token budget instead (length-sorted rows, each micro-batch
    # padded to its own longest, rows x longest <= this; verl's use_dynamic_bsz); 0 = micro_batch_size rows
    micro_batch_tokens: int = 0
    rollout_batch_size: int = 64  # sequences per inference-engine batch (dynamic engine: in flight at once)
    # Which megatron-core inference engine generates the rollouts (and rl.val_* generations), on the
    # actor itself: static (runs everywhere, the CPU included) or dynamic (paged KV cache, in-flight
    # batching, CUDA graphs; needs a CUDA GPU and flash-attn). auto: dynamic when both are present.
    rollout_engine: str = "auto"  # auto | static | dynamic
    cuda_graphs: bool = True  # dynamic engine only: capture megatron's CUDA graphs once, replay every step
    kv_cache_gb: float = 0.0  # dynamic engine only: paged KV buffer per GPU; 0 = rollout_batch_size full sequences
    temperature: float = 1.0
    top_p: float = 1.0
    max_prompt_length: int = 400  # longer prompts are dropped (counted) at load
    # Progressive cap on response length: {rl step: tokens}.
    max_response_length: Dict[int, int] = field(default_factory=lambda: {0: 8192})
    lr: float = 1e-6  # constant
    clip_low: float = 0.2
    clip_high: float = 0.2
    # Dual-clip PPO (verl's clip_ratio_c, arXiv 1912.09729): for A < 0 a token's loss is at most
    # -A * clip_ratio_c, however far its ratio grew (> 1; rl.policy_loss=ppo only, as verl).
    clip_ratio_c: float = 3.0
    kl_coef: float = 0.0  # 0: no reference model is built (OctoThinker)
    kl_estimator: str = "low_var_kl"  # low_var_kl | k1 | k2
    entropy_coef: float = 0.0
    normalize_std: bool = True  # GRPO: divide by the group's std
    remove_uniform_groups: bool = False  # drop groups whose samples all got the same reward
    # DAPO's dynamic sampling: groups whose samples all got the same dynamic_sampling_metric are removed
    # from the batch and more prompts are drawn (up to max_sampling_rounds rounds of prompts_per_step)
    # until the batch holds prompts_per_step groups with varied values; a batch still short is padded
    # with removed groups masked out of the loss. GRPO only.
    dynamic_sampling: bool = False
    # What "all scored the same" compares (verl's algorithm.filter_groups.metric): acc = correctness
    # (DAPO's setting); score = the grader's reward before the overlong penalty; seq_reward (=
    # seq_final_reward here, no KL in the reward) = the reward with it. rl.remove_uniform_groups always
    # compares seq_reward (the groups whose advantages are all zero).
    dynamic_sampling_metric: str = "acc"  # acc | score | seq_reward | seq_final_reward
    max_sampling_rounds: int = 10  # verl's algorithm.filter_groups.max_num_gen_batches in DAPO's recipe
    # DAPO's soft overlong punishment: a response within overlong_buffer tokens of the step's cap
    # gets a penalty rising linearly to -overlong_penalty at the cap (0 = off).
    overlong_buffer: int = 0
    overlong_penalty: float = 1.0
    overlong_filter: bool = False  # truncated responses (finish_reason length) are masked out of the loss
    # verl's loss_agg_mode: token-mean | seq-mean-token-sum | seq-mean-token-mean | seq-mean-token-sum-norm
    loss_agg_mode: str = "token-mean"
    loss_scale_factor: int = 0  # seq-mean-token-sum-norm's constant divisor; 0 = the largest response cap
    # ppo: token-level ratio and clip; gspo: sequence-level ratio exp(mean token log-ratio), clipped
    # (GSPO, arXiv 2507.18071; needs loss_agg_mode=seq-mean-token-mean, as verl).
    policy_loss: str = "ppo"  # ppo | gspo
    # Rollout correction between the rollout engine's log-probs and the trainer's (old) log-probs:
    # tis = truncated importance weight min(ratio, threshold); mis = masked (tokens over threshold
    # dropped). training/rollout_logprob_diff is logged whatever the setting.
    rollout_is: str = "none"  # none | tis | mis
    rollout_is_threshold: float = 2.0
    reward_variant: str = "default"  # default | v2.wformat | v3.repeatpenalty | v4.repeatpenalty
    # Seconds per graded answer (a hard limit in the grader's worker processes; a time-out scores as wrong):
    # 15 s, as OctoThinker's harness gives each sample (megatron_octo.eval.grader.DEFAULT_TIMEOUT).
    grade_timeout: float = 15.0
    # A custom reward instead of the math grader: "package.module:function" (or "path/file.py:function")
    # called as fn(responses: list[str], golds: list[str]) -> list[float] (verl's custom_reward_function).
    reward_fn: Optional[str] = None
    # reward_fn runs in a worker process, each call (all of a step's responses on a rank) under this
    # limit in seconds; on time-out every response of the call scores reward_timeout_score (counted in
    # fault/reward_timeouts) and the worker is restarted. 0: called in the trainer, no limit.
    reward_timeout: float = 300.0
    reward_timeout_score: float = 0.0
    # Non-finite rollout log-probs (old/reference forward): skip the step's update (fault/nan_steps)
    # or stop (save the checkpoint before the step, exit 3).
    nan_policy: str = "skip"  # skip | stop
    val_interval: int = 0  # RL steps; 0 = no validation
    val_benchmarks: str = "math500"
    val_limit: int = 50
    val_max_new_tokens: int = 1024
    save_interval: int = 0  # RL steps; 0 = only at the end
    seed: int = 1234
    # PPO (rl.algorithm=ppo) only; verl's critic defaults.
    critic_lr: float = 1e-5  # constant; the critic's own megatron optimizer (optimizer.* otherwise)
    vf_clip: float = 0.5  # value clip range around the rollout-time values (verl's cliprange_value)
    gamma: float = 1.0  # GAE discount
    lam: float = 1.0  # GAE lambda
    critic_warmup_steps: int = 0  # first steps train only the critic (verl's critic_warmup)


# Generation's CPU GEMM (models/lean_forward.py): auto times oneDNN and F.linear once per process on the model's
# weight shapes and keeps the faster; onednn | torch force one (OCTO_INFERENCE_GEMM, if set, wins).
GEMM_CHOICES = ("auto", "onednn", "torch")


@dataclass
class GenerationConfig:
    gemm: str = "auto"  # auto | onednn | torch


@dataclass
class Config:
    run_name: str = "run"
    model: ModelConfig = field(default_factory=ModelConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)


SCHEDULE_ON_RESUME = ("refuse", "config", "checkpoint")
DYNAMIC_SAMPLING_METRICS = ("acc", "score", "seq_reward", "seq_final_reward")  # verl's filter_groups.metric
LOSS_AGG_MODES = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")


def _omegaconf_error(exc: OmegaConfBaseException, where: str) -> ConfigError:
    key = getattr(exc, "full_key", None)
    msg = getattr(exc, "msg", None) or str(exc).splitlines()[0]
    return ConfigError(f"{where}: config key '{key}': {msg}" if key else f"{where}: {msg}")


def load(recipe: Optional[str], overrides: List[str] = (), schema=Config) -> Any:
    """Merge a YAML recipe and ``a.b=c`` overrides onto the schema; return a validated config."""
    cfg = OmegaConf.structured(schema)
    if recipe is not None:
        if not os.path.isfile(recipe):
            raise ConfigError(f"recipe file not found: {recipe}")
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.load(recipe))
        except OmegaConfBaseException as exc:
            raise _omegaconf_error(exc, recipe) from None
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value")
    try:
        for item in overrides:
            key, _, value = item.partition("=")
            if value.lstrip().startswith("{"):
                # A mapping literal replaces the key's mapping (e.g. rl.max_response_length={0: 4096}
                # over a recipe's three stairs); merging would keep the recipe's other entries.
                OmegaConf.update(cfg, key, OmegaConf.select(OmegaConf.from_dotlist([item]), key), merge=False)
            else:
                cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([item]))
    except OmegaConfBaseException as exc:
        raise _omegaconf_error(exc, "command-line override") from None
    try:
        missing = sorted(OmegaConf.missing_keys(cfg))
    except OmegaConfBaseException as exc:
        raise _omegaconf_error(exc, recipe or "config") from None
    if missing:
        raise ConfigError(f"{recipe or 'config'}: required config key(s) not set: {', '.join(missing)}")
    OmegaConf.set_readonly(cfg, True)
    return cfg


def to_yaml(cfg) -> str:
    return OmegaConf.to_yaml(cfg)


def fail(key: str, msg: str):
    raise ConfigError(f"config key '{key}': {msg}")


def one_of(key: str, value, allowed):
    if value not in allowed:
        fail(key, f"{value!r} is not one of {', '.join(map(str, allowed))}")


def check_fp8(m: ModelConfig, capability: Optional[tuple] = None) -> None:
    """The FP8 keys alone, and the recipe against the GPU's compute capability (``capability``:
    runtime.capability.compute_capability(); None: not known here, e.g. on a login node)."""
    if m.fp8 is None:
        if m.fp8_param:
            fail("model.fp8_param", "FP8 parameters need FP8: set model.fp8 (e4m3 | hybrid)")
        return
    one_of("model.fp8", m.fp8, ("e4m3", "hybrid"))
    one_of("model.fp8_recipe", m.fp8_recipe, tuple(FP8_RECIPE_MIN_CAPABILITY))
    one_of("model.fp8_amax_compute_algo", m.fp8_amax_compute_algo, ("most_recent", "max"))
    if m.fp8_amax_history_len < 1:
        fail("model.fp8_amax_history_len", f"must be >= 1, got {m.fp8_amax_history_len}")
    need = FP8_RECIPE_MIN_CAPABILITY[m.fp8_recipe]
    if capability is not None and tuple(capability) < need:
        fail("model.fp8_recipe", f"{m.fp8_recipe} needs a GPU of compute capability {need[0]}.{need[1]} or "
              f"newer; this one is {capability[0]}.{capability[1]}" + (
                  " (mxfp8 is Blackwell's; on Hopper use delayed, tensorwise or blockwise)"
                  if m.fp8_recipe == "mxfp8" else ""))


def validate(cfg: Config, world_size: int, *, have_gpu: bool, have_te: bool,
             capability: Optional[tuple] = None) -> None:
    """The checks that need the config alone (no other module's knowledge). Raises ConfigError naming
    the key. ``capability``: the GPU's compute capability when known (FP8 recipes need a minimum).
    Entry points call ``megatron_octo.training.checks.validate``, which adds the model layout, the
    data and the resume checks of the modules that own them."""
    par = cfg.parallel
    for key in ("tp", "pp", "cp"):
        if getattr(par, key) < 1:
            fail(f"parallel.{key}", f"must be >= 1, got {getattr(par, key)}")
    model_parallel = par.tp * par.pp * par.cp
    if world_size % model_parallel != 0:
        fail("parallel.tp", f"tp*pp*cp = {par.tp}*{par.pp}*{par.cp} = {model_parallel} does not divide "
              f"the world size {world_size}")
    dp = world_size // model_parallel
    if par.sequence_parallel and par.tp == 1:
        fail("parallel.sequence_parallel", "needs parallel.tp > 1")
    if cfg.model.seq_length % (2 * par.cp) != 0 and par.cp > 1:
        fail("model.seq_length", f"{cfg.model.seq_length} must be divisible by 2*parallel.cp={2 * par.cp}")

    tr = cfg.train
    if tr.micro_batch_size < 1:
        fail("train.micro_batch_size", f"must be >= 1, got {tr.micro_batch_size}")
    if tr.global_batch_size % (tr.micro_batch_size * dp) != 0:
        fail("train.global_batch_size",
              f"{tr.global_batch_size} is not micro_batch_size x micro-batches x data-parallel size "
              f"({tr.micro_batch_size} x n x {dp}) for any whole n")
    if tr.tokens < 0:
        fail("train.tokens", f"must be >= 0, got {tr.tokens}")
    one_of("train.nan_policy", tr.nan_policy, ("skip", "stop"))
    if tr.grad_norm_spike_threshold is not None and not (tr.grad_norm_spike_threshold > 0):
        fail("train.grad_norm_spike_threshold", f"must be > 0 (or null), got {tr.grad_norm_spike_threshold}")
    if tr.eval_interval < 0 or tr.log_interval < 1 or tr.eval_iters < 1:
        fail("train.eval_interval" if tr.eval_interval < 0 else
              "train.log_interval" if tr.log_interval < 1 else "train.eval_iters", "out of range")

    m = cfg.model
    one_of("model.transformer_impl", m.transformer_impl, ("auto", "transformer_engine", "local"))
    one_of("model.params_dtype", m.params_dtype, ("auto", "fp32", "bf16"))
    one_of("model.local_attention", m.local_attention, ("sdpa", "unfused"))
    if m.transformer_impl == "transformer_engine" and not (have_te and have_gpu):
        fail("model.transformer_impl", "transformer_engine needs a CUDA GPU and the transformer-engine "
              "package (pip install 'megatron-octo[gpu]'); use 'local' or 'auto' on this machine")
    check_fp8(m, capability)
    if m.fp8 is not None:
        if not (have_te and have_gpu):
            fail("model.fp8", f"FP8 ({m.fp8}) needs Transformer Engine on a CUDA GPU "
                  f"(found: GPU={have_gpu}, transformer_engine={have_te}); set model.fp8=null")
        if m.transformer_impl == "local":
            fail("model.fp8", "FP8 needs model.transformer_impl=transformer_engine (or auto)")
    if m.params_dtype == "bf16" and not have_gpu:
        pass  # bf16 on CPU is slow but valid; not an error.
    if m.recompute_granularity is not None:
        one_of("model.recompute_granularity", m.recompute_granularity, ("full", "selective"))

    sch = cfg.schedule
    one_of("schedule.stage", sch.stage, ("stable", "decay"))
    one_of("schedule.decay_style", sch.decay_style, ("cosine", "linear", "minus_sqrt", "exponential"))
    if not (sch.lr > 0):
        fail("schedule.lr", f"must be > 0, got {sch.lr}")
    if sch.min_lr < 0 or sch.min_lr > sch.lr:
        fail("schedule.min_lr", f"must be in [0, schedule.lr={sch.lr}], got {sch.min_lr}")
    if sch.init_lr < 0 or sch.init_lr > sch.lr:
        fail("schedule.init_lr", f"must be in [0, schedule.lr={sch.lr}], got {sch.init_lr}")
    if sch.warmup_tokens < 0:
        fail("schedule.warmup_tokens", f"must be >= 0, got {sch.warmup_tokens}")
    if sch.start_lr is not None:
        if sch.stage != "decay":
            fail("schedule.start_lr", "sets where a decay stage starts; a stable stage's LR is schedule.lr")
        if not (sch.start_lr > 0):
            fail("schedule.start_lr", f"must be > 0 (or null: the stable checkpoint's last LR), got {sch.start_lr}")
    if sch.stage == "decay" and cfg.checkpoint.init_weights_only:
        fail("checkpoint.init_weights_only", "a decay stage keeps the stable stage's optimizer state "
              "and LR; init_weights_only is for starting a stable stage from converted weights")

    one_of("optimizer.name", cfg.optimizer.name, ("adam", "sgd"))
    if cfg.optimizer.clip_grad < 0:
        fail("optimizer.clip_grad", f"must be >= 0, got {cfg.optimizer.clip_grad}")

    ck = cfg.checkpoint
    if ck.save_interval < 0:
        fail("checkpoint.save_interval", f"must be >= 0, got {ck.save_interval}")
    one_of("checkpoint.verify", ck.verify, ("checksum", "size", "off"))
    one_of("checkpoint.schedule_on_resume", ck.schedule_on_resume, SCHEDULE_ON_RESUME)
    if ck.init_from is not None and not os.path.isdir(ck.init_from):
        fail("checkpoint.init_from", f"checkpoint directory not found: {ck.init_from}")
    if ck.load is not None and not os.path.isdir(ck.load):
        fail("checkpoint.load", f"checkpoint directory not found: {ck.load}")

    one_of("tokenizer.library", tokenizer_library(cfg),
            ("auto", "huggingface", "sentencepiece", "tiktoken", "null"))
    if tokenizer_library(cfg) != "null" and not cfg.data.mock:
        if cfg.tokenizer.path is None:
            fail("tokenizer.path", "not set (use tokenizer.library=null with model.vocab_size for "
                  "pre-tokenized data without a tokenizer file)")
        if not os.path.exists(cfg.tokenizer.path):
            fail("tokenizer.path", f"file not found: {cfg.tokenizer.path}")
    one_of("generation.gemm", cfg.generation.gemm, GEMM_CHOICES)


def tokenizer_library(cfg) -> str:
    return "null" if cfg.tokenizer.library is None else cfg.tokenizer.library


def data_parallel_size(cfg, world_size: int) -> int:
    return world_size // (cfg.parallel.tp * cfg.parallel.pp * cfg.parallel.cp)


def num_microbatches(cfg, world_size: int) -> int:
    dp = data_parallel_size(cfg, world_size)
    return cfg.train.global_batch_size // (cfg.train.micro_batch_size * dp)


ROLLOUT_ENGINES = ("auto", "static", "dynamic")


def resolve_rollout_engine(choice: str, *, have_gpu: bool, have_flash_attn: bool) -> str:
    """``rl.rollout_engine`` as the engine that runs: 'static' or 'dynamic' ('auto': dynamic when a CUDA
    GPU and flash-attn are present). ConfigError naming the key when 'dynamic' cannot run here."""
    one_of("rl.rollout_engine", choice, ROLLOUT_ENGINES)
    missing = [what for what, ok in (("a CUDA GPU", have_gpu),
                                     ("flash-attn >= 2.7.3 (or flash-attn 3)", have_flash_attn)) if not ok]
    if choice == "auto":
        return "static" if missing else "dynamic"
    if choice == "dynamic" and missing:
        fail("rl.rollout_engine", f"'dynamic' needs {' and '.join(missing)}: megatron-core's dynamic engine runs "
              f"its attention in flash-attn's paged-KV-cache kernels on the GPU (found: GPU={have_gpu}, "
              f"flash-attn={have_flash_attn}); use 'static' or 'auto' on this machine")
    return choice


def tokens_per_step(cfg) -> int:
    return cfg.train.global_batch_size * cfg.model.seq_length


def validate_rl(cfg, world_size: int, *, have_gpu: bool, have_te: bool, have_flash_attn: bool,
                capability: Optional[tuple] = None) -> None:
    """The RL section's checks that need the config alone; ``megatron_octo.rl.checks.validate_rl`` adds
    the model layout, the reward function and the response-length stairs."""
    par = cfg.parallel
    if par.pp > 1 and cfg.rl.algorithm == "ppo":
        fail("parallel.pp", "PPO's critic does not run with pipeline parallelism yet: set parallel.pp=1 "
             "(parallel.tp / data parallel) or rl.algorithm=grpo")
    if world_size % (par.tp * par.pp * par.cp):
        fail("parallel.tp", f"tp*pp*cp = {par.tp * par.pp * par.cp} does not divide the world size {world_size}")
    check_fp8(cfg.model, capability)
    if cfg.model.fp8 is not None and not (have_gpu and have_te):
        fail("model.fp8", "FP8 needs Transformer Engine on a CUDA GPU; set model.fp8=null")
    dp = world_size // (par.tp * par.pp * par.cp)
    r = cfg.rl
    one_of("rl.algorithm", r.algorithm, ("grpo", "ppo"))
    one_of("rl.template", r.template, ("orz_base", "simple", "few_shot"))
    one_of("rl.kl_estimator", r.kl_estimator, ("low_var_kl", "k1", "k2"))
    one_of("rl.reward_variant", r.reward_variant, ("default", "v2.wformat", "v3.repeatpenalty", "v4.repeatpenalty"))
    one_of("rl.nan_policy", r.nan_policy, ("skip", "stop"))
    one_of("checkpoint.schedule_on_resume", cfg.checkpoint.schedule_on_resume, SCHEDULE_ON_RESUME)
    engine = resolve_rollout_engine(r.rollout_engine, have_gpu=have_gpu, have_flash_attn=have_flash_attn)
    if par.pp > 1 and engine == "dynamic":
        fail("rl.rollout_engine", f"rollouts at parallel.pp={par.pp} run on megatron's static engine (the last "
             "stage's logits broadcast to the others); set rl.rollout_engine=static")
    if not (r.kv_cache_gb >= 0):
        fail("rl.kv_cache_gb", f"must be >= 0 (0 = room for rl.rollout_batch_size full-length sequences), "
              f"got {r.kv_cache_gb}")
    if r.reward_timeout < 0:
        fail("rl.reward_timeout", f"must be >= 0 (0 = no limit), got {r.reward_timeout}")
    for key in ("steps", "prompts_per_step", "samples_per_prompt", "mini_batch_prompts", "ppo_epochs",
                "micro_batch_size", "rollout_batch_size", "max_prompt_length"):
        if getattr(r, key) < 1:
            fail(f"rl.{key}", f"must be >= 1, got {getattr(r, key)}")
    if r.prompts_per_step % r.mini_batch_prompts:
        fail("rl.mini_batch_prompts", f"{r.mini_batch_prompts} does not divide rl.prompts_per_step={r.prompts_per_step}")
    if r.mini_batch_prompts % dp:
        fail("rl.mini_batch_prompts", f"{r.mini_batch_prompts} prompts do not split over {dp} data-parallel ranks")
    if (r.mini_batch_prompts // dp * r.samples_per_prompt) % r.micro_batch_size:
        fail("rl.micro_batch_size", f"{r.micro_batch_size} does not divide the {r.mini_batch_prompts // dp} x "
              f"{r.samples_per_prompt} sequences of a data-parallel rank's mini-batch")
    if not (r.temperature > 0):
        fail("rl.temperature", f"must be > 0 for sampling, got {r.temperature}")
    if not (0 < r.top_p <= 1):
        fail("rl.top_p", f"must be in (0, 1], got {r.top_p}")
    if r.clip_low < 0 or r.clip_high < 0:
        fail("rl.clip_low" if r.clip_low < 0 else "rl.clip_high", "must be >= 0")
    if not (r.clip_ratio_c > 1):
        fail("rl.clip_ratio_c", f"must be > 1 (dual-clip PPO's bound on the ratio for A < 0), got {r.clip_ratio_c}")
    one_of("rl.dynamic_sampling_metric", r.dynamic_sampling_metric, DYNAMIC_SAMPLING_METRICS)
    one_of("rl.loss_agg_mode", r.loss_agg_mode, LOSS_AGG_MODES)
    one_of("rl.policy_loss", r.policy_loss, ("ppo", "gspo"))
    one_of("rl.rollout_is", r.rollout_is, ("none", "tis", "mis"))
    if r.policy_loss == "gspo" and r.loss_agg_mode != "seq-mean-token-mean":
        fail("rl.loss_agg_mode", f"rl.policy_loss=gspo aggregates per sequence: set rl.loss_agg_mode="
             f"seq-mean-token-mean (got {r.loss_agg_mode})")
    if r.loss_scale_factor < 0:
        fail("rl.loss_scale_factor", f"must be >= 0 (0 = the largest response cap), got {r.loss_scale_factor}")
    if not (r.rollout_is_threshold > 1):
        fail("rl.rollout_is_threshold", f"must be > 1, got {r.rollout_is_threshold}")
    if r.overlong_buffer < 0:
        fail("rl.overlong_buffer", f"must be >= 0 (0 = no overlong penalty), got {r.overlong_buffer}")
    if r.overlong_penalty < 0:
        fail("rl.overlong_penalty", f"must be >= 0 (the penalty's size at the cap), got {r.overlong_penalty}")
    if r.micro_batch_tokens < 0:
        fail("rl.micro_batch_tokens", f"must be >= 0 (0 = rl.micro_batch_size rows), got {r.micro_batch_tokens}")
    if r.max_sampling_rounds < 1:
        fail("rl.max_sampling_rounds", f"must be >= 1, got {r.max_sampling_rounds}")
    if r.dynamic_sampling and r.algorithm != "grpo":
        fail("rl.dynamic_sampling", "filters groups of equal scores: GRPO only (rl.algorithm=grpo)")
    if r.dynamic_sampling and r.remove_uniform_groups:
        fail("rl.remove_uniform_groups", "rl.dynamic_sampling removes uniform groups itself: set one of them")
    if not os.path.isfile(r.prompts):
        fail("rl.prompts", f"prompt file not found: {r.prompts}")
    if r.algorithm == "ppo":
        if not (r.critic_lr > 0):
            fail("rl.critic_lr", f"must be > 0, got {r.critic_lr}")
        if not (r.vf_clip > 0):
            fail("rl.vf_clip", f"must be > 0, got {r.vf_clip}")
        for key in ("gamma", "lam"):
            if not (0 <= getattr(r, key) <= 1):
                fail(f"rl.{key}", f"must be in [0, 1], got {getattr(r, key)}")
        if r.critic_warmup_steps < 0:
            fail("rl.critic_warmup_steps", f"must be >= 0, got {r.critic_warmup_steps}")
    ck = cfg.checkpoint
    if ck.init_from is None and not (ck.save and os.path.isdir(ck.save)):
        fail("checkpoint.init_from", "RL starts from a checkpoint (stable, decay or converted): set "
              "checkpoint.init_from")
    if ck.init_from is not None and not os.path.isdir(ck.init_from):
        fail("checkpoint.init_from", f"checkpoint directory not found: {ck.init_from}")
