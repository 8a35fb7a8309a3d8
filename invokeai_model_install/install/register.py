"""Registration: the manifest's stanza into models.yaml (unique name, never overwriting), and what is there already."""

from __future__ import annotations

import dataclasses
import os

from invokeai_model_install.events import ItemRegistered
from invokeai_model_install.identify.families import UNREGISTERED_KINDS
from invokeai_model_install.install.item import Installed, ItemContext
from invokeai_model_install.root import manifest as mf
from invokeai_model_install.root.catalog import StarterModel
from invokeai_model_install.root.layout import RootLayout


def same_place(layout: RootLayout, stanza: dict, m: mf.Manifest) -> bool:
    stored = stanza.get("path") or stanza.get("weights")
    return isinstance(stored, str) and layout.absolute(stored).absolute() == layout.absolute(m.path).absolute()


def register(m: mf.Manifest, ctx: ItemContext) -> Installed:
    """Add the manifest's stanza to models.yaml (unique name, never overwriting) and mark it installed."""
    layout = ctx.layout
    ctx.stage("register")
    if not layout.has_registry:  # a ComfyUI tree: the manifest is the record
        m = dataclasses.replace(m, state="installed", stanza={})
        mf.write_manifest(layout, m)
        ctx.emit(ItemRegistered(name=m.name, path=m.path))
        return Installed(m.name, layout.absolute(m.path), m.kind, "installed")
    if m.kind in UNREGISTERED_KINDS:  # upscalers, CLIP, IP-/T2I-Adapters: files for other UIs, no stanza (InvokeAI 2.3 has no loader)
        m = dataclasses.replace(m, state="installed", stanza={})
        mf.write_manifest(layout, m)
        ctx.note(f"{m.name}: kept in {layout.relative(layout.absolute(m.path))} for other UIs (`link comfyui`/`link a1111`); "
                 "InvokeAI 2.3 does not load this kind, so models.yaml is left alone")
        ctx.emit(ItemRegistered(name=m.name, path=m.path))  # "installed as NAME": the front ends' end of an item
        return Installed(m.name, layout.absolute(m.path), m.kind, "installed")
    if not m.stanza:  # a kind a 2.3 root must not list (VAE, LoRA, embedding, ControlNet, SDXL kept on request)
        m = dataclasses.replace(m, state="installed")
        mf.write_manifest(layout, m)
        ctx.note(unregistered_note(m))
        ctx.emit(ItemRegistered(name=m.name, path=m.path))  # "installed as NAME": the front ends' end of an item
        return Installed(m.name, layout.absolute(m.path), m.kind, "installed", unregistered_note(m))
    stanza = dict(m.stanza)
    default_wanted = bool(stanza.pop("default", False))
    with ctx.registry.transaction() as doc:
        name = m.name
        existing = doc.get(name)
        if existing is not None and same_place(layout, existing, m):
            pass  # registered by the run that was killed before its manifest said so
        else:
            if existing is not None:
                name = doc.unique_name(m.name)
            if default_wanted and not any(s.get("default") is True for s in doc.stanzas.values()):
                stanza["default"] = True
            elif "default" not in stanza and m.kind == "main":
                stanza["default"] = False
            doc.add(name, stanza)
    if name != m.name:
        m = mf.rename_manifest(layout, m, name)
    m = dataclasses.replace(m, state="installed")
    mf.write_manifest(layout, m)
    ctx.emit(ItemRegistered(name=name, path=m.path))
    return Installed(name, layout.absolute(m.path), m.kind, "installed")


def unregistered_note(m: mf.Manifest) -> str:
    """Where a model without a models.yaml stanza is, and how InvokeAI 2.3.5 uses it (one line)."""
    if m.kind in ("lora", "embedding") and os.path.isabs(m.path):  # registered in place, outside the root
        return f"{m.name}: in {m.path}; recorded where it is (in place), for other UIs"
    how = {
        "lora": "InvokeAI 2.3.5 lists LoRAs from this folder (use it in a prompt as withLora(name))",
        "embedding": "InvokeAI 2.3.5 loads every embedding in this folder (use it in a prompt as <name>)",
        "vae": f"give it to a model with `invokeai-model-install edit MODEL --vae {m.name}`",
        "controlnet": "InvokeAI 2.3.5 has no ControlNet loader; kept for other UIs",
    }.get(m.kind, "not registered in models.yaml: InvokeAI 2.3.5 cannot run it; kept for other UIs")
    return f"{m.name}: in {m.path}; {how}"


def registered_elsewhere(starter: StarterModel, ctx: ItemContext) -> Installed | None:
    """A starter already in models.yaml without a manifest (installed by an older installer):
    under its own name, or as a stanza that points at its repo.  Not downloaded again."""
    for name, stanza in ctx.registry.load().items():
        if mf.read_manifest(ctx.layout, name) is not None:
            continue
        if name == starter.key or stanza.get("repo_id") in starter.repo_ids:
            stored = stanza.get("path") or stanza.get("weights") or ""
            if stored and not ctx.layout.absolute(stored).exists():
                continue  # a stanza whose files are gone is not an installation
            where = ctx.layout.absolute(stored) if stored else ctx.layout.root
            return Installed(name, where, "main", "skipped", f"already in models.yaml as {name}")
    return None
