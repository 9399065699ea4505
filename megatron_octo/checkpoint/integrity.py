"""Checkpoint integrity (a manifest of sizes and SHA-256 digests) and loading without pickled code.

* ``manifest.json`` in every iteration directory lists the size and SHA-256 of each file. It is
  written at save, before the directory is renamed into place, with the hashing spread over the
  ranks; :func:`verify` checks it at load (``checkpoint.verify``: ``checksum``, ``size`` or
  ``off``) and raises :class:`CorruptCheckpointError` naming every bad file. ``config.yaml`` is left
  out: it is the editable copy of the run's settings (a tokenizer path may need fixing after a
  move), and what it says about the model is checked against the tensors' shapes at load.
* A megatron ``torch_dist`` checkpoint holds pickles: torch's ``.metadata``, megatron's
  ``common.pt`` and byte objects (RNG state, extra state) inside the ``*.distcp`` files, which
  torch unpickles with ``weights_only=False``. :func:`check_pickles` reads each of them first with a
  restricted unpickler (the metadata's torch classes) or ``torch.load(weights_only=True)`` (plus
  numpy arrays), so a checkpoint whose pickles would import or call anything else is refused with
  :class:`UnsafeCheckpointError` before megatron reads it.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
from typing import Optional

import torch
import torch.distributed as dist

from megatron_octo.checkpoint.layout import (TRACKER, CheckpointError, iter_dir_name, latest_checkpoint,
                                                      read_trainer_state)
from tokenization.tokenizer import sha256_file

MANIFEST = "manifest.json"
_UNCHECKED = (MANIFEST, "config.yaml")
VERIFY_MODES = ("checksum", "size", "off")
_ITER_RE = re.compile(r"^iter_(\d{7})$")


class CorruptCheckpointError(CheckpointError):
    """Files of a checkpoint are missing, truncated or altered (the message lists their paths)."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint's pickle would run code or import modules outside the allowlist."""


class CheckpointSaveError(CheckpointError):
    """A save failed (disk full, I/O error); the previous checkpoint and the tracker are unchanged."""


# ----- collective helpers (a world of one without a process group) ---------------------------

def _world() -> tuple[int, int]:
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather(obj) -> list:
    """``obj`` of every rank, in rank order."""
    rank, world = _world()
    if world == 1:
        return [obj]
    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


def _from_rank0(obj):
    rank, world = _world()
    if world == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# ----- manifest ------------------------------------------------------------------------------

def _list_files(ckpt_dir: str) -> list[str]:
    names = []
    for root, _, files in os.walk(ckpt_dir):
        for f in files:
            rel = os.path.relpath(os.path.join(root, f), ckpt_dir)
            if rel not in _UNCHECKED and not rel.endswith(".tmp"):
                names.append(rel)
    return sorted(names)


def build_manifest(ckpt_dir: str) -> tuple[Optional[dict], Optional[str]]:
    """Collective: ``(manifest, None)`` on rank 0 (``(None, None)`` elsewhere) or ``(None, error)``
    on every rank when a file could not be read. Each rank hashes every world-th file."""
    rank, world = _world()
    names = _from_rank0(_list_files(ckpt_dir) if rank == 0 else None)
    mine, err = {}, None
    try:
        for name in names[rank::world]:
            path = os.path.join(ckpt_dir, name)
            mine[name] = {"size": os.path.getsize(path), "sha256": sha256_file(path)}
    except OSError as exc:
        err = f"{type(exc).__name__}: {exc}"
    parts = gather((mine, err))
    errors = [e for _, e in parts if e]
    if errors:
        return None, "; ".join(errors)
    if rank != 0:
        return None, None
    files = {}
    for part, _ in parts:
        files.update(part)
    return {"format_version": 1, "algorithm": "sha256", "files": dict(sorted(files.items()))}, None


