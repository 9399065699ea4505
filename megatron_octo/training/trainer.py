"""The pretraining loop (stable and decay stages) on megatron-core.

One step: ``get_forward_backward_func`` over the rank's micro-batches (pipeline schedule when
PP > 1), megatron DDP grad reduction (``finalize_model_grads``), the megatron optimizer (optionally
distributed) with grad clipping, then the token-based LR schedule.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import zlib
from dataclasses import dataclass, field
from functools import partial
from typing import Optional

import torch
import torch.distributed as dist

from megatron_octo import config as cfgmod
from megatron_octo import schedule
from megatron_octo.data import gpt_data
from megatron_octo.models import llama
from megatron_octo.runtime import distributed as rt
from megatron_octo.runtime import capability, faults, simulated_gpu
from megatron_octo.runtime.signals import SignalFlag
from megatron_octo.checkpoint import save_load as ckpt
from megatron_octo.training import checks
from megatron_octo.checkpoint import integrity
from megatron_octo.training.model_setup import build_model_and_optimizer
from megatron_octo.training.optimizer_state import ensure_optimizer_state
from megatron_octo.training.metrics import (MetricsWriter, format_line, memory_gb,
                                             peak_flops_per_device)

EXIT_SIGNALLED = 75  # saved after SIGTERM/SIGUSR1: the job should be requeued (EX_TEMPFAIL)
EXIT_NAN = 3  # stopped on a non-finite loss/grad or a grad-norm spike under nan_policy=stop
EXIT_SAVE_FAILED = 4  # a checkpoint could not be written (disk full, I/O); the previous one is intact


@dataclass
class TrainResult:
    iterations: int
    tokens: int
    stage_tokens: int
    losses: list = field(default_factory=list)  # per step "lm loss" (last stage ranks; else empty)
    lrs: list = field(default_factory=list)  # LR used by each step
    valid_losses: list = field(default_factory=list)
    checkpoint: Optional[str] = None
    exit_code: int = 0
    skipped: int = 0


class _DigestIterator:
    """The training micro-batches, with a CRC-32 of their tokens since the last :meth:`take`: logged
    per step, it shows which data each step consumed (equal runs consumed equal data)."""

    def __init__(self, it):
        self.it, self.crc = it, 0

    def __iter__(self):
        return self

    def __next__(self):
        batch = next(self.it)
        self.crc = zlib.crc32(batch["tokens"].numpy().tobytes(), self.crc)
        return batch

    def take(self) -> int:
        crc, self.crc = self.crc, 0
        return crc


def _loss_func(loss_mask: torch.Tensor, output_tensor: torch.Tensor, fault: Optional[str] = None):
    losses = output_tensor.float()
    mask = loss_mask.view(-1).float()
    loss = torch.sum(losses.view(-1) * mask) / mask.sum().clamp(min=1.0)
    loss = faults.apply_loss_fault(loss, fault)  # OCTO_FAULT_INJECT=step:N=nan|inf|spike (tests only)
    # clone: megatron's schedule divides the returned loss in place by the number of micro-batches.
    return loss, {"lm loss": loss.detach().clone()}


def _forward_step(data_iterator, model, loss_fault: Optional[str] = None):
    from megatron.core import parallel_state as ps

    batch = next(data_iterator)
    dev = rt.device()
    tokens = batch["tokens"].to(dev, non_blocking=True)
    labels = batch["labels"].to(dev, non_blocking=True)
    loss_mask = batch["loss_mask"].to(dev, non_blocking=True)
    position_ids = batch["position_ids"].to(dev, non_blocking=True)
    attention_mask = batch.get("attention_mask")
    if attention_mask is not None:
        attention_mask = attention_mask.to(dev, non_blocking=True)
    if ps.get_context_parallel_world_size() > 1:
        from megatron.core.utils import get_batch_on_this_cp_rank

        cp = get_batch_on_this_cp_rank({"tokens": tokens, "labels": labels, "loss_mask": loss_mask,
                                        "position_ids": position_ids, "attention_mask": attention_mask})
        tokens, labels, loss_mask, position_ids = cp["tokens"], cp["labels"], cp["loss_mask"], cp["position_ids"]
        attention_mask = cp["attention_mask"]
    output = model(tokens, position_ids, attention_mask, labels=labels)
    return output, partial(_loss_func, loss_mask, fault=loss_fault)


def _mean_over_dp(values: list[torch.Tensor]) -> float:
    from megatron.core import parallel_state as ps

    if not values:
        return float("nan")
    t = torch.stack([v.float() for v in values]).mean().reshape(1)
    if dist.is_initialized():
        dist.all_reduce(t, group=ps.get_data_parallel_group(with_context_parallel=True))
        t /= ps.get_data_parallel_world_size(with_context_parallel=True)
    return float(t.item())


class Trainer:
    def __init__(self, cfg):
        self.cfg = cfg
        self.config_yaml = cfgmod.to_yaml(cfg)

    # ----- set-up -------------------------------------------------------------------------
    def setup(self):
        from megatron.core import parallel_state as ps

        cfg = self.cfg
        rt.install_device_mode()
        gpu = torch.cuda.is_available()
        le = rt.launch_env()
        # Everything checkable is checked before a process group exists.
        checks.validate(cfg, le.world_size, have_gpu=gpu, have_te=llama.transformer_engine_available(),
                        capability=capability.compute_capability())
        faults.plan()  # a malformed OCTO_FAULT_INJECT fails here, naming the variable
        self.launch = rt.initialize(cfg.parallel.tp, cfg.parallel.pp, cfg.parallel.cp, seed=cfg.train.seed)
        self.world = dist.get_world_size()
        self.dp = cfgmod.data_parallel_size(cfg, self.world)
        self.dp_rank = ps.get_data_parallel_rank()
        self.num_micro = cfgmod.num_microbatches(cfg, self.world)
        self.tps = cfgmod.tokens_per_step(cfg)
        self.is_last_stage = ps.is_pipeline_last_stage()
        self.log_rank = self.world - 1
        self.is_log_rank = dist.get_rank() == self.log_rank

        self.tokenizer = llama.load_tokenizer(cfg)
        self.arch = llama.run_architecture(cfg, self.tokenizer)
        if self.tokenizer.vocab_size > self.arch.vocab_size:
            raise cfgmod.ConfigError(
                f"config key 'model.vocab_size': {self.arch.vocab_size} is smaller than the tokenizer's "
                f"vocabulary ({self.tokenizer.vocab_size}, {cfg.tokenizer.path})")
        self.padded_vocab = llama.padded_vocab_size(self.arch.vocab_size, cfg.model.make_vocab_size_divisible_by,
                                                    cfg.parallel.tp)

        built = build_model_and_optimizer(cfg, self.arch)
        self.model, self.optimizer, self.tconfig = built.model, built.optimizer, built.config

        self._restore()
        self.writer = MetricsWriter(self._tensorboard_dir(), enabled=self.is_log_rank)
        self.peak = peak_flops_per_device(cfg.logging.peak_flops_per_device, fp8=cfg.model.fp8 is not None)
        self.flops_per_token = llama.flops_per_token(self.arch, cfg.model.seq_length, self.padded_vocab)

    def _tensorboard_dir(self) -> Optional[str]:
        c = self.cfg
        if c.logging.tensorboard_dir:
            return c.logging.tensorboard_dir
        return os.path.join(c.checkpoint.save, "tensorboard") if c.checkpoint.save else None

    def _layout(self) -> dict:
        p = self.cfg.parallel
        return {"tp": p.tp, "pp": p.pp, "cp": p.cp, "dp": self.dp, "world_size": self.world,
                "distributed_optimizer": bool(p.use_distributed_optimizer)}

    def _restore(self):
        """Resume this stage, or start it (from scratch or from another run's checkpoint); then the
        schedule, bound to the optimizer after any load (schedule.py states the policy)."""
        cfg = self.cfg
        self._saved = (None, None)  # (iteration, path) of the save directory's newest checkpoint
        self.resumed_from = self.initialised_from = None
        st, resume_dir = self._load_latest()
        if resume_dir is not None:
            if cfg.checkpoint.save and os.path.realpath(os.path.dirname(resume_dir)) == os.path.realpath(cfg.checkpoint.save):
                self._saved = (st.iteration, resume_dir)
            if st.stage != cfg.schedule.stage:
                raise ckpt.CheckpointError(
                    f"{resume_dir}: is a '{st.stage}' checkpoint but schedule.stage={cfg.schedule.stage}; "
                    "to branch a decay stage from it use checkpoint.init_from with a new checkpoint.save")
            self.state = st
            self.resumed_from = resume_dir
            sched, notes = schedule.resume(schedule.ScheduleState.from_dict(st.schedule), cfg,
                                           cfg.checkpoint.schedule_on_resume, resume_dir)
        elif cfg.checkpoint.init_from is not None:
            src = ckpt.resolve_checkpoint(cfg.checkpoint.init_from)
            # A checkpoint without optimizer state (tools/merge_checkpoints.py, an HF import) starts a fresh optimizer.
            no_optimizer = not ckpt.read_trainer_state(src).optimizer_state
            weights_only = cfg.checkpoint.init_weights_only or no_optimizer
            st = ckpt.load(src, self.model, self.optimizer, with_optimizer=not weights_only, layout=self._layout(),
                           verify=cfg.checkpoint.verify)
            prev = schedule.ScheduleState.from_dict(st.schedule) if st.schedule else None
            if cfg.schedule.stage == "decay" and prev is None:
                raise ckpt.CheckpointError(f"{src}: has no schedule state; a decay stage needs a stable checkpoint")
            # A new stage: its own data position from 0; global iteration and tokens continue.
            self.state = ckpt.TrainerState(iteration=st.iteration, tokens=st.tokens, stage=cfg.schedule.stage,
                                           run_name=cfg.run_name, layout=self._layout())
            self.initialised_from = src
            sched = schedule.planned(cfg, start_tokens=st.tokens, start_lr=prev.lr if prev is not None else None)
            notes = [f"schedule from the config (a new stage); {_describe(sched, cfg, src)}"]
            if no_optimizer and not cfg.checkpoint.init_weights_only:
                notes.append(f"{src} holds model weights only (no optimizer state): the optimizer starts fresh")
        else:
            self.state = ckpt.TrainerState(stage=cfg.schedule.stage, run_name=cfg.run_name, layout=self._layout())
            sched, notes = schedule.planned(cfg, start_tokens=0), []
        self.scheduler = schedule.build_scheduler(sched, self.optimizer)
        self.stage_schedule = sched
        self.schedule_notes = notes
        self.total_steps = -(-cfg.train.tokens // self.tps)

    def _load_latest(self):
        """(state, path) of the newest checkpoint of checkpoint.load (else .save) that verifies;
        with checkpoint.fallback_on_corrupt an older one when the newest is corrupt. (None, None)
        when there is nothing to resume."""
        ck = self.cfg.checkpoint
        candidates = []
        for d in (ck.load, ck.save):
            candidates = integrity.resume_candidates(d, ck.fallback_on_corrupt) if d else []
            if candidates:
                break
        for path in candidates:
            try:
                return ckpt.load(path, self.model, self.optimizer, with_optimizer=True, layout=self._layout(),
                                 verify=ck.verify), path
            except integrity.CorruptCheckpointError as exc:
                if not ck.fallback_on_corrupt:
                    raise integrity.CorruptCheckpointError(
                        f"{exc}\nset checkpoint.fallback_on_corrupt=true to resume from the newest intact older "
                        "checkpoint instead") from None
                if self.is_log_rank:
                    print(f"[megatron-octo] {exc}\n[megatron-octo] falling back to an older checkpoint", flush=True)
        if candidates:
            raise integrity.CorruptCheckpointError(
                f"no intact checkpoint to resume from (tried {', '.join(candidates)})")
        return None, None

    # ----- loop ---------------------------------------------------------------------------
    def _schedule_state(self) -> dict:
        return dataclasses.replace(self.stage_schedule, tokens=self.state.tokens,
                                   lr=schedule.applied_lr(self.optimizer)).to_dict()

    def save(self) -> Optional[str]:
        if not self.cfg.checkpoint.save:
            return None
        if self._saved[0] == self.state.iteration:
            return self._saved[1]  # e.g. a signal right after a periodic save: never rewrite a good one
        self.state.schedule = self._schedule_state()
        self.state.layout = self._layout()
        path = ckpt.save(self.cfg.checkpoint.save, self.model, self.optimizer, self.state, self.config_yaml,
                         keep_last=self.cfg.checkpoint.keep_last)
        self._saved = (self.state.iteration, path)
        return path

    def _build_data(self):
        cfg = self.cfg
        gbs = cfg.train.global_batch_size
        train_samples = self.total_steps * gbs
        n_evals = (self.total_steps // cfg.train.eval_interval + 1) if cfg.train.eval_interval > 0 else 0
        valid_samples = cfg.train.eval_iters * gbs if n_evals else 0
        cache = cfg.data.cache_dir or (os.path.join(cfg.checkpoint.save, "data_cache") if cfg.checkpoint.save else None)
        self.splits = gpt_data.build_splits(cfg, self.tokenizer, train_samples=max(train_samples, 1),
                                            valid_samples=valid_samples, cache_dir=cache)

    def _train_iter(self):
        return gpt_data.micro_batches(self.splits.train, start_sample=self.state.consumed_samples,
                                      micro_batch_size=self.cfg.train.micro_batch_size,
                                      dp_rank=self.dp_rank, dp_size=self.dp)

    def evaluate(self) -> float:
        from megatron.core.pipeline_parallel import get_forward_backward_func

        cfg = self.cfg
        it = gpt_data.micro_batches(self.splits.valid, start_sample=0, micro_batch_size=cfg.train.micro_batch_size,
                                    dp_rank=self.dp_rank, dp_size=self.dp,
                                    num_samples=cfg.train.eval_iters * cfg.train.global_batch_size)
        self.model.eval()
        with torch.no_grad():
            out = get_forward_backward_func()(
                forward_step_func=_forward_step, data_iterator=it, model=[self.model],
                num_microbatches=self.num_micro * cfg.train.eval_iters, seq_length=cfg.model.seq_length,
                micro_batch_size=cfg.train.micro_batch_size, forward_only=True)
        self.model.train()
        return _mean_over_dp([o["lm loss"] for o in out]) if self.is_last_stage else float("nan")

    def train(self) -> TrainResult:
        from megatron.core.pipeline_parallel import get_forward_backward_func

        cfg = self.cfg
        self._build_data()
        data_iter = _DigestIterator(self._train_iter())
        fwd_bwd = get_forward_backward_func()
        sig = SignalFlag()
        result = TrainResult(iterations=self.state.iteration, tokens=self.state.tokens,
                             stage_tokens=self.state.stage_tokens)
        if self.is_log_rank:
            where = (f"resumed from {self.resumed_from}" if self.resumed_from else
                     f"initialised from {self.initialised_from}" if self.initialised_from else "from scratch")
            self.writer.console(
                f"[megatron-octo] {cfg.run_name}: stage={cfg.schedule.stage} {where}; world={self.world} "
                f"tp={cfg.parallel.tp} pp={cfg.parallel.pp} dp={self.dp}; {self.total_steps} steps of "
                f"{self.tps} tokens; params={llama.num_parameters(self.arch, self.padded_vocab)/1e6:.2f}M")
            self.writer.text("config", "```\n" + self.config_yaml + "\n```")
            for note in self.schedule_notes:
                self.writer.console(f"[megatron-octo] {note}")
        log_t0, log_steps = time.perf_counter(), 0
        save_every = cfg.checkpoint.save_interval
        while self.state.stage_iteration < self.total_steps:
            step_no = self.state.iteration + 1
            faults.hit("step", step_no)  # OCTO_FAULT_INJECT (tests only; inert otherwise)
            loss_fault = faults.loss_fault(step_no)
            lr, wd = schedule.applied_lr(self.optimizer), schedule.applied_weight_decay(self.optimizer)
            self.model.zero_grad_buffer()
            self.optimizer.zero_grad()
            out = fwd_bwd(forward_step_func=partial(_forward_step, loss_fault=loss_fault) if loss_fault else _forward_step,
                          data_iterator=data_iter, model=[self.model],
                          num_microbatches=self.num_micro, seq_length=cfg.model.seq_length,
                          micro_batch_size=cfg.train.micro_batch_size, forward_only=False)
            loss = _mean_over_dp([o["lm loss"] for o in out]) if self.is_last_stage else 0.0
            problem, grad_norm = self._check_step(loss)
            if problem is not None:
                self.state.skipped_iterations += 1
                if cfg.train.nan_policy == "stop":
                    result.exit_code = EXIT_NAN
                    self.writer.console(f"[megatron-octo] {problem} at iteration {step_no}; "
                                        "stopping (train.nan_policy=stop) without updating the weights")
                    break
                self.writer.console(f"[megatron-octo] {problem} at iteration {step_no}; update skipped "
                                    f"(train.nan_policy=skip; {self.state.skipped_iterations} skipped so far)")
                ensure_optimizer_state(self.model, self.optimizer)  # a save now must still hold Adam state
            else:
                ok, grad_norm, _ = self.optimizer.step()
                if not ok:  # megatron's loss scaler found inf/NaN gradients (fp16) and skipped the step
                    self.state.skipped_iterations += 1
                    ensure_optimizer_state(self.model, self.optimizer)
            self.scheduler.step(self.tps)
            self.state.iteration += 1
            self.state.stage_iteration += 1
            self.state.consumed_samples += cfg.train.global_batch_size
            self.state.tokens += self.tps
            self.state.stage_tokens += self.tps
            result.losses.append(loss)
            result.lrs.append(lr)
            log_steps += 1
            if self.state.stage_iteration % cfg.train.log_interval == 0 or self.state.stage_iteration == self.total_steps:
                dt = (time.perf_counter() - log_t0) / log_steps
                tflops = self.flops_per_token * self.tps / dt / self.world / 1e12
                mem_name, mem = memory_gb()
                vals = {"lm loss": loss, "learning-rate": lr, "weight-decay": wd, "grad-norm": grad_norm,
                        "batch-size": cfg.train.global_batch_size, "throughput": tflops,
                        "tokens-per-sec": self.tps / dt, "mfu": tflops * 1e12 / self.peak,
                        "iteration-time": dt, mem_name: mem, "skipped-iterations": self.state.skipped_iterations,
                        "consumed-tokens": self.state.tokens, "consumed-samples": self.state.consumed_samples,
                        **simulated_gpu.step_counts(log_steps)}  # host<->device traffic (OCTO_SIMULATE_GPU=1)
                # data-crc32: the tokens of this rank's micro-batches since the last log line.
                self.writer.scalars(vals, self.state.iteration, self.state.tokens,
                                    extra={"data-crc32": data_iter.take()})
                self.writer.console(format_line(
                    iteration=self.state.iteration, total=self.state.iteration - self.state.stage_iteration + self.total_steps,
                    tokens=self.state.tokens, ms_per_iter=dt * 1e3, tflops=tflops, tokens_per_sec=self.tps / dt,
                    lr=lr, batch_size=cfg.train.global_batch_size, loss=loss, grad_norm=grad_norm,
                    skipped=self.state.skipped_iterations))
                log_t0, log_steps = time.perf_counter(), 0
            if cfg.train.eval_interval and self.state.stage_iteration % cfg.train.eval_interval == 0:
                self._validate(result)
            if save_every and self.state.stage_iteration % save_every == 0 and self.state.stage_iteration < self.total_steps:
                result.checkpoint = self.save()
            if sig.any_rank():
                result.checkpoint = self.save()
                result.exit_code = EXIT_SIGNALLED
                self.writer.console(f"[megatron-octo] signal received: saved {result.checkpoint} at iteration "
                                    f"{self.state.iteration}; exiting with {EXIT_SIGNALLED} so the job is requeued")
                break
        else:
            if cfg.train.eval_interval and self.state.stage_iteration % cfg.train.eval_interval != 0 and self.total_steps:
                self._validate(result)
            result.checkpoint = self.save()
        if result.exit_code == EXIT_NAN and cfg.checkpoint.save:
            result.checkpoint = self.save()
            self.writer.console(f"[megatron-octo] checkpoint {result.checkpoint} (iteration {self.state.iteration}, "
                                f"before the bad step); exiting with {EXIT_NAN}")
        sig.restore()
        result.iterations, result.tokens = self.state.iteration, self.state.tokens
        result.stage_tokens, result.skipped = self.state.stage_tokens, self.state.skipped_iterations
        if self.is_log_rank and result.exit_code == 0:
            self.writer.console(f"[megatron-octo] done: {self.state.stage_tokens} tokens in this stage "
                                f"({self.state.tokens} total), checkpoint {result.checkpoint}")
        self.writer.close()
        return result

    def _check_step(self, loss: float):
        """(problem or None, pre-clipping grad norm) for this step, the same on every rank: a
        non-finite loss or gradient norm, or a norm above train.grad_norm_spike_threshold."""
        problem, grad_norm = None, None
        if not math.isfinite(loss):
            problem = f"non-finite loss ({loss})"
        if rt.any_rank(problem is not None):
            return problem or "non-finite loss (on another rank)", None
        self.optimizer.prepare_grads()  # idempotent: step() prepares them again
        grad_norm = float(self.optimizer.get_grad_norm())
        threshold = self.cfg.train.grad_norm_spike_threshold
        if not math.isfinite(grad_norm):
            problem = f"non-finite gradient norm ({grad_norm})"
        elif threshold is not None and grad_norm > threshold:
            problem = f"gradient norm {grad_norm:.6g} above train.grad_norm_spike_threshold={threshold:g}"
        if rt.any_rank(problem is not None):
            return problem or "gradient norm check failed on another rank", grad_norm
        return None, grad_norm

    def _validate(self, result: TrainResult):
        vloss = self.evaluate()
        if self.is_last_stage:
            result.valid_losses.append(vloss)
        ppl = math.exp(min(vloss, 20.0)) if math.isfinite(vloss) else float("nan")
        self.writer.scalars({"lm loss validation": vloss, "lm loss validation ppl": ppl},
                            self.state.iteration, self.state.tokens, vs_tokens=("lm loss validation",))
        self.writer.console(f" validation loss at iteration {self.state.iteration} | lm loss: {vloss:.6E} | "
                            f"lm loss PPL: {ppl:.6E}")


def _describe(sched, cfg, src: str) -> str:
    """One line saying which value came from where, for a new stage."""
    if sched.stage == "decay":
        start = ("schedule.start_lr" if cfg.schedule.start_lr is not None else f"the last LR of {src}")
        return (f"decay from {sched.start_lr:.6g} ({start}) to schedule.min_lr={sched.min_lr:.6g} over "
                f"train.tokens={sched.stage_tokens} ({sched.decay_style}); weight decay {sched.weight_decay:g}")
    return (f"stable at schedule.lr={sched.start_lr:.6g} after {sched.warmup_tokens} warmup tokens (counted from "
            f"token 0); weight decay {sched.weight_decay:g}")
