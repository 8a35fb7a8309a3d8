"""Know what a model file (or folder) is from its header, never loading its tensors.

:func:`probe` answers with a small frozen :class:`ProbeResult`: the kind (main,
vae, lora, embedding, controlnet or unknown with a reason), the base (sd-1,
sd-2, sdxl, sdxl-refiner), the variant (normal, inpaint, depth), the prediction
type where it can be decided, the dtype and the size on disk.

What is read: a file's header only (:mod:`.headers`: the safetensors JSON header, a zip checkpoint's
``data.pkl``, a legacy pickle's first pickles), a diffusers folder's configs (``model_index.json``,
``unet/config.json``, ``scheduler/scheduler_config.json``, a component's ``config.json``).

The identification rules are those measured in FACTS.md ("Identifying a
checkpoint").  "unknown" is an answer with a ``reason``; :class:`ProbeError` is
raised only when the input cannot be read at all (missing, truncated, a broken
safetensors header, a pickle renamed ``.safetensors``, an HTML page).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invokeai_model_install.identify.families import NEWER_FAMILIES
from invokeai_model_install.errors import ProbeError
from invokeai_model_install.formats.pickle_header import PickleHeaderError
from invokeai_model_install.identify.headers import open_index
from invokeai_model_install.identify.rules import (
    BASE_BY_CONTEXT,
    VARIANT_BY_CHANNELS,
    Kind,
    identify_index,
    int_or_none,
    majority_dtype,
)

__all__ = ["ProbeResult", "probe", "companion_yaml"]

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



# --- single files ----------------------------------------------------------------------


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
    index, metadata, fmt = open_index(path)
    k = identify_index(index)
    global_step = int_or_none(metadata.get("global_step"))
    prediction = None
    if k.kind == "main" and k.base not in NEWER_FAMILIES:
        prediction = _prediction_type(path, k.base, k.variant, global_step, metadata)
    return ProbeResult(
        kind=k.kind, base=k.base, variant=k.variant, prediction_type=prediction, format=fmt,
        dtype=majority_dtype(index), size=size, reason=k.reason, has_ema=index.has_ema(), global_step=global_step,
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
                return majority_dtype(open_index(weights)[0])
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
        base = BASE_BY_CONTEXT.get(ctx if isinstance(ctx, int) else -1)
        variant = VARIANT_BY_CHANNELS.get(unet.get("in_channels", 4) if isinstance(unet.get("in_channels", 4), int) else -1)
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
            return result("controlnet", BASE_BY_CONTEXT.get(ctx if isinstance(ctx, int) else -1), dtype=dtype)
        if cls == "UNet2DConditionModel":
            ctx = cfg.get("cross_attention_dim")
            return result("unknown", BASE_BY_CONTEXT.get(ctx if isinstance(ctx, int) else -1),
                          VARIANT_BY_CHANNELS.get(cfg.get("in_channels", -1)), dtype=dtype,
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
    try:
        if path.is_dir():
            return _probe_folder(path)
        if not path.is_file():
            raise ProbeError(f"{path}: no such file or folder", hint="check the path")
        return _probe_file(path)
    except PickleHeaderError as exc:  # raised lazily, e.g. a memory bomb met while walking the state dict
        raise ProbeError(f"{path.name}: not a readable PyTorch checkpoint ({exc})",
                         hint="download it again, or use a .safetensors version of the model") from None
