"""Plain URLs: resolving one to a file (name, size, ETag), Content-Disposition, and safe file names."""

from __future__ import annotations

import http.client
import re
import time
import urllib.parse

from invokeai_model_install.errors import DownloadError, OfflineError, UnsafeNameError
from invokeai_model_install.net import http_errors
from invokeai_model_install.net.settings import DownloadSettings, RemoteFile, Resolved
from invokeai_model_install.formats.files import MODEL_SUFFIXES
from invokeai_model_install.net.sources import UrlSource
from invokeai_model_install.net.transport import Conns, Retry, backoff, fail_status, open_request

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def safe_relpath(relpath: str, what: str = "") -> str:
    """A relative POSIX path that stays inside its destination, or :class:`UnsafeNameError`."""
    shown = _CONTROL.sub("?", relpath)
    if not relpath or _CONTROL.search(relpath) or "\\" in relpath or relpath.startswith("/") or re.match(r"^[A-Za-z]:", relpath):
        raise UnsafeNameError(f"{what or 'server'} gave an unsafe file name {shown!r}")
    parts = relpath.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise UnsafeNameError(f"{what or 'server'} gave an unsafe file name {shown!r}")
    return relpath


def safe_filename(name: str) -> str | None:
    """A single file name made safe (directories, control characters and leading dots removed), or None."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _CONTROL.sub("", name).strip().lstrip(".").strip()
    name = re.sub(r'[<>:"|?*]', "_", name)
    if not name or name in (".", ".."):
        return None
    return name[:200]


def filename_from_disposition(value: str | None) -> str | None:
    """The file name in a ``Content-Disposition`` header (``filename*=UTF-8''...`` preferred), made safe."""
    if not value:
        return None
    m = re.search(r"filename\*\s*=\s*([^']*)'[^']*'([^;]+)", value, re.IGNORECASE)
    if m:
        try:
            return safe_filename(urllib.parse.unquote(m.group(2).strip().strip('"'), encoding=m.group(1) or "utf-8"))
        except LookupError:
            pass
    m = re.search(r'filename\s*=\s*"((?:[^"\\]|\\.)*)"', value, re.IGNORECASE) or re.search(r"filename\s*=\s*([^;]+)", value, re.IGNORECASE)
    if m:
        return safe_filename(m.group(1).strip())
    return None

def resolve_url(src: UrlSource, settings: DownloadSettings) -> Resolved:
    """One plain URL -> :class:`Resolved` (name from Content-Disposition or the URL path, size from headers).

    Probes with ``GET`` + ``Range: bytes=0-0`` rather than ``HEAD``: signed CDN URLs (S3/R2) often refuse
    HEAD, and the first byte lets us refuse a login page before anything is downloaded.
    """
    if settings.offline:
        raise OfflineError(f"{src.label}: offline mode is on (HF_HUB_OFFLINE); this URL needs a download")
    conns = Conns(settings)
    what = src.label
    try:
        for attempt in range(settings.retries + 1):
            try:
                resp, final = open_request(conns, src.url, settings, {"Range": "bytes=0-0"}, what=what)
                if resp.status not in (200, 206):
                    fail_status(conns, resp, final, settings, what, backoff(settings, attempt))
                headers = {k.lower(): v for k, v in resp.getheaders()}
                first = resp.read(512) if resp.status == 206 else resp.read1(512) if hasattr(resp, "read1") else b""
                conns.drop(final)
                break
            except Retry as r:
                if attempt >= settings.retries:
                    raise DownloadError(f"{what}: {r.reason}, after {attempt + 1} tries", r.hint) from None
                time.sleep(r.delay if r.delay is not None else backoff(settings, attempt))
        size = -1
        if resp.status == 206:
            m = re.match(r"bytes\s+\d+-\d+/(\d+)", headers.get("content-range", ""))
            size = int(m.group(1)) if m else -1
        elif headers.get("content-length", "").isdigit():
            size = int(headers["content-length"])
        ctype = headers.get("content-type", "")
        if ctype.split(";")[0].strip().lower() in ("text/html", "application/json") or (
            resp.status == 200 and http_errors.looks_like_text(first) in ("HTML", "JSON", "XML")
        ):
            err = http_errors.sniff_not_a_model(first or b"<html>", ctype, src.url, hub_endpoint=settings.hf_endpoint)
            if err is not None:
                raise err
        name = filename_from_disposition(headers.get("content-disposition"))
        if name is None:
            for candidate in (src.url, final):
                base = safe_filename(urllib.parse.unquote(urllib.parse.urlsplit(candidate).path.rsplit("/", 1)[-1]))
                if base and base.lower().endswith(MODEL_SUFFIXES):
                    name = base
                    break
        if name is None:
            name = safe_filename(urllib.parse.unquote(urllib.parse.urlsplit(src.url).path.rsplit("/", 1)[-1])) or "download"
        etag = headers.get("etag")
        # a reference hash: the user's #sha256=, else the server's digest header, else civitai's API
        from invokeai_model_install.net.digests import civitai_sha256, sha256_from_headers

        sha256 = src.sha256 or sha256_from_headers(headers, resp.status) or civitai_sha256(src.url, name, settings)
        rf = RemoteFile(src.url, safe_relpath(name, src.label), size, sha256, etag=etag)
        return Resolved(files=(rf,), commit=None, label=name, kind_hint=None, total_size=max(size, 0))
    except (OSError, http.client.HTTPException) as exc:
        raise http_errors.from_network_error(exc, src.url, what) from None
    finally:
        conns.close_thread()