def verify(ckpt_dir: str, mode: str = "checksum") -> None:
    """Check the files of ``ckpt_dir`` against its manifest (collective when a process group exists).

    A missing manifest is corruption for checkpoints of format 2 and later; older checkpoints have
    none and pass. Raises :class:`CorruptCheckpointError` naming every bad file."""

    if mode not in VERIFY_MODES:
        raise CheckpointError(f"config key 'checkpoint.verify': {mode!r} is not one of {', '.join(VERIFY_MODES)}")
    if mode == "off":
        return
    path = os.path.join(ckpt_dir, MANIFEST)
    if not os.path.isfile(path):
        try:
            legacy = read_trainer_state(ckpt_dir).format_version < 2
        except CheckpointError as exc:
            raise CorruptCheckpointError(str(exc)) from None
        if not legacy:
            raise CorruptCheckpointError(f"{ckpt_dir}: missing {MANIFEST} (the save did not finish, or files "
                                         "were removed)")
        return
    try:
        with open(path) as f:
            files = json.load(f)["files"]
        entries = [(name, int(e["size"]), str(e["sha256"])) for name, e in files.items()]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CorruptCheckpointError(f"{path}: unreadable manifest: {exc}") from None
    problems = []
    for name, size, _ in entries:
        p = os.path.join(ckpt_dir, name)
        if not os.path.isfile(p):
            problems.append(f"{p}: missing")
        elif os.path.getsize(p) != size:
            problems.append(f"{p}: {os.path.getsize(p)} bytes, the manifest says {size} (truncated or overwritten)")
    if not problems and mode == "checksum":
        rank, world = _world()
        mine = []
        for name, _, digest in entries[rank::world]:
            p = os.path.join(ckpt_dir, name)
            try:
                if sha256_file(p) != digest:
                    mine.append(f"{p}: SHA-256 differs from the manifest (corrupted)")
            except OSError as exc:
                mine.append(f"{p}: unreadable: {exc}")
        problems = sorted(p for part in gather(mine) for p in part)
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise CorruptCheckpointError(f"{ckpt_dir}: corrupt checkpoint: " + "; ".join(problems[:5]) + more)


# ----- resume candidates ---------------------------------------------------------------------

def resume_candidates(save_dir: str, fallback: bool) -> list[str]:
    """Checkpoints to try, newest first: the one the tracker names, then (``fallback``) every older
    complete ``iter_NNNNNNN`` directory. Without a tracker: none (a fresh start)."""

    if not os.path.isfile(os.path.join(save_dir, TRACKER)):
        return []
    if not fallback:
        return [latest_checkpoint(save_dir)]
    try:
        newest = latest_checkpoint(save_dir)
        limit = int(_ITER_RE.match(os.path.basename(newest)).group(1))
    except CheckpointError:
        newest, limit = None, None  # unreadable tracker or missing directory: every complete one
    iters = sorted((int(m.group(1)) for m in map(_ITER_RE.match, os.listdir(save_dir)) if m), reverse=True)
    out = [newest] if newest else []
    out += [os.path.join(save_dir, iter_dir_name(i)) for i in iters if limit is None or i < limit]
    return out


# ----- pickles -------------------------------------------------------------------------------

_DCP_CLASS_MODULES = ("torch.distributed.checkpoint.metadata", "torch.distributed.checkpoint.planner")
_ALLOWED_GLOBALS = {
    ("torch", "Size"), ("torch.serialization", "_get_layout"), ("collections", "OrderedDict"),
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
    ("megatron.core.dist_checkpointing.strategies.torch", "MCoreMetadata"),
    ("megatron.core.dist_checkpointing.strategies.torch", "MCoreSavePlan"),
    ("builtins", "set"), ("builtins", "frozenset"),
}


class _Disallowed(pickle.UnpicklingError):
    pass


class _MetadataUnpickler(pickle.Unpickler):
    """Only the data classes torch's checkpoint metadata is made of; nothing else is imported."""

    def find_class(self, module, name):
        import importlib

        if "." not in name:
            if (module, name) in _ALLOWED_GLOBALS:
                return getattr(importlib.import_module(module), name)
            if module in _DCP_CLASS_MODULES:
                obj = getattr(importlib.import_module(module), name, None)
                if isinstance(obj, type):
                    return obj
            if module == "torch" and isinstance(getattr(torch, name, None), (torch.dtype, torch.layout,
                                                                              torch.memory_format)):
                return getattr(torch, name)
        raise _Disallowed(f"global '{module}.{name}' is not allowed in checkpoint metadata")


