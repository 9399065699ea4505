"""Input discovery and record reading: JSONL (plain, .gz, .zst) and parquet.

Readers run in the main process and do no parsing: a JSONL reader yields ``(line_number, bytes)``
for every complete line (the JSON is decoded by the workers), a parquet reader yields
``(row_number, dict)``. Problems found while reading (a truncated or corrupt compressed stream, an
unreadable parquet file) are yielded in sequence as ``(line_number, ReadProblem)`` so that they are
counted and reported in input order, and reading of that file stops there. Every complete line
before a truncation is kept; the unterminated tail is the reject.

Every byte read from disk goes through a SHA-256 so the summary can name the exact inputs.
"""

from __future__ import annotations

import glob
import hashlib
import os
import zlib
from dataclasses import dataclass
from typing import Iterator, Optional, Union

__all__ = [
    "InputError", "ReadProblem", "expand_inputs", "file_kind", "partition_files",
    "parse_partition", "RecordStream",
]

BLOCK = 1 << 20


class InputError(ValueError):
    """Bad input specification (no such file, unknown extension, bad --partition)."""


@dataclass(frozen=True)
class ReadProblem:
    reason: str
    detail: str


def file_kind(path: str) -> str:
    name = path.lower()
    for ext, kind in ((".jsonl.gz", "gz"), (".json.gz", "gz"), (".jsonl.zst", "zst"),
                      (".json.zst", "zst"), (".jsonl", "plain"), (".json", "plain"),
                      (".parquet", "parquet")):
        if name.endswith(ext):
            return kind
    raise InputError(
        f"unsupported input file {path!r}: expected .jsonl, .jsonl.gz, .jsonl.zst or .parquet"
    )


def expand_inputs(patterns: list[str]) -> list[str]:
    """Files named by paths or globs, in command-line order, each glob sorted; no duplicates."""
    out: list[str] = []
    seen = set()
    for pat in patterns:
        if glob.has_magic(pat):
            matches = sorted(p for p in glob.glob(pat, recursive=True) if not os.path.isdir(p))
            if not matches:
                raise InputError(f"input pattern {pat!r} matches no file")
        else:
            if not os.path.exists(pat):
                raise FileNotFoundError(f"input file not found: {pat}")
            if os.path.isdir(pat):
                raise InputError(f"input {pat!r} is a directory; pass files or a glob")
            matches = [pat]
        for m in matches:
            file_kind(m)
            key = os.path.abspath(m)
            if key not in seen:
                seen.add(key)
                out.append(m)
    return out


def parse_partition(text: Optional[str]) -> Optional[tuple[int, int]]:
    """``"k/n"`` with ``0 <= k < n`` (Slurm: ``--array=0-<n-1>``, k = $SLURM_ARRAY_TASK_ID)."""
    if text is None:
        return None
    try:
        k_s, n_s = text.split("/")
        k, n = int(k_s), int(n_s)
    except ValueError:
        raise InputError(f"--partition must look like k/n (e.g. 0/8), got {text!r}") from None
    if n < 1 or not 0 <= k < n:
        raise InputError(f"--partition {text!r}: need 0 <= k < n")
    return k, n


