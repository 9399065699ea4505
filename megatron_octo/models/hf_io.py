"""Tensor-at-a-time I/O for the Hugging Face converters.

* :class:`HFWeights` reads a Hugging Face model directory's safetensors (one file or sharded with
  ``model.safetensors.index.json``) lazily, one tensor at a time (memory-mapped).
* :class:`DistCheckpointReader` reads one tensor, or one layer of a stacked layer tensor, from a
  megatron dist checkpoint (``torch_dist``, i.e. PyTorch DCP underneath) without a process group and
  without building the model: only the stored chunks that overlap the request are read.
* :class:`ShardedSafetensorsWriter` writes safetensors files whose header is known in advance (names,
  dtypes and shapes), so each tensor goes to disk as soon as it is produced; files are split past a
  size threshold and indexed the way ``save_pretrained`` does.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Iterable, Optional

import torch
from megatron_octo.checkpoint import integrity

SAFETENSORS_DTYPES = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16", torch.float64: "F64"}
INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"


class HFWeightsError(ValueError):
    """A Hugging Face weights directory is missing files or tensors; the message names them."""


class HFWeights:
    def __init__(self, hf_dir: str):
        from safetensors import safe_open

        self.dir = hf_dir
        index = os.path.join(hf_dir, INDEX_NAME)
        single = os.path.join(hf_dir, SINGLE_NAME)
        if os.path.isfile(index):
            with open(index) as f:
                weight_map = json.load(f).get("weight_map", {})
            files = sorted(set(weight_map.values()))
        elif os.path.isfile(single):
            weight_map, files = None, [SINGLE_NAME]
        else:
            raise HFWeightsError(f"{hf_dir}: no {SINGLE_NAME} or {INDEX_NAME} (only safetensors weights are read)")
        missing = [f for f in files if not os.path.isfile(os.path.join(hf_dir, f))]
        if missing:
            raise HFWeightsError(f"{hf_dir}: partial download, missing safetensors file(s): {', '.join(missing)}")
        self._handles = {f: safe_open(os.path.join(hf_dir, f), framework="pt") for f in files}
        self._where = {}
        for fname, h in self._handles.items():
            for name in h.keys():
                self._where[name] = fname
        if weight_map is not None:
            absent = sorted(n for n, f in weight_map.items() if self._where.get(n) != f)
            if absent:
                raise HFWeightsError(f"{hf_dir}: {INDEX_NAME} lists tensors not found in their file: "
                                     f"{', '.join(absent[:5])}")

    def names(self) -> list[str]:
        return list(self._where)

    def __contains__(self, name: str) -> bool:
        return name in self._where

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._handles[self._where[name]].get_slice(name).get_shape())

    def get(self, name: str) -> torch.Tensor:
        if name not in self._where:
            raise HFWeightsError(f"{self.dir}: tensor {name!r} not found in the safetensors files")
        return self._handles[self._where[name]].get_tensor(name)


# ---------------------------------------------------------------------------------------------


def _planner_class():
    from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
    from torch.distributed.checkpoint.metadata import ChunkStorageMetadata
    from torch.distributed.checkpoint.planner import LoadPlan
    from torch.distributed.checkpoint.planner_helpers import create_read_items_for_chunk_list

    class _BoxPlanner(DefaultLoadPlanner):
        """Reads one box (offsets, sizes) of one stored tensor into a dense destination tensor."""

        def __init__(self, key, offsets, sizes):
            super().__init__()
            self.key, self.offsets, self.sizes = key, tuple(offsets), tuple(sizes)

        def create_local_plan(self):
            md = self.metadata.state_dict_metadata[self.key]
            chunk = ChunkStorageMetadata(offsets=torch.Size(self.offsets), sizes=torch.Size(self.sizes))
            return LoadPlan(create_read_items_for_chunk_list(self.key, md, [chunk]))

        def lookup_tensor(self, index):
            return self.state_dict[index.fqn]

    return _BoxPlanner


class DistCheckpointReader:
    """Global tensors (or one layer of them) of a megatron dist checkpoint, read by key."""

    def __init__(self, ckpt_dir: str, verify: str = "checksum"):
        import torch.distributed.checkpoint as dcp

        self.dir = ckpt_dir
        self._dcp = dcp
        integrity.verify(ckpt_dir, verify)  # the manifest: truncated or altered files are named
        # Tensors are read as raw bytes; the only pickle, the metadata, is read with an allowlist.
        self.metadata = integrity.read_dcp_metadata(ckpt_dir)
        self._planner = _planner_class()
        metadata = self.metadata

        class _Reader(dcp.FileSystemReader):
            def read_metadata(self):  # parsed once, not once per tensor
                return metadata

        self._reader_cls = _Reader

    def tensor_keys(self) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        from torch.distributed.checkpoint.metadata import TensorStorageMetadata

        return {k: (tuple(v.size), v.properties.dtype) for k, v in self.metadata.state_dict_metadata.items()
                if isinstance(v, TensorStorageMetadata)}

    def read(self, key: str, layer: Optional[int] = None) -> torch.Tensor:
        md = self.metadata.state_dict_metadata[key]
        size = tuple(md.size)
        if layer is None:
            offsets, sizes, out_shape = (0,) * len(size), size, size
        else:
            offsets, sizes, out_shape = (layer,) + (0,) * (len(size) - 1), (1,) + size[1:], size[1:]
        dest = torch.empty(sizes, dtype=md.properties.dtype)
        self._dcp.load({key: dest}, storage_reader=self._reader_cls(self.dir),
                       planner=self._planner(key, offsets, sizes), no_dist=True)
        return dest.reshape(out_shape)


# ---------------------------------------------------------------------------------------------


def parse_size(text) -> int:
    """'5GB', '500MB', '2GiB', '1000' -> bytes (decimal units as in transformers' max_shard_size)."""
    if isinstance(text, int):
        return text
    s = str(text).strip().upper()
    units = {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "KB": 10**3, "MB": 10**6, "GB": 10**9, "B": 1}
    for suffix, mult in units.items():
        if s.endswith(suffix):
            return int(float(s[: -len(suffix)]) * mult)
    return int(s)


def plan_shards(entries: list[tuple[str, torch.dtype, tuple[int, ...]]], max_shard_bytes: int) -> list[list]:
    """Split (name, dtype, shape) entries, in order, into files of at most max_shard_bytes (a tensor
    larger than the limit gets a file of its own)."""
    shards, current, size = [], [], 0
    for e in entries:
        n = _nbytes(e[1], e[2])
        if current and size + n > max_shard_bytes:
            shards.append(current)
            current, size = [], 0
        current.append(e)
        size += n
    if current:
        shards.append(current)
    return shards


def _nbytes(dtype: torch.dtype, shape) -> int:
    n = torch.tensor([], dtype=dtype).element_size()
    for d in shape:
        n *= d
    return n


class _SafetensorsFile:
    def __init__(self, path: str, entries):
        header, offset = {}, 0
        self.order = []
        for name, dtype, shape in entries:
            n = _nbytes(dtype, shape)
            header[name] = {"dtype": SAFETENSORS_DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, offset + n]}
            self.order.append((name, dtype, tuple(shape)))
            offset += n
        header["__metadata__"] = {"format": "pt"}
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned, as safetensors writes it
        self.path, self.f, self.next = path, open(path, "wb"), 0
        self.f.write(struct.pack("<Q", len(raw)))
        self.f.write(raw)

    def write(self, name: str, t: torch.Tensor) -> None:
        want = self.order[self.next]
        if (name, t.dtype, tuple(t.shape)) != want:
            raise ValueError(f"{self.path}: expected {want} next, got ({name}, {t.dtype}, {tuple(t.shape)})")
        self.f.write(t.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        self.next += 1

    def close(self) -> None:
        if self.next != len(self.order):
            raise ValueError(f"{self.path}: {len(self.order) - self.next} tensors were not written")
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()


class ShardedSafetensorsWriter:
    """Writes tensors in the announced order into model.safetensors or model-0000i-of-0000n files."""

    def __init__(self, out_dir: str, entries: Iterable[tuple[str, torch.dtype, tuple[int, ...]]],
                 max_shard_bytes: int):
        entries = list(entries)
        self.out_dir = out_dir
        self.shards = plan_shards(entries, max_shard_bytes)
        n = len(self.shards)
        self.names = [SINGLE_NAME] if n == 1 else [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
        self.total = sum(_nbytes(d, s) for _, d, s in entries)
        self.weight_map = {e[0]: fname for fname, shard in zip(self.names, self.shards) for e in shard}
        self._i, self._file = 0, None

    def write(self, name: str, t: torch.Tensor) -> None:
        if self._file is None or self._file.next == len(self._file.order):
            if self._file is not None:
                self._file.close()
                self._i += 1
            self._file = _SafetensorsFile(os.path.join(self.out_dir, self.names[self._i]), self.shards[self._i])
        self._file.write(name, t)

    def close(self) -> None:
        if self._file is None or self._i != len(self.shards) - 1:
            raise ValueError("not every safetensors file was written")
        self._file.close()
        if len(self.names) > 1:
            with open(os.path.join(self.out_dir, INDEX_NAME), "w") as f:
                json.dump({"metadata": {"total_size": self.total}, "weight_map": self.weight_map}, f, indent=2)
