"""Refuse dangerous pickles before anything loads them; load checkpoints only with ``weights_only=True``.

A pickle-based checkpoint (``.ckpt .pt .pth .bin``, or any zip/pickle whatever its
name) can name any Python callable and have the unpickler call it.  :func:`scan`
lists every global a file's pickles import *without executing anything* and gives
a verdict:

* ``safe``: only tensor-rebuild helpers (torch storages, ``_rebuild_tensor_v2``,
  ``OrderedDict``, numpy scalar helpers) and the one known-benign
  ``pytorch_lightning`` class of the original Stable Diffusion releases
  (``ModelCheckpoint``: picklescan calls it "Suspicious", a false positive users hate);
* ``suspicious``: other globals that are not known to run code (installed, with a note);
* ``dangerous``: a global that can run code or touch the system (``os.system``,
  ``subprocess.*``, ``builtins.exec/eval/__import__/getattr/open``, ``runpy``,
  ``socket`` ...), or an import target hidden from static reading: refused;
* ``unreadable``: not a pickle/zip checkpoint we can parse.

How globals are found: the probe's inert unpickler (:mod:`.pickle_header`, which
imports and calls nothing named in the file) runs over each pickle and records every
``find_class`` call, in C; any pickle it cannot get through is walked opcode by opcode
instead (``pickletools.genops``), which also flags import targets hidden from static
reading.  Our classification decides; picklescan's (a dependency: its block-list is
long and kept up to date) is applied to the same globals and can only make a verdict worse.

:func:`load_state_dict` is the only way the installer loads a checkpoint:
safetensors through ``safetensors``; pickles only after :func:`check` passes and
only with ``torch.load(weights_only=True)`` inside ``torch.serialization.safe_globals``
with inert stand-ins for exactly the known-benign pytorch_lightning class.
``weights_only=False`` is never used.

torch, safetensors and picklescan are imported lazily.
"""

from __future__ import annotations

import io
import os
import pickletools
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterable

from invokeai_model_install.errors import ProbeError, UnsafeFileError
from invokeai_model_install.formats.files import PICKLE_SUFFIXES, SAFETENSORS_SUFFIXES
from invokeai_model_install.formats.pickle_header import (
    LEGACY_MAGIC,
    MAX_PICKLE_BYTES,
    STORAGE_DTYPES,
    TORCH_DTYPES,
    AllocationRefused,
    HeaderUnpickler,
    PickleTooLarge,
    capped,
)

__all__ = ["ScanVerdict", "scan", "check", "load_state_dict", "classify_global", "PICKLE_SUFFIXES"]


_RANK = {"safe": 0, "suspicious": 1, "unreadable": 2, "dangerous": 3}

#: The pytorch_lightning globals found in the original SD 1.x releases (sd-v1-4.ckpt,
#: v1-5-pruned.ckpt): the callback's class is a dict key in ``callbacks``.  Exactly these.
LIGHTNING_GLOBALS = frozenset({"pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"})

#: Rebuild helpers a plain ``torch.save`` of tensors (and numpy scalars, protocol 2 bytes) uses.
SAFE_GLOBALS = frozenset(
    {f"torch.{name}" for name in STORAGE_DTYPES}
    | {f"torch.{name}" for name in TORCH_DTYPES}
    | {
        "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor", "torch._utils._rebuild_parameter",
        "torch._utils._rebuild_parameter_with_state", "torch._utils._rebuild_meta_tensor_no_storage",
        "torch._tensor._rebuild_from_type_v2", "torch.Size",
        "collections.OrderedDict", "_codecs.encode",
        "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
        "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
        "numpy.ndarray", "numpy.dtype",
    }
    | {f"{m}.{n}" for m in ("builtins", "__builtin__") for n in
       ("set", "frozenset", "slice", "dict", "list", "tuple", "bytearray", "bytes", "int", "float",
        "complex", "bool", "str", "range")}
) | LIGHTNING_GLOBALS

