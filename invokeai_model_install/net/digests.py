"""A reference sha256 for a plain URL when the user gave none (issue 11 item 20).

- RFC 9530: ``Repr-Digest: sha-256=:<base64>:`` (the whole file, whatever range was asked), and
  ``Content-Digest`` when it describes the whole file (a ``200`` without ``Content-Encoding``); the
  older RFC 3230 ``Digest: SHA-256=<base64>`` too.
- civitai: ``/api/download/models/<version id>`` on a civitai host -> ``/api/v1/model-versions/<id>``
  lists the version's files with ``hashes.SHA256``; the one we download is found by name (else the primary).

Both are best effort: a header we cannot parse or an API that does not answer leaves the file with no
reference hash (then only its size is checked, as before).  The ``#sha256=`` the user gave always wins.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import urllib.parse

from invokeai_model_install.net.settings import DownloadSettings
from invokeai_model_install.net.sources import is_civitai_url

_SF_ITEM = re.compile(r"(?i)(?:^|,)\s*sha-256\s*=\s*:([A-Za-z0-9+/=]+):")
_LEGACY_ITEM = re.compile(r"(?i)(?:^|,)\s*sha-256\s*=\s*([A-Za-z0-9+/=]+)")
_VERSION_PATH = re.compile(r"^/api/download/models/(\d+)/?$")


def _hex(b64: str) -> str | None:
    try:
        raw = base64.b64decode(b64, validate=True)
    except (ValueError, TypeError):
        return None
    return raw.hex() if len(raw) == 32 else None


def sha256_from_headers(headers: dict[str, str], status: int) -> str | None:
    """The sha256 (hex) of the whole file from RFC 9530 / 3230 digest headers (lower-case names), or None."""
    value = headers.get("repr-digest")
    if value:
        m = _SF_ITEM.search(value)
        if m and _hex(m.group(1)):
            return _hex(m.group(1))
    value = headers.get("content-digest")
    if value and status == 200 and headers.get("content-encoding", "identity").strip().lower() in ("", "identity"):
        m = _SF_ITEM.search(value)
        if m and _hex(m.group(1)):
            return _hex(m.group(1))
    value = headers.get("digest")
    if value:
        m = _LEGACY_ITEM.search(value)
        if m and _hex(m.group(1)):
            return _hex(m.group(1))
    return None


def civitai_sha256(url: str, name: str, settings: DownloadSettings) -> str | None:
    """civitai's published SHA256 of the file ``name`` of the model version ``url`` downloads, or None."""
    parts = urllib.parse.urlsplit(url)
    m = _VERSION_PATH.match(parts.path)
    if not m or not is_civitai_url(url):  # the one definition of civitai's hosts
        return None
    from invokeai_model_install.net.transport import fetch_small

    api = urllib.parse.urlunsplit((parts.scheme, parts.netloc, f"/api/v1/model-versions/{m.group(1)}", "", ""))
    quick = dataclasses.replace(settings, retries=min(settings.retries, 1))
    try:
        data = json.loads(fetch_small(api, quick, limit=4 << 20, what=f"civitai model version {m.group(1)}"))
    except Exception:  # noqa: BLE001 - best effort: no answer, no reference hash
        return None
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, list):
        return None
    files = [f for f in files if isinstance(f, dict)]
    wanted_type = dict(urllib.parse.parse_qsl(parts.query)).get("type")
    chosen = [f for f in files if f.get("name") == name] or \
        ([f for f in files if f.get("type") == wanted_type] if wanted_type else []) or \
        [f for f in files if f.get("primary")]
    if len(chosen) != 1:
        return None
    hashes = chosen[0].get("hashes")
    sha = hashes.get("SHA256") if isinstance(hashes, dict) else None
    if isinstance(sha, str) and re.fullmatch(r"[0-9a-fA-F]{64}", sha):
        return sha.lower()
    return None
