"""Read the tensor *names, shapes and dtypes* of a PyTorch pickle checkpoint without loading it.

Two on-disk formats exist:

* **zip** (torch >= 1.6): an uncompressed zip whose ``archive/data.pkl`` member is
  the pickle; tensor bytes live in other members (``archive/data/0`` ...).
* **legacy**: back-to-back pickles (magic number, protocol, sys info, the object,
  the storage keys) followed by raw storage bytes.

In both, the object pickle refers to storages through ``persistent_load`` and
builds tensors with ``torch._utils._rebuild_tensor_v2(storage, offset, size,
stride, ...)``.  :class:`HeaderUnpickler` answers every ``find_class`` with an
inert stand-in of ours (never importing the named module) and records each
tensor as a :class:`TensorInfo`.  No tensor is built and nothing named in the
file is ever called, so a malicious pickle cannot execute here; the worst it can
do is describe nonsense.

Why our own reader rather than ``torch.load(weights_only=True, mmap=True)``:
FACTS.md measured 0.1-0.24 s for that versus ~18 ms for a restricted unpickler
on a 4 GB file, and torch is a 1-2 s import the form must not pay.  For the zip
format we also skip parsing the zip central directory when ``data.pkl`` is the
first member with its size in the local header (how torch writes it).

This module imports nothing heavy (no torch).
"""

from __future__ import annotations

import functools
import io
import operator
import pickle
import re
import struct
import zipfile
from typing import Any, BinaryIO, NamedTuple

#: The first pickle of a legacy torch file holds this integer.
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

#: torch storage class name (``torch.<X>Storage``) -> dtype name.
STORAGE_DTYPES = {
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "DoubleStorage": "float64",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
    "UntypedStorage": "uint8",
}

#: torch dtype attributes that may appear as ``torch.<name>`` globals.
TORCH_DTYPES = {
    "float32", "float", "float16", "half", "bfloat16", "float64", "double", "int64", "long",
    "int32", "int", "int16", "short", "int8", "uint8", "bool", "complex64", "complex128",
    "float8_e4m3fn", "float8_e5m2",
}
_DTYPE_ALIASES = {"float": "float32", "half": "float16", "double": "float64", "long": "int64",
                  "int": "int32", "short": "int16"}


class TensorInfo(NamedTuple):
    """What a header says about one tensor: its shape and dtype name (e.g. ``"float16"``).

    A NamedTuple, not a dataclass: an SD checkpoint has ~1,100 of them and
    building them is on the probe's hot path.
    """

    shape: tuple[int, ...]
    dtype: str


class PickleHeaderError(Exception):
    """The bytes are not a pickle checkpoint we can read (message says why)."""


class AllocationRefused(PickleHeaderError):
    """The pickle asked the inert reader for more memory than any checkpoint needs (a memory bomb).

    :ivar request: what it asked for, e.g. ``bytearray(10000000000)``.
    """

    def __init__(self, request: str) -> None:
        super().__init__(f"asks for {request} while loading, beyond what any checkpoint needs (a memory bomb)")
        self.request = request


class PickleTooLarge(PickleHeaderError):
    """A pickle (``data.pkl``, or the pickles at the start of a legacy file) larger than :data:`MAX_PICKLE_BYTES`."""


# --- bounds: what a hostile pickle can make the inert reader allocate ------------------------------

#: Largest pickle the readers accept.  A Stable Diffusion ``data.pkl`` is 0.1-0.5 MB (one record per
#: tensor); the tensor bytes live outside the pickle.  Every object the inert reader builds comes from
#: these bytes, so memory stays within a small multiple of this.
MAX_PICKLE_BYTES = 64 << 20
#: Largest single object a stand-in constructor may build (``bytes(N)``, ``bytearray(N)``, ``list(x)``...).
MAX_ALLOCATION = 16 << 20
#: Most dict entries :func:`flatten_tensors` visits (shared sub-dicts could otherwise multiply).
MAX_ENTRIES = 1 << 20


