"""What a set of tensors is: kind, base and variant from names and shapes (the rules measured in FACTS.md).

"unknown" is an answer with a ``reason``.  The queries go through a :class:`.headers.TensorIndex`, so a
big checkpoint is asked only for the handful of entries the rules look at.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from invokeai_model_install.identify.families import identify_family
from invokeai_model_install.identify.headers import TensorIndex, TensorInfo

Kind = str  # "main" | "vae" | "lora" | "embedding" | "controlnet" | "unknown", and from identify/families.py:
# "upscaler" | "text_encoder" | "clip_vision" | "ip_adapter" | "t2i_adapter" | "diffusion_model"


_UNET = "model.diffusion_model."

_K_SD12 = _UNET + "input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight"

_K_SDXL = _UNET + "input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight"

_K_IN = _UNET + "input_blocks.0.0.weight"

_CTRL_K = "control_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"


#: cross-attention width -> base
BASE_BY_CONTEXT = {768: "sd-1", 1024: "sd-2", 2048: "sdxl", 1280: "sdxl-refiner"}

#: UNet input channels -> variant
VARIANT_BY_CHANNELS = {4: "normal", 9: "inpaint", 5: "depth"}



def majority_dtype(index: TensorIndex) -> str | None:
    counts = index.dtype_counts()
    floats = Counter({k: v for k, v in counts.items() if k.startswith(("float", "bfloat"))})
    best = (floats or counts).most_common(1)
    return best[0][0] if best else None


def _last_dim(info: TensorInfo | None) -> int | None:
    # to_k.weight is [out, context]; an attention written as a 1x1 conv is [out, context, 1, 1].
    if info is None or len(info.shape) < 2:
        return None
    return info.shape[1]


def int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Identification:
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
            base = BASE_BY_CONTEXT.get(info.shape[-1] if info.shape else -1)
            if base:
                return base
        if down and text_width is None and ("lora_te_" in name or "text_model" in name or "text_encoder" in name):
            text_width = info.shape[-1] if info.shape else None
    return {768: "sd-1", 1024: "sd-2"}.get(text_width or -1)


_TI_WIDTHS = {768: "sd-1", 1024: "sd-2"}


def _embedding(tensors: dict[str, TensorInfo]) -> Identification | None:
    names = set(tensors)
    if {"clip_l", "clip_g"} <= names:
        return Identification("embedding", "sdxl")
    vectors = [t for n, t in tensors.items() if n.startswith(("string_to_param.", "emb_params"))]
    if not vectors:
        # diffusers learned_embeds: a few {token: [768]} tensors
        if not 1 <= len(tensors) <= 8:
            return None
        for info in tensors.values():
            if not 1 <= len(info.shape) <= 2 or info.shape[-1] not in _TI_WIDTHS:
                return None
            if len(info.shape) == 2 and info.shape[0] > 75:  # at most a prompt's worth of vectors
                return None
        vectors = list(tensors.values())
    width = vectors[0].shape[-1] if vectors[0].shape else None
    return Identification("embedding", _TI_WIDTHS.get(width or -1))


def identify_index(index: TensorIndex) -> Identification:
    if index.empty():
        return Identification("unknown", reason="the file holds no tensors")
    # ControlNet first: the original releases also carry a whole SD model beside control_model.*
    if index.has_prefix("control_model."):
        ctx = _last_dim(index.get(_CTRL_K)) or _last_dim(index.find("control_model.", "attn2.to_k.weight"))
        return Identification("controlnet", BASE_BY_CONTEXT.get(ctx or -1))
    if index.get("controlnet_cond_embedding.conv_in.weight") is not None:  # a diffusers ControlNet in one file
        return Identification("controlnet", BASE_BY_CONTEXT.get(_last_dim(index.find("", "attn2.to_k.weight")) or -1))
    family = identify_family(index)  # upscalers, CLIP, IP-/T2I-Adapter, SD 3/3.5, FLUX.1 (identify/families.py)
    if family is not None:
        return Identification(family.kind, family.base, family.variant)
    if index.has_prefix(_UNET):
        return _identify_main(index)
    if index.get("encoder.conv_in.weight") is not None and index.get("decoder.conv_in.weight") is not None:
        return Identification("vae")
    # the remaining kinds are small files: look at every name
    tensors = index.tensors
    names = tensors.keys()
    if any(_is_lora_key(n) for n in names):
        return Identification("lora", _lora_base(tensors))
    if "first_stage_model.decoder.conv_in.weight" in tensors and all(n.startswith("first_stage_model.") for n in names):
        return Identification("vae")
    emb = _embedding(tensors)
    if emb is not None:
        return emb
    if "conv_in.weight" in tensors and any(n.startswith("down_blocks.") for n in names):
        return Identification("unknown", reason="a diffusers UNet weights file alone; install its whole diffusers folder")
    sample = ", ".join(sorted(names)[:3])
    return Identification("unknown", reason=f"no known model layout in {len(tensors)} tensors (e.g. {sample})")


def _identify_main(index: TensorIndex) -> Identification:
    ctx2 = _last_dim(index.get(_K_SD12))
    ctx4 = _last_dim(index.get(_K_SDXL))
    if ctx2 in (768, 1024):
        base = BASE_BY_CONTEXT[ctx2]
    elif ctx4 in (2048, 1280):
        base = BASE_BY_CONTEXT[ctx4]
    else:  # structure differs from the releases: any cross-attention tells the width
        base = BASE_BY_CONTEXT.get(_last_dim(index.find(_UNET, "attn2.to_k.weight")) or -1)
    if base is None:
        return Identification("unknown", reason="a Stable Diffusion-like UNet of an unrecognised base (cross-attention width)")
    info = index.get(_K_IN)
    channels = info.shape[1] if info is not None and len(info.shape) >= 2 else None
    variant = VARIANT_BY_CHANNELS.get(channels or -1)
    if variant is None:
        return Identification("unknown", base,
                     reason=f"a {base} UNet with {channels} input channels (not normal, inpaint or depth)")
    return Identification("main", base, variant)
