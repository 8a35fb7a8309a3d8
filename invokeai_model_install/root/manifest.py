"""Sidecar manifests: one JSON file per installed model under ``models/.manifests/``.

A manifest records where a model came from (``source``, ``revision``), which
files make it up (root-relative paths, sizes, sha256) and its state.  Re-runs
use it to say "already installed" without touching the network, and to finish
an item that was placed but not yet registered (a kill between the two);
``invokeai-model-install verify`` re-hashes the files against it.

Example (``models/.manifests/stable-diffusion-1.5.json``)::

    {"version": 1, "name": "stable-diffusion-1.5", "key": "hub:stable-diffusion-v1-5/stable-diffusion-v1-5",
     "source": "stable-diffusion-v1-5/stable-diffusion-v1-5", "revision": "39593d5650112b4cc580433f6b0435385882d819",
     "kind": "main", "format": "diffusers", "state": "installed", "path": "models/sd/stable-diffusion-1.5",
     "files": [{"path": "models/sd/stable-diffusion-1.5/unet/diffusion_pytorch_model.safetensors",
                "size": 3438167536, "sha256": "...", "mtime_ns": 1700000000000000000}, ...],
     "source_sha256": {}, "stanza": {...}, "installed_at": "2026-11-23T12:40:00Z"}

Writes are atomic (see :mod:`atomic`); a manifest that does not parse is
ignored (treated as absent), never a reason to fail a plan.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from invokeai_model_install.root.atomic import atomic_write_text
from invokeai_model_install.root.layout import RootLayout

VERSION = 1
_CHUNK = 4 * 1024 * 1024


@dataclass(frozen=True)
class FileRecord:
    """One file of a model: ``path`` as stored (root-relative when inside the root)."""

    path: str
    size: int
    sha256: str
    mtime_ns: int = 0
    #: the bytes as downloaded, when we rewrote the file for InvokeAI 2.3.5 (convert/invokeai23.py): a lock file
    #: fetches those from the hub and rewrites them again; "" / -1 when the file is as downloaded
    source_sha256: str = ""
    source_size: int = -1


@dataclass(frozen=True)
class Manifest:
    """What we know about one installed model.

    :param key: identity of the source (see ``install.identity.source_key``); re-runs look it up.
    :param state: ``placed`` (files in place, maybe not yet registered) or ``installed``.
    :param source_sha256: sha256 of the input a model was converted from (path -> digest),
        so a folder scan recognises a checkpoint that was converted earlier.
    :param stanza: the models.yaml stanza written for the model (to re-register it).
    """

    name: str
    key: str
    source: str
    kind: str
    format: str
    path: str
    files: tuple[FileRecord, ...] = ()
    revision: str | None = None
    state: str = "installed"
    source_sha256: tuple[tuple[str, str], ...] = ()
    stanza: dict[str, Any] = field(default_factory=dict)
    installed_at: str = ""

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["version"] = VERSION
        data["files"] = [{k: v for k, v in asdict(f).items() if k not in ("source_sha256", "source_size") or f.source_sha256}
                         for f in self.files]
        data["source_sha256"] = dict(self.source_sha256)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Manifest":
        files = tuple(
            FileRecord(str(f["path"]), int(f["size"]), str(f["sha256"]), int(f.get("mtime_ns", 0)),
                       str(f.get("source_sha256") or ""), int(f.get("source_size", -1)))
            for f in data.get("files", ())
        )
        return cls(
            name=str(data["name"]),
            key=str(data["key"]),
            source=str(data.get("source", "")),
            kind=str(data.get("kind", "")),
            format=str(data.get("format", "")),
            path=str(data.get("path", "")),
            files=files,
            revision=data.get("revision"),
            state=str(data.get("state", "installed")),
            source_sha256=tuple(sorted((str(k), str(v)) for k, v in dict(data.get("source_sha256") or {}).items())),
            stanza=dict(data.get("stanza") or {}),
            installed_at=str(data.get("installed_at", "")),
        )


def sha256_file(path: Path, cancel: Any = None) -> str:
    """Hex sha256 of a file, read in 4 MiB chunks (hashlib releases the GIL on big updates)."""
    h = hashlib.sha256()
    view = memoryview(bytearray(_CHUNK))
    with open(path, "rb", buffering=0) as fh:
        while True:
            if cancel is not None and cancel.is_set():
                from invokeai_model_install.errors import Cancelled

                raise Cancelled(f"cancelled while hashing {path}")
            n = fh.readinto(view)
            if not n:
                break
            h.update(view[:n])
    return h.hexdigest()


def manifest_path(layout: RootLayout, name: str) -> Path:
    return layout.manifests_dir / f"{name}.json"


def write_manifest(layout: RootLayout, manifest: Manifest) -> Path:
    """Write (atomically) ``models/.manifests/<name>.json``; fills ``installed_at``."""
    if not manifest.installed_at:
        manifest = replace(manifest, installed_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    path = manifest_path(layout, manifest.name)
    atomic_write_text(path, json.dumps(manifest.to_json(), indent=2, sort_keys=False) + "\n")
    return path


def read_manifest(layout: RootLayout, name: str) -> Manifest | None:
    """The manifest of model ``name``, or None when missing or unreadable."""
    return _load(manifest_path(layout, name))


def _load(path: Path) -> Manifest | None:
    try:
        return Manifest.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def all_manifests(layout: RootLayout) -> Iterator[Manifest]:
    """Every readable manifest of the root."""
    try:
        paths = sorted(layout.manifests_dir.glob("*.json"))
    except OSError:
        return
    for path in paths:
        m = _load(path)
        if m is not None:
            yield m


def unregistered(layout: RootLayout) -> list[Manifest]:
    """Installed models without a models.yaml stanza: VAEs, LoRAs, embeddings, ControlNets (InvokeAI 2.3.5
    would list a stanza of theirs as a main model) and models it cannot run that were kept on request.
    Support models (kind ``support``) are not models and are left out."""
    return [m for m in all_manifests(layout) if m.state == "installed" and not m.stanza and m.kind != "support"]


def find_by_key(layout: RootLayout, key: str) -> list[Manifest]:
    """Manifests whose source key is ``key`` (normally zero or one)."""
    return [m for m in all_manifests(layout) if m.key == key]


def remove_manifest(layout: RootLayout, name: str) -> None:
    try:
        manifest_path(layout, name).unlink()
    except FileNotFoundError:
        pass


def rename_manifest(layout: RootLayout, manifest: Manifest, new_name: str) -> Manifest:
    """Store ``manifest`` under ``new_name`` and drop the old file."""
    updated = replace(manifest, name=new_name)
    write_manifest(layout, updated)
    if new_name != manifest.name:
        remove_manifest(layout, manifest.name)
    return updated


def record_files(layout: RootLayout, paths: Iterable[Path], known_sha256: dict[Path, str] | None = None, cancel: Any = None) -> tuple[FileRecord, ...]:
    """FileRecords for ``paths`` (files, or folders walked recursively); hashes what is not known."""
    known = {Path(k).absolute(): v for k, v in (known_sha256 or {}).items()}
    out: list[FileRecord] = []
    for p in paths:
        p = Path(p).absolute()
        files = sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else [p]
        for f in files:
            st = f.stat()
            digest = known.get(f) or sha256_file(f, cancel)
            out.append(FileRecord(layout.relative(f), st.st_size, digest, st.st_mtime_ns))
    return tuple(out)


@dataclass(frozen=True)
class VerifyProblem:
    """One file that does not match its manifest."""

    path: str
    problem: str  # "missing", "size", "sha256"


def verify_manifest(
    layout: RootLayout, manifest: Manifest, *, full: bool = False, cancel: Any = None, progress: Callable[[str], None] | None = None
) -> list[VerifyProblem]:
    """Check the files of ``manifest``: existence and size always; sha256 when ``full``
    or when a file's mtime changed since it was recorded (a quick check that is still
    safe: rewriting a file changes its mtime)."""
    problems: list[VerifyProblem] = []
    for rec in manifest.files:
        path = layout.absolute(rec.path)
        try:
            st = path.stat()
        except OSError:
            problems.append(VerifyProblem(rec.path, "missing"))
            continue
        if st.st_size != rec.size:
            problems.append(VerifyProblem(rec.path, "size"))
            continue
        if full or st.st_mtime_ns != rec.mtime_ns:
            if progress is not None:
                progress(rec.path)
            if sha256_file(path, cancel) != rec.sha256:
                problems.append(VerifyProblem(rec.path, "sha256"))
    return problems


def known_paths_and_hashes(layout: RootLayout) -> tuple[set[Path], set[str]]:
    """Resolved paths and sha256 digests of every file any manifest knows (incl. conversion inputs)."""
    paths: set[Path] = set()
    hashes: set[str] = set()
    for m in all_manifests(layout):
        for rec in m.files:
            paths.add(_resolve(layout.absolute(rec.path)))
            hashes.add(rec.sha256)
            if rec.source_sha256:  # the bytes as they came, before a rewrite for InvokeAI 2.3.5
                hashes.add(rec.source_sha256)
        if m.path:
            paths.add(_resolve(layout.absolute(m.path)))
        for src, digest in m.source_sha256:
            paths.add(_resolve(layout.absolute(src)))
            hashes.add(digest)
    return paths, hashes


def _resolve(p: Path) -> Path:
    try:
        return p.resolve()
    except OSError:
        return Path(os.path.abspath(p))
