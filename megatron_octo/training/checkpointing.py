"""Checkpoints: megatron dist checkpoints, one directory per iteration, tracker written last.

Layout of ``<save>/``::

    iter_0000010/                    megatron dist checkpoint (model, optimizer, RNG)
    iter_0000010/trainer_state.json  iteration, consumed samples/tokens, schedule, data position
    iter_0000010/config.yaml         the run's full config
    latest_checkpointed_iteration.txt

A save goes to ``iter_NNNNNNN.tmp``, is renamed when every rank has finished, and only then does
the tracker move: a crash at any point leaves the previous checkpoint as the latest. The trainer
state is JSON (no pickle) so it can be read by tools and by a different parallel layout.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from typing import Optional

import torch
import torch.distributed as dist

TRACKER = "latest_checkpointed_iteration.txt"
STATE_FILE = "trainer_state.json"
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing, partial or does not fit this run; the message names its path."""


@dataclass
class TrainerState:
    iteration: int = 0  # global iteration (continues across stages)
    stage_iteration: int = 0  # iterations in this stage
    consumed_samples: int = 0  # this stage's data position (samples of its blend)
    tokens: int = 0  # global tokens consumed (all stages)
    stage_tokens: int = 0  # tokens consumed in this stage
    skipped_iterations: int = 0
    schedule: dict = field(default_factory=dict)  # ScheduleState.to_dict()
    layout: dict = field(default_factory=dict)  # tp, pp, cp, dp, world_size at save
    stage: str = "stable"
    run_name: str = ""
    format_version: int = FORMAT_VERSION

    @classmethod
    def from_dict(cls, d: dict) -> "TrainerState":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


def iter_dir_name(iteration: int) -> str:
    return f"iter_{iteration:07d}"


def latest_checkpoint(save_dir: str) -> Optional[str]:
    """The directory the tracker names, or None if there is no tracker."""
    tracker = os.path.join(save_dir, TRACKER)
    if not os.path.isfile(tracker):
        return None
    text = open(tracker).read().strip()
    try:
        iteration = int(text)
    except ValueError:
        raise CheckpointError(f"{tracker}: expected an iteration number, found {text!r}") from None
    path = os.path.join(save_dir, iter_dir_name(iteration))
    if not os.path.isdir(path):
        raise CheckpointError(f"{tracker} names iteration {iteration} but {path} does not exist")
    return path


def resolve_checkpoint(path: str) -> str:
    """A save directory (its latest checkpoint) or one iteration directory."""
    if os.path.isfile(os.path.join(path, STATE_FILE)):
        return path
    latest = latest_checkpoint(path)
    if latest is None:
        raise CheckpointError(f"{path}: not a checkpoint (no {TRACKER} and no {STATE_FILE})")
    return latest


def read_trainer_state(ckpt_dir: str) -> TrainerState:
    path = os.path.join(ckpt_dir, STATE_FILE)
    if not os.path.isfile(path):
        raise CheckpointError(f"{ckpt_dir}: missing {STATE_FILE} (partial or foreign checkpoint)")
    try:
        with open(path) as f:
            return TrainerState.from_dict(json.load(f))
    except (json.JSONDecodeError, TypeError) as exc:
        raise CheckpointError(f"{path}: unreadable trainer state: {exc}") from None


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def _rng_state():
    from megatron.core import parallel_state as ps
    from megatron.core.dist_checkpointing.mapping import ShardedObject
    from megatron.core.tensor_parallel.random import get_cuda_rng_tracker
    import random

    import numpy as np

    state = {
        "random": random.getstate(),
        "np": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
        "tracker": get_cuda_rng_tracker().get_states(),
    }
    pp, tp = ps.get_pipeline_model_parallel_world_size(), ps.get_tensor_model_parallel_world_size()
    return ShardedObject("rng_state", state, (pp, tp),
                         (ps.get_pipeline_model_parallel_rank(), ps.get_tensor_model_parallel_rank()),
                         replica_id=ps.get_data_parallel_rank(with_context_parallel=True))


