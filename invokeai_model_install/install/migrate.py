"""Move a root written by an earlier version of this package to the layout InvokeAI 2.3.5 loads.

Earlier versions put diffusers models in ``models/diffusers`` (2.3.5's start-up ``migrate_models()``
treats that folder as its pre-2.3 cache, asks ``continue>`` and moves everything away), LoRAs and
embeddings in ``models/lora`` / ``models/embeddings`` (2.3.5 reads ``ROOT/loras`` and ``ROOT/embeddings``),
wrote stanzas for VAEs, LoRAs, embeddings, ControlNets and SDXL models (2.3.5 lists every stanza as
a main model), and ``vae: {path: <diffusers folder>}`` (2.3.5 reads that folder as a checkpoint file).

:func:`migrate_root` fixes all of that in place, on every run that touches a root (a no-op, reading
only models.yaml and a few folder names, when there is nothing to do):

* ``models/diffusers/<name>`` -> ``models/converted_ckpts/<name>`` (conversions) or ``models/sd/<name>``
  (downloads), ``path:`` rewritten; their VAE attention weights renamed to the names diffusers 0.16.1
  loads (``compat23.fix_diffusers_folder``); ``models/diffusers`` removed once empty;
* LoRA / embedding files -> ``ROOT/loras`` / ``ROOT/embeddings``; their stanzas, and those of VAEs and
  ControlNets, removed (the manifests keep what we know about them);
* a hub VAE folder used as ``vae: {path: ...}`` -> laid out in the HF cache ``models/hub`` as the repo it
  came from (its manifest's key and revision), ``vae: {repo_id: ...}``; ``vae: {path: FILE}`` on a
  checkpoint stanza -> ``vae: FILE``;
* SDXL stanzas removed (files kept, one line says why);
* ``ROOT/.version`` written when missing.

Nothing is downloaded and nothing is deleted: files move (``os.replace``, same file system).  The
registry keeps the previous models.yaml as ``models.yaml.orig``; the first migration also leaves an
untouched copy as ``models.yaml.pre-2.3-layout``.  Manifests follow every move.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from invokeai_model_install.root import manifest as mf
from invokeai_model_install.root.layout import BASES_NOT_IN_INVOKEAI23, INVOKEAI23_VERSION, OLD_KIND_DIRS, RootLayout

_UNLISTED_TYPES = ("vae", "lora", "embedding", "controlnet")


def needs_migration(layout: RootLayout, stanzas: dict[str, dict] | None = None) -> bool:
    """True when the root has anything :func:`migrate_root` would change."""
    if layout.legacy_diffusers_dir.exists():
        return True
    for kind in ("lora", "embedding"):
        old = layout.root / OLD_KIND_DIRS[kind]
        if old.is_dir() and any(old.iterdir()):
            return True
    if stanzas is None:
        from invokeai_model_install.root.registry import Registry

        try:
            stanzas = Registry(layout.models_yaml).load() if layout.models_yaml.exists() else {}
        except Exception:  # noqa: BLE001 - a broken models.yaml is reported by whoever uses it
            return False
    return any(_stanza_needs(layout, s) for s in stanzas.values())


def _stanza_needs(layout: RootLayout, s: Any) -> bool:
    if not isinstance(s, dict):
        return False
    if str(s.get("type") or "").lower() in _UNLISTED_TYPES or str(s.get("base") or "") in BASES_NOT_IN_INVOKEAI23:
        return True
    vae = s.get("vae")
    return isinstance(vae, dict) and bool(vae.get("path"))


def migrate_root(layout: RootLayout, note: Callable[[str], None] | None = None) -> list[str]:
    """Migrate ``layout``'s root (see the module docstring); returns one line per change."""
    if not layout.models_yaml.exists() and not layout.legacy_diffusers_dir.exists():
        return []
    if not needs_migration(layout):
        return []
    from invokeai_model_install.root.registry import Registry

    lines: list[str] = []

    def say(text: str) -> None:
        lines.append(text)
        if note is not None:
            note(text)

    moves: dict[str, str] = {}  # old root-relative path -> new
    rehash_later: list[tuple[str, Path]] = []
    manifests = {m.name: m for m in mf.all_manifests(layout)}
    by_path = {m.path: m for m in manifests.values()}
    reg = Registry(layout.models_yaml)
    keep = layout.models_yaml.with_name(layout.models_yaml.name + ".pre-2.3-layout")
    if layout.models_yaml.exists() and not keep.exists():
        shutil.copy2(layout.models_yaml, keep)
    with reg.transaction() as doc:
        for name in list(doc.stanzas):
            s = doc.stanzas[name]
            kind = str(s.get("type") or "").lower()
            stored = s.get("path") or s.get("weights")
            path = layout.absolute(str(stored)) if stored else None
            if kind in ("lora", "embedding"):
                doc.remove(name)
                if path is not None and path.exists() and layout.is_inside_models(path):
                    dest = _move_into(path, layout.kind_dir(kind))
                    moves[layout.relative(path)] = layout.relative(dest)
                    say(f"{name}: {kind} moved to {layout.relative(dest)} (where InvokeAI 2.3.5 looks); its stanza removed")
                elif path is not None and path.exists():  # the user's own file elsewhere: linked (or copied), never moved
                    dest = _link_into(path, layout.kind_dir(kind))
                    moves[layout.relative(path)] = layout.relative(dest)
                    say(f"{name}: {kind} linked into {layout.relative(dest)} (where InvokeAI 2.3.5 looks; your file stays); "
                        "its stanza removed")
                else:
                    say(f"{name}: {kind} stanza removed (InvokeAI 2.3.5 would list it as a main model)")
                    dest = None
                if kind == "embedding" and dest is not None and dest.is_file():
                    from invokeai_model_install.install.compat23 import fix_embedding

                    if fix_embedding(dest):
                        say(f"{name}: added the sd_checkpoint fields InvokeAI 2.3.5 reads to {layout.relative(dest)}")
                        rehash_later.append((name, dest))
                _unregister(layout, manifests, name)
                continue
            if kind in ("vae", "controlnet"):
                doc.remove(name)
                say(f"{name}: {kind} stanza removed (InvokeAI 2.3.5 would list it as a main model); files kept in {stored}")
                _unregister(layout, manifests, name)
                continue
            if str(s.get("base") or "") in BASES_NOT_IN_INVOKEAI23:
                doc.remove(name)
                say(f"{name}: removed from models.yaml: InvokeAI 2.3.5 cannot run SDXL; files kept in {stored} "
                    "(ComfyUI or InvokeAI 3+ run it)")
                _unregister(layout, manifests, name)
                continue
            if s.get("format") == "diffusers" and path is not None and path.absolute().is_relative_to(layout.legacy_diffusers_dir.absolute()):
                m = manifests.get(name) or by_path.get(str(stored))
                converted = m is not None and m.key.endswith("#diffusers")
                folder = layout.converted_dir if converted else layout.kind_dir("main-diffusers")
                dest = _move_into(path, folder)
                moves[layout.relative(path)] = layout.relative(dest)
                s["path"] = layout.relative(dest)
                path = dest
                say(f"{name}: moved to {s['path']} (InvokeAI 2.3.5 moves anything in models/diffusers away at start-up)")
            if s.get("format") == "diffusers" and path is not None and path.is_dir():
                from invokeai_model_install.install.compat23 import fix_diffusers_folder

                if fix_diffusers_folder(path):
                    say(f"{name}: VAE weights renamed to the names InvokeAI 2.3.5's diffusers loads")
                    _rehash(layout, manifests, name, path)
        # vae references, after the VAE folders are known
        for name, s in doc.stanzas.items():
            vae = s.get("vae")
            if not (isinstance(vae, dict) and vae.get("path")):
                continue
            vpath = layout.absolute(str(vae["path"]))
            if s.get("format", "ckpt") == "ckpt" or "weights" in s:
                s["vae"] = str(vae["path"])
                say(f"{name}: vae written as a file path (the form InvokeAI 2.3.5 reads on a checkpoint model)")
            elif vpath.is_dir():
                repo = _vae_into_hf_cache(layout, manifests, vae["path"], vpath, moves)
                s["vae"] = {"repo_id": repo}
                say(f"{name}: vae -> {{repo_id: {repo}}} (InvokeAI 2.3.5 reads a diffusers VAE from the HF cache {layout.relative(layout.hub_dir)})")
    # what no stanza points at: nothing may stay in models/diffusers, nor in the old LoRA/embedding folders
    old = layout.legacy_diffusers_dir
    if old.is_dir():
        for child in sorted(old.iterdir()):
            if child.name in (".keep", ".gitkeep") and child.is_file() and child.stat().st_size == 0:
                child.unlink()
                continue
            dest = _move_into(child, layout.kind_dir("main-diffusers"))
            moves[layout.relative(child)] = layout.relative(dest)
            say(f"{layout.relative(child)}: moved to {layout.relative(dest)} (nothing may stay in models/diffusers)")
        old.rmdir()
        say("models/diffusers removed (InvokeAI 2.3.5 treats it as its pre-2.3 cache)")
    for kind in ("lora", "embedding"):
        folder = layout.root / OLD_KIND_DIRS[kind]
        if not folder.is_dir():
            continue
        for child in sorted(folder.iterdir()):
            dest = _move_into(child, layout.kind_dir(kind))
            moves[layout.relative(child)] = layout.relative(dest)
            say(f"{layout.relative(child)}: moved to {layout.relative(dest)}")
        folder.rmdir()
    final = reg.load()
    for name, stanza in final.items():
        m = manifests.get(name)
        if m is not None and m.stanza and m.stanza != stanza:
            mf.write_manifest(layout, dataclasses.replace(m, stanza=dict(stanza)))
    _apply_moves(layout, moves)
    for name, path in rehash_later:  # files rewritten in place: their manifest records the new bytes
        m = mf.read_manifest(layout, name)
        if m is not None:
            from invokeai_model_install.install.placement import refresh_mtimes

            files = tuple(dataclasses.replace(f, sha256=mf.sha256_file(path), size=path.stat().st_size,
                                              source_sha256=f.source_sha256 or f.sha256,
                                              source_size=f.source_size if f.source_sha256 else f.size)
                          if layout.absolute(f.path) == path else f for f in m.files)
            mf.write_manifest(layout, refresh_mtimes(layout, dataclasses.replace(m, files=files)))
    if not layout.version_file.exists():
        write_version(layout)
        say(f".version written ({INVOKEAI23_VERSION}: InvokeAI 2.3.5 then skips its own upgrade step)")
    return lines


