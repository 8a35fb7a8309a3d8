"""Autoscan: find the model files in a folder (recursively) that are not registered yet.

"Not registered" is judged twice, so a moved or copied file is not imported again:

* by path: any models.yaml stanza (``weights``, ``path``, a VAE path) or manifest
  that points at the file or at a folder that contains it;
* by content: the sha256 of the file against every sha256 our manifests know
  (installed files, and the checkpoints that converted models came from).

Hashing costs about 1 s per GB; only candidates that passed the path check are
hashed.  A diffusers folder (it has ``model_index.json``) is one model and is not
descended into; files named ``<stem>.vae.*`` next to ``<stem>.*`` are companion
VAEs of that checkpoint, not models of their own.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from invokeai_model_install.root import manifest as mf
from invokeai_model_install.errors import SourceError
from invokeai_model_install.formats.files import model_paths
from invokeai_model_install.root.layout import RootLayout

def _registered_paths(layout: RootLayout, registry: Any) -> set[Path]:
    from invokeai_model_install.root.registry import Registry, stanza_paths

    reg = registry if registry is not None else Registry(layout.models_yaml)
    out: set[Path] = set()
    for stanza in reg.load().values():
        for _field, stored in stanza_paths(stanza):
            try:
                out.add(layout.absolute(stored).resolve())
            except OSError:
                pass
    return out


def _under_any(path: Path, roots: set[Path]) -> bool:
    return path in roots or any(parent in roots for parent in path.parents)


def find_new_models(directory: str | os.PathLike[str], layout: RootLayout, registry: Any = None) -> list[Path]:
    """Paths under ``directory`` that are neither registered nor known by content hash."""
    directory = Path(os.path.expanduser(str(directory))).absolute()
    if not directory.is_dir():
        raise SourceError(f"scan folder {directory} does not exist or is not a folder", "check the --scan-dir / --autoconvert path")
    known_paths = _registered_paths(layout, registry)
    manifest_paths, manifest_hashes = mf.known_paths_and_hashes(layout)
    known_paths |= manifest_paths
    partial = layout.partial_dir.resolve()
    new: list[Path] = []
    for path in model_paths(directory):
        resolved = path.resolve()
        if _under_any(resolved, {partial}) or _under_any(resolved, known_paths):
            continue
        if resolved.is_file() and manifest_hashes and mf.sha256_file(resolved) in manifest_hashes:
            continue
        new.append(path)
    return new


def scan_dir(directory: str | os.PathLike[str], layout: RootLayout, registry: Any = None) -> list[Any]:
    """Sources (``LocalFileSource`` / ``LocalDiffusersSource``) for every new model under ``directory``."""
    out: list[Any] = []
    for path in find_new_models(directory, layout, registry):
        from invokeai_model_install.net import sources

        out.append(sources.LocalDiffusersSource(path=path) if path.is_dir() else sources.LocalFileSource(path=path))
    return out
