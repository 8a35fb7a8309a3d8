"""The root's model folders per kind, as other UIs should see them.

Everything here is derived from :mod:`invokeai_model_install.root.layout` (``KIND_DIRS`` and
``RootLayout.kind_dir``): when the layout moves a kind (InvokeAI 2.3.5 keeps LoRAs in ``ROOT/loras``,
embeddings in ``ROOT/embeddings``), links and ``extra_model_paths.yaml`` follow without an edit here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from invokeai_model_install.root import layout as layout_mod
from invokeai_model_install.root.atomic import atomic_write_text
from invokeai_model_install.root.layout import RootLayout


#: Extra folders some layouts keep (attribute of RootLayout -> our kind); used only when the layout has them.
_EXTRA_DIR_ATTRS = {"hub_dir": "main-diffusers", "converted_dir": "main-diffusers"}


def root_folders(layout: RootLayout) -> dict[str, list[Path]]:
    """kind -> the root's folders for it (each once, in layout order)."""
    out: dict[str, list[Path]] = {}
    for kind in layout_mod.KIND_DIRS:
        out.setdefault(kind, []).append(layout.kind_dir(kind))
    for attr, kind in _EXTRA_DIR_ATTRS.items():
        extra = getattr(layout, attr, None)
        if isinstance(extra, Path) and extra not in out.setdefault(kind, []):
            out[kind].append(extra)
    # diffusers VAEs from the hub live in the HF cache InvokeAI 2.3.5 reads (models/hub/models--org--name/snapshots/C)
    from invokeai_model_install.root import manifest as mf

    hub = getattr(layout, "hub_dir", None)
    for m in mf.all_manifests(layout):
        folder = layout.absolute(m.path)
        if m.kind == "vae" and isinstance(hub, Path) and hub in folder.parents and folder not in out.setdefault("vae", []):
            out["vae"].append(folder)
    return out


# --- what we linked where (dedupe looks at these folders too) -------------------------------------


def links_record_path(layout: RootLayout) -> Path:
    return layout.models_dir / ".links.json"


def read_links(layout: RootLayout) -> dict[str, Any]:
    """``{"comfyui": {DIR: {...}}, "a1111": {DIR: {"links": [...]}}}``; empty when none or unreadable."""
    try:
        data = json.loads(links_record_path(layout).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_links(layout: RootLayout, data: dict[str, Any]) -> None:
    data = {k: v for k, v in data.items() if v}
    path = links_record_path(layout)
    if not data:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        return
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
