"""What the web API does with the root: list, edit, delete, make default, search folders, complete paths.

Plain functions over a :class:`RootLayout` (no Starlette here), so they are easy to
test and share the command line's rules: edits use the ``edit`` command's value
checks (``app.cli``), purges use :func:`root.registry.purge_model_files` (only
inside ``ROOT/models``), conversions are checked by :mod:`install.convert_installed`.

Paths typed by the user are only ever *listed*: names, kinds and sizes come back,
never file contents.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from invokeai_model_install.formats.files import MODEL_SUFFIXES, model_paths
from invokeai_model_install.errors import ConversionError, NameClashError, UnknownModelError, UsageError
from invokeai_model_install.root.layout import RootLayout

#: At most this many names from one completion request.
COMPLETE_LIMIT = 60


def _registry(layout: RootLayout):
    from invokeai_model_install.root.registry import Registry

    return Registry(layout.models_yaml)


def _size_of(path: Path) -> int:
    """Bytes of a file or of everything in a folder; -1 when it cannot be read."""
    try:
        if path.is_file():
            return path.stat().st_size
        if path.is_dir():
            total = 0
            for current, _dirs, files in os.walk(path):
                for name in files:
                    try:
                        total += os.stat(os.path.join(current, name)).st_size
                    except OSError:
                        pass
            return total
    except OSError:
        pass
    return -1


def model_kind(stanza: dict[str, Any]) -> str:
    """``main`` unless the stanza says another ``type`` (vae, lora, embedding, controlnet)."""
    return str(stanza.get("type") or "main")


def _vae_text(vae: Any) -> str:
    if isinstance(vae, dict):
        return str(vae.get("repo_id") or vae.get("path") or "")
    return str(vae or "")


def in_place(layout: RootLayout, location: str) -> bool:
    """True for a model whose files lie outside the root, registered where they are (an in-place import, or a
    path given by hand): the page shows its path; purges never delete it."""
    if not location or not os.path.isabs(location):
        return False
    try:
        Path(location).resolve().relative_to(layout.root.resolve())
    except ValueError:
        return True
    except OSError:
        return False
    return False


def list_models(layout: RootLayout) -> list[dict[str, Any]]:
    """One record per installed model, in models.yaml order (the page's table)."""
    from invokeai_model_install.root import manifest as mf
    from invokeai_model_install.root.registry import stanza_format

    out = []
    for name, stanza in _registry(layout).load().items():
        location = ""
        size = -1
        for field in ("path", "weights"):
            if isinstance(stanza.get(field), str) and stanza[field]:
                location = stanza[field]
                m = mf.read_manifest(layout, name)
                size = m.total_size if m is not None and m.files else _size_of(layout.absolute(location))
                break
        else:
            location = str(stanza.get("repo_id") or "")
        fmt = stanza_format(stanza)
        kind = model_kind(stanza)
        out.append({
            "name": name,
            "kind": kind,
            "base": str(stanza.get("base") or ""),
            "format": fmt,
            "size": size,
            "default": stanza.get("default") is True,
            "description": str(stanza.get("description") or ""),
            "location": location,
            "vae": _vae_text(stanza.get("vae")),
            "config": str(stanza.get("config") or ""),
            "width": stanza.get("width"),
            "height": stanza.get("height"),
            "convertible": kind == "main" and fmt != "diffusers" and bool(stanza.get("weights")),
            "registered": True,
            "in_place": in_place(layout, location),
        })
    stanzas = {r["name"] for r in out}
    for m in mf.unregistered(layout):  # a 2.3 root lists only main models: the rest is known from manifests
        if m.name in stanzas:
            continue
        outside = in_place(layout, m.path)
        # registered in place, InvokeAI 2.3.5 does not see it (it reads LoRAs and embeddings only inside the root)
        description = (f"not in models.yaml; recorded where it is (in place), for other UIs; from {m.source}" if outside
                       else f"not in models.yaml (InvokeAI 2.3.5 finds it in {m.path}); from {m.source}")
        out.append({"name": m.name, "kind": m.kind, "base": "", "format": m.format, "size": m.total_size,
                    "default": False, "description": description,
                    "location": m.path, "vae": "", "config": "", "width": None, "height": None, "convertible": False,
                    "registered": False, "in_place": outside})
    return out


def _unregistered(layout: RootLayout, name: str):
    from invokeai_model_install.root import manifest as mf

    m = mf.read_manifest(layout, name)
    return m if m is not None and not m.stanza and m.state == "installed" else None


def _catalog(catalog_path: Path | None):
    from invokeai_model_install.root.catalog import load_catalog

    return load_catalog(catalog_path)


def starter_keys(catalog_path: Path | None) -> set[str]:
    return set(_catalog(catalog_path))


def list_starters(layout: RootLayout, catalog_path: Path | None) -> list[dict[str, Any]]:
    """The starter catalogue with sizes, and whether each is installed (by name or by repo id)."""
    stanzas = _registry(layout).load() if layout.models_yaml.exists() else {}
    repos = {str(s.get("repo_id")): n for n, s in stanzas.items() if s.get("repo_id")}
    out = []
    for key, s in _catalog(catalog_path).items():
        installed_as = key if key in stanzas else next((repos[r] for r in s.repo_ids if r in repos), "")
        out.append({"key": key, "description": s.description, "repo_id": s.repo_id, "format": s.format, "size": s.size,
                    "recommended": s.recommended and s.runs_in_invokeai23, "default": s.default, "license": s.license or "",
                    "requires": s.requires or "", "runs_in": list(s.runs_in),
                    "installed": bool(installed_as), "installed_as": installed_as})
    return out


def autoscan_folder(layout: RootLayout) -> str | None:
    from invokeai_model_install.root import initfile

    try:
        value = initfile.get_option(layout.init_file, "--autoconvert")
    except Exception:
        return None
    return value if isinstance(value, str) and value else None


# --- changes ------------------------------------------------------------------------------------


def _unknown(layout: RootLayout, name: str) -> UnknownModelError:
    return UnknownModelError(f"no model named {name!r} in {layout.models_yaml}", "reload the page to see the installed models")


def _record(layout: RootLayout, name: str) -> dict[str, Any]:
    for rec in list_models(layout):
        if rec["name"] == name:
            return rec
    raise _unknown(layout, name)


_EDIT_FIELDS = ("name", "description", "vae", "config", "width", "height")


def edit_model(layout: RootLayout, name: str, changes: dict[str, Any]) -> dict[str, Any]:
    """Change a stanza like ``edit NAME --name/--description/--vae/--config/--width/--height``; returns the new record."""
    from invokeai_model_install.app.common import config_value, vae_value
    from invokeai_model_install.root import manifest as mf
    from invokeai_model_install.root.registry import sanitize_name, stanza_format

    unknown = sorted(set(changes) - set(_EDIT_FIELDS))
    if unknown:
        raise UsageError(f"unknown field(s): {', '.join(unknown)}", "editable: " + ", ".join(_EDIT_FIELDS))
    values = {k: changes.get(k) for k in _EDIT_FIELDS}
    for key in ("name", "description", "vae", "config"):
        if values[key] is not None and not isinstance(values[key], str):
            raise UsageError(f"{key!r} must be a string")
    for key in ("width", "height"):
        v = values[key]
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v <= 0):
            raise UsageError(f"{key!r} must be a whole number greater than 0")
    if all(v is None for v in values.values()):
        raise UsageError(f"nothing to change for {name!r}", "give at least one of " + ", ".join(_EDIT_FIELDS))
    new_name = values["name"].strip() if values["name"] is not None else None
    if new_name is not None and sanitize_name(new_name) != new_name:
        raise UsageError(f"{new_name!r} is not a valid model name",
                         f"use letters, digits and . _ + & - (e.g. {sanitize_name(new_name)!r})")
    reg = _registry(layout)
    if new_name is not None and new_name != name and mf.read_manifest(layout, new_name) is not None:
        raise NameClashError(f"a model named {new_name!r} is already installed")
    if reg.load().get(name) is None and _unregistered(layout, name) is not None:
        raise UsageError(f"{name} has no models.yaml stanza to edit (InvokeAI 2.3.5 lists only main models)", "")
    with reg.transaction() as doc:
        stanza = doc.get(name)
        if stanza is None:
            raise _unknown(layout, name)
        if values["description"] is not None:
            stanza["description"] = values["description"]
        if values["vae"] is not None:
            text = values["vae"].strip()
            if text.lower() in ("", "none"):
                stanza.pop("vae", None)
            elif text != _vae_text(stanza.get("vae")):
                stanza["vae"] = vae_value(text, stanza, layout)
        if values["config"] is not None and values["config"].strip() and values["config"].strip() != str(stanza.get("config") or ""):
            if stanza_format(stanza) != "ckpt":
                raise UsageError(f"{name!r} is a diffusers model; only legacy (ckpt) models use a config file",
                                 "diffusers models carry their own configuration")
            stanza["config"] = config_value(values["config"].strip(), layout)
        if values["width"] is not None:
            stanza["width"] = values["width"]
        if values["height"] is not None:
            stanza["height"] = values["height"]
        final = name
        if new_name is not None and new_name != name:
            doc.rename(name, new_name)
            final = new_name
    if final != name:
        record = mf.read_manifest(layout, name)
        if record is not None:
            mf.rename_manifest(layout, record, final)
    return _record(layout, final)


