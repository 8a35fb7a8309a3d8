"""Tiny, structurally real Stable Diffusion models for tests, and the tests' own single-file writer.

Everything here is built offline in about a second per model, with random weights:

* :func:`make_diffusers_model` writes a real diffusers pipeline folder (``model_index.json``,
  ``unet``, ``vae``, ``text_encoder[_2]``, ``tokenizer[_2]``, ``scheduler``) for one of
  :data:`KINDS`.  The block structure of the real model is kept (same block types,
  ``layers_per_block=2``, real ``cross_attention_dim``, 9 input channels for inpainting,
  SDXL's second text encoder with 10 layers and a wider hidden size than the first); only
  the channel widths and layer counts shrink (FACTS.md recipe).  The configs start from the
  package's own skeletons (``invokeai_model_install/convert/data``), so everything the
  weights do not determine (sample sizes, schedulers, scaling factors) is the real value.
  Every parameter is random (layer norms too), so a swapped key cannot go unnoticed.
* :func:`write_single_file` turns such a folder into an original-layout single-file
  checkpoint (LDM for SD 1/2, SGM for SDXL), ``.safetensors`` or ``.ckpt``.  This is the
  tests' OWN diffusers -> LDM mapping, written independently of the converter under test
  (``invokeai_model_install/ldm_keys.py``) and checked against diffusers' own
  ``from_single_file`` in tests/test_modelgen.py.  Like the real releases it carries the
  extra bits converters must skip: SD 1's ``position_ids``, SD 2's 24th OpenCLIP layer
  (the model uses the penultimate one), its unused ``text_projection`` and ``logit_scale``,
  DDPM schedule buffers; optionally EMA weights and a pickled pytorch_lightning callback.
* :func:`make_vae_file`, :func:`make_lora_file`, :func:`make_embedding_file`,
  :func:`make_controlnet_file`, :func:`make_random_tensors_file`: the other kinds of file
  the probe must recognise.

transformers is a test-only dependency; it is imported lazily here.
"""

from __future__ import annotations

import copy
import json
import shutil
import sys
import types
from pathlib import Path
from typing import Any

#: The model kinds :func:`make_diffusers_model` builds -> the package skeleton they follow.
KINDS: dict[str, str] = {
    "sd-1": "sd-1",
    "sd-1-inpaint": "sd-1-inpaint",
    "sd-2": "sd-2",
    "sd-2-v": "sd-2-v",
    "sd-2-inpaint": "sd-2-inpaint",
    "sdxl": "sdxl",
    "sdxl-inpaint": "sdxl",  # the sdxl skeleton with a 9-channel UNet and the inpainting pipeline
    "sdxl-refiner": "sdxl-refiner",
}

#: Base model of each kind (what the probe should answer).
BASE_OF: dict[str, str] = {
    "sd-1": "sd-1", "sd-1-inpaint": "sd-1", "sd-2": "sd-2", "sd-2-v": "sd-2", "sd-2-inpaint": "sd-2",
    "sdxl": "sdxl", "sdxl-inpaint": "sdxl", "sdxl-refiner": "sdxl-refiner",
}

#: The package's skeleton configs (also the converter's), the tiny models' starting point.
CONVERT_DATA = Path(__file__).resolve().parent.parent / "invokeai_model_install" / "convert" / "data"

TEXT_ENCODERS = ("text_encoder", "text_encoder_2")
TOKENIZERS = ("tokenizer", "tokenizer_2")


# ------------------------------------------------------------------------------------ configs


def _heads(width: int) -> int:
    """Attention heads for a width: head size 64 like SD2/SDXL/CLIP; one head for tiny widths."""
    return width // 64 if width >= 64 and width % 64 == 0 else 1


def _read_skeleton(name: str) -> dict[str, Any]:
    root = CONVERT_DATA / name
    return {str(p.relative_to(root)): json.loads(p.read_text()) for p in sorted(root.rglob("*.json"))}


