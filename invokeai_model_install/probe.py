"""Know what a model file (or folder) is from its header, never loading its tensors.

:func:`probe` answers with a small frozen :class:`ProbeResult`: the kind (main,
vae, lora, embedding, controlnet or unknown with a reason), the base (sd-1,
sd-2, sdxl, sdxl-refiner), the variant (normal, inpaint, depth), the prediction
type where it can be decided, the dtype and the size on disk.

What is read:

* ``.safetensors``: the JSON header at the start of the file (our own 2-read
  parser; ``safe_open`` would mmap the file and build a Rust index we do not need).
* zip ``.ckpt``/``.pt``/``.bin``: only the ``data.pkl`` member, through the inert
  unpickler of :mod:`.pickle_header` (nothing named in the file is imported or run).
* legacy (non-zip) torch pickles: the pickles before the raw storage bytes.
* diffusers folders: ``model_index.json``, ``unet/config.json``,
  ``scheduler/scheduler_config.json``, a component's ``config.json``.

The identification rules are those measured in FACTS.md ("Identifying a
checkpoint").  "unknown" is an answer with a ``reason``; :class:`ProbeError` is
raised only when the input cannot be read at all (missing, truncated, a broken
safetensors header, a pickle renamed ``.safetensors``, an HTML page).
"""

from __future__ import annotations

import json
import os
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ProbeError
from .pickle_header import PickleHeaderError, TensorInfo, flatten_tensors, read_pickle_object

__all__ = ["ProbeResult", "TensorInfo", "Header", "probe", "read_header", "identify", "companion_yaml"]

Kind = str  # "main" | "vae" | "lora" | "embedding" | "controlnet" | "unknown"

#: safetensors dtype codes -> the names torch uses.
SAFETENSORS_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
    "U16": "uint16", "U32": "uint32", "U64": "uint64", "BOOL": "bool",
    "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
}

#: A safetensors header longer than this is not a header (the Rust crate's own limit is 100 MB).
MAX_SAFETENSORS_HEADER = 100_000_000

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle")
SAFETENSORS_SUFFIXES = (".safetensors", ".sft")

_UNET = "model.diffusion_model."
_K_SD12 = _UNET + "input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight"
_K_SDXL = _UNET + "input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight"
_K_IN = _UNET + "input_blocks.0.0.weight"
_CTRL_K = "control_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"

#: cross-attention width -> base
_BASE_BY_CONTEXT = {768: "sd-1", 1024: "sd-2", 2048: "sdxl", 1280: "sdxl-refiner"}
#: UNet input channels -> variant
_VARIANT_BY_CHANNELS = {4: "normal", 9: "inpaint", 5: "depth"}
#: SD-2 official ``global_step`` values (FACTS.md): 768-v (v-prediction) and 512-base (epsilon).
_SD2_STEPS = {110000: "v", 220000: "epsilon"}


@dataclass(frozen=True)
class ProbeResult:
    """What a model file or folder is.

    :ivar kind: ``main``, ``vae``, ``lora``, ``embedding``, ``controlnet`` or ``unknown``.
    :ivar base: ``sd-1``, ``sd-2``, ``sdxl``, ``sdxl-refiner`` or None when not decidable.
    :ivar variant: ``normal``, ``inpaint``, ``depth`` (main models) or None.
    :ivar prediction_type: ``epsilon``, ``v``, ``undecided`` (SD-2 with no clue) or None (not a main model).
    :ivar format: ``safetensors``, ``ckpt`` (any pickle checkpoint) or ``diffusers`` (a folder).
    :ivar dtype: the dtype of most floating tensors (``float32``, ``float16`` ...) or None.
    :ivar size: bytes on disk (a folder: the sum of its files).
    :ivar reason: why the kind is ``unknown``; "" otherwise.
    :ivar has_ema: the checkpoint carries separate EMA weights (``model_ema.*``).
    :ivar global_step: the training step stored in a checkpoint, when there is one.
    """

    kind: Kind
    base: str | None
    variant: str | None
    prediction_type: str | None
    format: str
    dtype: str | None
    size: int
    reason: str = ""
    has_ema: bool = False
    global_step: int | None = None


@dataclass(frozen=True)
class Header:
    """The names, shapes and dtypes of a single-file checkpoint, plus its scalars/metadata."""

    tensors: dict[str, TensorInfo]
    metadata: dict[str, Any]
    format: str  # "safetensors" | "ckpt"