class CappedReader(io.RawIOBase):
    """A seekable raw reader of ``f`` that ends at absolute offset ``limit`` (``exhausted`` tells it did).

    Wrapped in :class:`io.BufferedReader` (which gives the C unpickler its fast ``peek``), it keeps a
    pickle read from a file from pulling more than ``limit`` bytes into memory, however large the
    lengths its opcodes declare.
    """

    def __init__(self, f: BinaryIO, limit: int | None = None) -> None:
        super().__init__()
        self._f = f
        self._limit = MAX_PICKLE_BYTES if limit is None else limit
        self.exhausted = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def readinto(self, b: Any) -> int:
        room = self._limit - self._f.tell()
        if room <= 0:
            self.exhausted = True
            return 0
        view = memoryview(b)[: min(len(b), room)]
        data = self._f.read(len(view))
        view[: len(data)] = data
        return len(data)


def capped(f: BinaryIO, limit: int | None = None) -> io.BufferedReader:
    """``f`` (a binary file at its current position) read through a :class:`CappedReader`."""
    return io.BufferedReader(CappedReader(f, limit), 1 << 18)


def _too_large(stream: Any) -> bool:
    raw = getattr(stream, "raw", None)
    return bool(getattr(raw, "exhausted", False))


def _sized(value: Any) -> int:
    try:
        return len(value)
    except TypeError:
        return 0


def _bounded(real: type) -> Any:
    """A stand-in for a builtin constructor that refuses to build anything larger than :data:`MAX_ALLOCATION`.

    ``bytes(N)``/``bytearray(N)`` would zero-fill N bytes; ``list(x)``, ``str(x)`` and friends copy or
    render an argument that memo references can make enormous from a few bytes of pickle.
    """

    name = f"{real.__name__}"

    def make(*args: Any, **kwargs: Any) -> Any:
        if args:
            first = args[0]
            if isinstance(first, int) and not isinstance(first, bool) and real in (bytes, bytearray):
                if first > MAX_ALLOCATION:
                    raise AllocationRefused(f"{name}({first})")
            elif real is str and not isinstance(first, (str, bytes, bytearray, int, float)):
                return _Opaque()  # str(container) would render every shared reference: never needed
            elif not isinstance(first, (bytes, bytearray, str)) and _sized(first) > MAX_ALLOCATION // 8:
                # (copying bytes or a string is as large as the pickle that holds it: no multiplication)
                raise AllocationRefused(f"{name}() of {_sized(first)} items")
        return real(*args, **kwargs)

    make.__name__ = name
    return make


# --- inert stand-ins for the globals a checkpoint names ------------------------------------


class _Opaque:
    """Stand-in for any class or function we do not model: accepts everything, does nothing."""

    _global = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> "_Opaque":
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, value: Any) -> None:
        pass

    def extend(self, values: Any) -> None:
        pass

    def __repr__(self) -> str:
        return f"<opaque {self._global}>"


class _StorageType:
    """Stand-in for ``torch.FloatStorage`` and friends: only remembers the dtype."""

    def __init__(self, dtype: str) -> None:
        self.dtype = dtype

    def __call__(self, *args: Any) -> None:  # callable only so functools.partial accepts it; never called
        return None


class _Dtype(str):
    """``torch.float16`` and friends, as their name."""

    @property
    def dtype(self) -> str:  # when a writer passes a dtype where a storage type is expected
        return str(self)


def _shape(size: Any) -> tuple[int, ...]:
    if type(size) is tuple:  # what torch writes; skip the per-element check on the hot path
        return size
    try:
        return tuple(int(s) for s in size)
    except (TypeError, ValueError):
        return ()


# ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`` resolves to
# ``functools.partial``: called with the storage type (made callable for this) first, it
# records every argument in C, one Python call less per tensor (~20% of the probe time
# of a 1,100-tensor checkpoint).  :func:`as_tensor_info` turns the record into a TensorInfo.
_RECORD = functools.partial


def as_tensor_info(value: Any) -> TensorInfo | None:
    """The TensorInfo a rebuilt tensor stands for, or None for any other unpickled value."""
    if type(value) is _RECORD:
        func, args = value.func, value.args
        if isinstance(func, _StorageType) and len(args) >= 2:
            size = args[1]
            return TensorInfo(size if type(size) is tuple else _shape(size), func.dtype)
        return None
    if type(value) is TensorInfo:
        return value
    return None


