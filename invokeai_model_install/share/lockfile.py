"""Lock files: ``freeze`` writes every installed model of a root down to the byte; ``--plan LOCK`` reproduces it.

A lock file is a plan file (``--plan FILE``) with ``lock_version`` and a ``locked`` list: each model's name,
kind, format, where it goes in the root, where it came from (hub repo + pinned commit, URL, or a local
path), its models.yaml stanza, and every file with size and sha256.  Installing from it:

* fetches each model from its origin at the pinned revision - or, with ``lock_files: DIR`` (``--lock-files
  DIR``), from a folder of files found by size and sha256, offline;
* refuses **before downloading** when the hub lists a file whose size or LFS sha256 differs from the lock
  (bytes changed on the server under the same revision), and after downloading when any file's sha256
  differs (small files have no LFS hash); the error names the model and the file;
* places every file at the path the lock says, writes the manifest (same source key and revision, so
  re-runs, ``list``, ``verify`` and ``delete`` work as for any install) and registers the stanza under the
  registry's lock (two installers on one shared root wait for each other and lose nothing).

Converted models (checkpoint -> diffusers) and models registered in place are locked with their files;
they are reproduced from ``lock_files`` (or, in place, when the same file is at the same path), since their
bytes come from no server.

This module is core: it imports root/, net/ and identify/, never install/ or app/.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from invokeai_model_install.errors import ConfigError, IntegrityError, RegistryError
from invokeai_model_install.formats.files import MODEL_SUFFIXES
from invokeai_model_install.root import manifest as mf
from invokeai_model_install.root.layout import RootLayout

LOCK_VERSION = 1
_VARIANT = re.compile(r"^(?P<stem>[^/]+)\.fp16\.(?P<ext>safetensors|bin)$")


class LockMismatchError(IntegrityError):
    """What a lock file asks for is not what the source gives."""

    default_hint = "the source changed since the lock file was written: refusing; re-freeze on a machine you trust, or fix the source"


@dataclass(frozen=True)
class LockedFile:
    path: str  # as stored in the manifest: root-relative inside the root, else absolute
    size: int
    sha256: str
    #: the bytes on the server when the installer rewrote the file for InvokeAI 2.3.5 (convert/invokeai23.py):
    #: fetched and checked as such, rewritten the same way, then checked against ``sha256``
    source_sha256: str = ""
    source_size: int = -1


@dataclass(frozen=True)
class LockedModel:
    """One model of a lock file.  ``origin_json``/``stanza_json`` keep the value hashable (plans are frozen)."""

    name: str
    key: str
    kind: str
    format: str
    path: str
    source: str
    revision: str | None
    files: tuple[LockedFile, ...]
    origin_json: str = "{}"
    stanza_json: str = "{}"

    @property
    def origin(self) -> dict[str, Any]:
        return json.loads(self.origin_json)

    @property
    def stanza(self) -> dict[str, Any]:
        return json.loads(self.stanza_json)

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def rel(self, f: LockedFile) -> str:
        """A file's path inside the model (the file name for a single-file model)."""
        if f.path == self.path:
            return Path(f.path).name
        return f.path[len(self.path.rstrip("/")) + 1 :] if f.path.startswith(self.path.rstrip("/") + "/") else Path(f.path).name


# --- freeze --------------------------------------------------------------------------------------


def origin_of(m: mf.Manifest) -> dict[str, Any]:
    """How to fetch a manifest's model again: ``{"hub": repo, "subfolder", "path_in_repo"}``, ``{"url": ...}``,
    ``{"file": path}``, or ``{"converted_from": key}``."""
    key = m.key
    if key.endswith("#diffusers"):
        return {"converted_from": key[: -len("#diffusers")]}
    if key.startswith("hub:"):
        rest = key[4:]
        if "@" in rest:
            rest = rest.rsplit("@", 1)[0]
        out: dict[str, Any] = {}
        if ":" in rest:
            repo, tail = rest.split(":", 1)
            if tail.lower().endswith(MODEL_SUFFIXES):
                out["path_in_repo"] = tail
            else:
                out["subfolder"] = tail
        else:
            parts = rest.split("/")
            repo = "/".join(parts[:2])
            if len(parts) > 2:
                out["path_in_repo"] = "/".join(parts[2:])
        return {"hub": repo, **out}
    if key.startswith("url:"):
        return {"url": key[4:]}
    if key.startswith("file:"):
        return {"file": key[5:]}
    return {}