# --- reading headers -------------------------------------------------------------------


def _not_safetensors(path: Path, why: str, first: bytes) -> ProbeError:
    looks = ""
    if first[:4] == b"PK\x03\x04" or first[:1] == b"\x80":
        looks = " It looks like a pickle (.ckpt) checkpoint renamed .safetensors."
    elif first.lstrip()[:1] in (b"<", b"{"):
        looks = " It looks like a text/HTML page, not a model."
    return ProbeError(
        f"{path.name}: not a valid safetensors file ({why}).{looks}",
        hint="download it again; if it really is a .ckpt, rename it so it is scanned and read as one",
    )


def read_safetensors_header(path: Path) -> Header:
    """Parse the JSON header of a ``.safetensors`` file (two small reads).

    :raises ProbeError: a header that is too large, truncated, not JSON, or
        tensors that end past the end of the file (a partial download).
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            first = f.read(8)
            if len(first) < 8:
                raise _not_safetensors(path, "shorter than a header", first)
            (n,) = struct.unpack("<Q", first)
            if n > MAX_SAFETENSORS_HEADER or n > size - 8:
                raise _not_safetensors(path, "header too large", first)
            raw = f.read(n)
    except OSError as exc:
        raise ProbeError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise _not_safetensors(path, "its header is not valid JSON", first) from None
    if not isinstance(doc, dict):
        raise _not_safetensors(path, "its header is not a JSON object", first)
    metadata = doc.pop("__metadata__", None) or {}
    tensors: dict[str, TensorInfo] = {}
    end = 0
    try:
        for name, entry in doc.items():
            shape = tuple(entry["shape"])
            tensors[name] = TensorInfo(shape, SAFETENSORS_DTYPES.get(entry["dtype"], str(entry["dtype"]).lower()))
            stop = entry["data_offsets"][1]
            if stop > end:
                end = stop
    except (KeyError, TypeError, IndexError):
        raise _not_safetensors(path, f"malformed entry for tensor {name!r}", first) from None
    if 8 + n + end > size:
        raise ProbeError(
            f"{path.name}: truncated: its header describes {8 + n + end} bytes but the file has {size}",
            hint="the download is incomplete; download it again",
        )
    return Header(tensors, dict(metadata) if isinstance(metadata, dict) else {}, "safetensors")


def read_pickle_header(path: Path) -> Header:
    """Tensor names/shapes/dtypes and top-level scalars of a pickle checkpoint (zip or legacy).

    :raises ProbeError: neither a zip checkpoint nor a readable pickle.
    """
    try:
        with open(path, "rb") as f:
            obj, _ = read_pickle_object(f)
    except PickleHeaderError as exc:
        raise ProbeError(
            f"{path.name}: not a readable PyTorch checkpoint ({exc})",
            hint="download it again, or use a .safetensors version of the model",
        ) from None
    except OSError as exc:
        raise ProbeError(f"{path}: cannot read ({exc.strerror or exc})") from None
    tensors, scalars = flatten_tensors(obj)
    return Header(tensors, scalars, "ckpt")


def read_header(path: str | os.PathLike) -> Header:
    """The header of a single-file checkpoint, whatever its format (sniffed from its first bytes).

    A ``.safetensors`` name must hold safetensors; any other name is read by content.
    """
    path = Path(path)
    if path.suffix.lower() in SAFETENSORS_SUFFIXES:
        return read_safetensors_header(path)
    try:
        with open(path, "rb") as f:
            first = f.read(9)
    except OSError as exc:
        raise ProbeError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if first[:4] == b"PK\x03\x04" or first[:1] == b"\x80":
        return read_pickle_header(path)
    if len(first) == 9 and first[8:9] == b"{":  # a safetensors file with another name
        return read_safetensors_header(path)
    what = "a text/HTML page" if first.lstrip()[:1] in (b"<", b"{") else "not a model file"
    raise ProbeError(
        f"{path.name}: {what} (neither safetensors nor a PyTorch checkpoint)",
        hint="download it again; a login page saved as a model means a token is needed",
    )


# --- identification ----------------------------------------------------------------------


def companion_yaml(path: str | os.PathLike) -> Path | None:
    """The ``<stem>.yaml`` (or ``.yml``) next to a checkpoint, if there is one."""
    path = Path(path)
    for suffix in (".yaml", ".yml"):
        candidate = path.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


def _yaml_parameterization(path: Path) -> str | None:
    """``model.params.parameterization`` of an LDM yaml ("v" or "eps"), "" if absent, None if unreadable."""
    import yaml  # PyYAML: small, already a dependency through omegaconf

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    try:
        value = doc["model"]["params"].get("parameterization", "")
    except (KeyError, TypeError, AttributeError):
        return ""
    return str(value or "")


def _majority_dtype(tensors: dict[str, TensorInfo]) -> str | None:
    counts = Counter(t.dtype for t in tensors.values() if t.dtype.startswith(("float", "bfloat")))
    if not counts:
        counts = Counter(t.dtype for t in tensors.values())
    return counts.most_common(1)[0][0] if counts else None


def _last_dim(info: TensorInfo | None) -> int | None:
    # to_k.weight is [out, context]; an attention written as a 1x1 conv is [out, context, 1, 1].
    if info is None or len(info.shape) < 2:
        return None
    return info.shape[1]


def _context_dim(tensors: dict[str, TensorInfo], prefix: str) -> int | None:
    """Cross-attention width from any ``attn2.to_k.weight`` under ``prefix``."""
    for name, info in tensors.items():
        if name.startswith(prefix) and name.endswith("attn2.to_k.weight"):
            return _last_dim(info)
    return None


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class _Kind:
    kind: Kind
    base: str | None = None
    variant: str | None = None
    reason: str = ""


def _is_lora_key(name: str) -> bool:
    return (
        name.startswith(("lora_te_", "lora_unet_", "lora_te1_", "lora_te2_"))
        or ".lora_down." in name or ".lora_up." in name
        or ".lora_A." in name or ".lora_B." in name
        or "_lora.down." in name or "_lora.up." in name
        or ".hada_w1_a" in name or ".lokr_w1" in name
    )


def _lora_base(tensors: dict[str, TensorInfo]) -> str | None:
    if any(n.startswith(("lora_te1_", "lora_te2_")) for n in tensors):
        return "sdxl"
    text_width = None
    for name, info in tensors.items():
        down = any(s in name for s in ("lora_down", "lora_A", "lora.down"))
        if down and "attn2" in name and "to_k" in name:
            base = _BASE_BY_CONTEXT.get(info.shape[-1] if info.shape else -1)
            if base:
                return base
        if down and text_width is None and ("lora_te_" in name or "text_model" in name or "text_encoder" in name):
            text_width = info.shape[-1] if info.shape else None
    return {768: "sd-1", 1024: "sd-2"}.get(text_width or -1)


_TI_WIDTHS = {768: "sd-1", 1024: "sd-2"}


def _embedding(tensors: dict[str, TensorInfo]) -> _Kind | None:
    names = set(tensors)
    if {"clip_l", "clip_g"} <= names:
        return _Kind("embedding", "sdxl")
    vectors = [t for n, t in tensors.items() if n.startswith(("string_to_param.", "emb_params"))]
    if not vectors and "string_to_param" not in "".join(names):
        # diffusers learned_embeds: a few {token: [768]} tensors
        if not 1 <= len(tensors) <= 8:
            return None
        for info in tensors.values():
            if not 1 <= len(info.shape) <= 2 or info.shape[-1] not in _TI_WIDTHS:
                return None
            if len(info.shape) == 2 and info.shape[0] > 75:  # at most a prompt's worth of vectors
                return None
        vectors = list(tensors.values())
    if not vectors:
        return None
    width = vectors[0].shape[-1] if vectors[0].shape else None
    return _Kind("embedding", _TI_WIDTHS.get(width or -1))


def identify(tensors: dict[str, TensorInfo]) -> tuple[str, str | None, str | None, str]:
    """Kind, base, variant and reason from tensor names and shapes (FACTS.md rules)."""
    k = _identify(tensors)
    return k.kind, k.base, k.variant, k.reason


def _identify(tensors: dict[str, TensorInfo]) -> _Kind:
    if not tensors:
        return _Kind("unknown", reason="the file holds no tensors")
    names = tensors.keys()
    # ControlNet first: the original releases also carry a whole SD model beside control_model.*
    if any(n.startswith("control_model.") for n in names):
        ctx = _last_dim(tensors.get(_CTRL_K)) or _context_dim(tensors, "control_model.")
        return _Kind("controlnet", _BASE_BY_CONTEXT.get(ctx or -1))
    if "controlnet_cond_embedding.conv_in.weight" in tensors:  # a diffusers ControlNet in one file
        return _Kind("controlnet", _BASE_BY_CONTEXT.get(_context_dim(tensors, "") or -1))
    if any(n.startswith(_UNET) for n in names):
        return _identify_main(tensors)
    if any(_is_lora_key(n) for n in names):
        return _Kind("lora", _lora_base(tensors))
    if "encoder.conv_in.weight" in tensors and "decoder.conv_in.weight" in tensors:
        return _Kind("vae")
    if all(n.startswith("first_stage_model.") for n in names) and "first_stage_model.decoder.conv_in.weight" in tensors:
        return _Kind("vae")
    emb = _embedding(tensors)
    if emb is not None:
        return emb
    if "conv_in.weight" in tensors and any(n.startswith("down_blocks.") for n in names):
        return _Kind("unknown", reason="a diffusers UNet weights file alone; install its whole diffusers folder")
    sample = ", ".join(sorted(names)[:3])
    return _Kind("unknown", reason=f"no known model layout in {len(tensors)} tensors (e.g. {sample})")


def _identify_main(tensors: dict[str, TensorInfo]) -> _Kind:
    ctx2 = _last_dim(tensors.get(_K_SD12))
    ctx4 = _last_dim(tensors.get(_K_SDXL))
    base = None
    if ctx2 in (768, 1024):
        base = _BASE_BY_CONTEXT[ctx2]
    elif ctx4 in (2048, 1280):
        base = _BASE_BY_CONTEXT[ctx4]
    else:  # structure differs from the releases: any cross-attention tells the width
        base = _BASE_BY_CONTEXT.get(_context_dim(tensors, _UNET) or -1)
    if base is None:
        return _Kind("unknown", reason="a Stable Diffusion-like UNet of an unrecognised base (cross-attention width)")
    info = tensors.get(_K_IN)
    channels = info.shape[1] if info is not None and len(info.shape) >= 2 else None
    variant = _VARIANT_BY_CHANNELS.get(channels or -1)
    if variant is None:
        return _Kind("unknown", base,
                     reason=f"a {base} UNet with {channels} input channels (not normal, inpaint or depth)")
    return _Kind("main", base, variant)


def _prediction_type(path: Path, base: str | None, variant: str | None,
                     global_step: int | None, metadata: dict[str, Any]) -> str:
    """epsilon/v/undecided for a single-file main model (see FACTS.md)."""
    yaml_path = companion_yaml(path)
    if yaml_path is not None:
        param = _yaml_parameterization(yaml_path)
        if param is not None:  # an unreadable yaml is no evidence either way
            return "v" if param == "v" else "epsilon"
    if base != "sd-2":
        return "epsilon"
    declared = str(metadata.get("prediction_type", metadata.get("parameterization", ""))).lower()
    if declared in ("v", "v_prediction"):
        return "v"
    if declared in ("epsilon", "eps"):
        return "epsilon"
    if variant in ("inpaint", "depth"):  # SD-2 inpainting and depth releases are epsilon
        return "epsilon"
    return _SD2_STEPS.get(global_step or -1, "undecided")


def _probe_file(path: Path) -> ProbeResult:
    size = path.stat().st_size
    header = read_header(path)
    tensors = header.tensors
    k = _identify(tensors)
    global_step = _int_or_none(header.metadata.get("global_step"))
    has_ema = any(n.startswith("model_ema.") and n not in ("model_ema.decay", "model_ema.num_updates")
                  for n in tensors)
    prediction = None
    if k.kind == "main":
        prediction = _prediction_type(path, k.base, k.variant, global_step, header.metadata)
    return ProbeResult(
        kind=k.kind, base=k.base, variant=k.variant, prediction_type=prediction, format=header.format,
        dtype=_majority_dtype(tensors), size=size, reason=k.reason, has_ema=has_ema, global_step=global_step,
    )


# --- diffusers folders ---------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ProbeError(f"{path}: unreadable JSON ({exc})", hint="download the model again") from None
    if not isinstance(doc, dict):
        raise ProbeError(f"{path}: not a JSON object", hint="download the model again")
    return doc


def _folder_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size  # follows HF-cache symlinks to blobs
            except OSError:
                pass
    return total


_WEIGHT_NAMES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors",
                 "diffusion_pytorch_model.bin", "diffusion_pytorch_model.fp16.bin",
                 "model.safetensors", "model.fp16.safetensors", "pytorch_model.bin")


def _folder_dtype(component: Path) -> str | None:
    for name in _WEIGHT_NAMES:
        weights = component / name
        if weights.is_file():
            try:
                return _majority_dtype(read_header(weights).tensors)
            except ProbeError:
                return None
    return None


def _prediction_from_scheduler(folder: Path) -> str:
    sched = folder / "scheduler" / "scheduler_config.json"
    if not sched.is_file():
        return "epsilon"  # diffusers' default when a scheduler does not say
    value = _read_json(sched).get("prediction_type", "epsilon")
    return {"v_prediction": "v", "epsilon": "epsilon"}.get(value, "undecided")


def _probe_folder(path: Path) -> ProbeResult:
    size = _folder_size(path)

    def result(kind: Kind, base=None, variant=None, prediction=None, dtype=None, reason="") -> ProbeResult:
        return ProbeResult(kind, base, variant, prediction, "diffusers", dtype, size, reason)

    if (path / "model_index.json").is_file():
        index = _read_json(path / "model_index.json")
        cls = str(index.get("_class_name", ""))
        unet_cfg = path / "unet" / "config.json"
        if not unet_cfg.is_file():
            return result("unknown", reason=f"a {cls or 'diffusers'} pipeline without unet/config.json")
        unet = _read_json(unet_cfg)
        ctx = unet.get("cross_attention_dim")
        base = _BASE_BY_CONTEXT.get(ctx if isinstance(ctx, int) else -1)
        variant = _VARIANT_BY_CHANNELS.get(unet.get("in_channels", 4) if isinstance(unet.get("in_channels", 4), int) else -1)
        dtype = _folder_dtype(path / "unet")
        if base is None:
            return result("unknown", reason=f"a {cls} pipeline with cross_attention_dim {ctx!r}", dtype=dtype)
        if variant is None:
            return result("unknown", base, reason=f"a {cls} pipeline with {unet.get('in_channels')} UNet input channels",
                          dtype=dtype)
        return result("main", base, variant, _prediction_from_scheduler(path), dtype)

    if (path / "config.json").is_file():
        cfg = _read_json(path / "config.json")
        cls = str(cfg.get("_class_name", ""))
        dtype = _folder_dtype(path)
        if cls in ("AutoencoderKL", "AutoencoderTiny"):
            # SDXL's VAE is the only one trained with this latent scaling factor
            base = "sdxl" if cfg.get("scaling_factor") == 0.13025 else None
            return result("vae", base, dtype=dtype)
        if cls == "ControlNetModel":
            ctx = cfg.get("cross_attention_dim")
            return result("controlnet", _BASE_BY_CONTEXT.get(ctx if isinstance(ctx, int) else -1), dtype=dtype)
        if cls == "UNet2DConditionModel":
            ctx = cfg.get("cross_attention_dim")
            return result("unknown", _BASE_BY_CONTEXT.get(ctx if isinstance(ctx, int) else -1),
                          _VARIANT_BY_CHANNELS.get(cfg.get("in_channels", -1)), dtype=dtype,
                          reason="a UNet alone, not a whole pipeline; install its parent diffusers folder")
        return result("unknown", dtype=dtype, reason=f"a diffusers {cls or 'component'} folder this installer does not handle")

    for name in ("pytorch_lora_weights.safetensors", "pytorch_lora_weights.bin",
                 "adapter_model.safetensors", "adapter_model.bin"):
        if (path / name).is_file():
            inner = _probe_file(path / name)
            return result("lora", inner.base, dtype=inner.dtype)
    for name in ("learned_embeds.safetensors", "learned_embeds.bin"):
        if (path / name).is_file():
            inner = _probe_file(path / name)
            return result("embedding", inner.base, dtype=inner.dtype)
    return result("unknown", reason="a folder without model_index.json or config.json")


def probe(path: str | os.PathLike) -> ProbeResult:
    """Identify a model file or diffusers folder from its header or configs alone.

    :raises ProbeError: the path is missing or unreadable, or a file is neither a
        valid safetensors nor a readable PyTorch checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        return _probe_folder(path)
    if not path.is_file():
        raise ProbeError(f"{path}: no such file or folder", hint="check the path")
    return _probe_file(path)