def tiny_configs(kind: str) -> dict[str, Any]:
    """{relative path: JSON document} of a tiny model of ``kind`` (skeleton with shrunken widths)."""
    docs = copy.deepcopy(_read_skeleton(KINDS[kind]))
    unet = docs["unet/config.json"]
    nblocks = len(unet["block_out_channels"])
    unet["block_out_channels"] = [32, 64, 96, 96][:nblocks]
    if isinstance(unet["attention_head_dim"], list):  # SD2 / SDXL: head size 64 in the real models
        unet["attention_head_dim"] = [_heads(c) for c in unet["block_out_channels"]]
    tlpb = unet.get("transformer_layers_per_block")
    if isinstance(tlpb, list):  # SDXL base [1, 2, 10] -> [1, 1, 2]: still a different depth per level
        unet["transformer_layers_per_block"] = [1, 1, 2]
    elif isinstance(tlpb, int):  # refiner 4 -> 2
        unet["transformer_layers_per_block"] = 2

    if kind == "sdxl-inpaint":
        unet["in_channels"] = 9
        docs["model_index.json"]["_class_name"] = "StableDiffusionXLInpaintPipeline"

    vae = docs["vae/config.json"]
    vae["block_out_channels"] = [32, 32, 64, 64]

    te_layers = {"text_encoder": 3, "text_encoder_2": 10}  # >= 10 layers: detection reads resblocks.9
    te_width = {"text_encoder": 32, "text_encoder_2": 64}
    for te in TEXT_ENCODERS:
        cfg = docs.get(f"{te}/config.json")
        if cfg is None:
            continue
        width = te_width[te]
        cfg.update(hidden_size=width, intermediate_size=2 * width, num_attention_heads=_heads(width),
                   num_hidden_layers=te_layers[te])
        if cfg["architectures"] == ["CLIPTextModelWithProjection"]:
            cfg["projection_dim"] = width
    if unet.get("addition_embed_type") == "text_time":
        pooled = docs["text_encoder_2/config.json"]["projection_dim"]
        n_time_ids = 5 if kind == "sdxl-refiner" else 6  # the refiner conditions on an aesthetic score
        unet["projection_class_embeddings_input_dim"] = pooled + n_time_ids * unet["addition_time_embed_dim"]
    return docs


# ------------------------------------------------------------------------------------ building


def _randomize(module, generator) -> None:
    """Overwrite every parameter with seeded noise (default inits leave norms at 1/0)."""
    import torch

    with torch.no_grad():
        for _name, param in sorted(module.named_parameters()):
            param.copy_(torch.randn(param.shape, generator=generator) * 0.05 + 0.01)


def _copy_tokenizer(dest: Path, skeleton_tok: dict[str, Any]) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("vocab.json", "merges.txt"):
        shutil.copyfile(CONVERT_DATA / "clip_tokenizer" / name, dest / name)
    for name, doc in skeleton_tok.items():
        (dest / name).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


def _write_fp16_variant(folder: Path, weights: str) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(folder / weights))
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in tensors.items()}
    stem, ext = weights.rsplit(".", 1)
    save_file(half, str(folder / f"{stem}.fp16.{ext}"), metadata={"format": "pt"})


