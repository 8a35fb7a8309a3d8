"""Small helpers shared by the compatibility suite (plain Python + PyYAML: they run in either venv).

* :func:`place_in_hf_cache` lays a repo's files out the way huggingface_hub keeps them
  (``models--org--name/{blobs/<sha256>, snapshots/<commit>/<relpath> -> ../../blobs/.., refs/main}``).
* :func:`tiny_ldm_yaml` turns a packaged LDM inference config (``v1-inference.yaml`` ...) into the
  one that describes a tiny model (2.3.5 builds the UNet and VAE of a single-file model from
  this yaml, so a tiny file needs a tiny yaml; the text encoder comes from the support repos).
* :func:`legacy_vae_keys` / :func:`prefixed_text_encoder`: rewrite weights files the way the real
  hub repos of 2022/23 have them (diffusers 0.16.1 loads only the old VAE attention names;
  transformers 4.29 needs the ``text_model.`` prefix that transformers 5 no longer writes).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import yaml

#: diffusers >= 0.18 mid-block attention names -> the names diffusers 0.16.1 loads.
NEW_TO_OLD_VAE_ATTENTION = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}


def repo_cache_dir(cache: Path, repo_id: str) -> Path:
    return Path(cache) / ("models--" + repo_id.replace("/", "--"))


def place_in_hf_cache(src: Path, cache: Path, repo_id: str, *, commit: str | None = None,
                      refs_main: bool = True, symlinks: bool = True) -> Path:
    """Copy the files of folder ``src`` into HF cache ``cache`` as ``repo_id``; return the snapshot folder."""
    src = Path(src)
    files = sorted(p for p in src.rglob("*") if p.is_file())
    if commit is None:
        h = hashlib.sha1()
        for p in files:
            h.update(p.relative_to(src).as_posix().encode())
            h.update(p.read_bytes())
        commit = h.hexdigest()
    repo = repo_cache_dir(cache, repo_id)
    snap = repo / "snapshots" / commit
    for p in files:
        rel = p.relative_to(src)
        dest = snap / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if symlinks:
            digest = hashlib.sha256(p.read_bytes()).hexdigest()
            blob = repo / "blobs" / digest
            blob.parent.mkdir(parents=True, exist_ok=True)
            if not blob.exists():
                shutil.copyfile(p, blob)
            if dest.exists() or dest.is_symlink():
                dest.unlink()
            os.symlink(os.path.relpath(blob, dest.parent), dest)
        else:
            shutil.copyfile(p, dest)
    if refs_main:
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(commit)
    return snap


def tiny_ldm_yaml(base_yaml: Path, tiny_folder: Path) -> str:
    """The LDM config ``base_yaml`` with the UNet/VAE shapes of the tiny diffusers model ``tiny_folder``."""
    doc = yaml.safe_load(Path(base_yaml).read_text())
    unet = json.loads((Path(tiny_folder) / "unet" / "config.json").read_text())
    vae = json.loads((Path(tiny_folder) / "vae" / "config.json").read_text())
    p = doc["model"]["params"]["unet_config"]["params"]
    b0 = unet["block_out_channels"][0]
    p["model_channels"] = b0
    p["channel_mult"] = [c // b0 for c in unet["block_out_channels"]]
    p["num_res_blocks"] = unet["layers_per_block"]
    p["in_channels"] = unet["in_channels"]
    p["context_dim"] = unet["cross_attention_dim"]
    heads = unet["attention_head_dim"]
    # 2.3.5 passes num_heads straight through as diffusers' attention_head_dim (ckpt_to_diffuser.py ~292-312)
    p["num_heads"] = heads if isinstance(heads, int) else heads[0]
    p.pop("num_head_channels", None)
    dd = doc["model"]["params"]["first_stage_config"]["params"]["ddconfig"]
    v0 = vae["block_out_channels"][0]
    dd["ch"] = v0
    dd["ch_mult"] = [c // v0 for c in vae["block_out_channels"]]
    dd["num_res_blocks"] = vae["layers_per_block"]
    return yaml.safe_dump(doc, sort_keys=False)


def _rewrite_safetensors(path: Path, rename) -> None:
    from safetensors.torch import load_file, save_file

    sd = load_file(str(path))
    save_file({rename(k): v.contiguous() for k, v in sd.items()}, str(path), metadata={"format": "pt"})


def legacy_vae_keys(path: Path) -> None:
    """Rename a diffusers VAE's mid-block attention weights to the names diffusers 0.16.1 loads (in place)."""
    def rename(k: str) -> str:
        if ".mid_block.attentions." in k:
            for new, old in NEW_TO_OLD_VAE_ATTENTION.items():
                if f".{new}." in k:
                    return k.replace(f".{new}.", f".{old}.")
        return k

    _rewrite_safetensors(Path(path), rename)


def prefixed_text_encoder(path: Path) -> None:
    """Give a CLIPTextModel's weights the ``text_model.`` prefix transformers 4.29 expects (in place)."""
    _rewrite_safetensors(Path(path), lambda k: k if k.startswith(("text_model.", "text_projection")) else f"text_model.{k}")


def as_hub_era_folder(src: Path, dest: Path) -> Path:
    """A copy of a tiny diffusers folder with its weights named as the real hub repos have them."""
    shutil.copytree(src, dest)
    legacy_vae_keys(dest / "vae" / "diffusion_pytorch_model.safetensors")
    for te in ("text_encoder", "text_encoder_2"):
        if (dest / te / "model.safetensors").is_file():
            prefixed_text_encoder(dest / te / "model.safetensors")
    return dest
