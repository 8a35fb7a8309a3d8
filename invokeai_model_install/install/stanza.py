"""The models.yaml stanza for an installed model (and the legacy config a single-file model points at)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from invokeai_model_install.install.item import ItemContext, Spec
from invokeai_model_install.install.questions import prediction_type
from invokeai_model_install.root.layout import RootLayout


#: (base, variant, prediction) -> (legacy config, width/height)
def legacy_config(pr: Any, prediction: str | None) -> tuple[str, int]:
    """The ``configs/stable-diffusion/*.yaml`` and the image size for a single-file main model."""
    base, variant = pr.base, pr.variant
    if base == "sd-1":
        return ("v1-inpainting-inference.yaml" if variant == "inpaint" else "v1-inference.yaml"), 512
    if base == "sd-2":
        if prediction == "v":
            return "v2-inference-v.yaml", 768
        return "v2-inference.yaml", 512
    if base == "sdxl":
        return "sd_xl_base.yaml", 1024
    if base == "sdxl-refiner":
        return "sd_xl_refiner.yaml", 1024
    return "v1-inference.yaml", 512


def ensure_legacy_config(layout: RootLayout, name: str) -> Path:
    """The root's copy of a packaged legacy config (copied when missing; a user's edit is kept)."""
    from invokeai_model_install.root import resources

    dest = layout.legacy_configs_dir / name
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(resources.legacy_config_path(name), dest)
    return dest


def vae_for_stanza(stanza: dict, vae: Any) -> Any:
    """Legacy stanzas take a VAE path string, diffusers stanzas a mapping."""
    if stanza.get("format") == "ckpt" and isinstance(vae, dict) and vae.get("path"):
        return vae["path"]
    return vae


def stanza_for(kind: str, pr: Any, dest: Path, spec: Spec, ctx: ItemContext, vae: Any, *, single: bool, source_path: Path) -> dict:
    layout = ctx.layout
    if not layout.has_registry:  # a ComfyUI tree: no models.yaml, nothing to write (not even a legacy config)
        return {}
    description = spec.description or describe(kind, pr, spec.label)
    if kind == "main" and single:
        prediction = prediction_type(pr, ctx, spec.label) if pr.base == "sd-2" else None
        companion = None
        try:
            from invokeai_model_install.identify import probe as probe_mod

            companion = probe_mod.companion_yaml(source_path)
        except Exception:  # a companion is optional; never fail the item for it
            companion = None
        cfg_name, size = legacy_config(pr, prediction)
        config = layout.relative(companion) if companion else layout.relative(ensure_legacy_config(layout, cfg_name))
        stanza: dict[str, Any] = {
            "description": description,
            "weights": layout.relative(dest),
            "config": config,
            "format": "ckpt",
            "width": size,
            "height": size,
        }
        if vae is not None:
            stanza["vae"] = vae_for_stanza(stanza, vae)
    elif kind == "main":
        stanza = {"description": description, "format": "diffusers", "path": layout.relative(dest)}
        if vae is not None:
            stanza["vae"] = vae
    else:
        stanza = {"description": description, "type": kind, "format": pr.format, "path": layout.relative(dest)}
    if pr.base:
        stanza["base"] = pr.base
    if spec.starter is not None and spec.starter.default:
        stanza["default"] = True
    return stanza


def describe(kind: str, pr: Any, label: str) -> str:
    what = {"main": "model", "vae": "VAE", "lora": "LoRA", "embedding": "embedding", "controlnet": "ControlNet"}.get(kind, kind)
    base = {"sd-1": "SD-1", "sd-2": "SD-2", "sdxl": "SDXL", "sdxl-refiner": "SDXL refiner"}.get(pr.base or "", "")
    return f"{base + ' ' if base else ''}{what} imported from {label}"