def delete_model(layout: RootLayout, name: str, *, purge: bool) -> dict[str, Any]:
    """Remove a stanza (``delete NAME``); with ``purge`` its files too, only inside ``ROOT/models``."""
    from invokeai_model_install.root import manifest as mf
    from invokeai_model_install.root.registry import purge_model_files

    if _registry(layout).load().get(name) is None and (record := _unregistered(layout, name)) is not None:
        where = layout.absolute(record.path)
        if not layout.is_inside_models(where):  # registered in place: forget it; its files are never deleted
            mf.remove_manifest(layout, name)
            return {"removed": name, "purged": purge, "deleted": [],
                    "kept": [{"path": str(where), "why": "registered in place: files outside the root are never deleted"}]}
        if not purge:  # a LoRA, embedding, VAE ... without a stanza: deleting it means deleting its files
            raise UsageError(f"{name} has no models.yaml stanza; delete it with its files (purge)", "")
        deleted, kept = purge_model_files(layout, {"path": record.path}, _registry(layout).load())
        mf.remove_manifest(layout, name)
        return {"removed": name, "purged": True, "deleted": [str(p) for p in deleted],
                "kept": [{"path": str(p), "why": why} for p, why in kept]}
    with _registry(layout).transaction() as doc:
        if doc.get(name) is None:
            raise _unknown(layout, name)
        removed = doc.remove(name)
        remaining = {k: dict(v) for k, v in doc.stanzas.items()}
    deleted: list[Path] = []
    kept: list[tuple[Path, str]] = []
    if purge:
        deleted, kept = purge_model_files(layout, removed, remaining)
        mf.remove_manifest(layout, name)
    return {"removed": name, "purged": purge, "deleted": [str(p) for p in deleted],
            "kept": [{"path": str(p), "why": why} for p, why in kept]}


