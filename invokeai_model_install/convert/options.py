"""What the caller and the files next to a checkpoint say: the LDM/SGM yaml, the prediction type, a companion VAE, the device."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from invokeai_model_install.errors import ConversionError, UsageError

_VAE_SUFFIXES = (".vae.safetensors", ".vae.pt", ".vae.ckpt", ".vae.pth", ".vae.bin")



@dataclass
class YamlOptions:
    parameterization: str | None = None  # "v" | "eps" | None
    heads: tuple[str, int] | None = None
    scale_factor: float | None = None
    penultimate: bool | None = None


def read_yaml(path: Path) -> YamlOptions:
    import yaml

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConversionError(f"{path.name}: unreadable config yaml ({exc})",
                              hint="fix or remove the yaml file next to the checkpoint") from None
    opts = YamlOptions()
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


def normalize_prediction(value: str | None) -> str | None:
    if value is None:
        return None
    v = str(value).lower()
    if v in ("v", "v_prediction", "v-prediction"):
        return "v"
    if v in ("epsilon", "eps"):
        return "epsilon"
    raise UsageError(f"unknown prediction type {value!r}", hint="use epsilon or v")


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
