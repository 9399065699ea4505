"""Checkpoints: megatron dist checkpoints, one directory per iteration, tracker written last.

Layout of ``<save>/``::

    iter_0000010/                    megatron dist checkpoint (model, optimizer, RNG)
    iter_0000010/trainer_state.json  iteration, consumed samples/tokens, schedule, data position
    iter_0000010/config.yaml         the run's full config
    iter_0000010/manifest.json       size and SHA-256 of the files above but config.yaml (integrity.py)
    latest_checkpointed_iteration.txt

A save goes to ``iter_NNNNNNN.tmp``, is renamed when every rank has finished, and only then does
the tracker move: a crash at any point leaves the previous checkpoint as the latest, and a failed
save (disk full) removes the partial directory and leaves the tracker alone. The trainer state is
JSON (no pickle) so it can be read by tools and by a different parallel layout. A load verifies the
manifest and refuses pickles that are not plain data before megatron reads anything.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import asdict, replace
from typing import Optional

import torch
import torch.distributed as dist

# The layout lives in its own leaf module (integrity.py reads it too); re-exported here for callers.
from megatron_octo.runtime import faults, procs
from megatron_octo.checkpoint import integrity
from megatron_octo.checkpoint.layout import (CheckpointError, FORMAT_VERSION, iter_dir_name,
    latest_checkpoint, read_trainer_state, resolve_checkpoint, STATE_FILE, TRACKER, TrainerState)


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def _rng_state():
    from megatron.core import parallel_state as ps
    from megatron.core.dist_checkpointing.mapping import ShardedObject
    from megatron.core.tensor_parallel.random import convert_cuda_rng_state, get_cuda_rng_tracker
    import random

    import numpy as np

    # A graph-safe tracker (CUDA-graph rollouts) holds torch.Generator objects: saved as state tensors,
    # so that a checkpoint loads with either kind of tracker.
    tracker = {name: convert_cuda_rng_state(st, to_graphable=False)
               for name, st in get_cuda_rng_tracker().get_states().items()}
    state = {
        "random": random.getstate(),
        "np": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
        "tracker": tracker,
    }
    pp, tp = ps.get_pipeline_model_parallel_world_size(), ps.get_tensor_model_parallel_world_size()
    return ShardedObject("rng_state", state, (pp, tp),
                         (ps.get_pipeline_model_parallel_rank(), ps.get_tensor_model_parallel_rank()),
                         replica_id=ps.get_data_parallel_rank(with_context_parallel=True))


def _set_rng_state(state) -> None:
    import random

    import numpy as np
    from megatron.core.tensor_parallel.random import (convert_cuda_rng_state, get_cuda_rng_tracker,
                                                      is_graph_safe_cuda_rng_tracker)

    random.setstate(state["random"])
    np.random.set_state(state["np"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    tracker = get_cuda_rng_tracker()
    graph_safe = is_graph_safe_cuda_rng_tracker(tracker)
    tracker.set_states({name: convert_cuda_rng_state(st, to_graphable=graph_safe)
                        for name, st in state["tracker"].items()})


# fully_reshardable: the distributed optimizer state loads at any TP/PP/DP (gathered on DP rank 0 to
# save); megatron-core 0.16 no longer supports the flattened "fully_sharded_model_space" format.
_OPT_METADATA = {"distrib_optim_sharding_type": "fully_reshardable"}


def unwrap(model):
    """The GPTModel inside megatron's DDP wrapper: checkpoint keys carry no 'module.' prefix."""
    return getattr(model, "module", model)


def _distributed_optimizers(optimizer):
    """The megatron DistributedOptimizers in ``optimizer`` whose inner torch optimizer keeps a
    per-parameter ``step`` (no Apex / Transformer Engine: the CPU case)."""
    try:
        from megatron.core.optimizer import distrib_optimizer as dopt
    except ImportError:
        return []
    if getattr(dopt, "HAVE_APEX_OR_TE", True):
        return []
    return [opt for opt in getattr(optimizer, "chained_optimizers", [optimizer])
            if isinstance(opt, dopt.DistributedOptimizer) and getattr(opt, "optimizer", None) is not None
            and not opt.config.use_precision_aware_optimizer_no_fp8_or_ds_fp8]


