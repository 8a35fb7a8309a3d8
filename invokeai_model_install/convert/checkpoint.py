"""Convert a single-file Stable Diffusion checkpoint into a diffusers folder, offline.

Supported: SD 1.x (normal and inpainting), SD 2.x (epsilon and v-prediction, normal and
inpainting), SDXL base (and its inpainting variant) and SDXL refiner, from ``.safetensors``
or pickle ``.ckpt``/``.pt``/``.pth``/``.bin`` files, fp32/fp16/bf16.

How (see docs/conversion.md):

1. The probe reads the header (names, shapes, ``global_step``): base, variant, EMA.
2. The prediction type is decided: the ``prediction_type`` argument, else a yaml
   (``config_yaml`` or the companion ``<stem>.yaml``: ``parameterization: "v"``), else the
   probe (SD2 ``global_step`` 110000 -> v, 220000 -> epsilon), else epsilon for everything
   but SD2, whose undecided case raises :class:`QuestionUnanswered` for the caller to ask.
3. :mod:`.ldm_keys` plans every output tensor from names and shapes only, and derives the
   weight-dependent config values; the package skeleton (``convert/data/<type>/``) gives
   the rest, and its tokenizer files are copied (the shared CLIP vocabulary).
4. The plan is checked against the diffusers models built on torch's ``meta`` device (no
   memory; in a thread beside the writing, awaited before the move into place), so a
   checkpoint of an unexpected shape fails with a clear message instead of loading
   silently wrong later.
5. The bytes stream tensor by tensor from the memory-mapped input into
   :class:`.safetensors_stream.StreamingWriter` files, in input order, casting to fp16 when
   asked; consumed input pages are dropped from the resident set as we go.  No torch
   module is built, no state dict is held.
6. Everything is written to a hidden temporary folder next to ``dest``, fsynced, and moved
   into place with one ``os.replace``; on any failure the temporary folder is removed.
   The source file is only ever read.

Pickle checkpoints are loaded only through :func:`.safety.load_state_dict` (scan first,
then ``torch.load(weights_only=True, mmap=True)`` with just the known-benign
pytorch_lightning globals allowed).
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import sys
import threading
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invokeai_model_install.convert import ldm_keys
from invokeai_model_install.root.atomic import fsync_path
from invokeai_model_install.errors import (Cancelled, ConversionError, DiskSpaceError, InstallerError, ProbeError, QuestionUnanswered,
                     UsageError)
from invokeai_model_install.events import EventSink, ItemConverted, ItemNote, StageChanged, discard

__all__ = ["convert_checkpoint", "companion_vae", "skeleton_dir", "materialize_skeleton", "CONVERT_DATA",
           "SKELETONS", "resolve_device"]

#: Package data: one config-only skeleton per model type + the shared CLIP tokenizer files.
CONVERT_DATA = Path(__file__).resolve().parent / "data"
SKELETONS = ("sd-1", "sd-1-inpaint", "sd-2", "sd-2-v", "sd-2-inpaint", "sdxl", "sdxl-refiner")
_TOKENIZER_SHARED = ("vocab.json", "merges.txt")
_VAE_SUFFIXES = (".vae.safetensors", ".vae.pt", ".vae.ckpt", ".vae.pth", ".vae.bin")
_FLOAT_CODES = {"F32", "F16", "BF16", "F64"}


# ------------------------------------------------------------------------------ public helpers


def skeleton_dir(name: str) -> Path:
    """The packaged config-only skeleton folder for a model type (see :data:`SKELETONS`)."""
    if name not in SKELETONS:
        raise ValueError(f"no skeleton {name!r}; one of {SKELETONS}")
    return CONVERT_DATA / name


def materialize_skeleton(name: str, dest: str | os.PathLike) -> Path:
    """Copy a skeleton into ``dest`` with full tokenizer folders (what diffusers'
    ``from_single_file(config=...)`` wants); used by the benchmark and tests."""
    dest = Path(dest)
    shutil.copytree(skeleton_dir(name), dest)
    for tok in ("tokenizer", "tokenizer_2"):
        if (dest / tok).is_dir():
            for f in _TOKENIZER_SHARED:
                shutil.copyfile(CONVERT_DATA / "clip_tokenizer" / f, dest / tok / f)
    return dest


def companion_vae(src: str | os.PathLike) -> Path | None:
    """``<stem>.vae.safetensors|.vae.pt|.vae.ckpt`` next to a checkpoint, if any."""
    src = Path(src)
    stem = src.name[: -len(src.suffix)] if src.suffix else src.name
    for suffix in _VAE_SUFFIXES:
        candidate = src.with_name(stem + suffix)
        if candidate.is_file():
            return candidate
    return None


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a CUDA GPU, else ``cpu``; ``cuda``/``mps`` must exist."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("device 'cuda' was asked for but torch sees no CUDA GPU",
                             hint="use --device auto or cpu")
        return "cuda"
    if device == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise UsageError("device 'mps' was asked for but is not available", hint="use --device auto or cpu")
        return "mps"
    raise UsageError(f"unknown device {device!r}", hint="use auto, cpu, cuda or mps")


# ------------------------------------------------------------------------------ sources


class _Source:
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


class _SafetensorsSource(_Source):
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


_TORCH_CODES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64", "int64": "I64",
                "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL"}


class _TorchSource(_Source):
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
            code = _TORCH_CODES.get(str(v.dtype).replace("torch.", ""))
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


def _open_source(path: Path) -> _Source:
    with open(path, "rb") as f:
        first = f.read(9)
    if first[:4] == b"PK\x03\x04" or first[:1] == b"\x80":
        return _TorchSource(path)
    return _SafetensorsSource(path)


# ------------------------------------------------------------------------------ options


@dataclass
class _YamlOptions:
    parameterization: str | None = None  # "v" | "eps" | None
    heads: tuple[str, int] | None = None
    scale_factor: float | None = None
    penultimate: bool | None = None


def _read_yaml(path: Path) -> _YamlOptions:
    import yaml

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConversionError(f"{path.name}: unreadable config yaml ({exc})",
                              hint="fix or remove the yaml file next to the checkpoint") from None
    opts = _YamlOptions()
    params = doc.get("model", {}).get("params", {}) if isinstance(doc, dict) else {}
    if not isinstance(params, dict):
        return opts
    scaling = (((params.get("denoiser_config") or {}).get("params") or {}).get("scaling_config") or {})
    if params.get("parameterization"):
        opts.parameterization = str(params["parameterization"])
    elif "VScaling" in str(scaling.get("target", "")):  # SGM (SDXL) yamls say v-prediction this way
        opts.parameterization = "v"
    elif params:
        opts.parameterization = "eps"  # the LDM/SGM default
    if params.get("scale_factor") is not None:
        opts.scale_factor = float(params["scale_factor"])
    unet = (params.get("unet_config") or params.get("network_config") or {}).get("params", {}) or {}
    if isinstance(unet.get("num_heads"), int) and unet["num_heads"] > 0:
        opts.heads = ("num_heads", unet["num_heads"])
    if isinstance(unet.get("num_head_channels"), int) and unet["num_head_channels"] > 0:
        opts.heads = ("num_head_channels", unet["num_head_channels"])
    layer = ((params.get("cond_stage_config") or {}).get("params") or {}).get("layer")
    if layer in ("penultimate", "last"):
        opts.penultimate = layer == "penultimate"
    return opts


def _normalize_prediction(value: str | None) -> str | None:
    if value is None:
        return None
    v = str(value).lower()
    if v in ("v", "v_prediction", "v-prediction"):
        return "v"
    if v in ("epsilon", "eps"):
        return "epsilon"
    raise UsageError(f"unknown prediction type {value!r}", hint="use epsilon or v")


def _skeleton_for(base: str, variant: str, prediction: str) -> str:
    if base == "sd-1":
        return "sd-1-inpaint" if variant == "inpaint" else "sd-1"
    if base == "sd-2":
        if variant == "inpaint":
            return "sd-2-inpaint"
        return "sd-2-v" if prediction == "v" else "sd-2"
    if base in ("sdxl", "sdxl-refiner"):
        return base
    raise ConversionError(f"no conversion for base {base!r}")


def _read_skeleton(name: str) -> dict[str, Any]:
    root = skeleton_dir(name)
    return {str(p.relative_to(root)).replace(os.sep, "/"): json.loads(p.read_text(encoding="utf-8"))
            for p in sorted(root.rglob("*.json"))}


# ------------------------------------------------------------------------------ validation


def _check_shapes(component: str, produced: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]],
                  src: Path) -> None:
    missing = sorted(set(expected) - set(produced))
    extra = sorted(set(produced) - set(expected))
    wrong = sorted(k for k in set(expected) & set(produced) if tuple(expected[k]) != tuple(produced[k]))
    if missing or extra or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if extra:
            parts.append(f"{len(extra)} unexpected (e.g. {extra[0]})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} of the wrong shape (e.g. {k}: {produced[k]} vs {expected[k]})")
        raise ConversionError(
            f"{src.name}: its {component} does not have the layout of a supported model: " + "; ".join(parts),
            hint="this checkpoint is not a standard SD 1.x/2.x/SDXL model; install it as a single file instead",
        )


class _Checks(threading.Thread):
    """The meta-device shape checks, run beside the writing.

    Importing diffusers' model classes costs ~1.5-3 s here; the writer spends its time in
    syscalls and torch casts (GIL released), so the two overlap.  The result is awaited
    before the output is moved into place: a failed check still leaves nothing behind.
    """

    def __init__(self, checks: list[tuple[str, dict, str, dict, Path]]) -> None:
        super().__init__(name="convert-shape-checks", daemon=True)
        self._checks = checks
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for component, produced, cls_name, config, path in self._checks:
                _check_shapes(component, produced, _meta_shapes(cls_name, config), path)
        except BaseException as exc:  # re-raised in the converting thread
            self.error = exc

    def result(self) -> None:
        self.join()
        if self.error is not None:
            raise self.error


def _meta_shapes(cls_name: str, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """State-dict shapes of a diffusers model built on the meta device (no memory, ~0.1-0.4 s)."""
    import torch
    import diffusers

    cls = getattr(diffusers, cls_name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.device("meta"):
            model = cls.from_config({k: v for k, v in config.items() if not k.startswith("_")})
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


# ------------------------------------------------------------------------------ writing


@dataclass
class _Output:
    folder: str
    filename: str
    plan: ldm_keys.ComponentPlan
    source: _Source


def _out_code(src_code: str, precision: str) -> str:
    if src_code not in _FLOAT_CODES:
        return src_code
    return "F16" if precision == "fp16" else "F32"


_TORCH_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64"}
_ITEM = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def _file_range(source: _Source, move: ldm_keys.Move, out_code: str) -> tuple[int, int, int] | None:
    """Where a tensor's output bytes already sit in the input file, when they need no change."""
    code = source.codes[move.src]
    if code != out_code or move.transpose:
        return None
    where = source.file_range(move.src)
    if where is None:
        return None
    fd, offset, nbytes = where
    if move.rows is not None:
        row = nbytes // max(1, source.shapes[move.src][0])
        offset, nbytes = offset + move.rows[0] * row, (move.rows[1] - move.rows[0]) * row
    return fd, offset, nbytes


