"""Header rules for the kinds beyond Stable Diffusion 1/2/XL: upscalers, CLIP text encoders, CLIP vision,
IP-Adapter, T2I-Adapter, and the newer families (SD 3 / 3.5, FLUX.1) that InvokeAI 2.3 cannot run.

Each rule is a separate function over the probe's tensor index (``get(name)``, ``has_prefix(p)``,
``find(prefix, suffix)``, ``may_have(fragment)``, ``tensors``) and returns a :class:`Match` or None.  Rules ask
for exact key names first, so a multi-gigabyte checkpoint is never listed in full; only small files (upscalers)
are scanned name by name.  The rules run on every file, SD checkpoints included, where a big header is queried
in place and each missing key costs a scan of it (0.02-0.05 ms for SD1.5's 155 KB): a name asked for under several
prefixes (``model.diffusion_model.``, ``params_ema.`` ...) is first checked once with ``may_have``, which only
skips lookups that would all miss (benchmarks/bench_probe.py).  The key names are those of the public releases:

- FLUX.1 (Black Forest Labs): ``double_blocks.N.img_attn.qkv.weight``, ``single_blocks.N.linear1.weight``;
  dev (guidance-distilled) has ``guidance_in.in_layer.weight``, schnell has not.
- SD 3 / 3.5 (MMDiT): ``joint_blocks.N.context_block.attn.qkv.weight``; 3.5 Medium (MMDiT-X) adds
  ``joint_blocks.N.x_block.attn2.qkv.weight``; 3.5 Large has 38 joint blocks (SD 3 Medium 24).
  Either may be a whole checkpoint (``model.diffusion_model.`` plus VAE / text encoders: ComfyUI's
  ``checkpoints``) or the diffusion model alone (ComfyUI's ``diffusion_models``).
- ESRGAN (original): ``model.0.weight`` + ``model.1.sub.N.RDBk.convj.0.weight``; RealESRGAN (basicsr RRDBNet):
  ``conv_first``, ``body.N.rdbk.convj``, ``conv_last``; SwinIR: ``conv_first``, ``layers.N.residual_group.blocks``,
  ``conv_after_body``; RealESRGAN compact (SRVGGNetCompact): only ``body.N.weight/bias``.  basicsr ``.pth``
  files wrap the state dict in ``params_ema`` / ``params``.
- CLIP text encoder (transformers ``CLIPTextModel``): ``text_model.embeddings.token_embedding.weight``
  (transformers 5 drops the ``text_model.`` prefix); T5 encoder: ``encoder.block.0.layer.0.SelfAttention.q.weight``.
- CLIP vision: ``vision_model.embeddings.patch_embedding.weight``.
- IP-Adapter: ``image_proj.*`` and ``ip_adapter.N.to_k_ip.weight``.
- T2I-Adapter (TencentARC): ``conv_in.weight`` + ``body.N.block1.weight``; diffusers: ``adapter.conv_in.weight``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

#: families InvokeAI 2.3 has no pipeline for: base -> the name users know
NEWER_FAMILIES = {"flux.1": "FLUX.1", "sd-3": "Stable Diffusion 3", "sd-3.5": "Stable Diffusion 3.5"}

#: kinds an InvokeAI root keeps as files for other UIs (ComfyUI, A1111), without a models.yaml stanza
UNREGISTERED_KINDS = ("upscaler", "text_encoder", "clip_vision", "ip_adapter", "t2i_adapter")

_BASE_BY_CONTEXT = {768: "sd-1", 1024: "sd-2", 2048: "sdxl", 1280: "sdxl-refiner"}
_FULL_CHECKPOINT_PARTS = ("first_stage_model.", "vae.", "text_encoders.", "conditioner.", "cond_stage_model.")


@dataclass(frozen=True)
class Match:
    kind: str
    base: str | None = None
    variant: str | None = None


def _last_dim(info: Any) -> int | None:
    shape = getattr(info, "shape", None)
    return int(shape[-1]) if shape else None


def _whole_or_alone(index: Any, prefix: str) -> str:
    """``main`` for a whole checkpoint (diffusion model + VAE/text encoders), else ``diffusion_model``."""
    if prefix and any(index.has_prefix(p) for p in _FULL_CHECKPOINT_PARTS):
        return "main"
    return "diffusion_model"


def flux(index: Any) -> Match | None:
    if not index.may_have("double_blocks.0.img_attn.qkv.weight"):
        return None
    for prefix in ("", "model.diffusion_model."):
        if index.get(prefix + "double_blocks.0.img_attn.qkv.weight") is not None:
            variant = "dev" if index.get(prefix + "guidance_in.in_layer.weight") is not None else "schnell"
            return Match(_whole_or_alone(index, prefix), "flux.1", variant)
    return None


def sd3(index: Any) -> Match | None:
    if not index.may_have("joint_blocks.0.context_block.attn.qkv.weight"):
        return None
    for prefix in ("", "model.diffusion_model."):
        if index.get(prefix + "joint_blocks.0.context_block.attn.qkv.weight") is not None:
            if index.find(prefix + "joint_blocks.", "x_block.attn2.qkv.weight") is not None:
                base, variant = "sd-3.5", "medium"
            elif index.get(prefix + "joint_blocks.37.x_block.attn.qkv.weight") is not None:
                base, variant = "sd-3.5", "large"
            else:
                base, variant = "sd-3", "medium"
            return Match(_whole_or_alone(index, prefix), base, variant)
    return None


_ESRGAN_OLD = re.compile(r"^model\.1\.sub\.\d+\.RDB\d\.conv\d\.0\.weight$")
_RRDB = re.compile(r"^body\.\d+\.rdb\d\.conv\d\.weight$")
_COMPACT = re.compile(r"^body\.\d+\.(weight|bias)$")


def upscaler(index: Any) -> Match | None:
    firsts = [n for n in ("model.0.weight", "conv_first.weight", "body.0.weight") if index.may_have(n)]
    if not firsts:
        return None
    for wrap in ("", "params_ema.", "params.", "module."):
        first = None
        for name in firsts:  # the first of them present (the ones skipped cannot be)
            first = index.get(wrap + name)
            if first is not None:
                break
        if first is None:
            continue
        names = [n[len(wrap):] for n in index.tensors if n.startswith(wrap)]
        present = set(names)
        if "model.0.weight" in present and any(_ESRGAN_OLD.match(n) for n in names):
            return Match("upscaler", None, "esrgan")
        if "conv_first.weight" in present and "conv_last.weight" in present:
            if any(_RRDB.match(n) for n in names):
                return Match("upscaler", None, "realesrgan")
            if "conv_after_body.weight" in present and any(".residual_group.blocks." in n for n in names):
                return Match("upscaler", None, "swinir")
        shape = getattr(index.get(wrap + "body.0.weight"), "shape", None)
        if names and all(_COMPACT.match(n) for n in names) and shape and len(shape) == 4 and shape[1] == 3 and len(names) >= 4:
            return Match("upscaler", None, "realesrgan-compact")
    return None


def clip_vision(index: Any) -> Match | None:
    patch = index.get("vision_model.embeddings.patch_embedding.weight")
    if patch is None:
        return None
    width = patch.shape[0] if getattr(patch, "shape", None) else None
    return Match("clip_vision", {1024: "vit-l", 1280: "vit-h", 1664: "vit-g"}.get(width or -1))


def text_encoder(index: Any) -> Match | None:
    tok = index.get("text_model.embeddings.token_embedding.weight")
    if tok is None and index.get("encoder.layers.0.self_attn.q_proj.weight") is not None:
        tok = index.get("embeddings.token_embedding.weight")  # transformers 5: no text_model. prefix
    if tok is not None:
        width = _last_dim(tok)
        return Match("text_encoder", {768: "clip-l", 1024: "clip-h", 1280: "clip-g"}.get(width or -1), "clip")
    if index.get("encoder.block.0.layer.0.SelfAttention.q.weight") is not None:
        return Match("text_encoder", "t5", "t5")
    return None


def ip_adapter(index: Any) -> Match | None:
    if not (index.has_prefix("image_proj.") and index.has_prefix("ip_adapter.")):
        return None
    ctx = _last_dim(index.find("ip_adapter.", "to_k_ip.weight"))
    return Match("ip_adapter", _BASE_BY_CONTEXT.get(ctx or -1))


def t2i_adapter(index: Any) -> Match | None:
    if index.get("conv_in.weight") is not None and index.get("body.0.block1.weight") is not None:
        return Match("t2i_adapter")
    if index.get("adapter.conv_in.weight") is not None and index.has_prefix("adapter.body."):
        return Match("t2i_adapter")
    return None


#: in order; the first match wins.  The newer families come first: their whole checkpoints also carry
#: ``model.diffusion_model.`` keys, which the SD rules would misread.
RULES: tuple[Callable[[Any], Match | None], ...] = (flux, sd3, clip_vision, text_encoder, ip_adapter, t2i_adapter, upscaler)


def identify_family(index: Any) -> Match | None:
    for rule in RULES:
        found = rule(index)
        if found is not None:
            return found
    return None


def invokeai23_refusal(kind: str, base: str | None, variant: str | None = None) -> str | None:
    """One line for an InvokeAI 2.3 user when a model is of a family 2.3 cannot run, else None."""
    family = NEWER_FAMILIES.get(base or "")
    if family is None or kind not in ("main", "diffusion_model"):
        return None
    what = f"{family} {variant}" if variant and base == "flux.1" else family
    return f"this is a {what} model; InvokeAI 2.3 cannot run it (it runs Stable Diffusion 1.x and 2.x)"