def freeze(layout: RootLayout) -> dict[str, Any]:
    """The lock document of every installed (registered, manifest-backed) model of ``layout``."""
    from invokeai_model_install.root.registry import Registry

    from invokeai_model_install.identify.families import UNREGISTERED_KINDS

    stanzas = Registry(layout.models_yaml).load() if layout.models_yaml.exists() else {}
    models = []
    for m in mf.all_manifests(layout):
        # registered models, and the files kept for other UIs (upscalers ...: a manifest, no stanza)
        # (a 2.3 root keeps VAEs, LoRAs and embeddings without a stanza, too; support models are not models)
        if m.state != "installed" or m.kind == "support" or (
                m.name not in stanzas and m.kind not in UNREGISTERED_KINDS and layout.has_registry and m.stanza):
            continue
        entry: dict[str, Any] = {
            "name": m.name, "kind": m.kind, "format": m.format, "path": m.path, "source": m.source, "key": m.key,
            "revision": m.revision, "origin": origin_of(m), "stanza": stanzas.get(m.name, {}),
            "files": [{"path": f.path, "size": f.size, "sha256": f.sha256,
                       **({"source_sha256": f.source_sha256, "source_size": f.source_size} if f.source_sha256 else {})}
                      for f in m.files],
        }
        models.append(entry)
    return {"lock_version": LOCK_VERSION, "frozen_from": str(layout.root),
            "frozen_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "locked": models}


HEADER = """\
# invokeai-model-install lock file: every model of {root}, byte for byte.
# Reproduce it elsewhere:  invokeai-model-install --root DIR --plan THIS_FILE
# (add --lock-files FOLDER to take the files from a folder instead of the network).
# Any file whose size or sha256 differs from what is written here is refused, by name.
"""


def dump_lock(doc: dict[str, Any]) -> str:
    import yaml

    return HEADER.format(root=doc.get("frozen_from", "")) + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=200)


# --- parse (plan files) --------------------------------------------------------------------------


def parse_locked(value: Any, problems: list[str]) -> tuple[LockedModel, ...]:
    """The ``locked`` list of a plan file; problems are appended, not raised."""
    if not isinstance(value, list):
        problems.append("'locked' must be a list of models")
        return ()
    out: list[LockedModel] = []
    names: set[str] = set()
    for i, entry in enumerate(value):
        where = f"locked[{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{where} must be a mapping")
            continue
        missing = [k for k in ("name", "kind", "format", "path", "files") if not entry.get(k)]
        if missing:
            problems.append(f"{where} lacks {', '.join(missing)}")
            continue
        files = []
        for j, f in enumerate(entry["files"] if isinstance(entry["files"], list) else []):
            try:
                sha = str(f["sha256"]).lower()
                if not re.fullmatch(r"[0-9a-f]{64}", sha):
                    raise ValueError
                source = str(f.get("source_sha256") or "").lower()
                if source and not re.fullmatch(r"[0-9a-f]{64}", source):
                    raise ValueError
                files.append(LockedFile(str(f["path"]), int(f["size"]), sha, source,
                                        int(f.get("source_size", -1)) if source else -1))
            except (KeyError, TypeError, ValueError):
                problems.append(f"{where}.files[{j}] needs path, size and a 64-hex sha256")
        if not files:
            problems.append(f"{where} ({entry.get('name')}) has no valid files")
            continue
        name = str(entry["name"])
        if name in names:
            problems.append(f"{where}: model {name!r} appears twice")
            continue
        names.add(name)
        out.append(LockedModel(
            name=name, key=str(entry.get("key") or f"lock:{name}"), kind=str(entry["kind"]), format=str(entry["format"]),
            path=str(entry["path"]), source=str(entry.get("source") or ""), revision=entry.get("revision"),
            files=tuple(files), origin_json=json.dumps(entry.get("origin") or {}, sort_keys=True),
            stanza_json=json.dumps(entry.get("stanza") or {}, sort_keys=True),
        ))
    return tuple(out)


# --- install ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LockedResult:
    name: str
    status: str  # installed | skipped
    path: str
    fetched_bytes: int = 0
    message: str = ""


def _key_hash(key: str) -> str:
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]


@contextlib.contextmanager
def _model_lock(layout: RootLayout, model: LockedModel, cancel: Any):
    """The same per-source lock the installer takes (two installers on one root never fetch one model twice)."""
    from filelock import FileLock, Timeout

    folder = layout.partial_dir / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder / f"{_key_hash(model.key)}.lock"))
    while True:
        try:
            lock.acquire(timeout=0.5)
            break
        except Timeout:
            if cancel is not None and cancel.is_set():
                from invokeai_model_install.errors import Cancelled

                raise Cancelled("cancelled while waiting for another installer") from None
    try:
        yield
    finally:
        lock.release()