#: Modules any of whose names can run code, reach the system or load more pickles.
_DANGEROUS_MODULES = frozenset({
    "os", "posix", "nt", "subprocess", "sys", "socket", "ssl", "runpy", "shutil", "pty", "pdb", "bdb",
    "webbrowser", "ctypes", "importlib", "code", "codeop", "marshal", "pickle", "_pickle", "dill",
    "cloudpickle", "multiprocessing", "asyncio", "requests", "urllib", "http", "httplib", "ftplib",
    "smtplib", "telnetlib", "commands", "platform", "signal", "_thread", "threading", "pip",
    "setuptools", "distutils", "timeit", "cProfile", "profile", "trace", "pydoc", "pkgutil",
    "zipimport", "venv", "ensurepip", "uuid", "_osx_support", "_aix_support", "_pyrepl", "types",
    "inspect", "gc", "_io", "io", "tempfile", "glob", "pathlib", "aiohttp", "numpy.f2py",
    "numpy.testing", "torch.hub", "torch._inductor", "torch.jit", "torch.utils.cpp_extension",
    "torch._dynamo", "torch.fx", "imaplib", "doctest", "idlelib", "lib2to3", "test", "logging",
})
#: Dangerous names inside otherwise harmless modules.
_DANGEROUS_NAMES = {
    "builtins": {"eval", "exec", "compile", "open", "getattr", "setattr", "delattr", "__import__",
                 "globals", "locals", "vars", "input", "breakpoint", "apply", "execfile", "exit", "quit",
                 "help", "memoryview", "__loader__", "__build_class__"},
    "operator": {"attrgetter", "itemgetter", "methodcaller"},
    "functools": {"partial", "reduce"},
    "torch.serialization": {"load", "_load"},
    "torch": {"load"},
    "numpy": {"load", "loads", "fromfile"},
    "pandas": {"read_pickle"},
    "pandas.io.pickle": {"read_pickle"},
    "joblib": {"load"},
}
_DANGEROUS_NAMES["__builtin__"] = _DANGEROUS_NAMES["builtins"]
_DANGEROUS_NAMES["_operator"] = _DANGEROUS_NAMES["operator"]

#: Marks an import target that static reading cannot resolve (a STACK_GLOBAL fed by computed values).
HIDDEN = "<hidden>"