class _Scratch:
    """One reusable output buffer for casts: a fresh allocation per tensor would page-fault
    every output byte in again (measured: most of the fp16 path's cost after the copy itself)."""

    def __init__(self) -> None:
        self._buf = None

    def get(self, shape: tuple[int, ...], dtype):
        import torch

        n = 1
        for d in shape:
            n *= d
        nbytes = n * torch.empty((), dtype=dtype).element_size()
        if self._buf is None or self._buf.numel() < nbytes:
            self._buf = torch.empty(max(nbytes, 1 << 20), dtype=torch.uint8)
        return self._buf[:nbytes].view(dtype).view(shape)


def _tensor_bytes(source: _Source, move: ldm_keys.Move, out_code: str, device: str, scratch: _Scratch):
    """The output bytes of one planned tensor: a zero-copy slice when no cast or transpose is needed."""
    code = source.codes[move.src]
    view = source.view(move.src)
    shape = source.shapes[move.src]
    if move.rows is not None:
        row = _ITEM[code]
        for d in shape[1:]:
            row *= d
        view = view[move.rows[0] * row: move.rows[1] * row]
        shape = (move.rows[1] - move.rows[0],) + tuple(shape[1:])
    if code == out_code and not move.transpose:
        return view
    import torch

    if view.nbytes == 0:
        return b""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "non-writable buffer": we only read it
        t = torch.frombuffer(view, dtype=getattr(torch, _TORCH_DTYPES[code])).reshape(shape)
    if move.transpose:
        t = t.t()
    target = getattr(torch, _TORCH_DTYPES[out_code])
    if device != "cpu":
        t = t.to(device).to(target)
    out = scratch.get(tuple(t.shape), target)
    out.copy_(t)  # cast (and transpose) straight into the reused buffer
    return memoryview(out.reshape(-1).view(torch.uint8).numpy())


