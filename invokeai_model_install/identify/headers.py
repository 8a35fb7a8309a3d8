"""Reading a single-file checkpoint's header: tensor names, shapes, dtypes and metadata, never the tensors.

* ``.safetensors``: the JSON header at the start of the file (two reads).  Big
  headers (main models) are searched in place for the few keys identification
  needs: ~0.3 ms for SD1.5, against ~1.5 ms for ``safetensors.safe_open`` listing
  keys and shapes and ~0.9 ms for ``json.loads`` alone (benchmarks/bench_probe.py).
* zip ``.ckpt``/``.pt``/``.bin``: only the ``data.pkl`` member.  Big ones are
  answered from its bytes (:class:`.pickle_header.PickleBytes`: ~0.65 ms for
  SD1.5, against ~70-80 ms for ``torch.load(weights_only=True, mmap=True)``);
  small ones, and anything odd, through the inert unpickler of
  :mod:`.pickle_header` (nothing named in the file is imported or run).
* legacy (non-zip) torch pickles: the pickles before the raw storage bytes.

:func:`open_index` gives a :class:`TensorIndex` (the queries identification makes) and the
metadata; :func:`read_header` the whole :class:`Header`.
"""

from __future__ import annotations

import json
import os
import re
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invokeai_model_install.errors import ProbeError
from invokeai_model_install.formats.files import SAFETENSORS_SUFFIXES
from invokeai_model_install.formats.safetensors_stream import FLOAT_CODES, TORCH_NAMES, SafetensorsFormatError, read_header_bytes
from invokeai_model_install.formats.pickle_header import (
    InPlaceUnsupported,
    PickleBytes,
    PickleHeaderError,
    TensorInfo,
    as_tensor_info,
    flatten_tensors,
    read_pickle_object,
    read_zip_data_pkl,
    unpickle_bytes,
    zip_data_pkl_bytes,
)

#: safetensors dtype codes -> the names torch uses.
SAFETENSORS_DTYPES = TORCH_NAMES




@dataclass(frozen=True)
class Header:
    """The names, shapes and dtypes of a single-file checkpoint, plus its scalars/metadata."""

    tensors: dict[str, TensorInfo]
    metadata: dict[str, Any]
    format: str  # "safetensors" | "ckpt"



# --- tensor indexes: the queries identification needs ----------------------------------------


class TensorIndex:
    """Tensor names -> :class:`TensorInfo`, with the few queries identification makes."""

    def __init__(self, tensors: dict[str, TensorInfo]) -> None:
        self._tensors = tensors

    @property
    def tensors(self) -> dict[str, TensorInfo]:
        return self._tensors

    def __len__(self) -> int:
        return len(self.tensors)

    def get(self, name: str) -> TensorInfo | None:
        return self.tensors.get(name)

    def has_prefix(self, prefix: str) -> bool:
        return any(n.startswith(prefix) for n in self.tensors)

    def may_have(self, fragment: str) -> bool:
        """False only when no name containing ``fragment`` can be found by :meth:`get`, :meth:`has_prefix`
        or :meth:`find`: one scan that lets a rule skip several lookups which would all miss (on a big
        header queried in place each miss is a scan of its own).  Here (names in a dict) always True."""
        return True

    def find(self, prefix: str, suffix: str) -> TensorInfo | None:
        """The first tensor whose name starts with ``prefix`` and ends with ``suffix``."""
        for name, info in self.tensors.items():
            if name.startswith(prefix) and name.endswith(suffix):
                return info
        return None

    def dtype_counts(self) -> Counter:
        return Counter(t.dtype for t in self.tensors.values())

    def empty(self) -> bool:
        return not self.tensors

    def has_ema(self) -> bool:
        return any(n.startswith("model_ema.") and n not in ("model_ema.decay", "model_ema.num_updates")
                   for n in self.tensors)


