"""Hashes we already know beat whatever a server says (issue 11 item 12).

With a mirror (``HF_ENDPOINT``), the server that sends the bytes also sends the LFS sha256 they are checked
against: a mirror serving other bytes with a matching hash would pass.  So a hash we hold ourselves is the
reference:

- the starter catalogue's ``sha256`` pin of a single-file starter (its ``file``, or the one weights file);
- the manifest of an earlier install of the same source at the same revision (the lock of what was
  installed), when that install is being repaired.

A listed hash that differs from the pin is refused before any byte is fetched, naming the file; the
download is then verified against the pin.
"""

from __future__ import annotations

import dataclasses
import posixpath
from typing import Any

from invokeai_model_install.errors import IntegrityError

_WEIGHTS = (".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin")


def apply_pins(resolved: Any, pins: dict[str, str], label: str, *, what: str) -> Any:
    """``resolved`` with each pinned relpath's expected sha256 set to the pin.

    :raises IntegrityError: the server lists another sha256 for a pinned file (naming the file and both hashes).
    """
    if not pins:
        return resolved
    files = []
    for rf in resolved.files:
        pin = pins.get(rf.relpath)
        if pin is None:
            files.append(rf)
            continue
        pin = pin.lower()
        listed = (rf.sha256 or "").lower()
        if listed and listed != pin:
            raise IntegrityError(
                f"{label}: {rf.relpath}: the server lists sha256 {listed}, but {what} pins {pin}; refused",
                "the server or mirror (HF_ENDPOINT) serves other bytes than the pinned model: use another mirror, "
                "or check the pin",
            )
        files.append(dataclasses.replace(rf, sha256=pin))
    return dataclasses.replace(resolved, files=tuple(files))


def catalogue_pins(starter: Any, resolved: Any) -> dict[str, str]:
    """The catalogue's pin for a single-file starter: its ``file``, else the one weights file resolved."""
    sha = getattr(starter, "sha256", None)
    if not sha:
        return {}
    rels = [rf.relpath for rf in resolved.files]
    target = getattr(starter, "file", None)
    if target:
        hits = [r for r in rels if r == target or posixpath.basename(r) == posixpath.basename(target)]
    else:
        hits = [r for r in rels if r.lower().endswith(_WEIGHTS)]
    if len(hits) != 1:
        raise IntegrityError(f"{starter.key}: the catalogue pins a sha256 but {len(hits)} weights files were listed",
                             "fix the catalogue entry (its file:)")
    return {hits[0]: sha}


def manifest_pins(manifest: Any, resolved: Any, layout: Any) -> dict[str, str]:
    """Hashes an earlier install of the same revision recorded, by the resolved relpath they belong to."""
    if manifest is None or not getattr(manifest, "revision", None) or manifest.revision != getattr(resolved, "commit", None):
        return {}
    # a file rewritten for InvokeAI 2.3.5 (convert/invokeai23.py) was downloaded with source_sha256
    recorded = {rec.path: (getattr(rec, "source_sha256", "") or rec.sha256) for rec in manifest.files if rec.sha256}
    if not recorded:
        return {}
    from invokeai_model_install.install.placement import _plain

    pins: dict[str, str] = {}
    base = manifest.path
    for rf in resolved.files:
        parent, _, name = rf.relpath.rpartition("/")
        candidates = [rf.relpath]
        plain = _plain(name)
        if plain:
            candidates.append(f"{parent}/{plain}" if parent else plain)
        for rel in candidates:
            key = f"{base}/{rel}"
            if key in recorded and not rel.endswith(".json"):
                pins[rf.relpath] = recorded[key]
                break
        else:
            if len(resolved.files) == 1 and base in recorded:  # a single file: the manifest's path is the file
                pins[rf.relpath] = recorded[base]
    return pins