def make_diffusers_model(kind: str, dest: str | Path, *, seed: int = 0, variant_fp16: bool = False) -> Path:
    """Write a tiny diffusers pipeline folder of ``kind`` (see :data:`KINDS`) at ``dest``; return it.

    ``variant_fp16`` also writes ``*.fp16.safetensors`` next to each weights file (the hub's
    fp16 variant layout).  The same ``kind`` and ``seed`` give the same weights.
    """
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; one of {sorted(KINDS)}")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=False)
    docs = tiny_configs(kind)
    gen = torch.Generator().manual_seed(seed)

    weights: list[tuple[Path, str]] = []
    unet = UNet2DConditionModel.from_config(docs["unet/config.json"])
    _randomize(unet, gen)
    unet.save_pretrained(dest / "unet", safe_serialization=True)
    weights.append((dest / "unet", "diffusion_pytorch_model.safetensors"))
    del unet

    vae = AutoencoderKL.from_config(docs["vae/config.json"])
    _randomize(vae, gen)
    vae.save_pretrained(dest / "vae", safe_serialization=True)
    weights.append((dest / "vae", "diffusion_pytorch_model.safetensors"))
    del vae

    for te in TEXT_ENCODERS:
        cfg = docs.get(f"{te}/config.json")
        if cfg is None:
            continue
        cfg = {k: v for k, v in cfg.items() if k not in ("architectures", "transformers_version", "torch_dtype")}
        config = CLIPTextConfig(**cfg)
        with_proj = docs[f"{te}/config.json"]["architectures"] == ["CLIPTextModelWithProjection"]
        model = (CLIPTextModelWithProjection if with_proj else CLIPTextModel)(config)
        _randomize(model, gen)
        model.save_pretrained(dest / te)
        weights.append((dest / te, "model.safetensors"))
        del model

    for tok in TOKENIZERS:
        sk = {rel.split("/", 1)[1]: doc for rel, doc in docs.items() if rel.startswith(tok + "/")}
        if sk:
            _copy_tokenizer(dest / tok, sk)
    (dest / "scheduler").mkdir()
    (dest / "scheduler" / "scheduler_config.json").write_text(
        json.dumps(docs["scheduler/scheduler_config.json"], indent=2, sort_keys=True) + "\n")
    (dest / "model_index.json").write_text(json.dumps(docs["model_index.json"], indent=2, sort_keys=True) + "\n")
    if variant_fp16:
        for folder, name in weights:
            _write_fp16_variant(folder, name)
    return dest


# ------------------------------------------------------------------------- diffusers -> LDM/SGM


def _load(folder: Path) -> dict:
    """A component's fp32 weights; text encoders with the ``text_model.`` prefix whatever transformers wrote.

    (transformers 5 saves ``CLIPTextModel`` without the prefix, ``CLIPTextModelWithProjection`` with it.)
    """
    from safetensors.torch import load_file

    for name in ("diffusion_pytorch_model.safetensors", "model.safetensors"):
        if (folder / name).is_file():
            sd = load_file(str(folder / name))
            if name == "model.safetensors":
                sd = {(k if k.startswith(("text_model.", "text_projection")) else f"text_model.{k}"): v
                      for k, v in sd.items()}
            return sd
    raise FileNotFoundError(f"no weights in {folder}")


_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
           "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}


def _unet_to_ldm(sd: dict, cfg: dict) -> dict:
    """diffusers UNet2DConditionModel -> openaimodel ``UNetModel`` keys (no prefix)."""
    out: dict = {}
    lpb = cfg["layers_per_block"]
    nb = len(cfg["block_out_channels"])

    def put(ldm: str, dif: str) -> None:
        out[ldm] = sd.pop(dif)

    def resnet(ldm: str, dif: str) -> None:
        for key in [k for k in list(sd) if k.startswith(dif + ".")]:
            sub = key[len(dif) + 1:]
            layer, rest = sub.split(".", 1)
            out[f"{ldm}.{_RESNET[layer]}.{rest}"] = sd.pop(key)

    def subtree(ldm: str, dif: str) -> None:  # attentions: the same names inside on both sides
        for key in [k for k in list(sd) if k.startswith(dif + ".")]:
            out[ldm + key[len(dif):]] = sd.pop(key)

    for a, b in (("time_embed.0", "time_embedding.linear_1"), ("time_embed.2", "time_embedding.linear_2"),
                 ("input_blocks.0.0", "conv_in"), ("out.0", "conv_norm_out"), ("out.2", "conv_out"),
                 ("label_emb.0.0", "add_embedding.linear_1"), ("label_emb.0.2", "add_embedding.linear_2")):
        for p in ("weight", "bias"):
            if f"{b}.{p}" in sd:
                put(f"{a}.{p}", f"{b}.{p}")
    for b in range(nb):
        for j in range(lpb):
            i = 1 + b * (lpb + 1) + j
            resnet(f"input_blocks.{i}.0", f"down_blocks.{b}.resnets.{j}")
            subtree(f"input_blocks.{i}.1", f"down_blocks.{b}.attentions.{j}")
        if b < nb - 1:
            subtree(f"input_blocks.{1 + b * (lpb + 1) + lpb}.0.op", f"down_blocks.{b}.downsamplers.0.conv")
    resnet("middle_block.0", "mid_block.resnets.0")
    subtree("middle_block.1", "mid_block.attentions.0")
    resnet("middle_block.2", "mid_block.resnets.1")
    for b in range(nb):
        has_attn = cfg["up_block_types"][b].startswith("CrossAttn")
        for j in range(lpb + 1):
            i = b * (lpb + 1) + j
            resnet(f"output_blocks.{i}.0", f"up_blocks.{b}.resnets.{j}")
            if has_attn:
                subtree(f"output_blocks.{i}.1", f"up_blocks.{b}.attentions.{j}")
        if b < nb - 1:
            i = b * (lpb + 1) + lpb
            subtree(f"output_blocks.{i}.{2 if has_attn else 1}.conv", f"up_blocks.{b}.upsamplers.0.conv")
    if sd:
        raise AssertionError(f"unmapped UNet keys: {sorted(sd)[:5]}")
    return out