def _matches(path: Path, f: LockedFile, cancel: Any = None) -> bool:
    try:
        return path.is_file() and path.stat().st_size == f.size and mf.sha256_file(path, cancel) == f.sha256
    except OSError:
        return False


class FileIndex:
    """Files of a folder by size, hashed on demand: ``find(size, sha256)`` -> a path holding those bytes."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.by_size: dict[int, list[Path]] = {}
        self.hashes: dict[Path, str] = {}
        for dirpath, _dirs, names in os.walk(folder):
            for n in names:
                p = Path(dirpath) / n
                try:
                    if p.is_file():
                        self.by_size.setdefault(p.stat().st_size, []).append(p)
                except OSError:
                    continue

    def find(self, size: int, sha256: str, cancel: Any = None) -> Path | None:
        for p in self.by_size.get(size, []):
            if p not in self.hashes:
                try:
                    self.hashes[p] = mf.sha256_file(p, cancel)
                except OSError:
                    continue
            if self.hashes[p] == sha256:
                return p
        return None


def installed_already(layout: RootLayout, model: LockedModel) -> bool:
    """The model is registered at the locked path and its manifest holds exactly the locked files (verified)."""
    from invokeai_model_install.root.registry import Registry

    m = mf.read_manifest(layout, model.name)
    if m is None or m.state != "installed":
        return False
    if sorted((f.path, f.size, f.sha256) for f in m.files) != sorted((f.path, f.size, f.sha256) for f in model.files):
        return False
    from invokeai_model_install.identify.families import UNREGISTERED_KINDS

    if model.kind not in UNREGISTERED_KINDS and layout.has_registry and model.stanza:
        stanza = Registry(layout.models_yaml).load().get(model.name) if layout.models_yaml.exists() else None
        if stanza is None:
            return False
    return not mf.verify_manifest(layout, m)


def install_locked(
    model: LockedModel,
    layout: RootLayout,
    *,
    settings: Any,
    files_from: Path | None = None,
    index: FileIndex | None = None,
    on_event: Callable[[Any], None] = lambda e: None,
    stage: Callable[[str, str], None] = lambda s, d: None,
    cancel: Any = None,
) -> LockedResult:
    """Reproduce one locked model in ``layout``; raises :class:`LockMismatchError` naming the file on any difference."""
    with _model_lock(layout, model, cancel):
        if installed_already(layout, model):
            return LockedResult(model.name, "skipped", model.path, message="already installed (as locked)")
        staged = layout.partial_dir / "staging" / ("lock-" + _key_hash(model.key))
        staged.mkdir(parents=True, exist_ok=True)
        fetched = 0
        in_place = _in_place(layout, model)
        if in_place:
            stage("verify", f"{model.name}: the files are already at their locked paths")
            sources = {f.path: layout.absolute(f.path) for f in model.files}
        elif files_from is not None:
            stage("copy", f"{model.name} from {files_from}")
            index = index or FileIndex(files_from)
            sources = {}
            for f in model.files:
                found = index.find(f.size, f.sha256, cancel)
                if found is None:
                    raise LockMismatchError(f"{model.name}: no file in {files_from} has the locked bytes of {model.rel(f)} "
                                            f"({f.size} bytes, sha256 {f.sha256[:12]}...)",
                                            "copy that file into the folder, or install from the network without --lock-files")
                dest = staged / model.rel(f)
                dest.parent.mkdir(parents=True, exist_ok=True)
                if not _matches(dest, f, cancel):
                    shutil.copyfile(found, dest)
                    fetched += f.size
                sources[f.path] = dest
        else:
            fetched, sources = _fetch(model, staged, layout, settings, on_event, stage, cancel)
        stage("verify", model.name)
        for f in model.files:  # every byte, whatever the origin
            if not _matches(sources[f.path], f, cancel):
                raise LockMismatchError(f"{model.name}: {model.rel(f)} does not match the lock file "
                                        f"(expected {f.size} bytes with sha256 {f.sha256[:12]}...)")
        _safety(sources, model)
        if not in_place:
            _place(layout, model, sources)
        shutil.rmtree(staged, ignore_errors=True)
        _register(layout, model)
        return LockedResult(model.name, "installed", model.path, fetched_bytes=fetched)


def _in_place(layout: RootLayout, model: LockedModel) -> bool:
    """Every file already sits at its locked path with the locked bytes (a shared root, a model registered in place)."""
    return all(_matches(layout.absolute(f.path), f) for f in model.files)


def _safety(sources: dict[str, Path], model: LockedModel) -> None:
    from invokeai_model_install.identify import safety

    for path in sources.values():
        if path.suffix.lower() in (".ckpt", ".pt", ".pth", ".bin"):
            safety.check(path)


def _fetch(model: LockedModel, staged: Path, layout: RootLayout, settings: Any, on_event, stage, cancel) -> tuple[int, dict[str, Path]]:
    from invokeai_model_install.net.engine import download
    from invokeai_model_install.net.urls import resolve_url

    origin = model.origin
    if "hub" in origin:
        resolved = _resolve_hub_locked(model, origin, settings)
    elif "url" in origin:
        from invokeai_model_install.net.sources import UrlSource

        if len(model.files) != 1:
            raise ConfigError(f"lock file: {model.name} comes from a URL but lists {len(model.files)} files")
        r = resolve_url(UrlSource(origin["url"]), settings)
        f = model.files[0]
        if len(r.files) != 1:
            raise LockMismatchError(f"{model.name}: {origin['url']} no longer serves one file")
        rf = r.files[0]
        if rf.size >= 0 and rf.size != f.size:
            raise LockMismatchError(f"{model.name}: {model.rel(f)} at {origin['url']} is {rf.size} bytes, the lock says {f.size}")
        resolved = dataclasses.replace(r, files=(dataclasses.replace(rf, relpath=model.rel(f), sha256=f.source_sha256 or f.sha256,
                                                                     size=f.source_size if f.source_sha256 else f.size),))
    else:
        why = "it was converted from a checkpoint" if "converted_from" in origin else "it was registered from a local file"
        raise LockMismatchError(f"{model.name}: its files are not at {model.path} and {why}, so no server has them",
                                "pass --lock-files FOLDER holding a copy of them, e.g. the original root's models folder")
    stage("download", f"{model.name}: {len(resolved.files)} file(s)")
    result = download(resolved, staged, partial_dir=layout.partial_dir, settings=settings, on_event=on_event, cancel=cancel)
    if any(f.source_sha256 for f in model.files):  # rewritten for InvokeAI 2.3.5 at install time: the same rewrite again
        from invokeai_model_install.convert.invokeai23 import fix_diffusers_folder, fix_embedding

        if model.format == "diffusers":
            fix_diffusers_folder(staged)
        else:
            for p in result.paths.values():
                fix_embedding(Path(p))
    by_rel = {model.rel(f): f.path for f in model.files}
    return int(result.fetched_bytes or 0), {by_rel[rel]: p for rel, p in result.paths.items()}


def _plain(rel: str) -> str:
    parent, _, name = rel.rpartition("/")
    m = _VARIANT.match(name)
    if not m:
        return rel
    plain = f"{m['stem']}.{m['ext']}"
    return f"{parent}/{plain}" if parent else plain


def _resolve_hub_locked(model: LockedModel, origin: dict[str, Any], settings: Any) -> Any:
    """The hub's files at the locked commit, checked against the lock before anything is downloaded."""
    from invokeai_model_install.net import hub
    from invokeai_model_install.net.sources import HubSource

    if not model.revision:
        raise ConfigError(f"lock file: {model.name} comes from the hub but has no pinned revision", "freeze it again")
    src = HubSource(repo_id=origin["hub"], subfolder=origin.get("subfolder"), revision=model.revision,
                    path_in_repo=origin.get("path_in_repo"))
    wanted = {model.rel(f): f for f in model.files}
    single = model.format != "diffusers" and len(model.files) == 1
    best = None
    for precision in ("fp16", "fp32"):
        r = hub.resolve_hub(src, settings, precision)
        if single and len(r.files) == 1:
            mapping = {r.files[0].relpath: next(iter(wanted))}
        else:
            mapping = {rf.relpath: (_plain(rf.relpath) if _plain(rf.relpath) in wanted else rf.relpath) for rf in r.files}
        if sorted(mapping.values()) == sorted(wanted):
            best = (r, mapping)
            break
        best = best or (r, mapping)
    assert best is not None
    r, mapping = best
    got = set(mapping.values())
    missing = sorted(set(wanted) - got)
    extra = sorted(got - set(wanted))
    label = f"{origin['hub']}@{model.revision[:12]}"
    if missing or extra:
        what = f"lacks {missing[0]}" if missing else f"has {extra[0]}, which the lock does not list"
        raise LockMismatchError(f"{model.name}: the hub's {label} {what}")
    files = []
    for rf in r.files:
        rel = mapping[rf.relpath]
        f = wanted[rel]
        want_size, want_sha = (f.source_size, f.source_sha256) if f.source_sha256 else (f.size, f.sha256)
        if rf.size >= 0 and rf.size != want_size:
            raise LockMismatchError(f"{model.name}: {rel} on the hub ({label}) is {rf.size} bytes, the lock says {want_size}")
        if rf.sha256 and rf.sha256.lower() != want_sha:
            raise LockMismatchError(f"{model.name}: {rel} on the hub ({label}) has sha256 {rf.sha256[:12]}..., "
                                    f"the lock says {want_sha[:12]}... (changed on the server under the same revision)")
        files.append(dataclasses.replace(rf, relpath=rel, sha256=want_sha, size=want_size))
    return dataclasses.replace(r, files=tuple(files))