def _allocate_distributed_optimizer_state(optimizer) -> None:
    """Prepare a distributed optimizer for a load (megatron-core 0.16.1 without Apex/TE).

    Three defects of that path made every distributed-optimizer resume fail on CPU: (1)
    ``sharded_state_dict(is_loading=True)`` asserts on the inner optimizer's per-parameter ``step``,
    absent before the first step; (2) ``load_parameter_state_from_fully_reshardable`` then copies
    every state key, ``step`` included, from a source that has none (KeyError); (3) the loaded
    ``step`` is one tensor shared by all parameters, which torch's Adam would increment once per
    parameter. Here: zero moments and step 0 are allocated (the load overwrites them) and (2) is
    skipped for ``step``; :func:`_unshare_optimizer_steps` fixes (3) after the load.
    """
    for opt in _distributed_optimizers(optimizer):
        inner = opt.optimizer
        if not all("step" in inner.state[p] for g in inner.param_groups for p in g["params"]):
            opt.init_state_fn(inner, opt.config)
            for group in inner.param_groups:
                for p in group["params"]:
                    inner.state[p].setdefault("step", torch.zeros((), dtype=torch.float32))

        def set_states(model_param, tensors, opt=opt):
            group_index, group_order = opt.model_param_group_index_map[model_param]
            main_param = opt.optimizer.param_groups[group_index]["params"][group_order]
            dst = {"param": main_param, **{k: v for k, v in opt.optimizer.state[main_param].items() if k != "step"}}
            for key, t in dst.items():
                t.copy_(tensors[key])

        opt._set_main_param_and_optimizer_states = set_states


def _unshare_optimizer_steps(optimizer) -> None:
    for opt in _distributed_optimizers(optimizer):
        for state in opt.optimizer.state.values():
            if isinstance(state.get("step"), torch.Tensor):
                state["step"] = state["step"].clone()


def _sharded_state(model, optimizer, *, is_loading: bool, with_optimizer: bool, with_rng: bool,
                   extra: Optional[dict] = None, skip_model_keys: tuple = ()):
    model_sd = unwrap(model).sharded_state_dict()
    for key in [k for k in model_sd if k.startswith(skip_model_keys)]:
        del model_sd[key]
    sd = {"model": model_sd}
    if with_optimizer and optimizer is not None:
        if is_loading:
            _allocate_distributed_optimizer_state(optimizer)
        sd["optimizer"] = optimizer.sharded_state_dict(model_sd, is_loading=is_loading,
                                                       metadata=_OPT_METADATA)
    # Further (model, optimizer) pairs, e.g. the RL critic: their tensors are stored under
    # "<name>." so they share the checkpoint (and its atomic save) without touching the model's keys.
    for name, (extra_model, extra_optimizer) in (extra or {}).items():
        part_sd = unwrap(extra_model).sharded_state_dict(prefix=f"{name}.")
        sd[name] = {"model": part_sd}
        if with_optimizer and extra_optimizer is not None:
            if is_loading:
                _allocate_distributed_optimizer_state(extra_optimizer)
            sd[name]["optimizer"] = extra_optimizer.sharded_state_dict(part_sd, is_loading=is_loading,
                                                                       metadata=_OPT_METADATA)
    if with_rng:
        sd["rng_state"] = _rng_state()
    return sd