def _rebuild_meta_tensor_no_storage(dtype: Any, size: Any, *rest: Any) -> TensorInfo:
    return TensorInfo(_shape(size), str(dtype) if isinstance(dtype, _Dtype) else "unknown")


def _rebuild_parameter(data: Any, *rest: Any) -> Any:
    return data


def _rebuild_from_type_v2(func: Any, new_type: Any, args: Any, state: Any) -> Any:
    # torch uses this for tensor subclasses: func is one of our rebuild stand-ins.
    return func(*args) if any(func is f for f in _CALLABLE_REBUILDS) else _Opaque()


_CALLABLE_REBUILDS = (_RECORD, _rebuild_parameter, _rebuild_meta_tensor_no_storage)


def _codecs_encode(text: Any, encoding: str = "utf-8", *rest: Any) -> Any:
    # pickle protocol 2 stores bytes as _codecs.encode(str, "latin1"): pure data conversion.
    if not isinstance(text, str):
        return _Opaque()  # str() of anything else could render a huge shared structure
    return text.encode(encoding if encoding in ("latin1", "latin-1", "utf-8", "ascii") else "latin1")


class _NumpyDtype(_Opaque):
    """``numpy.dtype("i8", False, True)``: remembers the type code so numpy scalars can be read."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.code = args[0] if args and isinstance(args[0], str) else ""


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    # numpy.core.multiarray.scalar(dtype, bytes): decode integer/float scalars (global_step may be one).
    code = getattr(dtype, "code", "")
    if isinstance(data, (bytes, bytearray)):
        fmt = {"i8": "<q", "i4": "<i", "u8": "<Q", "u4": "<I", "f8": "<d", "f4": "<f"}.get(code)
        if fmt and struct.calcsize(fmt) == len(data):
            return struct.unpack(fmt, data)[0]
    return _Opaque()


_FIXED_GLOBALS: dict[str, Any] = {
    "torch._utils._rebuild_tensor_v2": _RECORD,
    "torch._utils._rebuild_tensor": _RECORD,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_meta_tensor_no_storage": _rebuild_meta_tensor_no_storage,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
    "torch._tensor._rebuild_from_type_v2": _rebuild_from_type_v2,
    "collections.OrderedDict": _bounded(dict),
    # builtin constructors, bounded (a hostile pickle must not make us allocate gigabytes: bytearray(10**10))
    **{f"{m}.{t.__name__}": _bounded(t) for m in ("builtins", "__builtin__")
       for t in (dict, list, tuple, set, frozenset, int, float, str, bytes, bytearray, complex, bool)},
    "builtins.slice": slice,
    "torch.Size": tuple,
    "_codecs.encode": _codecs_encode,
    "numpy.dtype": _NumpyDtype,
    "numpy.core.multiarray.scalar": _numpy_scalar,
    "numpy._core.multiarray.scalar": _numpy_scalar,
}


class HeaderUnpickler(pickle.Unpickler):
    """A pickle reader that resolves every global to an inert stand-in of ours.

    It never imports a module named in the file and never calls anything but the
    stand-ins above, so it is safe on hostile input.  Tensors come out as
    :class:`TensorInfo`.
    """

    _opaque_cache: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102 - pickle API
        full = f"{module}.{name}"
        fixed = _FIXED_GLOBALS.get(full)
        if fixed is not None:
            return fixed
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(STORAGE_DTYPES[name])
        if module == "torch" and name in TORCH_DTYPES:
            return _Dtype(_DTYPE_ALIASES.get(name, name))
        # Everything else: a class of our own that swallows its arguments.  A real
        # type (not a function) because NEWOBJ requires one.
        cls = self._opaque_cache.get(full)
        if cls is None:
            if len(self._opaque_cache) > 4096:  # hostile files could name endless globals
                self._opaque_cache.clear()
            cls = type("Opaque", (_Opaque,), {"_global": full})
            self._opaque_cache[full] = cls
        return cls

    def __init__(self, file: BinaryIO) -> None:
        super().__init__(file)
        # persistent ids are ('storage', storage_type, key, location, numel[, view]) in
        # both formats; the storage type (our _StorageType, carrying the dtype) is all we
        # keep.  itemgetter runs in C: one Python call less per tensor (~1,100 per file).
        self.persistent_load = operator.itemgetter(1)


def _unpickle(stream: BinaryIO) -> Any:
    try:
        return HeaderUnpickler(stream).load()
    except MemoryError:
        raise AllocationRefused("more memory than this machine has") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError,
            AttributeError, struct.error, UnicodeDecodeError, RecursionError,
            OverflowError) as exc:
        if _too_large(stream):
            raise PickleTooLarge(f"its pickle is larger than {MAX_PICKLE_BYTES >> 20} MB (not a checkpoint's)") from None
        raise PickleHeaderError(f"not a readable pickle ({type(exc).__name__}: {exc})") from None


_CHUNK = 1 << 18
_MAX_CHUNK = 1 << 26


def _zip_first_member_is_stored_data_pkl(f: BinaryIO) -> bool:
    """Position ``f`` at the bytes of ``data.pkl`` when it is the zip's first member, stored (how torch writes it).

    torch writes sizes in a data descriptor *after* the member (flag 0x08), so the
    size is unknown here; none is needed: a pickle ends at its STOP opcode.  This
    skips parsing the zip central directory (one record per tensor: ~1,100 for SD).
    """
    f.seek(0)
    head = f.read(30)
    if len(head) < 30 or head[:4] != b"PK\x03\x04":
        return False
    (method,) = struct.unpack_from("<H", head, 8)
    nlen, xlen = struct.unpack_from("<HH", head, 26)
    name = f.read(nlen)
    if method != 0 or not (name == b"data.pkl" or name.endswith(b"/data.pkl")):
        return False
    f.seek(30 + nlen + xlen)
    return True


def _zip_data_pkl(f: BinaryIO) -> bytes:
    f.seek(0)
    try:
        with zipfile.ZipFile(f) as zf:
            names = [n for n in zf.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
            if not names:
                raise PickleHeaderError("a zip file without data.pkl: not a PyTorch checkpoint")
            member = zf.getinfo(min(names, key=len))
            if member.file_size > MAX_PICKLE_BYTES:  # zipfile never inflates past the declared size
                raise PickleTooLarge(f"its data.pkl is {member.file_size} bytes, larger than {MAX_PICKLE_BYTES >> 20} MB")
            return zf.read(member)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise PickleHeaderError(f"a damaged zip checkpoint ({exc})") from None


def zip_data_pkl_bytes(f: BinaryIO) -> bytes | None:
    """The exact bytes of ``data.pkl`` when it is the zip's first, stored member (how torch writes it).

    torch writes the member's sizes in a data descriptor *after* it (flag 0x08); the
    descriptor (``PK\\x07\\x08``, crc, compressed size, size) is found in the bytes that
    follow, and its size must equal its own offset.  None when the file is laid out
    otherwise (then the zip central directory is read instead).
    """
    if not _zip_first_member_is_stored_data_pkl(f):
        return None
    start, size = f.tell(), _CHUNK
    while True:
        f.seek(start)
        chunk = f.read(size)
        pos = chunk.find(b"PK\x07\x08")
        while pos >= 0:
            if len(chunk) >= pos + 16:
                csize, usize = struct.unpack_from("<II", chunk, pos + 8)
                if csize == usize == pos:
                    return chunk[:pos]
            if len(chunk) >= pos + 24:  # zip64 descriptor: 8-byte sizes
                csize, usize = struct.unpack_from("<QQ", chunk, pos + 8)
                if csize == usize == pos:
                    return chunk[:pos]
            pos = chunk.find(b"PK\x07\x08", pos + 1)
        if len(chunk) < size or size >= _MAX_CHUNK:
            return None
        size *= 4


def read_zip_data_pkl(f: BinaryIO) -> bytes:
    """The bytes of a zip checkpoint's ``data.pkl`` (fast path, else through the central directory).

    :raises PickleHeaderError: a damaged zip, or one without ``data.pkl``.
    """
    data = zip_data_pkl_bytes(f)
    return data if data is not None else _zip_data_pkl(f)


def unpickle_bytes(data: bytes) -> Any:
    """Unpickle ``data`` with the inert stand-ins.

    Through an in-memory BufferedReader: it gives the C unpickler ``peek``, 4x
    faster than a bare BytesIO.
    """
    return _unpickle(io.BufferedReader(io.BytesIO(data), max(len(data), 1)))


def read_pickle_object(f: BinaryIO) -> tuple[Any, str]:
    """Unpickle the object of a torch checkpoint with stand-ins; return it and ``"zip"``/``"legacy"``/``"pickle"``.

    :raises PickleHeaderError: not a zip checkpoint nor a readable pickle.
    """
    f.seek(0)
    magic = f.read(4)
    f.seek(0)
    if magic == b"PK\x03\x04":
        return unpickle_bytes(read_zip_data_pkl(f)), "zip"
    if not magic or magic[0] != 0x80:
        raise PickleHeaderError("neither a zip checkpoint nor a pickle (no pickle PROTO opcode)")
    f = capped(f)
    first = _unpickle(f)
    if isinstance(first, int) and first == LEGACY_MAGIC:
        _unpickle(f)  # protocol version
        _unpickle(f)  # sys info
        return _unpickle(f), "legacy"
    return first, "pickle"


# --- answering a few questions from the pickle bytes, without unpickling ---------------------


class InPlaceUnsupported(Exception):
    """The bytes are not laid out as :class:`PickleBytes` expects: unpickle them instead."""


_STORAGE_MEMO = re.compile(rb"ctorch\n(\w+)\n(?:q(.)|r(.{4}))", re.DOTALL)
_STORAGE_TAG_MEMO = re.compile(rb"X\x07\x00\x00\x00storage(?:q(.)|r(.{4}))", re.DOTALL)
_X = 0x58  # BINUNICODE


class PickleBytes:
    """A few answers about a torch ``data.pkl`` (pickle protocol 2, what torch.save writes) from its bytes.

    Why: unpickling an SD checkpoint's 170 KB ``data.pkl``, even with C-speed
    stand-ins, costs ~1.3 ms; identifying it needs three tensor shapes, a dtype and
    a few key prefixes.  Keys are BINUNICODE strings (``X`` + 4-byte length), found
    with ``bytes.find``; a tensor's shape is read by decoding the ~20 opcodes after
    its key.  Anything unexpected raises :class:`InPlaceUnsupported` and the caller
    unpickles instead, so this only ever answers when it read exactly what torch wrote.
    """

    def __init__(self, data: bytes) -> None:
        if data[:2] != b"\x80\x02":
            raise InPlaceUnsupported("not pickle protocol 2")
        self.data = data
        self._memo: dict[int, str] | None = None
        self._storage_tag_memo: set[int] | None = None

    def _storage_memo(self) -> dict[int, str]:
        """memo index -> ``torch.<X>Storage`` name, for storage types referenced by BINGET."""
        if self._memo is None:
            memo: dict[int, str] = {}
            for m in _STORAGE_MEMO.finditer(self.data):
                idx = m.group(2)[0] if m.group(2) is not None else struct.unpack("<I", m.group(3))[0]
                memo[idx] = m.group(1).decode()
            self._memo = memo
        return self._memo

    def keys_with_prefix(self, prefix: str):
        """(position after the key, key) of every BINUNICODE string starting with ``prefix``."""
        data, needle = self.data, prefix.encode()
        pos = data.find(needle)
        while pos >= 0:
            if pos >= 5 and data[pos - 5] == _X:
                n = struct.unpack_from("<I", data, pos - 4)[0]
                if pos + n <= len(data):
                    yield pos + n, data[pos:pos + n].decode("utf-8", "replace")
            pos = data.find(needle, pos + 1)

    def has_key_prefix(self, prefix: str) -> bool:
        return next(self.keys_with_prefix(prefix), None) is not None

    def value_position(self, key: str) -> int | None:
        """Position just after the BINUNICODE string ``key`` (its value follows), if it occurs once."""
        raw = key.encode()
        needle = b"X" + struct.pack("<I", len(raw)) + raw
        pos = self.data.find(needle)
        if pos < 0:
            return None
        if self.data.find(needle, pos + 1) >= 0:
            raise InPlaceUnsupported(f"{key} occurs twice")
        return pos + len(needle)

    def tensor_at(self, pos: int) -> TensorInfo:
        """The tensor whose rebuild call starts at ``pos`` (just after its key)."""
        data, stack, mark = self.data, [], object()
        pid = None
        for _ in range(96):
            op = data[pos]
            pos += 1
            if op == 0x71:  # q BINPUT
                pos += 1
                continue
            if op == 0x72:  # r LONG_BINPUT
                pos += 4
                continue
            if op == 0x68:  # h BINGET
                stack.append(("memo", data[pos]))
                pos += 1
            elif op == 0x6A:  # j LONG_BINGET
                stack.append(("memo", struct.unpack_from("<I", data, pos)[0]))
                pos += 4
            elif op == 0x63:  # c GLOBAL
                nl1 = data.index(b"\n", pos)
                nl2 = data.index(b"\n", nl1 + 1)
                stack.append(("global", data[pos:nl1].decode(), data[nl1 + 1:nl2].decode()))
                pos = nl2 + 1
            elif op == 0x28:  # ( MARK
                stack.append(mark)
            elif op == _X:
                n = struct.unpack_from("<I", data, pos)[0]
                stack.append(data[pos + 4:pos + 4 + n].decode("utf-8", "replace"))
                pos += 4 + n
            elif op == 0x4B:  # K BININT1
                stack.append(data[pos])
                pos += 1
            elif op == 0x4D:  # M BININT2
                stack.append(struct.unpack_from("<H", data, pos)[0])
                pos += 2
            elif op == 0x4A:  # J BININT
                stack.append(struct.unpack_from("<i", data, pos)[0])
                pos += 4
            elif op == 0x8A:  # LONG1
                n = data[pos]
                stack.append(int.from_bytes(data[pos + 1:pos + 1 + n], "little", signed=True))
                pos += 1 + n
            elif op in (0x88, 0x89):  # NEWTRUE, NEWFALSE
                stack.append(op == 0x88)
            elif op == 0x29:  # ) EMPTY_TUPLE
                stack.append(())
            elif op in (0x85, 0x86, 0x87):  # TUPLE1..3
                n = op - 0x84
                if len(stack) < n:
                    raise InPlaceUnsupported("short stack")
                items = tuple(stack[-n:])
                del stack[-n:]
                stack.append(items)
            elif op == 0x74:  # t TUPLE
                if mark not in stack:
                    raise InPlaceUnsupported("TUPLE without MARK")
                at = len(stack) - 1 - stack[::-1].index(mark)
                items = tuple(stack[at + 1:])
                del stack[at:]
                stack.append(items)
            elif op == 0x51:  # Q BINPERSID
                if not stack or not isinstance(stack[-1], tuple):
                    raise InPlaceUnsupported("BINPERSID without a tuple")
                pid = stack.pop()
                stack.append(("pid", pid))
            else:
                raise InPlaceUnsupported(f"opcode {op:#x}")
            # rebuild args so far: ..., ("pid", pid), offset, size  -> done
            if (pid is not None and len(stack) >= 3 and isinstance(stack[-1], tuple)
                    and type(stack[-2]) is int and stack[-3] == ("pid", pid)):
                size = stack[-1]
                if not all(type(s) is int for s in size):
                    raise InPlaceUnsupported("odd size")
                return TensorInfo(size, self._dtype_of(pid))
        raise InPlaceUnsupported("no tensor after the key")

    def _is_storage_tag(self, item: Any) -> bool:
        """``"storage"``, written once and then fetched from the memo (BINGET) by later tensors."""
        if item == "storage":
            return True
        if isinstance(item, tuple) and item[:1] == ("memo",):
            if self._storage_tag_memo is None:
                self._storage_tag_memo = {
                    (m.group(1)[0] if m.group(1) is not None else struct.unpack("<I", m.group(2))[0])
                    for m in _STORAGE_TAG_MEMO.finditer(self.data)
                }
            return item[1] in self._storage_tag_memo
        return False

    def _dtype_of(self, pid: tuple) -> str:
        if len(pid) < 2 or not self._is_storage_tag(pid[0]):
            raise InPlaceUnsupported("odd persistent id")
        ref = pid[1]
        if isinstance(ref, tuple) and ref[:1] == ("global",) and ref[1] == "torch":
            name = ref[2]
        elif isinstance(ref, tuple) and ref[:1] == ("memo",):
            name = self._storage_memo().get(ref[1], "")
        else:
            name = ""
        if name not in STORAGE_DTYPES:
            raise InPlaceUnsupported(f"storage type {name!r}")
        return STORAGE_DTYPES[name]

    def tensor(self, key: str) -> TensorInfo | None:
        """The tensor stored under ``key`` (None when there is no such key)."""
        pos = self.value_position(key)
        if pos is None:
            return None
        try:
            return self.tensor_at(pos)
        except (IndexError, struct.error, ValueError) as exc:
            raise InPlaceUnsupported(str(exc)) from None

    def int_value(self, key: str) -> int | None:
        """An integer stored under ``key`` (e.g. ``global_step``), None when absent."""
        pos = self.value_position(key)
        if pos is None:
            return None
        data = self.data
        while data[pos] in (0x71, 0x72):  # BINPUT, LONG_BINPUT
            pos += 2 if data[pos] == 0x71 else 5
        op = data[pos]
        if op == 0x4B:
            return data[pos + 1]
        if op == 0x4D:
            return struct.unpack_from("<H", data, pos + 1)[0]
        if op == 0x4A:
            return struct.unpack_from("<i", data, pos + 1)[0]
        if op == 0x8A:
            n = data[pos + 1]
            return int.from_bytes(data[pos + 2:pos + 2 + n], "little", signed=True)
        raise InPlaceUnsupported(f"{key} is not a plain int")


def flatten_tensors(obj: Any) -> tuple[dict[str, TensorInfo], dict[str, Any]]:
    """Tensors of a checkpoint object by dotted name, and its top-level scalars.

    ``{"state_dict": {...}, "global_step": N}`` gives the state dict's tensors and
    ``{"global_step": N}``.  Nested dicts (textual inversion's ``string_to_param``)
    give dotted names (``string_to_param.*``).  Lists are not entered.
    """
    tensors: dict[str, TensorInfo] = {}
    scalars: dict[str, Any] = {}
    if not isinstance(obj, dict):
        return tensors, scalars
    for key, value in obj.items():
        if isinstance(key, str) and isinstance(value, (int, float, str)) and not isinstance(value, bool):
            scalars[key] = value
    root = obj.get("state_dict") if isinstance(obj.get("state_dict"), dict) else obj

    budget = [MAX_ENTRIES]

    def walk(d: dict, prefix: str, depth: int) -> None:
        budget[0] -= len(d)
        if budget[0] < 0:  # sub-dicts shared through the memo multiply: 1,000 x 1,000 x ... entries
            raise AllocationRefused(f"more than {MAX_ENTRIES} entries in nested dicts")
        for key, value in d.items():
            name = key if not prefix and type(key) is str else f"{prefix}{key}"
            if type(value) is _RECORD:  # the common case, inlined: ~1,100 per SD checkpoint
                func, args = value.func, value.args
                if type(func) is _StorageType and len(args) >= 2:
                    size = args[1]
                    tensors[name] = TensorInfo(size if type(size) is tuple else _shape(size), func.dtype)
            elif isinstance(value, dict):
                if depth < 4:
                    walk(value, f"{name}.", depth + 1)
            else:
                info = as_tensor_info(value)
                if info is not None:
                    tensors[name] = info

    walk(root, "", 0)
    return tensors, scalars
