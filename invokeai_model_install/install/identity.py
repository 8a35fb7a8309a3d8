"""The identity of a source: the key manifests are looked up by, and where its bytes are staged."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from invokeai_model_install.net.sources import HubSource, LocalDiffusersSource, LocalFileSource, Source, UrlSource
from invokeai_model_install.root.layout import RootLayout


def hub_key(repo_id: str, subfolder: str | None = None, revision: str | None = None, path_in_repo: str | None = None) -> str:
    key = f"hub:{repo_id}"
    if subfolder:
        key += f":{subfolder}"
    if path_in_repo:
        key += f"/{path_in_repo}"
    if revision:
        key += f"@{revision}"
    return key


def source_key(source: Source) -> str:
    """A stable string naming what a source installs (manifests are looked up by it)."""
    if isinstance(source, HubSource):
        return hub_key(source.repo_id, source.subfolder, source.revision, source.path_in_repo)
    if isinstance(source, UrlSource):
        from invokeai_model_install.redact import strip_secrets

        # credentials in the query string (token, api_key, sig, X-Amz-Signature...) are not identity
        return "url:" + strip_secrets(source.url)
    path = Path(os.path.expanduser(str(source.path)))
    try:
        path = path.resolve()
    except OSError:
        path = path.absolute()
    return f"file:{path}"


def key_hash(key: str) -> str:
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]


def staging_dir(layout: RootLayout, key: str) -> Path:
    """Where an item's bytes land before they are placed (kept across runs for resume)."""
    return layout.partial_dir / "staging" / key_hash(key)


def local_path(source: Source | None) -> Path | None:
    """The file or folder a local source installs in place; None for downloads (and starters)."""
    if isinstance(source, (LocalFileSource, LocalDiffusersSource)):
        return Path(os.path.expanduser(str(source.path))).absolute()
    return None
