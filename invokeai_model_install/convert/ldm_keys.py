"""Key mapping from original single-file layouts (LDM for SD 1/2, SGM for SDXL) to diffusers.

Everything here works on *names and shapes only* (a ``{name: shape}`` table read from a
header), never on tensor data: the converter streams the bytes afterwards.  For every
diffusers tensor the plan says where its bytes come from (:class:`Move`): a source key,
optionally a row range of it (OpenCLIP's fused ``in_proj`` -> q/k/v, which are contiguous
byte ranges) and optionally a transpose (OpenCLIP's ``text_projection``).  Reshapes that
keep the bytes (VAE attention 1x1 convs -> linear) are just a different output shape.

It also derives the parts of each component's config that the weights determine
(channel widths, layer counts, cross-attention width, input channels, projection style,
...) so that one skeleton per model type fits fine-tunes, pruned files and the tests' tiny
models alike.  The naming rules are the inverse of diffusers' ``single_file_utils`` writers
and of the original ``ldm``/``sgm`` modules; diffusers' functions are not reused because
they build whole new state dicts (copies) where we want a name plan to stream through.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

Shape = tuple[int, ...]

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
EMA_PREFIX = "model_ema."


class MappingError(ValueError):
    """The checkpoint's keys do not have the structure we expected (message names the key)."""


@dataclass(frozen=True)
class Move:
    """One output tensor: ``out`` <- ``src`` (rows ``rows[0]:rows[1]`` of it, transposed if asked)."""

    out: str
    src: str
    shape: Shape
    rows: tuple[int, int] | None = None
    transpose: bool = False


@dataclass
class ComponentPlan:
    """The tensors and the weight-derived config values of one diffusers component."""

    name: str
    moves: list[Move] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # source keys deliberately left out


def _heads_for(width: int) -> int:
    """Attention heads when only the width is known: 64-wide heads (SD2, SDXL, all CLIP towers)."""
    return width // 64 if width >= 64 and width % 64 == 0 else 1


# ------------------------------------------------------------------------------------- UNet

_RESNET = (("in_layers.0", "norm1"), ("in_layers.2", "conv1"), ("emb_layers.1", "time_emb_proj"),
           ("out_layers.0", "norm2"), ("out_layers.3", "conv2"), ("skip_connection", "conv_shortcut"))
_UNET_FIXED = {"time_embed.0": "time_embedding.linear_1", "time_embed.2": "time_embedding.linear_2",
               "input_blocks.0.0": "conv_in", "out.0": "conv_norm_out", "out.2": "conv_out",
               "label_emb.0.0": "add_embedding.linear_1", "label_emb.0.2": "add_embedding.linear_2"}
_BLOCK_RE = re.compile(r"^(input_blocks|output_blocks|middle_block)\.(\d+)\.?(\d+)?\.(.+)$")


def _resnet(rest: str) -> str:
    for old, new in _RESNET:
        if rest.startswith(old + "."):
            return new + rest[len(old):]
    raise MappingError(f"unexpected resnet key part {rest!r}")


def ema_key(unet_key: str) -> str:
    """The ``model_ema.*`` name of ``model.diffusion_model.<key>`` (LitEma drops the dots)."""
    return EMA_PREFIX + ("diffusion_model." + unet_key).replace(".", "")