class _RecordIndex(TensorIndex):
    """A big pickle checkpoint's state dict, converted to TensorInfo only where queried.

    Why: converting all ~1,100 rebuild records of an SD checkpoint costs ~0.5 ms of
    Python; identification needs a handful.  As for safetensors, the dtype reported
    is that of the entries read for identification (the UNet's, for a main model).
    """

    def __init__(self, records: dict) -> None:
        self._records = records
        self._full: dict[str, TensorInfo] | None = None
        self._seen: dict[str, TensorInfo] = {}

    @property
    def tensors(self) -> dict[str, TensorInfo]:
        if self._full is None:
            self._full = flatten_tensors(self._records)[0]
        return self._full

    def __len__(self) -> int:
        return len(self.tensors)

    def empty(self) -> bool:
        return not self._records

    def get(self, name: str) -> TensorInfo | None:
        info = self._seen.get(name)
        if info is None:
            info = as_tensor_info(self._records.get(name))
            if info is not None:
                self._seen[name] = info
        return info

    def has_prefix(self, prefix: str) -> bool:
        return any(type(n) is str and n.startswith(prefix) for n in self._records)

    def find(self, prefix: str, suffix: str) -> TensorInfo | None:
        for name in self._records:
            if type(name) is str and name.startswith(prefix) and name.endswith(suffix):
                info = self.get(name)
                if info is not None:
                    return info
        return None

    def dtype_counts(self) -> Counter:
        seen = Counter(t.dtype for t in self._seen.values())
        return seen if seen else super().dtype_counts()

    def has_ema(self) -> bool:
        return any(type(n) is str and n.startswith("model_ema.") and n not in ("model_ema.decay", "model_ema.num_updates")
                   for n in self._records)


#: A state dict with more entries than this is queried in place (see _RecordIndex).
RECORDS_IN_PLACE_ABOVE = 256



_KEY_END = re.compile(rb'\s*:\s*\{')  # what follows a tensor key's closing quote

_KEY_REST = re.compile(rb'[^"]*"\s*:\s*\{')  # the rest of a key after a prefix, then ":{"




def _positions(raw: bytes, needle: bytes):
    pos = raw.find(needle)
    while pos >= 0:
        yield pos
        pos = raw.find(needle, pos + 1)


class _RawSafetensorsIndex(TensorIndex):
    """Queries answered from the raw JSON header bytes, without parsing all of it.

    Why: ``json.loads`` of an SD checkpoint's 155 KB header costs ~0.9-1.7 ms here
    and ``safetensors.safe_open`` (keys and shapes) ~1.2-1.7 ms; identifying a main
    model needs a handful of entries, found with ``bytes.find`` (~0.05 ms a scan).
    A tensor key is a JSON string followed by ``:{`` (metadata values are strings,
    never followed by an object), which keeps metadata text from matching.
    Anything else falls back to a full parse.  The dtype reported is that of the
    entries read for identification (the UNet's, for a main model).
    """

    def __init__(self, raw: bytes, path: Path) -> None:
        self._raw = raw
        self._path = path
        self._full: dict[str, TensorInfo] | None = None
        self._seen: dict[str, TensorInfo] = {}

    @property
    def tensors(self) -> dict[str, TensorInfo]:
        if self._full is None:
            try:
                doc = json.loads(self._raw)
            except (UnicodeDecodeError, ValueError):
                raise not_safetensors(self._path, "its header is not valid JSON", b"") from None
            self._full = _safetensors_entries(doc, self._path)
        return self._full

    def __len__(self) -> int:
        if self._full is not None:
            return len(self._full)
        return self._raw.count(b'"data_offsets"')

    def empty(self) -> bool:
        return self._full == {} if self._full is not None else b'"data_offsets"' not in self._raw

    def get(self, name: str) -> TensorInfo | None:
        if self._full is not None:
            return self._full.get(name)
        if name in self._seen:
            return self._seen[name]
        quoted = b'"' + name.encode() + b'"'
        for pos in _positions(self._raw, quoted):
            m = _KEY_END.match(self._raw, pos + len(quoted))
            if m:
                info = self._seen[name] = self._entry_at(m.end() - 1, name)
                return info
        return None

    def _entry_at(self, start: int, name: str) -> TensorInfo:
        end = self._raw.find(b"}", start)
        try:
            entry = json.loads(self._raw[start:end + 1])
            return TensorInfo(tuple(entry["shape"]), SAFETENSORS_DTYPES.get(entry["dtype"], str(entry["dtype"]).lower()))
        except (ValueError, KeyError, TypeError):
            raise not_safetensors(self._path, f"malformed entry for tensor {name!r}", b"") from None

    def _key_with_prefix(self, prefix: str) -> int | None:
        """Offset of the first tensor key starting with ``prefix`` (at its opening quote)."""
        needle = b'"' + prefix.encode()
        for pos in _positions(self._raw, needle):
            if _KEY_REST.match(self._raw, pos + len(needle)):
                return pos
        return None

    def has_prefix(self, prefix: str) -> bool:
        if self._full is not None:
            return super().has_prefix(prefix)
        return self._key_with_prefix(prefix) is not None

    def may_have(self, fragment: str) -> bool:
        # get/has_prefix/find in place look for the name's bytes verbatim: no bytes, no match
        return self._full is not None or fragment.encode() in self._raw

    def find(self, prefix: str, suffix: str) -> TensorInfo | None:
        if self._full is not None:
            return super().find(prefix, suffix)
        start = self._key_with_prefix(prefix)
        if start is None:
            return None
        pattern = b'"(' + re.escape(prefix.encode()) + rb'[^"]*' + re.escape(suffix.encode()) + rb')"\s*:\s*\{'
        m = re.compile(pattern).search(self._raw, start)
        return None if m is None else self.get(m.group(1).decode())

    def dtype_counts(self) -> Counter:
        if self._full is None:
            seen = Counter(t.dtype for t in self._seen.values())
            if seen:
                return seen
            counts = +Counter({SAFETENSORS_DTYPES[c]: self._raw.count(b'"%s"' % c.encode()) for c in FLOAT_CODES})
            if counts:
                return counts
        return super().dtype_counts()

    def has_ema(self) -> bool:
        if self._full is not None:
            return super().has_ema()
        needle = b'"model_ema.'
        for pos in _positions(self._raw, needle):
            m = re.compile(rb'([^"]*)"\s*:\s*\{').match(self._raw, pos + len(needle))
            if m and m.group(1) not in (b"decay", b"num_updates"):
                return True
        return False