def _vae_to_ldm(sd: dict, cfg: dict) -> dict:
    """diffusers AutoencoderKL -> ldm ``AutoencoderKL`` keys (no prefix); attention as 1x1 convs."""
    out: dict = {}
    nb = len(cfg["block_out_channels"])
    lpb = cfg["layers_per_block"]
    attn = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}

    def move(ldm: str, dif: str, conv_shortcut: bool = False) -> None:
        for p in ("weight", "bias"):
            if f"{dif}.{p}" in sd:
                out[f"{ldm}.{p}"] = sd.pop(f"{dif}.{p}")

    def resnet(ldm: str, dif: str) -> None:
        for layer in ("norm1", "conv1", "norm2", "conv2"):
            move(f"{ldm}.{layer}", f"{dif}.{layer}")
        move(f"{ldm}.nin_shortcut", f"{dif}.conv_shortcut")

    def attention(ldm: str, dif: str) -> None:
        for d, l in attn.items():
            for p in ("weight", "bias"):
                t = sd.pop(f"{dif}.{d}.{p}")
                if p == "weight" and l != "norm":
                    t = t[:, :, None, None].contiguous()
                out[f"{ldm}.{l}.{p}"] = t

    for side in ("encoder", "decoder"):
        for a, b in (("conv_in", "conv_in"), ("conv_out", "conv_out"), ("norm_out", "conv_norm_out")):
            move(f"{side}.{a}", f"{side}.{b}")
        resnet(f"{side}.mid.block_1", f"{side}.mid_block.resnets.0")
        resnet(f"{side}.mid.block_2", f"{side}.mid_block.resnets.1")
        attention(f"{side}.mid.attn_1", f"{side}.mid_block.attentions.0")
    for i in range(nb):
        for j in range(lpb):
            resnet(f"encoder.down.{i}.block.{j}", f"encoder.down_blocks.{i}.resnets.{j}")
        move(f"encoder.down.{i}.downsample.conv", f"encoder.down_blocks.{i}.downsamplers.0.conv")
    for i in range(nb):
        ldm_i = nb - 1 - i  # the decoder's up blocks count the other way round
        for j in range(lpb + 1):
            resnet(f"decoder.up.{ldm_i}.block.{j}", f"decoder.up_blocks.{i}.resnets.{j}")
        move(f"decoder.up.{ldm_i}.upsample.conv", f"decoder.up_blocks.{i}.upsamplers.0.conv")
    move("quant_conv", "quant_conv")
    move("post_quant_conv", "post_quant_conv")
    if sd:
        raise AssertionError(f"unmapped VAE keys: {sorted(sd)[:5]}")
    return out