def read_dcp_metadata(ckpt_dir: str):
    """torch.distributed.checkpoint's ``.metadata`` of ``ckpt_dir``, unpickled with the allowlist."""
    path = os.path.join(ckpt_dir, ".metadata")
    try:
        with open(path, "rb") as f:
            return _MetadataUnpickler(f).load()
    except FileNotFoundError:
        raise CorruptCheckpointError(f"{path}: missing (not a complete dist checkpoint)") from None
    except _Disallowed as exc:
        raise UnsafeCheckpointError(f"{path}: refusing to load: {exc}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise CorruptCheckpointError(f"{path}: unreadable: {type(exc).__name__}: {exc}") from None


def _numpy_globals() -> list:
    import numpy as np

    reconstruct = np._core.multiarray._reconstruct if hasattr(np, "_core") else np.core.multiarray._reconstruct
    return [(reconstruct, "numpy._core.multiarray._reconstruct"), (reconstruct, "numpy.core.multiarray._reconstruct"),
            np.ndarray, np.dtype, *{type(np.dtype(t)) for t in (np.uint32, np.int64, np.float64, np.uint8)}]


def _weights_only_load(data, where: str) -> None:
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            torch.load(data, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()
        reason = next((ln for ln in first if "GLOBAL" in ln or "Unsupported" in ln), first[0] if first else "")
        raise UnsafeCheckpointError(f"{where}: refusing to load a pickle that is not plain data "
                                    f"(torch.load weights_only=True): {reason.strip()}") from None
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        raise CorruptCheckpointError(f"{where}: unreadable: {type(exc).__name__}: {str(exc)[:300]}") from None


def _check_pickles_local(ckpt_dir: str) -> None:
    from torch.distributed.checkpoint.metadata import BytesStorageMetadata

    md = read_dcp_metadata(ckpt_dir)
    common = os.path.join(ckpt_dir, "common.pt")
    if os.path.isfile(common):
        _weights_only_load(common, common)
    for index, info in (md.storage_data or {}).items():
        if not isinstance(md.state_dict_metadata.get(index.fqn), BytesStorageMetadata):
            continue
        path = os.path.join(ckpt_dir, info.relative_path)
        where = f"{path} (object {index.fqn!r})"
        if getattr(info, "transform_descriptors", None):
            raise UnsafeCheckpointError(f"{where}: stored with transforms {info.transform_descriptors}, which "
                                        "this loader does not check; refusing to unpickle it")
        try:
            with open(path, "rb") as f:
                f.seek(info.offset)
                raw = f.read(info.length)
        except OSError as exc:
            raise CorruptCheckpointError(f"{where}: unreadable: {exc}") from None
        if len(raw) != info.length:
            raise CorruptCheckpointError(f"{where}: truncated ({len(raw)} of {info.length} bytes)")
        _weights_only_load(io.BytesIO(raw), where)


def check_pickles(ckpt_dir: str) -> None:
    """Refuse (on every rank) a checkpoint whose pickles hold anything but plain data. Rank 0 reads."""
    rank, _ = _world()
    err = None
    if rank == 0:
        try:
            _check_pickles_local(ckpt_dir)
        except CheckpointError as exc:
            err = (type(exc).__name__, str(exc))
        except Exception as exc:  # noqa: BLE001 - every rank must learn the verdict
            err = ("CorruptCheckpointError", f"{ckpt_dir}: cannot check its pickles: {type(exc).__name__}: {exc}")
    err = _from_rank0(err)
    if err is not None:
        cls = UnsafeCheckpointError if err[0] == "UnsafeCheckpointError" else CorruptCheckpointError
        raise cls(err[1])