def _set_rng_state(state) -> None:
    import random

    import numpy as np
    from megatron.core.tensor_parallel.random import get_cuda_rng_tracker

    random.setstate(state["random"])
    np.random.set_state(state["np"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    get_cuda_rng_tracker().set_states(state["tracker"])


# fully_reshardable: the distributed optimizer state loads at any TP/PP/DP (gathered on DP rank 0 to
# save); megatron-core 0.16 no longer supports the flattened "fully_sharded_model_space" format.
_OPT_METADATA = {"distrib_optim_sharding_type": "fully_reshardable"}


def unwrap(model):
    """The GPTModel inside megatron's DDP wrapper: checkpoint keys carry no 'module.' prefix."""
    return getattr(model, "module", model)


def _sharded_state(model, optimizer, *, is_loading: bool, with_optimizer: bool, with_rng: bool):
    model_sd = unwrap(model).sharded_state_dict()
    sd = {"model": model_sd}
    if with_optimizer and optimizer is not None:
        sd["optimizer"] = optimizer.sharded_state_dict(model_sd, is_loading=is_loading,
                                                       metadata=_OPT_METADATA)
    if with_rng:
        sd["rng_state"] = _rng_state()
    return sd


def save(save_dir: str, model, optimizer, state: TrainerState, config_yaml: str, keep_last: int = 0) -> str:
    """Save on every rank (collective). Returns the final checkpoint directory."""
    from megatron.core import dist_checkpointing

    final = os.path.join(save_dir, iter_dir_name(state.iteration))
    tmp = final + ".tmp"
    if _rank() == 0:
        os.makedirs(save_dir, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
    _barrier()
    sd = _sharded_state(model, optimizer, is_loading=False, with_optimizer=True, with_rng=True)
    dist_checkpointing.save(sd, tmp)
    _barrier()
    if _rank() == 0:
        _write_atomic(os.path.join(tmp, STATE_FILE), json.dumps(asdict(state), indent=2, sort_keys=True))
        _write_atomic(os.path.join(tmp, "config.yaml"), config_yaml)
        if os.path.exists(final):
            # A checkpoint of the same iteration from a run that crashed after saving it: the
            # tracker did not name it, or we are re-saving the same state.
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync_dir(save_dir)
        _write_atomic(os.path.join(save_dir, TRACKER), str(state.iteration))
        if keep_last > 0:
            _prune(save_dir, keep_last, protect=final)
    _barrier()
    return final


def _write_atomic(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _prune(save_dir: str, keep_last: int, protect: str) -> None:
    iters = sorted(d for d in os.listdir(save_dir) if d.startswith("iter_") and not d.endswith(".tmp"))
    for d in iters[:-keep_last]:
        path = os.path.join(save_dir, d)
        if path != protect:
            shutil.rmtree(path, ignore_errors=True)


def load(ckpt_dir: str, model, optimizer, *, with_optimizer: bool, layout: dict) -> TrainerState:
    """Load model (and optimizer) into this run's layout; RNG only when the layout is the same."""
    from megatron.core import dist_checkpointing

    state = read_trainer_state(ckpt_dir)
    if not os.path.isfile(os.path.join(ckpt_dir, "metadata.json")):
        raise CheckpointError(f"{ckpt_dir}: missing metadata.json (not a complete dist checkpoint)")
    same_layout = {k: state.layout.get(k) for k in ("tp", "pp", "dp")} == {k: layout[k] for k in ("tp", "pp", "dp")}
    sd = _sharded_state(model, optimizer, is_loading=True, with_optimizer=with_optimizer,
                        with_rng=same_layout)
    try:
        loaded = dist_checkpointing.load(sd, ckpt_dir)
    except Exception as exc:  # megatron raises several types; name the checkpoint either way
        raise CheckpointError(f"{ckpt_dir}: cannot load checkpoint: {type(exc).__name__}: {exc}") from exc
    unwrap(model).load_state_dict(loaded["model"])
    if with_optimizer and optimizer is not None:
        optimizer.load_state_dict(loaded["optimizer"])
    if same_layout and "rng_state" in loaded:
        _set_rng_state(loaded["rng_state"])
    return state