@dataclass(frozen=True)
class ScanVerdict:
    """The outcome of :func:`scan`.

    :ivar verdict: ``safe``, ``suspicious``, ``dangerous`` or ``unreadable``.
    :ivar globals: every ``module.name`` the file's pickles import, sorted.
    :ivar message: one line for the user; names the offending globals when not safe.
    :ivar offending: the globals that made the verdict (dangerous or suspicious ones).
    """

    verdict: str
    globals: tuple[str, ...]
    message: str
    offending: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when the file may be installed (safe or suspicious)."""
        return self.verdict in ("safe", "suspicious")


def classify_global(full: str) -> str:
    """``safe``, ``suspicious`` or ``dangerous`` for one ``module.name`` global."""
    if full in SAFE_GLOBALS:
        return "safe"
    if HIDDEN in full:
        return "dangerous"
    module, _, name = full.rpartition(".")
    parts = module.split(".")
    for i in range(1, len(parts) + 1):
        if ".".join(parts[:i]) in _DANGEROUS_MODULES:
            return "dangerous"
    if name in _DANGEROUS_NAMES.get(module, ()):
        return "dangerous"
    # "module.name" of a nested attribute (pickle protocol 4 qualnames: "os.system" via "builtins" + "getattr")
    if any(part in ("__globals__", "__builtins__", "__subclasses__", "__code__") for part in full.split(".")):
        return "dangerous"
    return "suspicious"


# --- finding the globals -----------------------------------------------------------------------

_STRING_OPS = frozenset({"SHORT_BINUNICODE", "UNICODE", "BINUNICODE", "BINUNICODE8", "STRING",
                         "BINSTRING", "SHORT_BINSTRING"})
_MEMO_PUT = frozenset({"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"})
_MEMO_GET = frozenset({"GET", "BINGET", "LONG_BINGET"})


class _Unparseable(Exception):
    pass


def _pickle_globals(stream: BinaryIO) -> tuple[set[tuple[str, str]], list]:
    """Globals imported by ONE pickle read from ``stream`` (left just after its STOP), and its opcodes' args.

    Nothing is executed: :func:`pickletools.genops` only decodes opcodes.
    :raises _Unparseable: the bytes are not a complete pickle.
    """
    found: set[tuple[str, str]] = set()
    memo: dict[int, Any] = {}
    recent: list[Any] = []  # values of the last pushing opcodes, memo ops skipped (for STACK_GLOBAL)
    args: list[Any] = []
    try:
        for op, arg, _pos in pickletools.genops(stream):
            name = op.name
            if len(args) < 8:
                args.append((name, arg))
            if name in _MEMO_PUT:
                key = len(memo) if name == "MEMOIZE" else arg
                memo[key] = recent[-1] if recent else None
                continue
            if name in ("GLOBAL", "INST"):
                module, _, attr = str(arg).partition(" ")
                found.add((module, attr))
                recent.append(None)
            elif name == "STACK_GLOBAL":
                if len(recent) >= 2 and isinstance(recent[-2], str) and isinstance(recent[-1], str):
                    found.add((recent[-2], recent[-1]))
                else:
                    found.add((HIDDEN, HIDDEN))
                recent.append(None)
            elif name in ("EXT1", "EXT2", "EXT4"):
                found.add(("copyreg", f"extension_{arg}"))  # resolved through a registry we do not read
                recent.append(None)
            elif name in _STRING_OPS:
                recent.append(arg if isinstance(arg, str) else None)
            elif name in _MEMO_GET:
                recent.append(memo.get(arg))
            else:
                recent.append(None)
            if len(recent) > 64:
                del recent[:32]
    except Exception as exc:  # genops raises ValueError and friends on garbage
        raise _Unparseable(f"{type(exc).__name__}: {exc}") from None
    return found, args


def _is_legacy_magic(args: list) -> bool:
    return len(args) >= 2 and args[1][1] == LEGACY_MAGIC


class _RecordingUnpickler(HeaderUnpickler):
    """The probe's inert unpickler, also recording every global the pickle resolves."""

    def __init__(self, file: BinaryIO, seen: set[tuple[str, str]]) -> None:
        super().__init__(file)
        self.seen = seen

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102 - pickle API
        self.seen.add((module, name))
        return super().find_class(module, name)


def _globals_of_one(stream: BinaryIO) -> tuple[set[tuple[str, str]], bool]:
    """Globals imported by the pickle at the stream's position, and whether it is torch's legacy magic.

    Fast path: run the inert unpickler of :mod:`.pickle_header` (nothing named in the
    file is imported or called) and record its ``find_class`` calls: every GLOBAL,
    STACK_GLOBAL and INST opcode goes through it, in C (~1 ms for an SD checkpoint,
    against ~60 ms for walking the opcodes in Python).  Any failure (a hostile or odd
    pickle) falls back to the static opcode walk, which misses nothing it can parse.
    """
    start = stream.tell()
    seen: set[tuple[str, str]] = set()
    try:
        value = _RecordingUnpickler(stream, seen).load()
        return seen, type(value) is int and value == LEGACY_MAGIC
    except AllocationRefused as exc:
        exc.globals = seen  # type: ignore[attr-defined]
        raise
    except MemoryError:
        exc = AllocationRefused("more memory than this machine has")
        exc.globals = seen  # type: ignore[attr-defined]
        raise exc from None
    except Exception:  # noqa: BLE001 - whatever went wrong, the static walk decides
        stream.seek(start)
    try:
        found, args = _pickle_globals(stream)
    except _Unparseable:
        if getattr(getattr(stream, "raw", None), "exhausted", False):
            raise PickleTooLarge(f"its pickle data is larger than {MAX_PICKLE_BYTES >> 20} MB (not a checkpoint's)") from None
        raise
    return found | seen, _is_legacy_magic(args)