def _check_cancel(cancel: Any) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("conversion cancelled by the user")


def _write_component(out: _Output, folder: Path, precision: str, device: str, cancel: Any = None) -> None:
    """Write one component's weights file, tensor by tensor, in input order.

    Two stages overlap: this thread casts tensor n (torch releases the GIL) while a writer
    thread pushes tensor n-1 to the file (syscalls release it too); two scratch buffers
    alternate so a cast never overwrites bytes still being written.
    """
    from concurrent.futures import ThreadPoolExecutor

    from invokeai_model_install.formats.safetensors_stream import StreamingWriter

    moves = sorted(out.plan.moves, key=lambda m: (out.source.position(m.src), m.rows or (0, 0)))
    specs = [(m.out, _out_code(out.source.codes[m.src], precision), m.shape) for m in moves]
    writer = StreamingWriter(folder / out.filename, specs, metadata={"format": "pt"})
    scratches = (_Scratch(), _Scratch())
    pending: dict[str, int] = {}
    for m in moves:  # a fused in_proj feeds three outputs: release it after the last
        pending[m.src] = pending.get(m.src, 0) + 1

    def emit(m: ldm_keys.Move, where: tuple[int, int, int] | None, data: Any) -> None:
        if where is not None:  # unchanged bytes: let the kernel copy them
            writer.copy(m.out, *where)
        else:
            writer.write(m.out, data)
        pending[m.src] -= 1
        if pending[m.src] == 0:
            out.source.release(m.src)

    in_flight = None
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="convert-writer") as pool:
            try:
                for n, m in enumerate(moves):
                    _check_cancel(cancel)
                    if n + 1 < len(moves):
                        out.source.prefetch(moves[n + 1].src)
                    code = _out_code(out.source.codes[m.src], precision)
                    where = _file_range(out.source, m, code)
                    data = None if where is not None else _tensor_bytes(out.source, m, code, device,
                                                                         scratches[n % 2])
                    if in_flight is not None:
                        in_flight.result()  # tensor n-1 is out: its scratch may be reused next round
                    in_flight = pool.submit(emit, m, where, data)
                if in_flight is not None:
                    in_flight.result()
            finally:
                if in_flight is not None and not in_flight.done():
                    in_flight.cancel()
                    try:
                        in_flight.result()
                    except BaseException:
                        pass
        writer.close()
    except BaseException:
        writer.abort()
        raise