def save(save_dir: str, model, optimizer, state: TrainerState, config_yaml: str, keep_last: int = 0,
         extra: Optional[dict] = None) -> str:
    """Save on every rank (collective). Returns the final checkpoint directory. ``extra``:
    ``{name: (model, optimizer)}`` saved beside the model under the key prefix ``name.``.

    A failure on any rank (disk full, I/O error) raises
    :class:`~megatron_octo.checkpoint.integrity.CheckpointSaveError` on every rank, naming the path,
    after removing the partial ``iter_NNNNNNN.tmp``; the previous checkpoint and the tracker are
    untouched. Fault-injection points (``OCTO_FAULT_INJECT``): see ``runtime/faults.py``."""
    from megatron.core import dist_checkpointing

    it = state.iteration
    final = os.path.join(save_dir, iter_dir_name(it))
    tmp = final + ".tmp"
    rank0 = _rank() == 0

    def phase(step) -> None:
        """Run ``step`` on every rank; if it failed anywhere, fail everywhere (no rank left waiting)."""
        err = None
        try:
            step()
        except BaseException as exc:  # noqa: BLE001 - torch's CheckpointException is a BaseException
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            lines = str(exc).strip().splitlines() or [""]  # torch's CheckpointException carries tracebacks
            err = f"{type(exc).__name__}: " + (lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}")[:800]
        failed = [(r, e) for r, e in enumerate(integrity.gather(err)) if e]
        if failed:
            free = ""
            if rank0:
                with contextlib.suppress(OSError):  # before the cleanup frees space: was the disk full?
                    mib = shutil.disk_usage(save_dir).free / 2**20
                    free = f"; its file system {'is full: it ' if mib < 1 else ''}had {mib:.1f} MiB free"
                shutil.rmtree(tmp, ignore_errors=True)
            try:
                prev = latest_checkpoint(save_dir)
            except CheckpointError:
                prev = None
            where = "; ".join(f"rank {r}: {e}" for r, e in failed[:4])
            raise integrity.CheckpointSaveError(
                f"could not save checkpoint {final} ({where}){free}; the partial {tmp} was removed; the previous "
                f"checkpoint ({prev or 'none'}) and {os.path.join(save_dir, TRACKER)} are unchanged")

    def start():
        if rank0:
            os.makedirs(save_dir, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp)

    def write_model():
        faults.hit("save:begin", it, path=tmp)
        procs.tie_checkpoint_writer_to_parent()  # megatron's writer Manager must not outlive a kill -9
        sd = _sharded_state(model, optimizer, is_loading=False, with_optimizer=True, with_rng=True, extra=extra)
        dist_checkpointing.save(sd, tmp)

    def write_state():
        faults.hit("save:after_model_write", it, path=tmp)
        if rank0:
            written = replace(state, optimizer_state=optimizer is not None)
            _write_atomic(os.path.join(tmp, STATE_FILE), json.dumps(asdict(written), indent=2, sort_keys=True), it)
            _write_atomic(os.path.join(tmp, "config.yaml"), config_yaml, it)

    def write_manifest():
        manifest, err = integrity.build_manifest(tmp)
        if err:
            raise OSError(f"hashing {tmp}: {err}")
        if rank0:
            _write_atomic(os.path.join(tmp, integrity.MANIFEST), json.dumps(manifest, indent=1), it)

    def publish():
        if not rank0:
            return
        faults.hit("save:before_rename", it, path=tmp)
        if os.path.exists(final):
            # A checkpoint of the same iteration that the tracker does not name (a run that crashed
            # after the rename) or a corrupt one a resume fell back from.
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync_dir(save_dir)
        faults.hit("save:before_tracker", it, path=final)
        _write_atomic(os.path.join(save_dir, TRACKER), str(it), it)
        faults.hit("save:after_tracker", it, path=final)
        if keep_last > 0:
            _prune(save_dir, keep_last, protect=final)
        for d in os.listdir(save_dir):  # partial saves of killed runs
            if d.startswith("iter_") and d.endswith(".tmp"):
                shutil.rmtree(os.path.join(save_dir, d), ignore_errors=True)

    for step in (start, write_model, write_state, write_manifest, publish):
        phase(step)
    return final


def _write_atomic(path: str, text: str, iteration: Optional[int] = None) -> None:
    tmp = path + ".tmp"
    try:
        faults.hit("save:write", iteration, path=path)
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


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