def _safetensors_entries(doc: Any, path: Path) -> dict[str, TensorInfo]:
    if not isinstance(doc, dict):
        raise not_safetensors(path, "its header is not a JSON object", b"")
    tensors: dict[str, TensorInfo] = {}
    for name, entry in doc.items():
        if name == "__metadata__":
            continue
        try:
            tensors[name] = TensorInfo(tuple(entry["shape"]),
                                       SAFETENSORS_DTYPES.get(entry["dtype"], str(entry["dtype"]).lower()))
        except (KeyError, TypeError):
            raise not_safetensors(path, f"malformed entry for tensor {name!r}", b"") from None
    return tensors



# --- reading headers -------------------------------------------------------------------


#: Headers shorter than this are parsed whole (validated entry by entry); longer ones
#: (main checkpoints: ~155 KB for SD1.5) are queried in place, see _RawSafetensorsIndex.
FULL_PARSE_BELOW = 32_768


def not_safetensors(path: Path, why: str, first: bytes) -> ProbeError:
    if why == "empty":
        return ProbeError(f"{path.name}: the file is empty (0 bytes)", hint="download it again, or delete it")
    try:
        text = first[:8].decode("ascii") if len(first) >= 8 else ""
    except UnicodeDecodeError:
        text = ""
    if text and all(ch.isprintable() or ch in "\r\n\t" for ch in text):
        # a safetensors file starts with an 8-byte little-endian length: never 8 printable characters
        what = ("it is an HTML page (a web page), not a model" if first.lstrip()[:1] == b"<"
                else "it starts with text, e.g. a saved web page or an error message")
        return ProbeError(
            f"{path.name}: not a safetensors file: {what}",
            hint="download the model file itself again (a site that wants a login sends a page instead)",
        )
    looks = ""
    if first[:4] == b"PK\x03\x04" or first[:1] == b"\x80":
        looks = " It looks like a pickle (.ckpt) checkpoint renamed .safetensors."
    elif first.lstrip()[:1] in (b"<", b"{"):
        looks = " It looks like a text/HTML page, not a model."
    return ProbeError(
        f"{path.name}: not a valid safetensors file ({why}).{looks}",
        hint="download it again; if it really is a .ckpt, rename it so it is scanned and read as one",
    )