def _clip_to_hf_ldm(sd: dict) -> dict:
    """CLIPTextModel -> ``transformer.text_model.*`` (the HF layout inside SD1 / SDXL checkpoints)."""
    import torch

    out = {f"transformer.{k}": v for k, v in sd.items()}
    n = sd["text_model.embeddings.position_embedding.weight"].shape[0]
    out["transformer.text_model.embeddings.position_ids"] = torch.arange(n, dtype=torch.int64)[None]
    return out


def _clip_to_open_clip(sd: dict, cfg: dict, *, extra_layer: bool, gen) -> dict:
    """CLIPTextModel[WithProjection] -> OpenCLIP ``model.*`` keys (fused in_proj, transposed projection)."""
    import torch

    out: dict = {}
    tm = "text_model."
    out["token_embedding.weight"] = sd.pop(tm + "embeddings.token_embedding.weight")
    out["positional_embedding"] = sd.pop(tm + "embeddings.position_embedding.weight")
    out["ln_final.weight"] = sd.pop(tm + "final_layer_norm.weight")
    out["ln_final.bias"] = sd.pop(tm + "final_layer_norm.bias")
    width = cfg["hidden_size"]
    n_layers = cfg["num_hidden_layers"]
    for i in range(n_layers):
        src = f"{tm}encoder.layers.{i}."
        dst = f"transformer.resblocks.{i}."
        for p in ("weight", "bias"):
            out[f"{dst}attn.in_proj_{p}"] = torch.cat(
                [sd.pop(f"{src}self_attn.{x}_proj.{p}") for x in ("q", "k", "v")], dim=0)
            out[f"{dst}attn.out_proj.{p}"] = sd.pop(f"{src}self_attn.out_proj.{p}")
            out[f"{dst}ln_1.{p}"] = sd.pop(f"{src}layer_norm1.{p}")
            out[f"{dst}ln_2.{p}"] = sd.pop(f"{src}layer_norm2.{p}")
            out[f"{dst}mlp.c_fc.{p}"] = sd.pop(f"{src}mlp.fc1.{p}")
            out[f"{dst}mlp.c_proj.{p}"] = sd.pop(f"{src}mlp.fc2.{p}")
    if "text_projection.weight" in sd:  # open_clip multiplies x @ proj: the transpose of a Linear weight
        out["text_projection"] = sd.pop("text_projection.weight").T.contiguous()
    else:  # SD2 carries an unused projection
        out["text_projection"] = torch.randn((width, width), generator=gen)
    out["logit_scale"] = torch.tensor(4.6052)
    if extra_layer:  # SD2 uses the penultimate layer: the checkpoint holds one layer more
        ref = {k[len("transformer.resblocks.0."):]: v for k, v in out.items() if k.startswith("transformer.resblocks.0.")}
        for name, t in ref.items():
            out[f"transformer.resblocks.{n_layers}.{name}"] = torch.randn(t.shape, generator=gen)
    if sd:
        raise AssertionError(f"unmapped text encoder keys: {sorted(sd)[:5]}")
    return out


