"""Weights rewritten so that InvokeAI 2.3.5 (diffusers 0.16.1, transformers 4.29) can load them.

* :func:`fix_diffusers_folder`: VAE mid-block attention -> ``query/key/value/proj_attn``; a text encoder
  saved without the ``text_model.`` prefix gets it.  Files that already load are not touched.
* :func:`fix_embedding`: a v1 textual-inversion ``.pt`` gets the ``sd_checkpoint(_name)`` keys 2.3.5 reads.

Deterministic (the same input gives the same bytes), so a lock file can record both the hub's bytes and
ours and reproduce them (``share.lockfile``).  Used by the installer (``install.compat23``) and the
migration of older roots.
"""

from __future__ import annotations

import json
from pathlib import Path


def _is_vae_folder(folder: Path) -> bool:
    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(cfg, dict) and cfg.get("_class_name") == "AutoencoderKL"


def _weights(folder: Path) -> list[Path]:
    """The weights files of one component folder; none for a sharded set (its index names every key: renaming
    keys would break it, and the SD 1.x/2.x components 2.3.5 runs are never sharded)."""
    if any(folder.glob("*.index.json")):
        return []
    return sorted(p for p in folder.glob("*") if p.is_file() and p.suffix in (".safetensors", ".bin"))


def fix_diffusers_folder(folder: Path) -> list[Path]:
    """Rewrite, in place, the weights 2.3.5 could not load as they are; returns the files changed."""
    from invokeai_model_install.convert.ldm_keys import legacy_vae_attention_name

    folder = Path(folder)
    changed: list[Path] = []
    vae_dirs = [folder] if _is_vae_folder(folder) else [folder / "vae"] if (folder / "vae").is_dir() else []
    for d in vae_dirs:
        for f in _weights(d):
            if _rename(f, legacy_vae_attention_name):
                changed.append(f)
    te = folder / "text_encoder"
    if te.is_dir():
        for f in _weights(te):
            if _rename(f, _prefixed, only_if=lambda keys: not any(k.startswith("text_model.") for k in keys)):
                changed.append(f)
    return changed


def _prefixed(key: str) -> str:
    return key if key.startswith(("text_model.", "text_projection", "logit_scale")) else f"text_model.{key}"


def _rename(path: Path, rename, only_if=None) -> bool:
    """Rename the tensors of one weights file (safetensors or a plain torch state dict); True when changed."""
    import torch

    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            keys = list(fh.keys())
            metadata = fh.metadata()
    else:
        sd = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        keys = list(sd)
    if only_if is not None and not only_if(keys):
        return False
    if all(rename(k) == k for k in keys):
        return False
    tmp = path.with_name(path.name + ".renaming")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file, save_file

        sd = load_file(str(path))
        save_file({rename(k): v.contiguous() for k, v in sd.items()}, str(tmp), metadata=metadata or {"format": "pt"})
    else:
        torch.save({rename(k): v for k, v in sd.items()}, str(tmp))
    tmp.replace(path)
    return True


def needs_fix(folder: Path) -> bool:
    """True when :func:`fix_diffusers_folder` would change something (reads headers only)."""
    from invokeai_model_install.convert.ldm_keys import legacy_vae_attention_name

    folder = Path(folder)
    vae_dirs = [folder] if _is_vae_folder(folder) else [folder / "vae"] if (folder / "vae").is_dir() else []
    for d in vae_dirs:
        for f in _weights(d):
            if any(legacy_vae_attention_name(k) != k for k in _keys(f)):
                return True
    te = folder / "text_encoder"
    for f in _weights(te) if te.is_dir() else []:
        keys = _keys(f)
        if keys and not any(k.startswith("text_model.") for k in keys):
            return True
    return False


def _keys(path: Path) -> list[str]:
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            return list(fh.keys())
    import torch

    return list(torch.load(str(path), map_location="cpu", weights_only=True, mmap=True))


def fix_embedding(path: Path) -> bool:
    """Complete a v1 textual-inversion ``.pt`` that InvokeAI 2.3.5 would choke on; True when rewritten.

    2.3.5 parses a pickle with ``string_to_token``, ``string_to_param``, ``name`` and ``step`` as "v1" and
    then reads ``sd_checkpoint_name`` and ``sd_checkpoint`` (textual_inversion_manager.py ~318-354); without
    them it raises a KeyError that is not caught, and ``Generate.set_model()`` fails for EVERY model.
    AUTOMATIC1111 writes them; other trainers do not.  The placed copy gets them (as None); the file is
    replaced, never written through (a hard link to the user's original stays untouched).
    """
    path = Path(path)
    if path.suffix.lower() not in (".pt", ".ckpt", ".bin"):
        return False
    import torch

    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not a plain pickle of tensors: 2.3.5 reports it itself, we leave it
        return False
    if not isinstance(ckpt, dict):
        return False
    if not all(k in ckpt for k in ("string_to_token", "string_to_param", "name", "step")):
        return False
    missing = [k for k in ("sd_checkpoint", "sd_checkpoint_name") if k not in ckpt]
    if not missing:
        return False
    tmp = path.with_name(path.name + ".fixing")
    torch.save({**ckpt, **{k: None for k in missing}}, str(tmp))
    tmp.replace(path)
    return True