def partition_files(files: list[str], k: int, n: int) -> list[str]:
    """Contiguous run of whole files for part ``k`` of ``n``, balanced by on-disk size.

    A file belongs to the part its size midpoint falls in, so parts are contiguous in input order
    and concatenating parts 0..n-1 gives back the full ordered list; the merge of the parts is
    therefore byte-identical to a single run. A part may be empty (more parts than files).
    """
    sizes = [max(os.path.getsize(f), 1) if os.path.isfile(f) else 1 for f in files]
    total = sum(sizes)
    out, start = [], 0
    for f, s in zip(files, sizes):
        part = min(n - 1, ((2 * start + s) * n) // (2 * total))
        if part == k:
            out.append(f)
        start += s
    return out


class _HashingReader:
    """File wrapper hashing every byte read (the decompressors read through it)."""

    def __init__(self, path: str):
        self.f = open(path, "rb")
        self.h = hashlib.sha256()
        self.nbytes = 0

    def read(self, n: int = -1) -> bytes:
        b = self.f.read(n)
        self.h.update(b)
        self.nbytes += len(b)
        return b

    def readinto(self, buf) -> int:
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def drain(self) -> None:
        """Hash the rest of the file (after a read error) so the checksum covers all of it."""
        for block in iter(lambda: self.read(BLOCK), b""):
            pass

    def close(self) -> None:
        self.f.close()


def _split_lines(blocks: Iterator[bytes]) -> Iterator[Union[bytes, ReadProblem]]:
    """Complete lines of a byte stream; a ReadProblem from ``blocks`` ends the stream."""
    pending = b""
    for block in blocks:
        if isinstance(block, ReadProblem):
            # the unterminated tail (if any) belongs to the truncated record
            yield block
            return
        if not block:
            continue
        data = pending + block
        lines = data.split(b"\n")
        pending = lines.pop()
        yield from lines
    if pending:
        yield pending  # last line without a trailing newline at a clean end of file


def _gz_blocks(raw: _HashingReader) -> Iterator[Union[bytes, ReadProblem]]:
    """Decompress (multi-member) gzip, yielding output as it comes so that a truncated stream
    still delivers everything before the cut (``gzip.GzipFile.read`` would drop its last block)."""
    dobj = zlib.decompressobj(wbits=31)
    in_member = False
    try:
        while True:
            chunk = raw.read(BLOCK)
            if not chunk:
                break
            while chunk:
                out = dobj.decompress(chunk)
                in_member = True
                if out:
                    yield out
                if dobj.eof:
                    chunk = dobj.unused_data
                    dobj = zlib.decompressobj(wbits=31)
                    in_member = False
                    if chunk and not chunk.strip(b"\x00"):
                        chunk = b""  # zero padding after the last member (as gzip tolerates)
                else:
                    chunk = b""
        tail = dobj.flush()
        if tail:
            yield tail
    except zlib.error as e:
        yield ReadProblem("corrupt_input", f"gzip stream unreadable ({e})")
        return
    if in_member:
        yield ReadProblem("truncated_input", "gzip stream ends early (no end-of-stream marker)")


def _zst_blocks(raw: _HashingReader) -> Iterator[Union[bytes, ReadProblem]]:
    import zstandard

    dctx = zstandard.ZstdDecompressor()
    dobj = dctx.decompressobj()
    in_frame = False
    try:
        while True:
            chunk = raw.read(BLOCK)
            if not chunk:
                break
            while chunk:
                out = dobj.decompress(chunk)
                in_frame = True
                if out:
                    yield out
                if dobj.eof:
                    chunk = dobj.unused_data
                    dobj = dctx.decompressobj()
                    in_frame = False
                else:
                    chunk = b""
    except zstandard.ZstdError as e:
        yield ReadProblem("corrupt_input", f"zstd stream unreadable ({e})")
        return
    if in_frame:
        yield ReadProblem("truncated_input", "zstd stream ends inside a frame")


def _plain_blocks(raw: _HashingReader) -> Iterator[bytes]:
    for block in iter(lambda: raw.read(BLOCK), b""):
        yield block


class RecordStream:
    """Iterate ``(number, payload)`` of one input file; ``sha256``/``nbytes`` once exhausted."""

    def __init__(self, path: str, columns: Optional[list[str]] = None):
        self.path = path
        self.kind = file_kind(path)
        self.columns = columns
        self.sha256: Optional[str] = None
        self.nbytes = 0
        self._raw: Optional[_HashingReader] = None

    @property
    def bytes_read(self) -> int:
        """On-disk bytes consumed so far (for progress reporting)."""
        return self._raw.nbytes if self._raw is not None else self.nbytes

    def __iter__(self) -> Iterator[tuple[int, Union[bytes, dict, ReadProblem]]]:
        if self.kind == "parquet":
            yield from self._parquet()
            return
        raw = self._raw = _HashingReader(self.path)
        try:
            blocks = {"gz": _gz_blocks, "zst": _zst_blocks, "plain": _plain_blocks}[self.kind](raw)
            n = 0
            for item in _split_lines(blocks):
                n += 1
                if isinstance(item, ReadProblem):
                    raw.drain()
                yield n, item
                if isinstance(item, ReadProblem):
                    break
            self.sha256 = raw.h.hexdigest()
            self.nbytes = raw.nbytes
        finally:
            raw.close()
            self._raw = None

    def _parquet(self):
        import pyarrow as pa
        import pyarrow.parquet as pq

        with open(self.path, "rb") as f:
            h = hashlib.sha256()
            for block in iter(lambda: f.read(BLOCK), b""):
                h.update(block)
                self.nbytes += len(block)
        self.sha256 = h.hexdigest()
        n = 0
        try:
            pf = pq.ParquetFile(self.path)
            names = set(pf.schema_arrow.names)
            cols = None
            if self.columns is not None:
                cols = [c for c in dict.fromkeys(self.columns) if c in names]
            for batch in pf.iter_batches(batch_size=1024, columns=cols):
                for row in batch.to_pylist():
                    n += 1
                    yield n, row
        except (pa.ArrowException, OSError) as e:
            yield n + 1, ReadProblem("corrupt_input", f"parquet unreadable ({e})")