def write_version(layout: RootLayout) -> None:
    """``ROOT/.version`` = the InvokeAI 2.3 release this layout is for.  2.3.5 runs ``do_version_update()`` on
    every start while it is missing or older (``CLI.py`` ~1334-1356; on Linux it downloads a new invoke.sh)."""
    from invokeai_model_install.root.atomic import atomic_write_text

    atomic_write_text(layout.version_file, INVOKEAI23_VERSION + "\n")


def _free_name(path: Path, folder: Path) -> Path:
    """``folder/<path's name>``, or ``<stem>-2<suffix>``, ``-3`` ... when taken (a folder: ``<name>-2``); makes ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    stem, suffix = (path.stem, path.suffix) if path.is_file() else (path.name, "")
    dest, n = folder / path.name, 2
    while dest.exists() or dest.is_symlink():
        dest = folder / f"{stem}-{n}{suffix}"
        n += 1
    return dest


def _move_into(path: Path, folder: Path) -> Path:
    """Move ``path`` into ``folder`` under its own name (``-2`` ... when taken); same file system: a rename."""
    dest = _free_name(path, folder)
    try:
        os.replace(path, dest)
    except OSError:  # another file system: copy, then remove the original
        if path.is_dir():
            shutil.copytree(path, dest, symlinks=True)
            shutil.rmtree(path)
        else:
            shutil.copy2(path, dest)
            path.unlink()
    return dest


def _link_into(path: Path, folder: Path) -> Path:
    """A hard link (a copy across file systems; a folder is copied) of ``path`` in ``folder``, named as by :func:`_free_name`."""
    dest = _free_name(path, folder)
    if path.is_dir():
        shutil.copytree(path, dest)
    else:
        try:
            os.link(path, dest)
        except OSError:
            shutil.copy2(path, dest)
    return dest


def _unregister(layout: RootLayout, manifests: dict[str, mf.Manifest], name: str) -> None:
    m = manifests.get(name)
    if m is not None:
        manifests[name] = dataclasses.replace(m, stanza={}, state="installed")
        mf.write_manifest(layout, manifests[name])


def _rehash(layout: RootLayout, manifests: dict[str, mf.Manifest], name: str, folder: Path) -> None:
    m = manifests.get(name)
    if m is None:
        return
    # the manifest may still name the old folder: _apply_moves rewrites paths later, so hash by relpath inside
    prefix = m.path.rstrip("/") + "/"
    files = []
    for rec in m.files:
        rel = rec.path[len(prefix):] if rec.path.startswith(prefix) else None
        f = folder / rel if rel else None
        if f is not None and f.is_file():
            st = f.stat()
            digest = mf.sha256_file(f)
            source = {} if digest == rec.sha256 or rec.source_sha256 else {"source_sha256": rec.sha256, "source_size": rec.size}
            files.append(dataclasses.replace(rec, size=st.st_size, sha256=digest, mtime_ns=st.st_mtime_ns, **source))
        else:
            files.append(rec)
    manifests[name] = dataclasses.replace(m, files=tuple(files))
    mf.write_manifest(layout, manifests[name])


def _vae_into_hf_cache(layout: RootLayout, manifests: dict[str, mf.Manifest], stored: str, vpath: Path,
                       moves: dict[str, str]) -> str:
    """Lay a diffusers VAE folder out in the HF cache as the repo it came from; returns the repo id."""
    from invokeai_model_install.install.compat23 import fix_diffusers_folder

    m = next((x for x in manifests.values() if x.path == stored), None)
    key = m.key if m is not None else ""
    repo = key.removeprefix("hub:").split(":")[0].split("@")[0] if key.startswith("hub:") else ""
    if not repo or "/" not in repo:
        # not from the hub (a local folder): 2.3.5 loads a local diffusers VAE only by an absolute path
        return str(vpath.absolute())
    commit = (m.revision if m is not None else None) or "0" * 40
    snapshot = layout.hf_repo_dir(repo) / "snapshots" / commit
    if snapshot.exists():
        return repo  # moved by an earlier stanza that shares this VAE
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    os.replace(vpath, snapshot)
    fix_diffusers_folder(snapshot)
    (snapshot.parent.parent / "refs").mkdir(parents=True, exist_ok=True)
    (snapshot.parent.parent / "refs" / "main").write_text(commit)
    moves[stored] = layout.relative(snapshot)
    if m is not None:
        _rehash(layout, manifests, m.name, snapshot)
    return repo


def _apply_moves(layout: RootLayout, moves: dict[str, str]) -> None:
    """Rewrite every manifest's paths (model, files, stanza) after the moves."""
    if not moves:
        return

    def moved(p: str) -> str:
        for old, new in moves.items():
            if p == old:
                return new
            if p.startswith(old + "/"):
                return new + p[len(old):]
        return p

    for m in mf.all_manifests(layout):
        new_path = moved(m.path)
        files = tuple(dataclasses.replace(f, path=moved(f.path)) for f in m.files)
        stanza = dict(m.stanza)
        for k in ("path", "weights"):
            if isinstance(stanza.get(k), str):
                stanza[k] = moved(stanza[k])
        if (new_path, files, stanza) != (m.path, m.files, m.stanza):
            from invokeai_model_install.install.placement import refresh_mtimes

            updated = dataclasses.replace(m, path=new_path, files=files, stanza=stanza)
            mf.write_manifest(layout, refresh_mtimes(layout, updated))