def _scan_pickle_stream(stream: BinaryIO) -> set[tuple[str, str]]:
    """Globals of a plain or legacy-torch pickle file (several pickles back to back)."""
    found, legacy = _globals_of_one(stream)
    if legacy:
        # legacy torch: protocol, sys_info, the object, the storage keys; then raw bytes
        for _ in range(4):
            found |= _globals_of_one(stream)[0]
        return found
    # Any further pickles torch would not read, but scan them while they parse: cheap and strict.
    for _ in range(16):
        start = stream.tell()
        if stream.read(1) != b"\x80":
            break
        stream.seek(start)
        try:
            found |= _globals_of_one(stream)[0]
        except _Unparseable:
            break
    return found


def _scan_zip(path: Path) -> set[tuple[str, str]]:
    """Globals of every ``.pkl`` member, found through the central directory (what torch.load reads)."""
    found: set[tuple[str, str]] = set()
    try:
        with zipfile.ZipFile(path) as zf:
            pickles = [n for n in zf.namelist() if n.endswith(".pkl")]
            if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in pickles):
                raise _Unparseable("a zip file without data.pkl: not a PyTorch checkpoint")
            for member in pickles:
                size = zf.getinfo(member).file_size
                if size > MAX_PICKLE_BYTES:  # zipfile never inflates past the declared size: no zip bomb
                    raise PickleTooLarge(f"its {member} is {size} bytes, larger than {MAX_PICKLE_BYTES >> 20} MB (not a checkpoint's)")
                data = zf.read(member)
                found |= _globals_of_one(io.BufferedReader(io.BytesIO(data), max(len(data), 1)))[0]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, ValueError, OSError) as exc:
        raise _Unparseable(f"a damaged zip file ({exc})") from None
    return found


