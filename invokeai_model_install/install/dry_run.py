"""What running a plan would do, item by item, reading metadata only (no writes): ``--dry-run`` and the form's size line."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invokeai_model_install.root import manifest as mf
from invokeai_model_install.errors import InstallerError
from invokeai_model_install.events import discard
from invokeai_model_install.install.identity import local_path, source_key, staging_dir
from invokeai_model_install.install.item import ItemContext, WorkItem
from invokeai_model_install.install.pipeline import resolve_remote, spec_for
from invokeai_model_install.root.layout import RootLayout
from invokeai_model_install.install.plan import InstallPlan
from invokeai_model_install.install.run import build_items
from invokeai_model_install.net.settings import DownloadSettings


@dataclass(frozen=True)
class PlannedItem:
    """One line of a dry run: what an item is, where it goes and how many bytes it needs.

    ``bytes_to_fetch`` is -1 when unknown; ``status`` is ``""`` (will run),
    ``already installed``, ``error`` (``message``/``hint`` say why) or ``remove``.
    """

    item: str
    label: str
    action: str
    what: str = ""
    destination: str = ""
    bytes_to_fetch: int = 0
    total_bytes: int = 0
    status: str = ""
    message: str = ""
    hint: str = ""


def resolve_plan(plan: InstallPlan, layout: RootLayout, settings: DownloadSettings | None = None, catalog_path: Path | None = None) -> list[PlannedItem]:
    """What running ``plan`` would do, item by item, reading metadata only (no writes)."""
    out: list[PlannedItem] = []
    stanzas = _load_stanzas(layout)
    for item in build_items(plan, layout, catalog_path):
        if item.action == "invalid":
            err = item.error
            out.append(PlannedItem(item.id, item.label, "invalid", status="error", message=err.message if err else "", hint=err.hint if err else ""))
            continue
        if item.action == "convert-installed":
            stanza = stanzas.get(item.line)
            where = str(stanza.get("weights") or "") if stanza else ""
            out.append(PlannedItem(item.id, item.label, "convert", what="convert to diffusers in place of its stanza"
                                   + (", deleting the original" if plan.delete_original else ""), destination=where,
                                   status="" if stanza else "not installed"))
            continue
        if item.action == "locked":
            out.append(plan_locked(item, plan, layout))
            continue
        if item.action == "support":
            from invokeai_model_install.install.support import cached_snapshot

            there = cached_snapshot(layout, item.source.repo_id)
            done = there is not None and item.source.complete_in(there)
            out.append(PlannedItem(item.id, item.label, "install", what=f"support model for checkpoints ({item.source.why})",
                                   destination=layout.relative(layout.hf_repo_dir(item.source.repo_id)),
                                   bytes_to_fetch=0 if done else item.source.size, total_bytes=item.source.size,
                                   status="already installed" if done else ""))
            continue
        if item.action == "remove":
            stanza = stanzas.get(item.line)
            where = str(stanza.get("path") or stanza.get("weights") or "") if stanza else ""
            out.append(PlannedItem(item.id, item.label, "remove", what="remove from models.yaml" + (" and delete its files" if plan.purge else ""),
                                   destination=where, status="remove" if stanza else "not installed"))
            continue
        try:
            out.append(_plan_install(item, plan, layout, settings))
        except InstallerError as err:
            out.append(PlannedItem(item.id, item.label, "install", status="error", message=err.message, hint=err.hint, bytes_to_fetch=-1))
    return out


def _load_stanzas(layout: RootLayout) -> dict[str, dict]:
    from invokeai_model_install.root.registry import Registry

    try:
        return Registry(layout.models_yaml).load()
    except InstallerError:
        return {}


def _plan_install(item: WorkItem, plan: InstallPlan, layout: RootLayout, settings: DownloadSettings | None) -> PlannedItem:
    spec = spec_for(item, plan)
    if spec.starter is not None and not plan.download_unsupported and layout.flavour == "invokeai":
        from invokeai_model_install.install.compat23 import starter_refusal

        why = starter_refusal(spec.starter)
        if why is not None:
            return PlannedItem(item.id, item.label, "install", what=f"starter {spec.starter.repo_id}", destination="",
                               bytes_to_fetch=0, total_bytes=spec.starter.size, status="not for this root", message=why)
    for key in ([spec.key + "#diffusers", spec.key] if plan.convert else [spec.key]):
        for m in mf.find_by_key(layout, key):
            if not mf.verify_manifest(layout, m):
                return PlannedItem(item.id, item.label, "install", what=f"{m.kind} ({m.format})", destination=m.path,
                                   bytes_to_fetch=0, total_bytes=m.total_size, status="already installed")
    if spec.starter is not None:
        from invokeai_model_install.install.register import registered_elsewhere

        older = registered_elsewhere(spec.starter, ItemContext(layout=layout, plan=plan, settings=settings, emit=discard))
        if older is not None:
            return PlannedItem(item.id, item.label, "install", what=older.message, destination=layout.relative(older.path),
                               bytes_to_fetch=0, status="already installed")
    local = local_path(spec.source)
    if local is not None:
        size = sum(p.stat().st_size for p in local.rglob("*") if p.is_file()) if local.is_dir() else local.stat().st_size
        if plan.convert and local.is_file():
            what, dest = "local checkpoint, converted to diffusers", layout.relative(layout.converted_dir / spec.base_name)
        else:
            what, dest = "local " + ("diffusers folder" if local.is_dir() else "file") + ", registered where it is", str(local)
        return PlannedItem(item.id, item.label, "install", what=what, destination=dest, bytes_to_fetch=0, total_bytes=size)
    resolved = resolve_remote(spec, settings, plan.precision)
    total = sum(int(f.size or 0) for f in resolved.files)
    staged = staging_dir(layout, spec.key)
    have = 0
    for f in resolved.files:
        p = staged / f.relpath
        if p.is_file() and p.stat().st_size == f.size:
            have += f.size
    fetch = total - have
    what_parts = []
    if getattr(resolved, "kind_hint", None) == "main-diffusers":
        what_parts.append("diffusers pipeline")
        dest = layout.kind_dir("main-diffusers") / spec.base_name
        if (any(f.relpath.startswith("text_encoder_2/") for f in resolved.files) and not plan.download_unsupported
                and layout.flavour == "invokeai"):
            from invokeai_model_install.install.compat23 import refusal

            return PlannedItem(item.id, item.label, "install", what="SDXL diffusers pipeline", destination="",
                               bytes_to_fetch=0, total_bytes=total, status="not for this root",
                               message=refusal("main", "sdxl") or "")
    elif len(resolved.files) == 1:
        what_parts.append("single file " + Path(resolved.files[0].relpath).name)
        if plan.convert:
            what_parts.append("converted to diffusers")
            dest = layout.converted_dir / spec.base_name
        else:
            dest = layout.models_dir / "<kind>" / Path(resolved.files[0].relpath).name
    elif resolved.repo_id and resolved.commit and any(Path(f.relpath).name == "config.json" for f in resolved.files):
        what_parts.append(f"{len(resolved.files)} files (a diffusers component, e.g. a VAE: into the HF cache)")
        dest = layout.hf_repo_dir(resolved.repo_id) / "snapshots" / resolved.commit
    else:
        what_parts.append(f"{len(resolved.files)} files")
        dest = layout.models_dir / "<kind>" / spec.base_name
    if spec.starter is not None:
        what_parts.insert(0, f"starter {spec.starter.repo_id}")
        if spec.starter.vae is not None and spec.starter.vae.repo_id:
            from invokeai_model_install.net import sources

            vae_spec = dataclasses.replace(spec, starter=None, source=sources.HubSource(repo_id=spec.starter.vae.repo_id, subfolder=spec.starter.vae.subfolder))
            if not any(not mf.verify_manifest(layout, m) for m in mf.find_by_key(layout, source_key(vae_spec.source))):
                vres = resolve_remote(vae_spec, settings, plan.precision)
                vsize = sum(int(f.size or 0) for f in vres.files)
                total += vsize
                fetch += vsize
            what_parts.append(f"with VAE {spec.starter.vae.repo_id}")
    return PlannedItem(item.id, item.label, "install", what=", ".join(what_parts), destination=layout.relative(dest),
                       bytes_to_fetch=fetch, total_bytes=total)


def plan_locked(item: Any, plan: InstallPlan, layout: RootLayout) -> PlannedItem:
    """The dry-run line of a locked model (no network: the lock file says what and how much)."""
    from invokeai_model_install.share import lockfile

    model = item.source
    done = lockfile.installed_already(layout, model)
    origin = model.origin
    where = (f"{origin['hub']}@{(model.revision or '')[:12]}" if "hub" in origin else origin.get("url") or "local files")
    if plan.lock_files is not None:
        where = f"files in {plan.lock_files}"
    return PlannedItem(item.id, item.label, "install", what=f"{model.kind} ({model.format}), locked, from {where}",
                       destination=model.path, bytes_to_fetch=0 if done else model.total_size, total_bytes=model.total_size,
                       status="already installed" if done else "")