def _json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")


# ------------------------------------------------------------------------------ the conversion


def convert_checkpoint(
    src: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    probe: Any = None,
    precision: str = "fp16",
    device: str = "auto",
    prediction_type: str | None = None,
    config_yaml: str | os.PathLike | None = None,
    vae: str | os.PathLike | None = None,
    on_event: EventSink = discard,
    cancel: Any = None,
) -> Path:
    """Convert the single-file checkpoint ``src`` into a new diffusers folder ``dest``; return ``dest``.

    :param probe: a :class:`.probe.ProbeResult` of ``src`` already at hand (else it is probed).
    :param precision: ``"fp16"`` or ``"fp32"``: the dtype of the floating-point weights written.
    :param device: ``auto|cpu|cuda|mps``: where dtype casts run (``auto``: CUDA when present).
    :param prediction_type: ``"epsilon"`` or ``"v"``; overrides every other clue.
    :param config_yaml: an original LDM/SGM yaml; default: the companion ``<stem>.yaml``.
    :param vae: a VAE file replacing the checkpoint's; default: the companion ``<stem>.vae.*``.
    :param cancel: an Event-like object (``is_set()``), polled between tensors: when set, the
        conversion stops with :class:`.errors.Cancelled` and leaves nothing behind.
    :raises QuestionUnanswered: an SD2 model whose prediction type cannot be decided and
        ``prediction_type`` is None (ask the user, call again with the answer).
    :raises ConversionError: anything else that stops the conversion; nothing is left behind.
    """
    t0 = time.monotonic()
    src = Path(src)
    dest = Path(dest)
    if precision not in ("fp16", "fp32"):
        raise UsageError(f"unknown precision {precision!r}", hint="use fp16 or fp32")
    if not src.is_file():
        raise ConversionError(f"{src}: no such checkpoint file", hint="check the path")
    if dest.exists():
        raise ConversionError(f"{dest}: already exists; not converting {src.name} over it",
                              hint="delete it first or choose another name")
    wanted = _normalize_prediction(prediction_type)

    on_event(StageChanged(stage="convert", detail=f"reading {src.name}"))
    if probe is None:
        from invokeai_model_install.identify import probe as probe_mod

        try:
            probe = probe_mod.probe(src)
        except ProbeError as exc:  # unreadable: the contract's ConversionError, same words
            raise ConversionError(exc.message, hint=exc.hint) from exc
    if probe.kind != "main":
        raise ConversionError(f"{src.name}: a {probe.kind} file, not a main model; only main models convert",
                              hint=probe.reason or "install it as it is")
    if probe.variant == "depth":
        raise ConversionError(f"{src.name}: SD 2 depth models are not supported by the converter",
                              hint="install it as a single file, or use the diffusers version of the model")
    if probe.base not in ("sd-1", "sd-2", "sdxl", "sdxl-refiner") or probe.variant not in ("normal", "inpaint"):
        raise ConversionError(f"{src.name}: cannot convert a {probe.base} {probe.variant} model")

    # --- companions and the prediction type ---
    yaml_opts = _YamlOptions()
    yaml_path = Path(config_yaml) if config_yaml is not None else None
    if yaml_path is None:
        from invokeai_model_install.identify.probe import companion_yaml

        yaml_path = companion_yaml(src)
    if yaml_path is not None:
        if not yaml_path.is_file():
            raise ConversionError(f"{yaml_path}: no such config file", hint="check the path")
        yaml_opts = _read_yaml(yaml_path)
        on_event(ItemNote(message=f"using the config {yaml_path.name}"))
    if wanted is None and yaml_opts.parameterization is not None:
        wanted = "v" if yaml_opts.parameterization == "v" else "epsilon"
    if wanted is None and probe.prediction_type in ("epsilon", "v"):
        wanted = probe.prediction_type
    if wanted is None and probe.base != "sd-2":
        wanted = "epsilon"
    if wanted is None:
        raise QuestionUnanswered(
            f"{src.name}: an SD 2 model whose prediction type cannot be told from the file",
            hint="answer 'v' (768-pixel SD 2.x models, e.g. 2.1 768) or 'epsilon' (512-pixel 'base' models); "
                 "headless: --prediction-type v|epsilon",
        )
    vae_path = Path(vae) if vae is not None else companion_vae(src)
    if vae_path is not None and not vae_path.is_file():
        raise ConversionError(f"{vae_path}: no such VAE file", hint="check the path")
    dev = resolve_device(device)

    skeleton_name = _skeleton_for(probe.base, probe.variant, wanted)
    docs = _read_skeleton(skeleton_name)

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.converting-{uuid.uuid4().hex[:8]}"
    sources: list[_Source] = []
    started_checker: _Checks | None = None
    try:
        source = _open_source(src)
        sources.append(source)
        outputs, checks = _plan(src, source, probe, docs, yaml_opts, wanted, on_event)
        if vae_path is not None:
            vae_source = _open_source(vae_path)
            sources.append(vae_source)
            prefix = ldm_keys.vae_prefix(vae_source.shapes)
            if prefix is None:
                raise ConversionError(f"{vae_path.name}: not a VAE (no encoder/decoder weights)",
                                      hint="give a VAE file such as vae-ft-mse-840000-ema-pruned")
            vplan = ldm_keys.plan_vae(vae_source.shapes, prefix)
            if vplan.config["block_out_channels"] != docs["vae/config.json"]["block_out_channels"]:
                raise ConversionError(
                    f"{vae_path.name}: this VAE does not fit {src.name} "
                    f"(channels {vplan.config['block_out_channels']} vs "
                    f"{docs['vae/config.json']['block_out_channels']})",
                    hint="use a VAE made for this model's base, or remove the companion VAE file")
            checks["vae"] = ("VAE", {m.out: m.shape for m in vplan.moves}, "AutoencoderKL",
                             dict(docs["vae/config.json"]), vae_path)
            outputs = [o for o in outputs if o.folder != "vae"]
            outputs.append(_Output("vae", "diffusion_pytorch_model.safetensors", vplan, vae_source))
            on_event(ItemNote(message=f"using the VAE {vae_path.name}"))

        # --- room on disk ---
        needed = sum(_nbytes(m.shape, _out_code(o.source.codes[m.src], precision))
                     for o in outputs for m in o.plan.moves) + (4 << 20)
        free = shutil.disk_usage(dest.parent).free
        if free < needed:
            raise DiskSpaceError(f"converting {src.name} needs {needed / 1e9:.1f} GB in {dest.parent}, "
                                 f"{free / 1e9:.1f} GB free")

        tmp.mkdir()
        for rel, doc in docs.items():
            if rel.startswith(("tokenizer", "model_index", "scheduler")):
                _json(tmp / rel, doc)
        for tok in ("tokenizer", "tokenizer_2"):
            if (tmp / tok).is_dir():
                for f in _TOKENIZER_SHARED:
                    shutil.copyfile(CONVERT_DATA / "clip_tokenizer" / f, tmp / tok / f)
        for o in outputs:
            cfg = docs[f"{o.folder}/config.json"]
            if o.folder.startswith("text_encoder"):
                cfg.pop("torch_dtype", None)
                cfg["dtype"] = "float16" if precision == "fp16" else "float32"
            _json(tmp / o.folder / "config.json", cfg)
        checker = _Checks(list(checks.values()))
        checker.start()
        started_checker = checker
        order = sorted(outputs, key=lambda o: (sources.index(o.source), min(
            (o.source.position(m.src) for m in o.plan.moves), default=0)))
        for n, o in enumerate(order, 1):
            on_event(StageChanged(stage="convert", detail=f"{o.folder} ({n}/{len(order)})"))
            _write_component(o, tmp / o.folder, precision, dev, cancel)
        checker.result()
        _fsync_tree(tmp)
        os.replace(tmp, dest)
        fsync_path(dest.parent)
    except BaseException as exc:
        if started_checker is not None:
            # Never leave the checker running: a daemon thread still inside torch/diffusers
            # C++ code when the interpreter exits aborts the whole process (std::terminate).
            started_checker.join()
        shutil.rmtree(tmp, ignore_errors=True)
        for s in sources:
            s.close()
        sources.clear()
        if isinstance(exc, ProbeError):
            raise ConversionError(exc.message, hint=exc.hint) from exc
        if isinstance(exc, (InstallerError, KeyboardInterrupt, SystemExit)):
            raise
        if isinstance(exc, ldm_keys.MappingError):
            raise ConversionError(f"{src.name}: {exc}",
                                  hint="this checkpoint's layout is not a standard SD 1.x/2.x/SDXL one") from None
        if isinstance(exc, OSError):
            raise ConversionError(f"converting {src.name} failed: {exc.strerror or exc}",
                                  hint="check free disk space and permissions, then try again") from exc
        raise ConversionError(f"converting {src.name} failed: {type(exc).__name__}: {exc}",
                              hint="the file may be damaged; download it again") from exc
    finally:
        for s in sources:
            s.close()
    on_event(ItemConverted(path=str(dest), seconds=round(time.monotonic() - t0, 3)))
    return dest