def diffusers_to_single_file_state_dict(diffusers_dir: str | Path, *, with_ema: bool = False, seed: int = 1) -> dict:
    """The original-layout state dict of a tiny (or any SD/SDXL) diffusers folder."""
    import torch

    src = Path(diffusers_dir)
    gen = torch.Generator().manual_seed(seed)
    index = json.loads((src / "model_index.json").read_text())
    unet_cfg = json.loads((src / "unet" / "config.json").read_text())
    vae_cfg = json.loads((src / "vae" / "config.json").read_text())
    xl = index["_class_name"].startswith("StableDiffusionXL")
    out: dict = {}
    unet = _unet_to_ldm(_load(src / "unet"), unet_cfg)
    for k, v in unet.items():
        if with_ema:
            # EMA = the original weights; the training weights differ, so a test can tell which were used
            out["model_ema." + "".join(f"diffusion_model.{k}".split("."))] = v
            out[f"model.diffusion_model.{k}"] = v + 1.0
        else:
            out[f"model.diffusion_model.{k}"] = v
    if with_ema:
        out["model_ema.decay"] = torch.tensor(0.9999)
        out["model_ema.num_updates"] = torch.tensor(1000, dtype=torch.int32)
    for k, v in _vae_to_ldm(_load(src / "vae"), vae_cfg).items():
        out[f"first_stage_model.{k}"] = v

    te_present = [te for te in TEXT_ENCODERS if (src / te / "config.json").is_file()]
    if xl:
        idx = 0
        for te in te_present:
            cfg = json.loads((src / te / "config.json").read_text())
            if te == "text_encoder":
                for k, v in _clip_to_hf_ldm(_load(src / te)).items():
                    out[f"conditioner.embedders.{idx}.{k}"] = v
            else:
                for k, v in _clip_to_open_clip(_load(src / te), cfg, extra_layer=False, gen=gen).items():
                    out[f"conditioner.embedders.{idx}.model.{k}"] = v
            idx += 1
    else:
        cfg = json.loads((src / "text_encoder" / "config.json").read_text())
        if unet_cfg["cross_attention_dim"] == 1024:  # SD2: OpenCLIP ViT-H
            for k, v in _clip_to_open_clip(_load(src / "text_encoder"), cfg, extra_layer=True, gen=gen).items():
                out[f"cond_stage_model.model.{k}"] = v
        else:
            for k, v in _clip_to_hf_ldm(_load(src / "text_encoder")).items():
                out[f"cond_stage_model.{k}"] = v
        # DDPM schedule buffers of LatentDiffusion (real files carry them; converters skip them)
        betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
        out["betas"] = betas.float()
        out["alphas_cumprod"] = torch.cumprod(1 - betas, 0).float()
    return out


def _lightning_module() -> tuple[dict[str, Any], type]:
    """Register a stub ``pytorch_lightning.callbacks.model_checkpoint`` (for pickling only)."""
    saved = {name: sys.modules.get(name) for name in
             ("pytorch_lightning", "pytorch_lightning.callbacks", "pytorch_lightning.callbacks.model_checkpoint")}
    cls = type("ModelCheckpoint", (), {"__module__": "pytorch_lightning.callbacks.model_checkpoint"})
    mod = types.ModuleType("pytorch_lightning.callbacks.model_checkpoint")
    mod.ModelCheckpoint = cls
    sys.modules["pytorch_lightning"] = types.ModuleType("pytorch_lightning")
    sys.modules["pytorch_lightning.callbacks"] = types.ModuleType("pytorch_lightning.callbacks")
    sys.modules["pytorch_lightning.callbacks.model_checkpoint"] = mod
    return saved, cls


def _restore_modules(saved: dict[str, Any]) -> None:
    for name, module in saved.items():
        if module is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = module