def _place(layout: RootLayout, model: LockedModel, sources: dict[str, Path]) -> None:
    """Write the manifest (state placed), then move every file to its locked path."""
    for f in model.files:
        dest = layout.absolute(f.path)
        if dest.exists() and not _matches(dest, f):
            owner = next((m.name for m in mf.all_manifests(layout) if m.name != model.name and any(r.path == f.path for r in m.files)), None)
            if owner is not None:
                raise RegistryError(f"{model.name}: {f.path} already belongs to model {owner!r} with other bytes",
                                    "delete that model first, or install the lock file into an empty root")
    m = mf.Manifest(name=model.name, key=model.key, source=model.source, kind=model.kind, format=model.format, path=model.path,
                    files=tuple(mf.FileRecord(f.path, f.size, f.sha256, 0, f.source_sha256, f.source_size) for f in model.files),
                    revision=model.revision,
                    state="placed", stanza=model.stanza)
    mf.write_manifest(layout, m)
    for f in model.files:
        dest = layout.absolute(f.path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        src = sources[f.path]
        if src != dest:
            os.replace(src, dest)
    _hf_refs(layout, model)


def _hf_refs(layout: RootLayout, model: LockedModel) -> None:
    """A model in the HF cache (``models/hub/models--org--name/snapshots/<commit>/...``, e.g. a hub VAE for
    InvokeAI 2.3.5) needs ``refs/main`` = that commit, as the installer writes it."""
    from invokeai_model_install.root.atomic import atomic_write_text

    hub = getattr(layout, "hub_dir", None)
    folder = layout.absolute(model.path)
    if hub is None or hub not in folder.parents:
        return
    parts = folder.relative_to(hub).parts
    if len(parts) >= 3 and parts[1] == "snapshots":
        atomic_write_text(hub / parts[0] / "refs" / "main", parts[2])


def _register(layout: RootLayout, model: LockedModel) -> None:
    from invokeai_model_install.identify.families import UNREGISTERED_KINDS

    if model.kind not in UNREGISTERED_KINDS and layout.has_registry and model.stanza:  # files kept for other UIs,
        _add_stanza(layout, model)  # ComfyUI trees, a 2.3 root's VAEs/LoRAs/embeddings: no stanza, only a manifest
    m = mf.read_manifest(layout, model.name)
    if m is not None:
        files = []
        for rec in m.files:
            try:
                files.append(dataclasses.replace(rec, mtime_ns=layout.absolute(rec.path).stat().st_mtime_ns))
            except OSError:
                files.append(rec)
        mf.write_manifest(layout, dataclasses.replace(m, files=tuple(files), state="installed"))
    else:  # an in-place model: its manifest is written now
        mf.write_manifest(layout, mf.Manifest(
            name=model.name, key=model.key, source=model.source, kind=model.kind, format=model.format, path=model.path,
            files=tuple(mf.FileRecord(f.path, f.size, f.sha256, layout.absolute(f.path).stat().st_mtime_ns) for f in model.files),
            revision=model.revision, state="installed", stanza=model.stanza))


def _add_stanza(layout: RootLayout, model: LockedModel) -> None:
    from invokeai_model_install.root.registry import Registry

    stanza = model.stanza
    with Registry(layout.models_yaml).transaction() as doc:
        existing = doc.get(model.name)
        if existing is not None and existing != stanza:
            where = existing.get("path") or existing.get("weights")
            if where != (stanza.get("path") or stanza.get("weights")):
                raise RegistryError(f"{model.name}: models.yaml already has a model of that name at {where}",
                                    "rename or delete it (`edit`/`delete`), then install the lock file again")
        if existing is None:
            if stanza.get("default") is True and any(s.get("default") is True for s in doc.stanzas.values()):
                stanza = {**stanza, "default": False}
            doc.add(model.name, stanza)


def lock_files_total(models: Iterable[LockedModel]) -> int:
    return sum(m.total_size for m in models)