def _picklescan_dangerous(path: Path, found: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """The globals picklescan calls Dangerous: a second opinion that can only make a verdict worse.

    picklescan's classifier is applied to the globals we found (its block-list is
    long and kept up to date); if that internal function is gone in some version,
    picklescan scans the file itself.  A failure of picklescan never breaks the scan.
    """
    try:
        import logging

        from picklescan import scanner

        logging.getLogger("picklescan").setLevel(logging.CRITICAL)  # it logs every finding as a warning
        classify = getattr(scanner, "_build_scan_result_from_raw_globals", None)
        if classify is not None:
            result = classify(set(found), str(path))
        else:
            with open(path, "rb") as f:
                result = scanner.scan_bytes(f, str(path), ".ckpt")
        return {(g.module, g.name) for g in result.globals if g.safety == scanner.SafetyLevel.Dangerous}
    except Exception:  # noqa: BLE001 - a second opinion must never break the first
        return set()


def _sniff(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(9)


def _looks_pickle(first: bytes) -> bool:
    return first[:4] == b"PK\x03\x04" or (len(first) >= 2 and first[0] == 0x80 and first[1] <= 5)


def _verdict_for(path: Path, found: set[tuple[str, str]], flagged: set[tuple[str, str]] = frozenset()) -> ScanVerdict:
    """The verdict for the globals ``found``; ``flagged`` are globals picklescan calls dangerous."""
    flagged_names = {f"{m}.{n}" for m, n in flagged}
    names = tuple(sorted({f"{m}.{n}" for m, n in found} | flagged_names))
    dangerous = tuple(g for g in names if g in flagged_names or classify_global(g) == "dangerous")
    if dangerous:
        shown = ", ".join("a hidden import target" if HIDDEN in g else g for g in dangerous)
        return ScanVerdict("dangerous", names, f"{path.name}: imports {shown}, which can run code on load",
                           dangerous)
    suspicious = tuple(g for g in names if classify_global(g) == "suspicious")
    if suspicious:
        return ScanVerdict("suspicious", names,
                           f"{path.name}: imports unusual globals {', '.join(suspicious)} (not known to be harmful)",
                           suspicious)
    return ScanVerdict("safe", names, f"{path.name}: only tensor data")


def _scan_file(path: Path) -> ScanVerdict:
    try:
        first = _sniff(path)
    except OSError as exc:
        return ScanVerdict("unreadable", (), f"{path}: cannot read ({exc.strerror or exc})")
    is_st_name = path.suffix.lower() in SAFETENSORS_SUFFIXES
    if not first:
        return ScanVerdict("unreadable", (), f"{path.name}: the file is empty (0 bytes)")
    if not _looks_pickle(first):
        if is_st_name or (len(first) == 9 and first[8:9] == b"{"):
            from invokeai_model_install.identify.headers import read_safetensors_header  # header check only: no code in safetensors

            try:
                read_safetensors_header(path)
            except ProbeError as exc:
                return ScanVerdict("unreadable", (), exc.message)
            return ScanVerdict("safe", (), f"{path.name}: safetensors (holds no code)")
        return ScanVerdict("unreadable", (), f"{path.name}: neither a pickle checkpoint nor safetensors")
    try:
        if first[:4] == b"PK\x03\x04":
            found = _scan_zip(path)
        else:
            with open(path, "rb") as f:
                found = _scan_pickle_stream(capped(f))  # never more than MAX_PICKLE_BYTES in memory
    except AllocationRefused as exc:
        seen = getattr(exc, "globals", set())
        names = tuple(sorted({f"{m}.{n}" for m, n in seen}))
        return ScanVerdict("dangerous", names, f"{path.name}: {exc}", (exc.request,))
    except PickleTooLarge as exc:
        return ScanVerdict("unreadable", (), f"{path.name}: {exc}")
    except _Unparseable as exc:
        return ScanVerdict("unreadable", (), f"{path.name}: not a readable pickle checkpoint ({exc})")
    except OSError as exc:
        return ScanVerdict("unreadable", (), f"{path}: cannot read ({exc.strerror or exc})")
    verdict = _verdict_for(path, found, _picklescan_dangerous(path, found))
    if is_st_name and verdict.verdict != "dangerous":
        # a pickle wearing a .safetensors name: never loadable as safetensors
        return ScanVerdict("unreadable", verdict.globals,
                           f"{path.name}: a pickle checkpoint renamed .safetensors (not a safetensors file)")
    return verdict


def candidate_files(folder: Path) -> Iterable[Path]:
    """Files in a folder that could hold code or weights: pickles by name or content, and safetensors.

    Symlinked subfolders are followed (a loader follows them: scan what will be loaded), each real
    folder once (no loops).
    """
    seen: set[tuple[int, int]] = set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        try:
            st = os.stat(root)
        except OSError:
            dirs[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        for name in sorted(files):
            p = Path(root) / name
            if p.suffix.lower() in PICKLE_SUFFIXES + SAFETENSORS_SUFFIXES:
                yield p
                continue
            try:
                if _looks_pickle(_sniff(p)):
                    yield p
            except OSError:
                yield p  # unreadable: let _scan_file say so


def scan(path: str | os.PathLike) -> ScanVerdict:
    """Scan a file, or every pickle/safetensors file in a folder (the worst verdict wins); never executes anything."""
    path = Path(path)
    if path.is_dir():
        verdicts = [(p, _scan_file(p)) for p in candidate_files(path)]
        if not verdicts:
            return ScanVerdict("safe", (), f"{path.name}: no pickle or safetensors files")
        worst_path, worst = max(verdicts, key=lambda pv: _RANK[pv[1].verdict])
        all_globals = tuple(sorted({g for _, v in verdicts for g in v.globals}))
        message = worst.message if worst.verdict != "safe" else f"{path.name}: {len(verdicts)} weight files, tensor data only"
        if worst.verdict != "safe":
            message = f"{path.name}/{worst_path.relative_to(path)}: {worst.message.split(': ', 1)[-1]}"
        return ScanVerdict(worst.verdict, all_globals, message, worst.offending)
    if not path.is_file():
        return ScanVerdict("unreadable", (), f"{path}: no such file or folder")
    return _scan_file(path)


def check(path: str | os.PathLike) -> ScanVerdict:
    """:func:`scan`, raising for what must not be installed.

    :raises UnsafeFileError: a dangerous file (the message names the file and the offending globals).
    :raises ProbeError: an unreadable file.
    """
    verdict = scan(path)
    if verdict.verdict == "dangerous":
        raise UnsafeFileError(f"refused {Path(path).name}: {verdict.message}")
    if verdict.verdict == "unreadable":
        raise ProbeError(verdict.message, hint="download it again, or use a .safetensors version of the model")
    return verdict


# --- loading -------------------------------------------------------------------------------


class _LightningStub:
    """Inert stand-in for ``pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint``.

    The SD releases pickle the callback class as a dict key (and some builds an
    instance with a state dict); this class accepts both and runs nothing.
    """

    def __setstate__(self, state: Any) -> None:
        self.__dict__["_state"] = state


def _allowed_globals() -> list:
    """``torch.serialization.safe_globals`` entries: the Lightning stub and numpy scalar helpers."""
    allowed: list = [(_LightningStub, name) for name in LIGHTNING_GLOBALS]
    try:
        import numpy as np

        scalar = np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar
        allowed += [(scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"),
                    (np.dtype, "numpy.dtype")]
        allowed += [cls for cls in vars(np.dtypes).values() if isinstance(cls, type) and cls.__name__.endswith("DType")]
    except (ImportError, AttributeError):
        pass
    return allowed


def _weights_only_reason(text: str) -> str:
    """The useful part of torch's long weights_only refusal (which global it would not allow)."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    match = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if match:
        return f"it needs {match.group(1)}, which the restricted (weights-only) loader does not allow"
    match = re.search(r"WeightsUnpickler error: ([^\n]+)", text)
    detail = match.group(1) if match else " ".join(text.split())[:200]
    return f"the restricted (weights-only) loader rejected it ({detail.strip()})"


def _unwrap(obj: Any) -> Any:
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        return obj["state_dict"]
    return obj


def load_state_dict(path: str | os.PathLike, *, mmap: bool = True) -> dict[str, Any]:
    """Load a checkpoint's tensors safely: safetensors memory-mapped; pickles scanned, then ``weights_only``.

    ``{"state_dict": ...}`` wrappers are unwrapped.

    :raises UnsafeFileError: the file is dangerous, or torch's restricted loader refused a global.
    :raises ProbeError: the file is unreadable.
    """
    path = Path(path)
    first = _sniff(path) if path.is_file() else b""
    if not _looks_pickle(first) and (path.suffix.lower() in SAFETENSORS_SUFFIXES or first[8:9] == b"{"):
        from invokeai_model_install.identify.headers import read_safetensors_header

        read_safetensors_header(path)  # clear ProbeError for a broken header
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    check(path)
    import pickle

    import torch

    zipped = first[:4] == b"PK\x03\x04"
    try:
        with torch.serialization.safe_globals(_allowed_globals()):
            obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=bool(mmap and zipped))
    except pickle.UnpicklingError as exc:
        raise UnsafeFileError(f"refused {path.name}: {_weights_only_reason(str(exc))}") from None
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        raise ProbeError(f"{path.name}: could not be loaded ({type(exc).__name__}: {exc})",
                         hint="download it again, or use a .safetensors version of the model") from None
    obj = _unwrap(obj)
    if not isinstance(obj, dict):
        raise ProbeError(f"{path.name}: holds a {type(obj).__name__}, not a dict of tensors",
                         hint="this is not a model checkpoint this installer can use")
    return obj