def load(ckpt_dir: str, model, optimizer, *, with_optimizer: bool, layout: dict, extra: Optional[dict] = None,
         skip_model_keys: tuple = (), verify: str = "checksum") -> TrainerState:
    """Load model (and optimizer) into this run's layout; RNG only when the layout is the same.

    ``extra``: ``{name: (model, optimizer)}`` pairs saved with :func:`save`'s ``extra``.
    ``skip_model_keys``: key prefixes of the model not read (left as initialised), e.g. the critic's
    value head when it starts from an actor checkpoint.
    ``verify``: ``checksum`` / ``size`` / ``off``, the manifest check done first (collective);
    a corrupt checkpoint raises ``integrity.CorruptCheckpointError`` before anything is read, and a
    pickle that is not plain data raises ``integrity.UnsafeCheckpointError``.
    """
    from megatron.core import dist_checkpointing


    integrity.verify(ckpt_dir, verify)
    integrity.check_pickles(ckpt_dir)
    state = read_trainer_state(ckpt_dir)
    if not os.path.isfile(os.path.join(ckpt_dir, "metadata.json")):
        raise CheckpointError(f"{ckpt_dir}: missing metadata.json (not a complete dist checkpoint)")
    if with_optimizer and optimizer is not None and not state.optimizer_state:
        raise CheckpointError(
            f"{ckpt_dir}: holds model weights only, no optimizer state (a merged or converted checkpoint), so a run "
            "cannot resume from it; start a new stage from it with checkpoint.init_from (a fresh optimizer) and a "
            "new checkpoint.save")
    same_layout = {k: state.layout.get(k) for k in ("tp", "pp", "dp")} == {k: layout[k] for k in ("tp", "pp", "dp")}
    saved_dist, dist_opt = state.layout.get("distributed_optimizer"), layout.get("distributed_optimizer")
    if with_optimizer and optimizer is not None and None not in (saved_dist, dist_opt) and saved_dist != dist_opt:
        raise CheckpointError(
            f"{ckpt_dir}: saved with parallel.use_distributed_optimizer={str(saved_dist).lower()} but this run has "
            f"{str(dist_opt).lower()}; the two optimizers' states are stored differently. Resume with "
            f"parallel.use_distributed_optimizer={str(saved_dist).lower()} (any TP/PP/DP), or take only the "
            "weights (checkpoint.init_from=... checkpoint.init_weights_only=true, a new checkpoint.save)")
    sd = _sharded_state(model, optimizer, is_loading=True, with_optimizer=with_optimizer,
                        with_rng=same_layout, extra=extra, skip_model_keys=tuple(skip_model_keys))
    try:
        loaded = dist_checkpointing.load(sd, ckpt_dir)
    except Exception as exc:  # megatron raises several types; name the checkpoint either way
        raise CheckpointError(f"{ckpt_dir}: cannot load checkpoint: {type(exc).__name__}: {exc}") from exc
    _load_model_state(model, loaded["model"], "", tuple(skip_model_keys), ckpt_dir)
    if with_optimizer and optimizer is not None:
        optimizer.load_state_dict(loaded["optimizer"])
        _unshare_optimizer_steps(optimizer)
    for name, (extra_model, extra_optimizer) in (extra or {}).items():
        _load_model_state(extra_model, loaded[name]["model"], f"{name}.", (), ckpt_dir)
        if with_optimizer and extra_optimizer is not None:
            extra_optimizer.load_state_dict(loaded[name]["optimizer"])
            _unshare_optimizer_steps(extra_optimizer)
    if same_layout and "rng_state" in loaded:
        _set_rng_state(loaded["rng_state"])
    return state


def _load_model_state(model, state: dict, prefix: str, skip: tuple, ckpt_dir: str) -> None:
    state = {k[len(prefix):]: v for k, v in state.items()}
    result = unwrap(model).load_state_dict(state, strict=not skip)
    if skip:
        bad = [k for k in (*result.missing_keys, *result.unexpected_keys) if not k.startswith(skip)]
        if bad:
            raise CheckpointError(f"{ckpt_dir}: model keys do not match: {', '.join(sorted(bad)[:5])}")