def make_default(layout: RootLayout, name: str) -> None:
    """``default NAME``, refusing models that are not main models (a VAE or LoRA cannot be the startup model)."""
    record = _unregistered(layout, name) if _registry(layout).load().get(name) is None else None
    if record is not None:
        raise UsageError(f"{name} is a {record.kind}, not a main model; only a main model can be the default", "")
    with _registry(layout).transaction() as doc:
        stanza = doc.get(name)
        if stanza is None:
            raise _unknown(layout, name)
        kind = model_kind(stanza)
        if kind != "main":
            raise UsageError(f"{name} is a {kind}, not a main model; only a main model can be the default", "")
        doc.set_default(name)


def check_convertible(layout: RootLayout, name: str) -> Path:
    from invokeai_model_install.install.convert_installed import check_convertible as check

    stanza = _registry(layout).load().get(name)
    return check(stanza, name, layout)


# --- typed paths: listed, never read back ---------------------------------------------------------


def search_folder(layout: RootLayout, folder: Path) -> dict[str, Any]:
    """Model files and diffusers folders below ``folder`` (recursively), with sizes and whether installed."""
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder", "type the path of a folder to search")
    try:
        found = model_paths(folder)
    except OSError as exc:
        raise UsageError(f"cannot read {folder}: {exc.strerror}", "check the folder's permissions") from None
    registered: set[Path] = set()
    try:
        from invokeai_model_install.root.registry import stanza_paths

        for stanza in _registry(layout).load().values():
            for _field, stored in stanza_paths(stanza):
                registered.add(layout.absolute(stored).resolve())
    except Exception:
        pass
    files = []
    for path in found:
        resolved = path.resolve()
        files.append({"path": str(path), "name": path.name, "relative": str(path.relative_to(folder)) if path != folder else path.name,
                      "kind": "diffusers" if path.is_dir() else "file", "size": _size_of(path),
                      "installed": resolved in registered})
    return {"folder": str(folder), "files": files}


def complete_path(text: str) -> dict[str, Any]:
    """Entries of the folder being typed whose names start with what follows the last ``/``.

    Returns names only (``dir`` and ``model`` flags), never contents; hidden
    entries only when the typed part starts with a dot.
    """
    text = text or ""
    if not text.strip() or not (text.startswith(("/", "~", ".")) or (len(text) > 1 and text[1] == ":")):
        return {"folder": "", "prefix": "", "entries": []}
    expanded = os.path.expanduser(text)
    if expanded.endswith(os.sep):
        folder, prefix = Path(expanded), ""
    else:
        folder, prefix = Path(expanded).parent, Path(expanded).name
    entries = []
    try:
        with os.scandir(folder) as it:
            for entry in it:
                if not entry.name.startswith(prefix):
                    continue
                if entry.name.startswith(".") and not prefix.startswith("."):
                    continue
                try:
                    is_dir = entry.is_dir()
                except OSError:
                    is_dir = False
                entries.append({"name": entry.name, "dir": is_dir,
                                "model": (not is_dir) and entry.name.lower().endswith(MODEL_SUFFIXES)})
    except OSError:
        entries = []
    entries.sort(key=lambda e: (not e["dir"], e["name"].lower()))
    base = text if text.endswith("/") else text[: len(text) - len(prefix)]
    return {"folder": str(folder), "prefix": prefix, "base": base, "entries": entries[:COMPLETE_LIMIT],
            "truncated": len(entries) > COMPLETE_LIMIT}