def write_single_file(diffusers_dir: str | Path, out_path: str | Path, *, fmt: str = "safetensors",
                      global_step: int | None = None, with_ema: bool = False,
                      lightning_callbacks: bool = False) -> Path:
    """Write ``diffusers_dir`` as an original-layout single-file checkpoint; return ``out_path``.

    :param fmt: ``"safetensors"`` (``global_step`` goes into the header metadata) or ``"ckpt"``
        (a torch zip of ``{"state_dict": ..., "global_step": N}`` like the original releases).
    :param with_ema: add ``model_ema.*`` copies of the UNet.  The EMA copies hold the folder's
        weights and the plain ``model.diffusion_model.*`` ones are shifted by +1, so a converter
        that uses the EMA weights gives back the folder exactly.
    :param lightning_callbacks: (ckpt) also pickle a ``pytorch_lightning ... ModelCheckpoint``
        reference under ``"callbacks"``, as in sd-v1-4.ckpt (a stub class, registered only
        while pickling).
    """
    import torch

    out_path = Path(out_path)
    sd = diffusers_to_single_file_state_dict(diffusers_dir, with_ema=with_ema)
    if fmt == "safetensors":
        from safetensors.torch import save_file

        meta = {"format": "pt"}
        if global_step is not None:
            meta["global_step"] = str(global_step)
        save_file({k: v.contiguous() for k, v in sd.items()}, str(out_path), metadata=meta)
    elif fmt == "ckpt":
        doc: dict[str, Any] = {"state_dict": sd, "epoch": 6, "global_step": global_step or 0}
        if lightning_callbacks:
            saved, cls = _lightning_module()
            try:
                doc["pytorch-lightning_version"] = "1.4.2"
                doc["callbacks"] = {cls: {"monitor": None, "best_model_score": None, "best_model_path": "",
                                          "current_score": None, "dirpath": "/logs/checkpoints"}}
                torch.save(doc, str(out_path))
            finally:
                _restore_modules(saved)
        else:
            torch.save(doc, str(out_path))
    else:
        raise ValueError(f"fmt must be 'safetensors' or 'ckpt', not {fmt!r}")
    return out_path


# ----------------------------------------------------------------------------- other file kinds


def tiny_vae_state_dict(kind: str = "sd-1", seed: int = 7) -> dict:
    """The diffusers-layout weights of a random VAE that fits the tiny ``kind`` model (seeded)."""
    import torch
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_config(tiny_configs(kind)["vae/config.json"])
    _randomize(vae, torch.Generator().manual_seed(seed))
    return {k: v.detach().clone() for k, v in vae.state_dict().items()}


def make_vae_file(out: str | Path, fmt: str = "safetensors", *, kind: str = "sd-1", seed: int = 7) -> Path:
    """A standalone VAE in the original layout (``encoder.*``/``decoder.*``, like vae-ft-mse-840000)
    whose shapes fit the tiny ``kind`` model; its weights are :func:`tiny_vae_state_dict` (``seed``),
    different from the model's own VAE.  ``fmt``: ``"safetensors"`` or ``"ckpt"`` (``{"state_dict": ...}``)."""
    import torch

    out = Path(out)
    sd = _vae_to_ldm(tiny_vae_state_dict(kind, seed), tiny_configs(kind)["vae/config.json"])
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file(sd, str(out))
    elif fmt == "ckpt":
        torch.save({"state_dict": sd}, str(out))
    else:
        raise ValueError(fmt)
    return out


def make_lora_file(out: str | Path, base: str = "sd-1", *, rank: int = 4, seed: int = 3) -> Path:
    """A kohya-style LoRA (``lora_unet_*``/``lora_te_*`` with lora_down/lora_up/alpha), real widths for ``base``."""
    import torch
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(seed)
    ctx = {"sd-1": 768, "sd-2": 1024, "sdxl": 2048, "sdxl-refiner": 1280}[base]
    te_prefixes = {"sd-1": [("lora_te_", 768)], "sd-2": [("lora_te_", 1024)],
                   "sdxl": [("lora_te1_", 768), ("lora_te2_", 1280)], "sdxl-refiner": []}[base]
    blocks = [("down_blocks_1_attentions_0", 640), ("up_blocks_1_attentions_0", 1280)]
    sd: dict = {}

    def pair(name: str, d_in: int, d_out: int) -> None:
        sd[f"{name}.lora_down.weight"] = torch.randn((rank, d_in), generator=gen) * 0.01
        sd[f"{name}.lora_up.weight"] = torch.randn((d_out, rank), generator=gen) * 0.01
        sd[f"{name}.alpha"] = torch.tensor(float(rank))

    for block, ch in blocks:
        stem = f"lora_unet_{block}_transformer_blocks_0"
        pair(f"{stem}_attn1_to_q", ch, ch)
        pair(f"{stem}_attn2_to_k", ctx, ch)
        pair(f"{stem}_attn2_to_v", ctx, ch)
    for prefix, width in te_prefixes:
        for i in range(2):
            for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
                pair(f"{prefix}text_model_encoder_layers_{i}_self_attn_{proj}", width, width)
    save_file(sd, str(out), metadata={"ss_network_module": "networks.lora", "ss_network_dim": str(rank)})
    return Path(out)