def plan_unet(shapes: dict[str, Shape], *, use_ema: bool, attention_heads: Any = None,
              skeleton: dict[str, Any]) -> ComponentPlan:
    """Plan the UNet from ``model.diffusion_model.*`` (or their EMA copies when ``use_ema``).

    :param attention_heads: from an LDM yaml: ``("num_heads", n)`` or ``("num_head_channels", c)``;
        None: keep the skeleton's style (SD1: 8 heads; list style: 64-wide heads).
    """
    plan = ComponentPlan("unet")
    keys = {k[len(UNET_PREFIX):]: k for k in shapes if k.startswith(UNET_PREFIX)}
    if "input_blocks.0.0.weight" not in keys:
        raise MappingError("no model.diffusion_model.input_blocks.0.0.weight: not a Stable Diffusion UNet")

    def src(k: str) -> str:
        if use_ema:
            e = ema_key(k)
            if e in shapes:
                return e
        return keys[k]

    # --- structure: levels, layers per level, attention ---
    downs = sorted(int(m.group(1)) for k in keys if (m := re.match(r"input_blocks\.(\d+)\.0\.op\.weight$", k)))
    if not downs:
        raise MappingError("no downsampling layers (input_blocks.N.0.op): not a Stable Diffusion UNet")
    lpb = downs[0] - 1
    nb = len(downs) + 1
    if lpb < 1 or any(d != (b + 1) * (lpb + 1) for b, d in enumerate(downs)):
        raise MappingError(f"irregular UNet layout (downsamplers at input_blocks {downs})")

    def shape(k: str) -> Shape:
        return shapes[keys[k]]

    channels = [shape(f"input_blocks.{1 + b * (lpb + 1)}.0.out_layers.3.weight")[0] for b in range(nb)]

    def depth(prefix: str) -> int:
        found = {int(m.group(1)) for k in keys
                 if k.startswith(prefix) and (m := re.match(re.escape(prefix) + r"transformer_blocks\.(\d+)\.", k))}
        return len(found)

    down_depth = [depth(f"input_blocks.{1 + b * (lpb + 1)}.1.") for b in range(nb)]
    up_attn = [depth(f"output_blocks.{b * (lpb + 1)}.1.") > 0 for b in range(nb)]
    attn_keys = [k for k in keys if k.endswith("attn2.to_k.weight")]
    if not attn_keys:
        raise MappingError("no cross-attention layers in the UNet")
    cross = shape(sorted(attn_keys)[0])[1]
    proj_in = next(k for k in sorted(keys) if k.endswith(".proj_in.weight"))
    cfg: dict[str, Any] = {
        "in_channels": shape("input_blocks.0.0.weight")[1],
        "out_channels": shape("out.2.weight")[0],
        "block_out_channels": channels,
        "layers_per_block": lpb,
        "cross_attention_dim": cross,
        "down_block_types": ["CrossAttnDownBlock2D" if d else "DownBlock2D" for d in down_depth],
        "up_block_types": ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in up_attn],
    }
    if len(shape(proj_in)) == 2 or skeleton.get("use_linear_projection") is not None:
        cfg["use_linear_projection"] = len(shape(proj_in)) == 2
    depths = [d for d in down_depth if d]
    mid_depth = depth("middle_block.1.")
    skel_tlpb = skeleton.get("transformer_layers_per_block")
    if isinstance(skel_tlpb, int) and len(set(depths)) == 1 and mid_depth == depths[0]:
        cfg["transformer_layers_per_block"] = depths[0]
    elif skel_tlpb is not None or set(depths) != {1} or mid_depth != depths[-1]:
        cfg["transformer_layers_per_block"] = [d or 1 for d in down_depth]
        if mid_depth != cfg["transformer_layers_per_block"][-1]:
            raise MappingError(f"mid block depth {mid_depth} differs from the last level's {down_depth[-1]}")
    # heads are not in the weights: yaml, else the skeleton's style
    if attention_heads is not None and attention_heads[0] == "num_heads" and attention_heads[1] > 0:
        cfg["attention_head_dim"] = int(attention_heads[1])
    elif attention_heads is not None and attention_heads[0] == "num_head_channels" and attention_heads[1] > 0:
        cfg["attention_head_dim"] = [max(1, c // int(attention_heads[1])) for c in channels]
    elif isinstance(skeleton.get("attention_head_dim"), int) and all(c % skeleton["attention_head_dim"] == 0
                                                                     for c in channels):
        cfg["attention_head_dim"] = skeleton["attention_head_dim"]
    else:
        cfg["attention_head_dim"] = [_heads_for(c) for c in channels]
    if "label_emb.0.0.weight" in keys:
        cfg["addition_embed_type"] = "text_time"
        cfg["projection_class_embeddings_input_dim"] = shape("label_emb.0.0.weight")[1]
    plan.config = cfg

    # --- names ---
    for k in sorted(keys):
        head, _, param = k.rpartition(".")
        if head in _UNET_FIXED:
            plan.moves.append(Move(f"{_UNET_FIXED[head]}.{param}", src(k), shapes[src(k)]))
            continue
        m = _BLOCK_RE.match(k)
        if not m:
            raise MappingError(f"unexpected UNet key {keys[k]!r}")
        kind, i, j, rest = m.group(1), int(m.group(2)), int(m.group(3) or 0), m.group(4)
        if kind == "input_blocks":
            b, layer = divmod(i - 1, lpb + 1)
            if layer < lpb:
                out = (f"down_blocks.{b}.resnets.{layer}.{_resnet(rest)}" if j == 0
                       else f"down_blocks.{b}.attentions.{layer}.{rest}")
            elif j == 0 and rest.startswith("op."):
                out = f"down_blocks.{b}.downsamplers.0.conv.{rest[3:]}"
            else:
                raise MappingError(f"unexpected UNet key {keys[k]!r}")
        elif kind == "middle_block":
            # the regex reads middle_block.J.rest as (i=J, j=None): the layer index is i
            j, rest = i, (f"{m.group(3)}.{rest}" if m.group(3) is not None else rest)
            out = {0: lambda r: f"mid_block.resnets.0.{_resnet(r)}", 1: lambda r: f"mid_block.attentions.0.{r}",
                   2: lambda r: f"mid_block.resnets.1.{_resnet(r)}"}[j](rest)
        else:
            b, layer = divmod(i, lpb + 1)
            if j == 0:
                out = f"up_blocks.{b}.resnets.{layer}.{_resnet(rest)}"
            elif rest.startswith("conv."):  # the upsampler sits at .1 without attention, .2 with it
                out = f"up_blocks.{b}.upsamplers.0.conv.{rest[5:]}"
            elif j == 1:
                out = f"up_blocks.{b}.attentions.{layer}.{rest}"
            else:
                raise MappingError(f"unexpected UNet key {keys[k]!r}")
        plan.moves.append(Move(out, src(k), shapes[src(k)]))
    return plan


# ------------------------------------------------------------------------------------- VAE

#: LDM mid-block attention -> the diffusers names.  ``query/key/value/proj_attn`` are the names diffusers
#: 0.16.1 (InvokeAI 2.3.5's pin) loads - it refuses ``to_q/to_k/to_v/to_out.0`` - and current diffusers
#: still reads them (it renames them on load), so one format serves both.
_VAE_ATTN = {"norm": "group_norm", "q": "query", "k": "key", "v": "value", "proj_out": "proj_attn"}

#: diffusers >= 0.18 mid-block attention names -> the names diffusers 0.16.1 loads.
NEW_TO_OLD_VAE_ATTENTION = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}


def legacy_vae_attention_name(key: str) -> str:
    """A VAE weight name with the mid-block attention named as diffusers 0.16.1 wants (others unchanged).

    Works on names inside a VAE (``encoder.mid_block.attentions.0.to_q.weight``) and inside a whole
    model (``vae.encoder...``)."""
    if ".mid_block.attentions." not in key:
        return key
    for new, old in NEW_TO_OLD_VAE_ATTENTION.items():
        if f".{new}." in key:
            return key.replace(f".{new}.", f".{old}.")
    return key


def vae_prefix(shapes: dict[str, Shape]) -> str | None:
    """Where a VAE lives in a file: ``first_stage_model.`` (a whole model), ``""`` (a VAE file)."""
    for prefix in (VAE_PREFIX, "vae.", ""):
        if f"{prefix}decoder.conv_in.weight" in shapes and f"{prefix}encoder.conv_in.weight" in shapes:
            return prefix
    return None


def plan_vae(shapes: dict[str, Shape], prefix: str) -> ComponentPlan:
    """Plan the VAE from LDM ``encoder.*``/``decoder.*`` keys under ``prefix``.

    A standalone VAE file already in diffusers layout (``encoder.down_blocks.*``) maps 1:1.
    """
    plan = ComponentPlan("vae")
    keys = {k[len(prefix):]: k for k in shapes if k.startswith(prefix)}
    diffusers_layout = "encoder.down_blocks.0.resnets.0.conv1.weight" in keys
    if diffusers_layout:
        downs = {int(m.group(1)) for k in keys if (m := re.match(r"encoder\.down_blocks\.(\d+)\.", k))}
        nb = len(downs)
        channels = [keys_shape(shapes, keys, f"encoder.down_blocks.{i}.resnets.0.conv1.weight")[0] for i in range(nb)]
        lpb = len({m.group(1) for k in keys if (m := re.match(r"encoder\.down_blocks\.0\.resnets\.(\d+)\.", k))})
    else:
        downs = {int(m.group(1)) for k in keys if (m := re.match(r"encoder\.down\.(\d+)\.", k))}
        nb = len(downs)
        if nb == 0:
            raise MappingError("no encoder.down.* layers in the VAE")
        channels = [keys_shape(shapes, keys, f"encoder.down.{i}.block.0.conv1.weight")[0] for i in range(nb)]
        lpb = len({m.group(1) for k in keys if (m := re.match(r"encoder\.down\.0\.block\.(\d+)\.", k))})
    plan.config = {
        "block_out_channels": channels,
        "layers_per_block": lpb,
        "in_channels": keys_shape(shapes, keys, "encoder.conv_in.weight")[1],
        "out_channels": keys_shape(shapes, keys, "decoder.conv_out.weight")[0],
        "latent_channels": keys_shape(shapes, keys, "decoder.conv_in.weight")[1],
        "down_block_types": ["DownEncoderBlock2D"] * nb,
        "up_block_types": ["UpDecoderBlock2D"] * nb,
    }
    for k in sorted(keys):
        s = shapes[keys[k]]
        if diffusers_layout:
            out = legacy_vae_attention_name(k)
        else:
            out = _vae_name(k, nb)
            if out is None:
                plan.skipped.append(keys[k])  # e.g. loss.* of a training checkpoint
                continue
        if ".attentions." in out and out.endswith(".weight") and len(s) == 4 and "group_norm" not in out:
            s = s[:2]  # 1x1 conv -> linear: the same bytes
        plan.moves.append(Move(out, keys[k], s))
    return plan


def keys_shape(shapes: dict[str, Shape], keys: dict[str, str], k: str) -> Shape:
    if k not in keys:
        raise MappingError(f"missing VAE key {k!r}")
    return shapes[keys[k]]


def _vae_name(k: str, nb: int) -> str | None:
    side, _, rest = k.partition(".")
    if side in ("quant_conv", "post_quant_conv"):
        return k
    if side not in ("encoder", "decoder"):
        return None
    simple = {"conv_in": "conv_in", "conv_out": "conv_out", "norm_out": "conv_norm_out"}
    head, _, param = rest.partition(".")
    if head in simple:
        return f"{side}.{simple[head]}.{param}"
    if m := re.match(r"(down|up)\.(\d+)\.block\.(\d+)\.(.+)$", rest):
        level = int(m.group(2)) if m.group(1) == "down" else nb - 1 - int(m.group(2))
        blocks = "down_blocks" if m.group(1) == "down" else "up_blocks"
        return f"{side}.{blocks}.{level}.resnets.{m.group(3)}.{m.group(4).replace('nin_shortcut', 'conv_shortcut')}"
    if m := re.match(r"down\.(\d+)\.downsample\.conv\.(.+)$", rest):
        return f"{side}.down_blocks.{m.group(1)}.downsamplers.0.conv.{m.group(2)}"
    if m := re.match(r"up\.(\d+)\.upsample\.conv\.(.+)$", rest):
        return f"{side}.up_blocks.{nb - 1 - int(m.group(1))}.upsamplers.0.conv.{m.group(2)}"
    if m := re.match(r"mid\.block_([12])\.(.+)$", rest):
        return f"{side}.mid_block.resnets.{int(m.group(1)) - 1}.{m.group(2).replace('nin_shortcut', 'conv_shortcut')}"
    if m := re.match(r"mid\.attn_1\.(norm|q|k|v|proj_out)\.(weight|bias)$", rest):
        return f"{side}.mid_block.attentions.0.{_VAE_ATTN[m.group(1)]}.{m.group(2)}"
    return None


# ------------------------------------------------------------------------------- text encoders


def plan_hf_clip(shapes: dict[str, Shape], prefix: str, name: str) -> ComponentPlan:
    """A CLIP text model stored in the HF layout under ``prefix`` (SD1, SDXL's first encoder)."""
    plan = ComponentPlan(name)
    for k in sorted(shapes):
        if not k.startswith(prefix):
            continue
        rest = k[len(prefix):]
        if not rest.startswith("text_model."):  # very old transformers saved without the prefix
            rest = "text_model." + rest
        if rest.endswith("embeddings.position_ids"):  # a buffer, rebuilt by transformers
            plan.skipped.append(k)
            continue
        plan.moves.append(Move(rest, k, shapes[k]))
    tm = prefix + "text_model." if any(k.startswith(prefix + "text_model.") for k in shapes) else prefix
    layers = {int(m.group(1)) for k in shapes if (m := re.match(re.escape(tm) + r"encoder\.layers\.(\d+)\.", k))}
    tok = shapes.get(tm + "embeddings.token_embedding.weight")
    pos = shapes.get(tm + "embeddings.position_embedding.weight")
    fc1 = shapes.get(tm + "encoder.layers.0.mlp.fc1.weight")
    if tok is None or pos is None or fc1 is None:
        raise MappingError(f"incomplete CLIP text encoder under {prefix!r}")
    plan.config = {"vocab_size": tok[0], "hidden_size": tok[1], "max_position_embeddings": pos[0],
                   "intermediate_size": fc1[0], "num_hidden_layers": len(layers),
                   "num_attention_heads": _heads_for(tok[1])}
    return plan


def plan_open_clip(shapes: dict[str, Shape], prefix: str, name: str, *, drop_last_layer: bool,
                   with_projection: bool) -> ComponentPlan:
    """An OpenCLIP text tower under ``prefix`` (SD2's ViT-H, SDXL's bigG) as a transformers CLIP model.

    ``drop_last_layer``: SD2 conditions on the penultimate layer, so diffusers' encoder has one
    layer fewer than the checkpoint.  ``with_projection``: keep ``text_projection`` (transposed).
    """
    plan = ComponentPlan(name)
    tok = shapes.get(prefix + "token_embedding.weight")
    pos = shapes.get(prefix + "positional_embedding")
    if tok is None or pos is None:
        raise MappingError(f"incomplete OpenCLIP text encoder under {prefix!r}")
    width = tok[1]
    layers = sorted({int(m.group(1)) for k in shapes
                     if (m := re.match(re.escape(prefix) + r"transformer\.resblocks\.(\d+)\.", k))})
    n_layers = len(layers) - 1 if drop_last_layer else len(layers)
    tm = "text_model."
    fixed = {"token_embedding.weight": "embeddings.token_embedding.weight",
             "positional_embedding": "embeddings.position_embedding.weight",
             "ln_final.weight": "final_layer_norm.weight", "ln_final.bias": "final_layer_norm.bias"}
    inner = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2",
             "attn.out_proj": "self_attn.out_proj"}
    for k in sorted(shapes):
        if not k.startswith(prefix):
            continue
        rest = k[len(prefix):]
        s = shapes[k]
        if rest in fixed:
            plan.moves.append(Move(tm + fixed[rest], k, s))
        elif rest == "text_projection":
            if with_projection:
                plan.moves.append(Move("text_projection.weight", k, (s[1], s[0]), transpose=True))
            else:
                plan.skipped.append(k)
        elif m := re.match(r"transformer\.resblocks\.(\d+)\.(.+)\.(weight|bias)$", rest):
            i, part, param = int(m.group(1)), m.group(2), m.group(3)
            if i >= n_layers:
                plan.skipped.append(k)
                continue
            dst = f"{tm}encoder.layers.{i}."
            if part in inner:
                plan.moves.append(Move(f"{dst}{inner[part]}.{param}", k, s))
            else:
                raise MappingError(f"unexpected OpenCLIP key {k!r}")
        elif m := re.match(r"transformer\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)$", rest):
            i, param = int(m.group(1)), m.group(2)
            if i >= n_layers:
                plan.skipped.append(k)
                continue
            if s[0] != 3 * width:
                raise MappingError(f"{k}: fused in_proj of {s[0]} rows for width {width}")
            for n, qkv in enumerate("qkv"):
                out_shape = (width,) + tuple(s[1:])
                plan.moves.append(Move(f"{tm}encoder.layers.{i}.self_attn.{qkv}_proj.{param}", k, out_shape,
                                       rows=(n * width, (n + 1) * width)))
        else:  # logit_scale, attn_mask and the like
            plan.skipped.append(k)
    fc = shapes.get(f"{prefix}transformer.resblocks.0.mlp.c_fc.weight")
    if fc is None:
        raise MappingError(f"no transformer layers under {prefix!r}")
    plan.config = {"vocab_size": tok[0], "hidden_size": width, "max_position_embeddings": pos[0],
                   "intermediate_size": fc[0], "num_hidden_layers": n_layers,
                   "num_attention_heads": _heads_for(width)}
    if with_projection:
        proj = shapes.get(prefix + "text_projection")
        if proj is None:
            raise MappingError(f"no text_projection under {prefix!r}")
        plan.config["projection_dim"] = proj[1]
    return plan


def expected_clip_keys(config: dict[str, Any], *, with_projection: bool) -> dict[str, Shape]:
    """The state-dict names and shapes of a transformers CLIP text model (without importing it)."""
    h, inter, n = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    out: dict[str, Shape] = {
        "text_model.embeddings.token_embedding.weight": (config["vocab_size"], h),
        "text_model.embeddings.position_embedding.weight": (config["max_position_embeddings"], h),
        "text_model.final_layer_norm.weight": (h,), "text_model.final_layer_norm.bias": (h,),
    }
    for i in range(n):
        p = f"text_model.encoder.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            out[f"{p}self_attn.{proj}.weight"] = (h, h)
            out[f"{p}self_attn.{proj}.bias"] = (h,)
        for ln in ("layer_norm1", "layer_norm2"):
            out[f"{p}{ln}.weight"] = (h,)
            out[f"{p}{ln}.bias"] = (h,)
        out[f"{p}mlp.fc1.weight"] = (inter, h)
        out[f"{p}mlp.fc1.bias"] = (inter,)
        out[f"{p}mlp.fc2.weight"] = (h, inter)
        out[f"{p}mlp.fc2.bias"] = (h,)
    if with_projection:
        out["text_projection.weight"] = (config["projection_dim"], h)
    return out
