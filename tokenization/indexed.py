"""Megatron ``IndexedDataset`` files (.bin/.idx) without importing megatron, and atomic output.

Format (megatron/core/datasets/indexed_dataset.py, ``_IndexWriter``)::

    .idx: b"MMIDIDX\\x00\\x00" | <Q version=1 | <B dtype code | <Q sequence count N
          | <Q document count N+1 | int32[N] sequence lengths | int64[N] byte pointers into .bin
          | int64[N+1] document indices (0, 1, ..., N: one sequence per document)
    .bin: the token ids of all sequences back to back, in the dtype named in the header

dtype codes: uint16 = 8, int32 = 4 (megatron's ``DType``). Readers here are used by the merge step
and ``tools/data_stats.py``; tests check every file against megatron's own ``IndexedDataset``.

Atomic output (:class:`AtomicOutput`): every file of a prefix is first written as
``<final name>.tmp-<host>-<pid>``; on success the files are fsynced and renamed with ``os.replace``
in the order rejects, summary, ``.bin``, and ``.idx`` last. The ``.idx`` is what every reader opens
first, so a prefix is complete exactly when its ``.idx`` exists; a run killed at any point (even
``kill -9``) leaves only ``*.tmp-*`` files, never a file under a final name — apart from the
microseconds between the ``.bin`` and ``.idx`` renames, where a ``.bin`` without ``.idx`` may
remain (and is treated as absent: no ``.idx``, no dataset). With ``overwrite`` the old ``.idx`` is
deleted before the new ``.bin`` replaces the old one, so an old index never describes new data.
Temporary files of dead processes on this host are removed at the next run on the same prefix.
"""

from __future__ import annotations

import glob
import os
import socket
import struct
import threading

import numpy as np

INDEX_HEADER = b"MMIDIDX\x00\x00"
DTYPE_CODES = {np.dtype(np.uint16): 8, np.dtype(np.int32): 4}
CODE_DTYPES = {8: np.dtype(np.uint16), 4: np.dtype(np.int32), 1: np.dtype(np.uint8),
               2: np.dtype(np.int8), 3: np.dtype(np.int16), 5: np.dtype(np.int64)}


class IndexFormatError(ValueError):
    """An .idx file that is not a megatron IndexedDataset index."""


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    """megatron's ``DType.optimal_dtype``: uint16 below 65500 ids, else int32."""
    return np.dtype(np.uint16) if vocab_size < 65500 else np.dtype(np.int32)


def index_bytes(dtype: np.dtype, lengths: np.ndarray) -> bytes:
    """The complete .idx content for one-sequence-per-document data."""
    dtype = np.dtype(dtype)
    lengths = np.asarray(lengths, dtype=np.int32)
    n = int(lengths.shape[0])
    pointers = np.zeros(n, dtype=np.int64)
    if n > 1:
        np.cumsum(lengths[:-1].astype(np.int64) * dtype.itemsize, out=pointers[1:])
    doc_idx = np.arange(n + 1, dtype=np.int64)
    return b"".join([
        INDEX_HEADER, struct.pack("<Q", 1), struct.pack("<B", DTYPE_CODES[dtype]),
        struct.pack("<Q", n), struct.pack("<Q", n + 1),
        lengths.tobytes(order="C"), pointers.tobytes(order="C"), doc_idx.tobytes(order="C"),
    ])


def read_index(prefix_or_idx: str) -> tuple[np.dtype, np.ndarray, np.ndarray]:
    """(dtype, sequence lengths int32[N], document indices int64[D]) of an .idx file."""
    path = prefix_or_idx if prefix_or_idx.endswith(".idx") else prefix_or_idx + ".idx"
    with open(path, "rb") as f:
        head = f.read(len(INDEX_HEADER) + 8 + 1 + 16)
        if len(head) < len(INDEX_HEADER) + 25 or not head.startswith(INDEX_HEADER):
            raise IndexFormatError(f"{path}: not a megatron IndexedDataset index (bad header)")
        (version,) = struct.unpack("<Q", head[9:17])
        code = head[17]
        if version != 1 or code not in CODE_DTYPES:
            raise IndexFormatError(f"{path}: unsupported index version {version} / dtype code {code}")
        n, d = struct.unpack("<QQ", head[18:34])
        lengths = np.fromfile(f, dtype=np.int32, count=n)
        np.fromfile(f, dtype=np.int64, count=n)  # pointers (recomputed when needed)
        docs = np.fromfile(f, dtype=np.int64, count=d)
        if lengths.shape[0] != n or docs.shape[0] != d:
            raise IndexFormatError(f"{path}: truncated index ({n} sequences announced)")
    return CODE_DTYPES[code], lengths, docs


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_tmp(prefix: str) -> list[str]:
    """Delete ``<prefix>.*.tmp-<this host>-<pid>`` files whose process is gone."""
    host = socket.gethostname()
    removed = []
    for path in glob.glob(glob.escape(prefix) + ".*.tmp-*"):
        tag = path.rsplit(".tmp-", 1)[1]
        h, _, pid = tag.rpartition("-")
        if h == host and pid.isdigit() and not _pid_alive(int(pid)) and int(pid) != os.getpid():
            try:
                os.remove(path)
                removed.append(path)
            except FileNotFoundError:
                pass
    return removed


class OutputExistsError(FileExistsError):
    pass


# Outputs being written by this process, and the lock under which they are published or aborted
# (used by the preprocessor's SIGTERM watcher thread).
PUBLISH_LOCK = threading.RLock()
ACTIVE_OUTPUTS: "set[AtomicOutput]" = set()


class AtomicOutput:
    """Temporary files for one output prefix, published together by :meth:`commit`."""

    def __init__(self, prefix: str, overwrite: bool = False):
        self.prefix = prefix
        d = os.path.dirname(os.path.abspath(prefix))
        if not os.path.isdir(d):
            raise FileNotFoundError(f"output directory does not exist: {d}")
        for suffix in (".bin", ".idx"):
            if os.path.exists(prefix + suffix) and not overwrite:
                raise OutputExistsError(
                    f"output {prefix + suffix} exists; pass --overwrite to replace it"
                )
        self.stale_removed = remove_stale_tmp(prefix)
        self.tag = f".tmp-{socket.gethostname()}-{os.getpid()}"
        self.files: dict[str, str] = {}
        self.committed = False
        with PUBLISH_LOCK:
            ACTIVE_OUTPUTS.add(self)

    def tmp(self, suffix: str) -> str:
        path = self.prefix + suffix + self.tag
        self.files[suffix] = path
        return path

    def commit(self) -> None:
        with PUBLISH_LOCK:
            self._commit()
            ACTIVE_OUTPUTS.discard(self)

    def _commit(self) -> None:
        for path in self.files.values():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        if os.path.exists(self.prefix + ".idx"):
            os.remove(self.prefix + ".idx")
        order = [s for s in self.files if s not in (".bin", ".idx")] + [".bin", ".idx"]
        for suffix in order:
            if suffix in self.files:
                os.replace(self.files[suffix], self.prefix + suffix)
        try:
            dfd = os.open(os.path.dirname(os.path.abspath(self.prefix)), os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass
        self.committed = True

    def abort(self) -> None:
        with PUBLISH_LOCK:
            ACTIVE_OUTPUTS.discard(self)
            if self.committed:
                return
            for path in self.files.values():
                try:
                    os.remove(path)
                except FileNotFoundError:
                    pass