def _truncated(path: Path, described: int, size: int) -> ProbeError:
    return ProbeError(
        f"{path.name}: truncated: its header describes {described} bytes but the file has {size}",
        hint="the download is incomplete; download it again",
    )


def _read_safetensors_raw(path: Path) -> tuple[bytes, int]:
    """The JSON header bytes and the file size (two small reads)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            return read_header_bytes(fd)
        finally:
            os.close(fd)
    except SafetensorsFormatError as exc:
        why = "empty" if not exc.first and str(exc) == "shorter than a header" else str(exc)
        raise not_safetensors(path, why, exc.first) from None
    except OSError as exc:
        raise ProbeError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _header_from_raw(raw: bytes, size: int, path: Path) -> Header:
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise not_safetensors(path, "its header is not valid JSON", raw[:1]) from None
    tensors = _safetensors_entries(doc, path)
    try:
        end = max((int(e["data_offsets"][1]) for k, e in doc.items() if k != "__metadata__"), default=0)
    except (KeyError, TypeError, IndexError, ValueError):
        raise not_safetensors(path, "malformed data_offsets", raw[:1]) from None
    if 8 + len(raw) + end > size:
        raise _truncated(path, 8 + len(raw) + end, size)
    metadata = doc.get("__metadata__") or {}
    return Header(tensors, dict(metadata) if isinstance(metadata, dict) else {}, "safetensors")


def read_safetensors_header(path: Path) -> Header:
    """Parse the whole JSON header of a ``.safetensors`` file.

    :raises ProbeError: a header that is too large, truncated, not JSON, or
        tensors that end past the end of the file (a partial download).
    """
    raw, size = _read_safetensors_raw(path)
    return _header_from_raw(raw, size, path)


def _metadata_in_place(raw: bytes, path: Path) -> dict[str, Any]:
    needle = b'"__metadata__"'
    for pos in _positions(raw, needle):
        m = re.compile(rb"\s*:\s*").match(raw, pos + len(needle))
        try:
            value, _ = json.JSONDecoder().raw_decode(raw[m.end():].decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            continue  # the same text inside a metadata value; the real key parses
        return value if isinstance(value, dict) else {}
    return {}



_END_BEFORE = re.compile(rb",\s*$")

_END_AFTER = re.compile(rb"\s*\]")

_START_BEFORE = re.compile(rb"\[\s*$")

_START_AFTER = re.compile(rb"\s*,\s*(\d+)\s*\]")



def _check_complete_in_place(raw: bytes, size: int, path: Path) -> None:
    """Raise if a tensor ends past the end of the file, without parsing every entry.

    safetensors lays tensors out contiguously from offset 0, so a complete file has
    a tensor ending exactly at its data size D and none starting at D with bytes.
    Only when that quick test fails are all end offsets read.
    """
    data = size - 8 - len(raw)
    needle = b"%d" % data
    ends_at_d = starts_past = False
    for pos in _positions(raw, needle):
        after = pos + len(needle)
        if raw[pos - 1:pos].isdigit() or raw[after:after + 1].isdigit():
            continue  # part of a longer number
        before = raw[max(0, pos - 8):pos]
        if _END_BEFORE.search(before) and _END_AFTER.match(raw, after):
            ends_at_d = True
        m = _START_AFTER.match(raw, after)
        if _START_BEFORE.search(before) and m and int(m.group(1)) > data:
            starts_past = True
    if ends_at_d and not starts_past:
        return
    ends = re.findall(rb'"data_offsets"\s*:\s*\[\s*\d+\s*,\s*(\d+)\s*\]', raw)
    end = max((int(e) for e in ends), default=0)
    if end > data:
        raise _truncated(path, 8 + len(raw) + end, size)


def _safetensors_index(path: Path) -> tuple[TensorIndex, dict[str, Any]]:
    raw, size = _read_safetensors_raw(path)
    if len(raw) < FULL_PARSE_BELOW:
        header = _header_from_raw(raw, size, path)
        return TensorIndex(header.tensors), header.metadata
    body = raw.strip()
    if body[:1] != b"{" or body[-1:] != b"}":  # the cheap part of "is this JSON"
        raise not_safetensors(path, "its header is not valid JSON", raw[:1])
    _check_complete_in_place(raw, size, path)
    return _RawSafetensorsIndex(raw, path), _metadata_in_place(raw, path)


def read_pickle_header(path: Path) -> Header:
    """Tensor names/shapes/dtypes and top-level scalars of a pickle checkpoint (zip or legacy).

    :raises ProbeError: neither a zip checkpoint nor a readable pickle.
    """
    tensors, scalars = flatten_tensors(_read_pickle(path))
    return Header(tensors, scalars, "ckpt")


def _read_pickle(path: Path) -> Any:
    try:
        with open(path, "rb") as f:
            return read_pickle_object(f)[0]
    except PickleHeaderError as exc:
        raise ProbeError(
            f"{path.name}: not a readable PyTorch checkpoint ({exc})",
            hint="download it again, or use a .safetensors version of the model",
        ) from None
    except OSError as exc:
        raise ProbeError(f"{path}: cannot read ({exc.strerror or exc})") from None


def sniff_format(path: Path) -> str:
    """``safetensors`` or ``ckpt`` from the name and first bytes; ProbeError for anything else."""
    if path.suffix.lower() in SAFETENSORS_SUFFIXES:
        return "safetensors"
    try:
        with open(path, "rb") as f:
            first = f.read(9)
    except OSError as exc:
        raise ProbeError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if first[:4] == b"PK\x03\x04" or first[:1] == b"\x80":
        return "ckpt"
    if len(first) == 9 and first[8:9] == b"{":  # a safetensors file with another name
        return "safetensors"
    what = "a text/HTML page" if first.lstrip()[:1] in (b"<", b"{") else "not a model file"
    raise ProbeError(
        f"{path.name}: {what} (neither safetensors nor a PyTorch checkpoint)",
        hint="download it again; a login page saved as a model means a token is needed",
    )


def read_header(path: str | os.PathLike) -> Header:
    """The whole header of a single-file checkpoint, whatever its format (sniffed from its first bytes).

    A ``.safetensors`` name must hold safetensors; any other name is read by content.
    """
    path = Path(path)
    if sniff_format(path) == "safetensors":
        return read_safetensors_header(path)
    return read_pickle_header(path)


#: A zip checkpoint whose data.pkl is bigger than this is queried in place (see PickleBytes).
PICKLE_IN_PLACE_ABOVE = 32_768


def _object_index(obj: Any) -> tuple[TensorIndex, dict[str, Any]]:
    """An index over an unpickled checkpoint object, and its top-level scalars."""
    root = obj.get("state_dict") if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict) else obj
    scalars = flatten_tensors({k: v for k, v in obj.items() if k != "state_dict"})[1] if isinstance(obj, dict) else {}
    # a nested state dict ({"params_ema": {...}} of basicsr upscalers, an IP-Adapter's {"image_proj": ...,
    # "ip_adapter": ...}) is flattened: _RecordIndex answers for flat names only
    if isinstance(root, dict) and len(root) > RECORDS_IN_PLACE_ABOVE and not any(isinstance(v, dict) for v in root.values()):
        return _RecordIndex(root), scalars
    return TensorIndex(flatten_tensors(obj)[0]), scalars


def _unpickle_data(data: bytes, path: Path) -> Any:
    try:
        return unpickle_bytes(data)
    except PickleHeaderError as exc:
        raise ProbeError(f"{path.name}: not a readable PyTorch checkpoint ({exc})",
                         hint="download it again, or use a .safetensors version of the model") from None


class _PickleBytesIndex(TensorIndex):
    """A big zip checkpoint queried from its ``data.pkl`` bytes (:class:`.pickle_header.PickleBytes`).

    Any question the bytes cannot answer exactly unpickles the whole thing once
    and answers from that.  As for safetensors, the dtype reported is that of the
    entries read for identification (the UNet's, for a main model).
    """

    def __init__(self, view: PickleBytes, path: Path) -> None:
        self._view = view
        self._path = path
        self._fallback: TensorIndex | None = None
        self._seen: dict[str, TensorInfo] = {}

    def full(self) -> TensorIndex:
        if self._fallback is None:
            self._fallback = _object_index(_unpickle_data(self._view.data, self._path))[0]
        return self._fallback

    @property
    def tensors(self) -> dict[str, TensorInfo]:
        return self.full().tensors

    def __len__(self) -> int:
        return len(self.full())

    def empty(self) -> bool:
        if self._fallback is None and b"_rebuild_tensor" in self._view.data:
            return False
        return self.full().empty()

    def get(self, name: str) -> TensorInfo | None:
        if self._fallback is not None:
            return self._fallback.get(name)
        if name not in self._seen:
            try:
                info = self._view.tensor(name)
            except InPlaceUnsupported:
                return self.full().get(name)
            if info is None:
                return None
            self._seen[name] = info
        return self._seen[name]

    def has_prefix(self, prefix: str) -> bool:
        if self._fallback is not None:
            return self._fallback.has_prefix(prefix)
        return self._view.has_key_prefix(prefix)

    def may_have(self, fragment: str) -> bool:
        # in place, keys are found by their BINUNICODE bytes: no bytes, no match
        return self._fallback is not None or fragment.encode() in self._view.data

    def find(self, prefix: str, suffix: str) -> TensorInfo | None:
        if self._fallback is not None:
            return self._fallback.find(prefix, suffix)
        for _, key in self._view.keys_with_prefix(prefix):
            if key.endswith(suffix):
                return self.get(key)
        return None

    def dtype_counts(self) -> Counter:
        seen = Counter(t.dtype for t in self._seen.values())
        return seen if seen and self._fallback is None else self.full().dtype_counts()

    def has_ema(self) -> bool:
        if self._fallback is not None:
            return self._fallback.has_ema()
        return any(key not in ("model_ema.decay", "model_ema.num_updates")
                   for _, key in self._view.keys_with_prefix("model_ema."))


def _pickle_index(path: Path) -> tuple[TensorIndex, dict[str, Any]]:
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
            data = zip_data_pkl_bytes(f) if magic == b"PK\x03\x04" else None
            if magic == b"PK\x03\x04" and data is None:
                data = read_zip_data_pkl(f)  # another zip layout: through the central directory
    except PickleHeaderError as exc:
        raise ProbeError(f"{path.name}: not a readable PyTorch checkpoint ({exc})",
                         hint="download it again, or use a .safetensors version of the model") from None
    except OSError as exc:
        raise ProbeError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if data is None:  # legacy or plain pickle
        return _object_index(_read_pickle(path))
    if (len(data) > PICKLE_IN_PLACE_ABOVE and b"prediction_type" not in data and b"parameterization" not in data
            and not _wrapped_state_dict(data)):
        try:
            view = PickleBytes(data)
            step = view.int_value("global_step")
            return _PickleBytesIndex(view, path), ({} if step is None else {"global_step": step})
        except (InPlaceUnsupported, IndexError, struct.error):
            pass
    return _object_index(_unpickle_data(data, path))


_FIRST_KEY = re.compile(rb"\x80\x02\}q\x00\(?X(.{4})", re.S)  # torch.save of a dict: its first key (MARK when 2+ keys)


def _wrapped_state_dict(data: bytes) -> bool:
    """Whether a pickle's top-level dict starts with a key (other than ``state_dict``) whose value is a dict:
    ``{"params_ema": {...}}`` (basicsr upscalers), ``{"image_proj": {...}, "ip_adapter": {...}}`` (IP-Adapter).

    :class:`PickleBytes` finds keys by their bytes and cannot join ``params_ema`` + ``conv_first.weight``,
    so such files are unpickled whole (they are small: upscalers, adapters); a few byte compares, no scan.
    """
    m = _FIRST_KEY.match(data)
    if m is None:
        return False
    start = m.end()
    end = start + struct.unpack("<I", m.group(1))[0]
    if data[start:end] == b"state_dict":
        return False
    op = data[end:end + 1]
    end += 2 if op == b"q" else 5 if op == b"r" else 0  # BINPUT / LONG_BINPUT of the key
    return data[end:end + 1] == b"}" or data.startswith(b"ccollections\nOrderedDict\n", end)


def open_index(path: Path) -> tuple[TensorIndex, dict[str, Any], str]:
    if sniff_format(path) == "safetensors":
        index, metadata = _safetensors_index(path)
        return index, metadata, "safetensors"
    index, scalars = _pickle_index(path)
    return index, scalars, "ckpt"
