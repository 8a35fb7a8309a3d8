"""Where the converter reads tensors from: shapes and dtypes up front, bytes on demand, in file order.

A safetensors file is memory-mapped by :class:`.safetensors_stream.SafetensorsReader`; a pickle checkpoint is
loaded only through :func:`.safety.load_state_dict` (scan first, ``weights_only`` with ``mmap``).
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

from invokeai_model_install.errors import ConversionError
from invokeai_model_install.formats.safetensors_stream import CODES


class TensorSource:
    """Tensors of a checkpoint: shapes and dtypes up front, bytes on demand."""

    shapes: dict[str, tuple[int, ...]]
    codes: dict[str, str]

    def view(self, name: str) -> memoryview:  # raw little-endian bytes
        raise NotImplementedError

    def position(self, name: str) -> int:  # where the bytes live, to read in file order
        return 0

    def file_range(self, name: str) -> tuple[int, int, int] | None:  # (fd, offset, nbytes) for kernel copies
        return None

    def prefetch(self, name: str) -> None:
        pass

    def release(self, name: str) -> None:
        pass

    def close(self) -> None:
        pass


class SafetensorsSource(TensorSource):
    def __init__(self, path: Path) -> None:
        from invokeai_model_install.formats.safetensors_stream import SafetensorsFormatError, SafetensorsReader

        try:
            self._r = SafetensorsReader(path)
        except SafetensorsFormatError as exc:
            raise ConversionError(f"{path.name}: not a readable safetensors file ({exc})",
                                  hint="download it again") from None
        self.shapes = {k: e.shape for k, e in self._r.entries.items()}
        self.codes = {k: e.dtype for k, e in self._r.entries.items()}
        self.metadata = self._r.metadata

    def view(self, name: str) -> memoryview:
        return self._r.view(name)

    def position(self, name: str) -> int:
        return self._r.entries[name].start

    def file_range(self, name: str) -> tuple[int, int, int] | None:
        return self._r.file_range(name)

    def prefetch(self, name: str) -> None:
        self._r.prefetch(name)

    def release(self, name: str) -> None:
        self._r.release(name)

    def close(self) -> None:
        self._r.close()


class TorchSource(TensorSource):
    """A pickle checkpoint loaded by :func:`.safety.load_state_dict` (memory-mapped for zip files)."""

    def __init__(self, path: Path) -> None:
        import torch

        from invokeai_model_install.identify import safety

        sd = safety.load_state_dict(path, mmap=True)
        self._t = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
        self._ranges = _file_mappings(path)
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0)) if self._ranges else None
        self.shapes = {k: tuple(v.shape) for k, v in self._t.items()}
        self.codes = {}
        for k, v in self._t.items():
            code = CODES.get(str(v.dtype).replace("torch.", ""))
            if code is not None:
                self.codes[k] = code
        self._libc = _libc()

    def _tensor(self, name: str):
        t = self._t[name]
        return t if t.is_contiguous() else t.contiguous()

    def view(self, name: str) -> memoryview:
        import torch

        t = self._tensor(name)
        if t.numel() == 0:
            return memoryview(b"")
        return memoryview(t.reshape(-1).view(torch.uint8).numpy())

    def position(self, name: str) -> int:
        t = self._t[name]
        return t.data_ptr() if t.numel() else 0

    def file_range(self, name: str) -> tuple[int, int, int] | None:
        """Where torch's mapping puts a tensor in the file (zip members are stored uncompressed),
        so unchanged bytes can be copied by the kernel; checked against the mapped bytes."""
        t = self._t[name]
        if self._fd is None or not t.is_contiguous() or t.numel() == 0:
            return None
        ptr, nbytes = t.data_ptr(), t.numel() * t.element_size()
        for lo, hi, file_offset in self._ranges:
            if lo <= ptr and ptr + nbytes <= hi:
                offset = ptr - lo + file_offset
                probe = min(64, nbytes)
                if os.pread(self._fd, probe, offset) != bytes(self.view(name)[:probe]):
                    return None
                return self._fd, offset, nbytes
        return None

    def release(self, name: str) -> None:
        # torch maps the whole zip privately; the pages we read stay resident unless dropped
        t = self._t[name]
        if self._libc is None or t.numel() == 0:
            return
        start = t.data_ptr()
        length = t.numel() * t.element_size()
        page = os.sysconf("SC_PAGE_SIZE")
        lo = start - start % page
        self._libc.madvise(ctypes.c_void_p(lo), ctypes.c_size_t(start + length - lo), 4)  # MADV_DONTNEED

    def close(self) -> None:
        self._t.clear()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _file_mappings(path: Path) -> list[tuple[int, int, int]]:
    """``(start, end, file offset)`` of this process's memory maps of ``path`` (Linux), else []."""
    if not hasattr(os, "pread"):
        return []
    real = os.path.realpath(path)
    found = []
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.rstrip("\n").split(None, 5)
                if len(parts) == 6 and parts[5] == real:
                    lo, hi = (int(x, 16) for x in parts[0].split("-"))
                    found.append((lo, hi, int(parts[2], 16)))
    except OSError:
        return []
    return found


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        return libc
    except (OSError, AttributeError):
        return None


def open_source(path: Path) -> TensorSource:
    with open(path, "rb") as f:
        first = f.read(9)
    if first[:4] == b"PK\x03\x04" or first[:1] == b"\x80":
        return TorchSource(path)
    return SafetensorsSource(path)