def make_embedding_file(out: str | Path, style: str = "string_to_param", *, width: int = 768,
                        vectors: int = 2, seed: int = 5) -> Path:
    """A textual-inversion embedding: ``string_to_param`` (.pt, A1111/InvokeAI) or ``emb_params`` (.safetensors)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    emb = torch.randn((vectors, width), generator=gen)
    out = Path(out)
    if style == "string_to_param":
        torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": emb}, "name": "tiny-embedding",
                    "step": 500}, str(out))
    elif style == "emb_params":
        from safetensors.torch import save_file

        save_file({"emb_params": emb}, str(out))
    else:
        raise ValueError(style)
    return out


def make_controlnet_file(out: str | Path, *, base: str = "sd-1", seed: int = 9) -> Path:
    """An original-layout ControlNet (``control_model.*``): the tiny UNet's encoder half with the real
    cross-attention width, plus ``input_hint_block``, ``zero_convs`` and ``middle_block_out``."""
    import torch
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file

    kind = {"sd-1": "sd-1", "sd-2": "sd-2", "sdxl": "sdxl"}[base]
    cfg = tiny_configs(kind)["unet/config.json"]
    unet = UNet2DConditionModel.from_config(cfg)
    gen = torch.Generator().manual_seed(seed)
    _randomize(unet, gen)
    ldm = _unet_to_ldm({k: v.detach().clone() for k, v in unet.state_dict().items()}, cfg)
    sd = {f"control_model.{k}": v for k, v in ldm.items()
          if k.startswith(("time_embed.", "input_blocks.", "middle_block.", "label_emb."))}
    hint = [(3, 16), (16, 16), (16, 32), (32, 32), (32, 96), (96, 96), (96, 256)]
    for n, (cin, cout) in enumerate(hint):
        sd[f"control_model.input_hint_block.{2 * n}.weight"] = torch.randn((cout, cin, 3, 3), generator=gen)
        sd[f"control_model.input_hint_block.{2 * n}.bias"] = torch.randn((cout,), generator=gen)
    c0 = cfg["block_out_channels"][0]
    sd["control_model.input_hint_block.14.weight"] = torch.randn((c0, 256, 3, 3), generator=gen)
    sd["control_model.input_hint_block.14.bias"] = torch.randn((c0,), generator=gen)
    n_inputs = 1 + len(cfg["block_out_channels"]) * (cfg["layers_per_block"] + 1) - 1
    for i in range(n_inputs):
        ch = ldm[f"input_blocks.{i}.0.weight" if i == 0 else
                 (f"input_blocks.{i}.0.out_layers.3.weight" if f"input_blocks.{i}.0.out_layers.3.weight" in ldm
                  else f"input_blocks.{i}.0.op.weight")].shape[0]
        sd[f"control_model.zero_convs.{i}.0.weight"] = torch.zeros((ch, ch, 1, 1))
        sd[f"control_model.zero_convs.{i}.0.bias"] = torch.zeros((ch,))
    mid = cfg["block_out_channels"][-1]
    sd["control_model.middle_block_out.0.weight"] = torch.zeros((mid, mid, 1, 1))
    sd["control_model.middle_block_out.0.bias"] = torch.zeros((mid,))
    save_file({k: v.contiguous() for k, v in sd.items()}, str(out))
    return Path(out)


def make_random_tensors_file(out: str | Path, *, seed: int = 11) -> Path:
    """A .safetensors of random tensors with meaningless names: the probe must answer "unknown"."""
    import torch
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(seed)
    sd = {f"layer{i}.blob": torch.randn((17, 3 + i), generator=gen) for i in range(12)}
    sd["something.else"] = torch.randn((5,), generator=gen)
    save_file(sd, str(out))
    return Path(out)
