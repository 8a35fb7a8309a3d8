"""Stream tensors between files without holding a model in memory.

* :class:`SafetensorsReader` memory-maps a ``.safetensors`` file and hands out each
  tensor's bytes as a zero-copy ``memoryview``; :meth:`SafetensorsReader.release`
  drops the pages of a tensor already consumed (``madvise(MADV_DONTNEED)``), so the
  resident set stays near one tensor instead of growing to the file's size.
* :class:`StreamingWriter` writes a ``.safetensors`` file whose header is computed
  up front from names, dtypes and shapes; the tensor bytes then follow one at a
  time, in any order the caller likes (we follow the *input* order so reads stay
  sequential on a cold disk).

Why our own rather than ``safetensors.torch.save_file``/``safe_open``: ``save_file``
needs every tensor in memory at once (the 1.1x-of-checkpoint peak-RSS goal rules
that out, and fp16 casting would double it), and ``safe_open(...).get_tensor`` copies
each tensor out of the map.  The format is tiny (8-byte length, JSON header, raw
little-endian bytes; https://github.com/huggingface/safetensors), and files written
here are read back by the safetensors library in the tests.

No torch here: bytes in, bytes out.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

#: safetensors dtype code <-> element size and the torch dtype name (the one table of dtypes in the package).
DTYPE_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
               "BOOL": 1, "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1}
TORCH_NAMES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
               "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool", "U16": "uint16",
               "U32": "uint32", "U64": "uint64", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}
CODES = {v: k for k, v in TORCH_NAMES.items()}
#: The floating-point codes (what ``--precision`` casts; the rest is copied as it is).
FLOAT_CODES = ("F32", "F16", "BF16", "F64")

PAGE = mmap.PAGESIZE
#: A safetensors header longer than this is not a header (the Rust crate's own limit is 100 MB).
HEADER_LIMIT = 100_000_000


def pread(fd: int, n: int, offset: int) -> bytes:
    """``os.pread`` where it exists (POSIX); seek + read elsewhere (Windows)."""
    if hasattr(os, "pread"):
        return os.pread(fd, n, offset)
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, n)


class SafetensorsFormatError(ValueError):
    """The bytes are not a well-formed safetensors file (message says why; ``first``: its first bytes)."""

    def __init__(self, message: str, first: bytes = b"") -> None:
        super().__init__(message)
        self.first = first


def read_header_bytes(fd: int) -> tuple[bytes, int]:
    """The raw JSON header of an open safetensors file and the file's size (two small reads).

    :raises SafetensorsFormatError: shorter than a header, or a header length past the limit or the file.
    """
    size = os.fstat(fd).st_size
    head = pread(fd, 8, 0)
    if len(head) < 8:
        raise SafetensorsFormatError("shorter than a header", head)
    (n,) = struct.unpack("<Q", head)
    if n > HEADER_LIMIT or 8 + n > size:
        # the message of the safetensors library itself for this case (FACTS.md)
        raise SafetensorsFormatError("header too large", head)
    raw = pread(fd, n, 8)
    if len(raw) < n:
        raise SafetensorsFormatError(f"truncated: its header needs {8 + n} bytes but the file has {size}", head)
    return raw, size


@dataclass(frozen=True)
class Entry:
    """One tensor of a safetensors file: dtype code, shape and absolute byte range in the file."""

    dtype: str
    shape: tuple[int, ...]
    start: int
    stop: int

    @property
    def nbytes(self) -> int:
        return self.stop - self.start


def _numel(shape: Iterable[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


class SafetensorsReader:
    """A memory-mapped ``.safetensors`` file: ``entries`` by name, bytes by :meth:`view`."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            raw, size = read_header_bytes(self._fd)
            n = len(raw)
            try:
                doc = json.loads(raw)
            except (UnicodeDecodeError, ValueError):
                raise SafetensorsFormatError("header is not JSON") from None
            self.metadata: dict[str, Any] = doc.pop("__metadata__", None) or {}
            base = 8 + n
            self.entries: dict[str, Entry] = {}
            for name, e in doc.items():
                try:
                    start, stop = (base + int(x) for x in e["data_offsets"])
                    entry = Entry(str(e["dtype"]), tuple(int(d) for d in e["shape"]), start, stop)
                except (KeyError, TypeError, ValueError):
                    raise SafetensorsFormatError(f"malformed entry for {name!r}") from None
                if stop > size:
                    raise SafetensorsFormatError(
                        f"truncated: tensor {name!r} ends at byte {stop} but the file has {size}")
                if entry.dtype in DTYPE_SIZES and entry.nbytes != _numel(entry.shape) * DTYPE_SIZES[entry.dtype]:
                    raise SafetensorsFormatError(f"tensor {name!r}: byte size does not match its shape")
                self.entries[name] = entry
            self._map = mmap.mmap(self._fd, size, access=mmap.ACCESS_READ) if size else None
        except BaseException:
            os.close(self._fd)
            raise
        if self._map is not None and hasattr(mmap, "MADV_SEQUENTIAL"):
            self._map.madvise(mmap.MADV_SEQUENTIAL)
        self._view = memoryview(self._map) if self._map is not None else memoryview(b"")

    def view(self, name: str) -> memoryview:
        """The raw bytes of tensor ``name`` (zero-copy; valid until :meth:`close`)."""
        e = self.entries[name]
        return self._view[e.start:e.stop]

    def file_range(self, name: str) -> tuple[int, int, int]:
        """``(fd, offset, nbytes)`` of a tensor's bytes in the file (for in-kernel copies)."""
        e = self.entries[name]
        return self._fd, e.start, e.nbytes

    def prefetch(self, name: str) -> None:
        """Ask the kernel to start reading a tensor we will need soon."""
        e = self.entries[name]
        self._advise(e.start, e.stop, getattr(mmap, "MADV_WILLNEED", None))

    def release(self, name: str) -> None:
        """Drop a consumed tensor's pages from our resident set (they stay in the page cache)."""
        e = self.entries[name]
        self._advise(e.start, e.stop, getattr(mmap, "MADV_DONTNEED", None))

    def _advise(self, start: int, stop: int, advice: int | None) -> None:
        if advice is None or self._map is None or stop <= start or not hasattr(self._map, "madvise"):
            return  # Windows has no madvise
        lo = start - start % PAGE
        try:
            self._map.madvise(advice, lo, stop - lo)
        except (OSError, ValueError):  # advice is only a hint
            pass

    def close(self) -> None:
        self._view.release()
        if self._map is not None:
            self._map.close()
        os.close(self._fd)

    def __enter__(self) -> "SafetensorsReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StreamingWriter:
    """Write a ``.safetensors`` file tensor by tensor.

    ``specs`` fixes the file layout before any byte is written: ``[(name, dtype_code,
    shape), ...]`` in the order the data will follow.  Then call :meth:`write` once per
    tensor, in that same order, with its bytes (any buffer); :meth:`close` checks that all
    arrived.  The header's keys are sorted (as the safetensors library writes them); the
    data order is free in the format.
    """

    def __init__(self, path: str | os.PathLike, specs: list[tuple[str, str, tuple[int, ...]]],
                 metadata: dict[str, str] | None = None) -> None:
        self.path = Path(path)
        header: dict[str, Any] = {}
        offset = 0
        self._order: list[tuple[str, int]] = []
        for name, code, shape in specs:
            if code not in DTYPE_SIZES:
                raise ValueError(f"unsupported dtype {code!r} for {name!r}")
            nbytes = _numel(shape) * DTYPE_SIZES[code]
            header[name] = {"dtype": code, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
            self._order.append((name, nbytes))
            offset += nbytes
        if metadata:
            header["__metadata__"] = dict(metadata)
        raw = json.dumps(dict(sorted(header.items())), separators=(",", ":")).encode("utf-8")
        raw += b" " * (-(len(raw)) % 8)  # keep tensor data 8-byte aligned, like the reference writer
        self.data_bytes = offset
        self._fh = open(self.path, "wb", buffering=0)
        self._fh.write(struct.pack("<Q", len(raw)) + raw)
        self._next = 0
        self._kernel_copy = hasattr(os, "copy_file_range")

    def write(self, name: str, data: Any) -> None:
        """Append tensor ``name``'s bytes (must be the next one in the declared order)."""
        expected, nbytes = self._order[self._next]
        if name != expected:
            raise ValueError(f"tensor {name!r} written out of order (expected {expected!r})")
        view = memoryview(data).cast("B")
        if view.nbytes != nbytes:
            raise ValueError(f"tensor {name!r}: {view.nbytes} bytes, header says {nbytes}")
        done = 0
        while done < nbytes:  # a raw file may write less than asked
            done += self._fh.write(view[done:])
        self._next += 1

    def copy(self, name: str, fd: int, offset: int, nbytes: int) -> None:
        """Append tensor ``name``'s bytes straight from another file (``os.copy_file_range``).

        The kernel moves the bytes (no page of the input is mapped into this process, and
        filesystems that can share extents do so); where that is not available we fall back
        to ``os.pread`` in chunks.  ~2x faster than writing from a memory map (measured).
        """
        expected, want = self._order[self._next]
        if name != expected:
            raise ValueError(f"tensor {name!r} written out of order (expected {expected!r})")
        if nbytes != want:
            raise ValueError(f"tensor {name!r}: {nbytes} bytes, header says {want}")
        out = self._fh.fileno()
        done = 0
        if self._kernel_copy:
            try:
                while done < nbytes:
                    n = os.copy_file_range(fd, out, nbytes - done, offset + done)
                    if n == 0:
                        raise OSError(f"unexpected end of input while copying {name!r}")
                    done += n
            except (AttributeError, OSError) as exc:
                if done or getattr(exc, "errno", None) is None:
                    raise
                self._kernel_copy = False  # EXDEV/ENOSYS/EINVAL...: copy through user space
        chunk = 16 << 20
        while done < nbytes:
            data = pread(fd, min(chunk, nbytes - done), offset + done)
            if not data:
                raise OSError(f"unexpected end of input while copying {name!r}")
            view = memoryview(data)
            written = 0
            while written < len(view):
                written += self._fh.write(view[written:])
            done += len(data)
        self._next += 1

    def close(self, *, fsync: bool = True) -> None:
        """Finish the file; raises if tensors are missing."""
        try:
            if self._next != len(self._order):
                raise ValueError(f"{self.path.name}: {len(self._order) - self._next} tensors never written")
            if fsync:
                os.fsync(self._fh.fileno())
        finally:
            self._fh.close()

    def abort(self) -> None:
        self._fh.close()