def _nbytes(shape: tuple[int, ...], code: str) -> int:
    n = _ITEM.get(code, 4)
    for d in shape:
        n *= d
    return n


def _fsync_tree(root: Path) -> None:
    """fsync the small files (the weights were fsynced as written) and every folder of ``root``."""
    for p in [root, *sorted(root.rglob("*"))]:
        if p.is_file() and p.suffix == ".safetensors":
            continue
        fsync_path(p)


def _plan(src: Path, source: _Source, probe: Any, docs: dict[str, Any], yaml_opts: _YamlOptions,
          prediction: str, on_event: EventSink) -> tuple[list[_Output], dict[str, tuple]]:
    """Every output component's tensor plan (skeleton configs updated in ``docs``), and the
    shape checks against diffusers' models still to run, by component folder."""
    shapes = {k: s for k, s in source.shapes.items() if k in source.codes}
    ema = sum(1 for k in shapes if k.startswith(ldm_keys.EMA_PREFIX)) > 100
    unet = ldm_keys.plan_unet(shapes, use_ema=ema, attention_heads=yaml_opts.heads, skeleton=docs["unet/config.json"])
    if ema:
        used = sum(1 for m in unet.moves if m.src.startswith(ldm_keys.EMA_PREFIX))
        on_event(ItemNote(message=f"using the EMA weights ({used} of {len(unet.moves)} UNet tensors)"))
    ucfg = docs["unet/config.json"]
    ucfg.update(unet.config)
    outputs = [_Output("unet", "diffusion_pytorch_model.safetensors", unet, source)]

    prefix = ldm_keys.vae_prefix(shapes)
    if prefix is None:
        raise ConversionError(f"{src.name}: holds no VAE weights (first_stage_model.*)",
                              hint="put a matching <name>.vae.safetensors next to it, or pass a VAE")
    vae = ldm_keys.plan_vae({k: s for k, s in shapes.items() if k.startswith(prefix)}, prefix)
    vcfg = docs["vae/config.json"]
    vcfg.update(vae.config)
    if yaml_opts.scale_factor is not None:
        vcfg["scaling_factor"] = yaml_opts.scale_factor
    outputs.append(_Output("vae", "diffusion_pytorch_model.safetensors", vae, source))

    if probe.base == "sd-1":
        tplans = [ldm_keys.plan_hf_clip(shapes, "cond_stage_model.transformer.", "text_encoder")]
    elif probe.base == "sd-2":
        penultimate = True if yaml_opts.penultimate is None else yaml_opts.penultimate
        tplans = [ldm_keys.plan_open_clip(shapes, "cond_stage_model.model.", "text_encoder",
                                          drop_last_layer=penultimate, with_projection=False)]
    elif probe.base == "sdxl":
        tplans = [ldm_keys.plan_hf_clip(shapes, "conditioner.embedders.0.transformer.", "text_encoder"),
                  ldm_keys.plan_open_clip(shapes, "conditioner.embedders.1.model.", "text_encoder_2",
                                          drop_last_layer=False, with_projection=True)]
    else:  # refiner: only the bigG tower
        tplans = [ldm_keys.plan_open_clip(shapes, "conditioner.embedders.0.model.", "text_encoder_2",
                                          drop_last_layer=False, with_projection=True)]
    for tp in tplans:
        cfg = docs[f"{tp.name}/config.json"]
        cfg.update(tp.config)
        with_proj = cfg.get("architectures") == ["CLIPTextModelWithProjection"]
        _check_shapes(f"text encoder ({tp.name})", {m.out: m.shape for m in tp.moves},
                      ldm_keys.expected_clip_keys(cfg, with_projection=with_proj), src)
        outputs.append(_Output(tp.name, "model.safetensors", tp, source))

    if ucfg.get("addition_embed_type") == "text_time":
        pooled = docs["text_encoder_2/config.json"]["projection_dim"]
        n_ids = 5 if probe.base == "sdxl-refiner" else 6  # the refiner adds an aesthetic score, not a crop size
        ucfg["addition_time_embed_dim"] = (ucfg["projection_class_embeddings_input_dim"] - pooled) // n_ids
        if ucfg["in_channels"] == 9:
            docs["model_index.json"]["_class_name"] = "StableDiffusionXLInpaintPipeline"

    sched = docs["scheduler/scheduler_config.json"]
    sched["prediction_type"] = "v_prediction" if prediction == "v" else "epsilon"

    checks = {
        "unet": ("UNet", {m.out: m.shape for m in unet.moves}, "UNet2DConditionModel", dict(ucfg), src),
        "vae": ("VAE", {m.out: m.shape for m in vae.moves}, "AutoencoderKL", dict(vcfg), src),
    }
    return outputs, checks
