"""The download engine: verified, resumable (across processes), parallel HTTP transfers.

Why our own data path instead of ``huggingface_hub.hf_hub_download`` (measured, FACTS.md): it reaches
~208 MB/s on loopback (CPU-bound in its 10 MiB chunk loop) where a plain socket reaches ~720 MB/s; it
does not hash what it downloads (a file of the right size with wrong bytes is accepted and kept); and it
cannot resume across processes (a SIGKILL leaves an orphan ``*.incomplete`` and the next run starts from
zero).  huggingface_hub stays in charge of hub *metadata* (see :mod:`hub`); the bytes go through here:
stdlib ``http.client`` reading with ``readinto`` into one reused buffer per connection, ``os.pwrite`` at
the right offset, and sha256 computed by a hasher thread that follows the contiguous written prefix
(hashlib releases the GIL, so hashing overlaps the transfer).

Layout on disk while a file is in flight (``partial_dir``, inside the root: ``layout.partial_dir``)::

    <partial_dir>/<sha256(url)[:32]>.part    the bytes, written in place at their offsets
    <partial_dir>/<sha256(url)[:32]>.json    sidecar: redacted url, relpath, etag, size, ranges done

A new process that finds the pair continues from the ranges done (a SIGKILL loses at most the last
sidecar interval), sending ``If-Range: <etag>``; a changed remote (another ETag, a 200 to a range
request, a 416) restarts the file cleanly.  The file moves into ``dest_dir`` (``os.replace``) only
after its size and sha256 are verified.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import http.client
import json
import os
import queue
import re
import shutil
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from invokeai_model_install.net import http_errors, tokens
from invokeai_model_install.units import human_bytes
from invokeai_model_install.errors import (
    Cancelled,
    DiskSpaceError,
    DownloadError,
    InstallerError,
    IntegrityError,
    OfflineError,
    UnsafeNameError,
)
from invokeai_model_install.events import Event, FileFinished, FileProgress, FileStarted, Retrying, discard
from invokeai_model_install.net.sources import MODEL_SUFFIXES, UrlSource, redact_url

_TRUE = ("1", "true", "yes", "on")
_BUF = 1 << 20  # bytes per readinto; one buffer per connection keeps RSS flat whatever the file size
_USER_AGENT = "invokeai-model-install"
_MAX_RESTARTS = 4  # clean restarts of one file (changed remote, ignored ranges, one bad hash) before giving up
_HASH_LAG = 8 << 20  # the hasher thread reads back only when in-line hashing fell this far behind


# --------------------------------------------------------------------------- settings and data


@dataclass(frozen=True)
class DownloadSettings:
    """Everything the engine needs to know about the network; build it with :meth:`from_env`.

    ``url_tokens`` maps host patterns to tokens (see :mod:`tokens`): ``CIVITAI_API_TOKEN`` gives
    ``("civitai.com", token)``; ``INVOKEAI_URL_TOKENS="host.example=TOKEN,*.cdn.example:8443=TOKEN2"`` adds
    more (comma or whitespace separated ``pattern=token`` pairs).  Tokens never appear in ``repr``.
    """

    hf_endpoint: str = "https://huggingface.co"
    hf_token: str | None = field(default=None, repr=False)
    offline: bool = False
    max_connections: int = 8
    url_tokens: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    retries: int = 5
    backoff: float = 0.5
    backoff_max: float = 30.0
    connect_timeout: float = 15.0
    read_timeout: float = 60.0
    #: files at least this large are split into ranges fetched on several connections
    split_size: int = 64 << 20
    #: free-space probe ``(path) -> bytes`` (tests pass a fake); None: ``shutil.disk_usage``
    disk_free: Callable[[Path], int] | None = field(default=None, repr=False, compare=False)
    #: how often the sidecar is saved while a file is in flight (seconds)
    sidecar_interval: float = 0.5

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> "DownloadSettings":
        """Settings from the environment, read now (not at import time).

        ``HF_ENDPOINT``, ``HF_TOKEN`` (else the huggingface_hub token store), ``HF_HUB_OFFLINE``,
        ``INVOKEAI_MAX_CONNECTIONS``, ``CIVITAI_API_TOKEN``, ``INVOKEAI_URL_TOKENS``,
        ``INVOKEAI_DOWNLOAD_RETRIES``, ``INVOKEAI_DOWNLOAD_TIMEOUT`` (read timeout, seconds).
        """
        env = os.environ if environ is None else environ
        endpoint = (env.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
        token = env.get("HF_TOKEN") or env.get("HUGGING_FACE_HUB_TOKEN") or _stored_hf_token(env, environ is None)
        url_tokens: list[tuple[str, str]] = []
        if env.get("CIVITAI_API_TOKEN"):
            url_tokens.append(("civitai.com", env["CIVITAI_API_TOKEN"].strip()))
        for pair in re.split(r"[,\s]+", env.get("INVOKEAI_URL_TOKENS", "").strip()):
            if "=" in pair:
                pattern, _, tok = pair.partition("=")
                if pattern and tok:
                    url_tokens.append((pattern.strip(), tok.strip()))
        values: dict = dict(
            hf_endpoint=endpoint,
            hf_token=token or None,
            offline=env.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE,
            max_connections=_int(env.get("INVOKEAI_MAX_CONNECTIONS"), 8, 1, 64),
            url_tokens=tuple(url_tokens),
            retries=_int(env.get("INVOKEAI_DOWNLOAD_RETRIES"), 5, 0, 100),
            read_timeout=float(_int(env.get("INVOKEAI_DOWNLOAD_TIMEOUT"), 60, 1, 3600)),
        )
        values.update(overrides)
        return cls(**values)


def _int(text: str | None, default: int, lo: int, hi: int) -> int:
    try:
        return max(lo, min(hi, int(str(text).strip())))
    except (TypeError, ValueError):
        return default


def _stored_hf_token(env: Mapping[str, str], use_library: bool) -> str | None:
    """The token saved by ``huggingface-cli login``."""
    if use_library:
        try:
            from huggingface_hub import get_token

            return get_token()
        except Exception:  # a broken token store must not stop local installs
            return None
    path = env.get("HF_TOKEN_PATH") or os.path.join(
        env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface"), "token"
    )
    try:
        return Path(path).read_text().strip() or None
    except OSError:
        return None


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch: where from, where to (``relpath`` inside the destination), what to expect.

    ``size`` is -1 when unknown; ``sha256`` None when no hash is known (then only the size is checked);
    ``git_oid``: the hub's git blob id of a small (non-LFS) file, verified too when given.
    """

    url: str
    relpath: str
    size: int
    sha256: str | None = None
    git_oid: str | None = field(default=None, kw_only=True)
    etag: str | None = field(default=None, kw_only=True)


@dataclass(frozen=True)
class Resolved:
    """What a source turned into: files to fetch, the pinned hub commit, a label, and a kind hint."""

    files: tuple[RemoteFile, ...]
    commit: str | None = None
    label: str = ""
    kind_hint: str | None = None
    total_size: int = 0
    repo_id: str | None = field(default=None, kw_only=True)


@dataclass(frozen=True)
class DownloadResult:
    """Paths of the verified files by relpath, bytes transferred in this run, and their sha256."""

    paths: dict[str, Path]
    fetched_bytes: int
    sha256: dict[str, str]


# --------------------------------------------------------------------------- names and disk


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


def check_disk_space(needed_bytes: int, path: str | os.PathLike, *, free: Callable[[Path], int] | None = None) -> None:
    """Raise :class:`DiskSpaceError` naming both numbers when ``needed_bytes`` do not fit at ``path``."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    available = free(p) if free is not None else shutil.disk_usage(p).free
    if needed_bytes > available:
        raise DiskSpaceError(
            f"not enough disk space in {path}: need {human_bytes(needed_bytes)} ({needed_bytes} bytes), "
            f"{human_bytes(available)} ({available} bytes) free"
        )


# --------------------------------------------------------------------------- HTTP plumbing


class _Conns:
    """Keep-alive connections per thread, keyed by origin; registry of live sockets for cancel."""

    def __init__(self, settings: DownloadSettings) -> None:
        self.settings = settings
        self.local = threading.local()
        self.lock = threading.Lock()
        self.live: set[http.client.HTTPConnection] = set()
        self.closed = False

    def get(self, url: str) -> http.client.HTTPConnection:
        scheme, host, port = tokens.origin(url)
        pool = self.local.__dict__.setdefault("pool", {})
        key = (scheme, host, port)
        conn = pool.get(key)
        if conn is None:
            if scheme == "https":
                conn = http.client.HTTPSConnection(host, port, timeout=self.settings.connect_timeout, context=ssl.create_default_context())
            elif scheme == "http":
                conn = http.client.HTTPConnection(host, port, timeout=self.settings.connect_timeout)
            else:
                raise DownloadError(f"{redact_url(url)}: only http and https URLs can be downloaded")
            pool[key] = conn
            with self.lock:
                self.live.add(conn)
        return conn

    def connect(self, conn: http.client.HTTPConnection) -> None:
        if conn.sock is None:
            conn.connect()
            conn.sock.settimeout(self.settings.read_timeout)
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)

    def drop(self, url: str) -> None:
        scheme, host, port = tokens.origin(url)
        pool = self.local.__dict__.setdefault("pool", {})
        conn = pool.pop((scheme, host, port), None)
        if conn is not None:
            conn.close()
            with self.lock:
                self.live.discard(conn)

    def close_thread(self) -> None:
        for conn in self.local.__dict__.get("pool", {}).values():
            conn.close()
            with self.lock:
                self.live.discard(conn)
        self.local.__dict__["pool"] = {}

    def abort_all(self) -> None:
        """Shut every live socket down (cancel): blocked reads return at once."""
        with self.lock:
            conns = list(self.live)
        for conn in conns:
            sock = conn.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class _Retry(Exception):
    """A transient failure: try again after ``delay`` (None: computed backoff)."""

    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


class _Restart(Exception):
    """The remote changed or ignores ranges: start this file again from zero."""


def _open(
    conns: _Conns,
    url: str,
    settings: DownloadSettings,
    headers: dict[str, str],
    *,
    method: str = "GET",
    what: str = "",
) -> tuple[http.client.HTTPResponse, str]:
    """Send a request, following redirects ourselves (tokens stay on their host); -> (response, final url).

    Raises :class:`_Retry` for transient failures and our errors for final ones.
    """
    current = url
    hdrs = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity", **tokens.auth_headers(url, settings), **headers}
    for _hop in range(10):
        conn = conns.get(current)
        parts = urllib.parse.urlsplit(current)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        try:
            conns.connect(conn)
            conn.request(method, target, headers=hdrs)
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conns.drop(current)
            raise _Retry(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from exc
        if resp.status in (301, 302, 303, 307, 308):
            location = resp.getheader("Location")
            _discard_body(conns, current, resp)
            if not location:
                raise DownloadError(f"{what or redact_url(url)}: redirect without a Location from {redact_url(current)}")
            new = urllib.parse.urljoin(current, location)
            hdrs = tokens.headers_after_redirect(current, new, hdrs, settings)
            current = new
            continue
        return resp, current
    raise DownloadError(f"{what or redact_url(url)}: too many redirects")


def _discard_body(conns: _Conns, url: str, resp: http.client.HTTPResponse, limit: int = 64 << 10) -> None:
    """Finish a small response so the connection can be reused; close it when the body is large."""
    length = resp.getheader("Content-Length")
    try:
        if resp.chunked or (length is not None and int(length) <= limit):
            resp.read(limit)
            if not resp.isclosed():
                conns.drop(url)
        else:
            conns.drop(url)
    except (OSError, http.client.HTTPException, ValueError):
        conns.drop(url)


def _fail_status(conns: _Conns, resp: http.client.HTTPResponse, url: str, settings: DownloadSettings, what: str, attempt_delay: float) -> None:
    """Raise the right thing for a non-2xx answer."""
    headers = dict(resp.getheaders())
    _discard_body(conns, url, resp)
    if http_errors.is_retryable(resp.status):
        # Retry-After is respected, up to 5 minutes (a cancel interrupts the wait anyway)
        delay = min(300.0, http_errors.retry_after(headers, attempt_delay)) if resp.status in (429, 503) else None
        raise _Retry(f"HTTP {resp.status}", delay)
    raise http_errors.error_for_status(resp.status, url, headers=headers, what=what, hub_endpoint=settings.hf_endpoint)


def fetch_small(url: str, settings: DownloadSettings, *, limit: int = 4 << 20, what: str = "") -> bytes:
    """GET a small document (e.g. ``model_index.json``) with retries; tokens follow the same rules."""
    if settings.offline:
        raise OfflineError(f"{what or redact_url(url)}: offline mode is on (HF_HUB_OFFLINE)")
    conns = _Conns(settings)
    try:
        for attempt in range(settings.retries + 1):
            try:
                resp, final = _open(conns, url, settings, {}, what=what)
                if resp.status != 200:
                    _fail_status(conns, resp, final, settings, what, _backoff(settings, attempt))
                body = resp.read(limit + 1)
                if len(body) > limit:
                    raise DownloadError(f"{what or redact_url(url)}: larger than {limit} bytes")
                return body
            except _Retry as r:
                if attempt >= settings.retries:
                    raise DownloadError(f"{what or redact_url(url)}: {r.reason} after {attempt + 1} tries") from None
                time.sleep(r.delay if r.delay is not None else _backoff(settings, attempt))
            except (OSError, http.client.HTTPException) as exc:
                if attempt >= settings.retries:
                    raise http_errors.from_network_error(exc, url, what) from None
                time.sleep(_backoff(settings, attempt))
        raise DownloadError(f"{what or redact_url(url)}: failed")  # pragma: no cover
    finally:
        conns.close_thread()


def _backoff(settings: DownloadSettings, attempt: int) -> float:
    return min(settings.backoff_max, settings.backoff * (2 ** attempt))


# --------------------------------------------------------------------------- resolve_url


def resolve_url(src: UrlSource, settings: DownloadSettings) -> Resolved:
    """One plain URL -> :class:`Resolved` (name from Content-Disposition or the URL path, size from headers).

    Probes with ``GET`` + ``Range: bytes=0-0`` rather than ``HEAD``: signed CDN URLs (S3/R2) often refuse
    HEAD, and the first byte lets us refuse a login page before anything is downloaded.
    """
    if settings.offline:
        raise OfflineError(f"{src.label}: offline mode is on (HF_HUB_OFFLINE); this URL needs a download")
    conns = _Conns(settings)
    what = src.label
    try:
        for attempt in range(settings.retries + 1):
            try:
                resp, final = _open(conns, src.url, settings, {"Range": "bytes=0-0"}, what=what)
                if resp.status not in (200, 206):
                    _fail_status(conns, resp, final, settings, what, _backoff(settings, attempt))
                headers = {k.lower(): v for k, v in resp.getheaders()}
                first = resp.read(512) if resp.status == 206 else resp.read1(512) if hasattr(resp, "read1") else b""
                conns.drop(final)
                break
            except _Retry as r:
                if attempt >= settings.retries:
                    raise DownloadError(f"{what}: {r.reason} after {attempt + 1} tries") from None
                time.sleep(r.delay if r.delay is not None else _backoff(settings, attempt))
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
        rf = RemoteFile(src.url, safe_relpath(name, src.label), size, src.sha256, etag=etag)
        return Resolved(files=(rf,), commit=None, label=name, kind_hint=None, total_size=max(size, 0))
    except (OSError, http.client.HTTPException) as exc:
        raise http_errors.from_network_error(exc, src.url, what) from None
    finally:
        conns.close_thread()


# --------------------------------------------------------------------------- partial files


def partial_key(url: str, relpath: str) -> str:
    """Name of a file's partial data in ``partial_dir``: a hash of its URL (tokens never in names)."""
    return hashlib.sha256(f"{url}\n{relpath}".encode()).hexdigest()[:32]


def _merge(ranges: list[list[int]]) -> list[list[int]]:
    out: list[list[int]] = []
    for a, b in sorted(ranges):
        if b <= a:
            continue
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def _missing(done: list[list[int]], size: int) -> list[tuple[int, int]]:
    gaps, pos = [], 0
    for a, b in _merge(done):
        if a > pos:
            gaps.append((pos, a))
        pos = max(pos, b)
    if pos < size:
        gaps.append((pos, size))
    return gaps


class _FileJob:
    """State of one file in flight: partial file, ranges done, hasher, generation (bumped on restart)."""

    def __init__(self, engine: "_Engine", rf: RemoteFile, dest: Path) -> None:
        self.engine = engine
        self.rf = rf
        self.dest = dest
        self.name = rf.relpath
        key = partial_key(rf.url, rf.relpath)
        self.part = engine.partial_dir / f"{key}.part"
        self.meta = engine.partial_dir / f"{key}.json"
        self.lock = threading.Condition()
        self.gen = 0
        self.size = rf.size
        self.etag = rf.etag
        self.done: list[list[int]] = []  # completed ranges [a, b)
        self.inflight: dict[int, list[int]] = {}  # segment id -> [start, current]
        self.ranges_ok = True
        self.pending = 0  # segments not finished in this generation
        self.fetched = 0
        self.integrity_retries = 0
        self.error: BaseException | None = None
        self.finished = False
        self.fd = -1
        self.digest = ""
        self.closed = False
        self.hash_pos = 0
        self.sha = hashlib.sha256()
        self.git = None
        self.hasher: threading.Thread | None = None
        self.last_save = 0.0
        self.save_lock = threading.Lock()
        self.restart_lock = threading.Lock()
        self.restarts = 0
        self.hash_lock = threading.Lock()
        self.last_event = 0.0
        self.last_event_done = 0
        self.started_at = time.monotonic()
        self.effective_url: str | None = None

    # -- sidecar --------------------------------------------------------------------------
    def load(self) -> int:
        """Open/lock the partial file and take the ranges a previous run finished; -> bytes already there."""
        while True:
            self.fd = os.open(self.part, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                # another installer is fetching the same file: wait for it
                os.close(self.fd)
                self.fd = -1
                if self.engine.cancel.wait(0.2):
                    raise Cancelled(f"{self.name}: cancelled while waiting for another download of it")
                continue
            try:
                same = os.stat(self.part).st_ino == os.fstat(self.fd).st_ino
            except OSError:
                same = False
            if same:
                break
            # the other process finished and moved that inode into place: never touch it, start anew
            os.close(self.fd)
            self.fd = -1
        try:
            state = json.loads(self.meta.read_text())
        except (OSError, ValueError):
            state = None
        disk = os.fstat(self.fd).st_size
        if (
            isinstance(state, dict)
            and state.get("key") == partial_key(self.rf.url, self.rf.relpath)
            and (self.rf.size < 0 or state.get("size") == self.rf.size)
            and (self.rf.etag is None or state.get("etag") in (None, self.rf.etag))
            and isinstance(state.get("done"), list)
        ):
            self.size = int(state.get("size", self.rf.size))
            self.etag = state.get("etag") or self.etag
            self.done = _merge([[int(a), min(int(b), disk)] for a, b in state["done"] if int(a) < disk])
            self.ranges_ok = bool(state.get("ranges_ok", True))
        else:
            self.done = []
            os.ftruncate(self.fd, 0)
        return sum(b - a for a, b in self.done)

    def save(self, force: bool = False) -> None:
        now = time.monotonic()
        with self.lock:
            if not force and now - self.last_save < self.engine.settings.sidecar_interval:
                return
            self.last_save = now
            ranges = _merge([*map(list, self.done), *[list(v) for v in self.inflight.values()]])
            state = {
                "key": partial_key(self.rf.url, self.rf.relpath),
                "url": redact_url(self.rf.url),
                "relpath": self.rf.relpath,
                "etag": self.etag,
                "size": self.size,
                "ranges_ok": self.ranges_ok,
                "done": ranges,
            }
        if not self.save_lock.acquire(blocking=force):
            return  # another thread of this file is saving right now
        try:
            tmp = self.meta.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(state))
            os.replace(tmp, self.meta)
        finally:
            self.save_lock.release()

    def prefix(self) -> int:
        """End of the contiguous written range starting at 0."""
        ranges = _merge([*map(list, self.done), *[list(v) for v in self.inflight.values()]])
        return ranges[0][1] if ranges and ranges[0][0] == 0 else 0

    # -- hashing ------------------------------------------------------------------------------
    # The sha256 is computed in file order.  The worker that writes the bytes right at ``hash_pos``
    # hashes them straight from its receive buffer (no second copy; the kernel keeps the socket
    # pipeline full meanwhile).  Bytes that arrive out of order (parallel ranges, a resumed prefix)
    # are read back from the page cache by the hasher thread once they join the contiguous prefix.
    def start_hasher(self) -> None:
        with self.hash_lock:
            self.hash_pos = 0
            self.sha = hashlib.sha256()
            self.git = hashlib.sha1(f"blob {self.rf.size}\0".encode()) if self.rf.git_oid and self.rf.size >= 0 else None
        gen = self.gen
        hasher = threading.Thread(target=self._hash_loop, args=(gen,), daemon=True, name=f"hash:{self.name}")
        hasher.start()
        self.hasher = hasher

    def hash_inline(self, gen: int, pos: int, data: memoryview) -> None:
        """Hash ``data`` (just written at ``pos``) when it is exactly the next piece of the hash."""
        if not self.hash_lock.acquire(blocking=False):
            return  # the hasher thread is reading back: it will cover these bytes
        try:
            if self.gen == gen and self.hash_pos == pos:
                self.sha.update(data)
                if self.git is not None:
                    self.git.update(data)
                self.hash_pos += len(data)
        finally:
            self.hash_lock.release()

    def _hash_loop(self, gen: int) -> None:
        buf = None
        view = memoryview(b"")
        while True:
            with self.lock:
                while (
                    self.gen == gen and not self.finished and self.error is None
                    and self.prefix() - self.hash_pos < _HASH_LAG
                ):
                    self.lock.wait(0.5)
                if self.gen != gen or self.error is not None:
                    return
                upto = self.prefix()
                complete = self.finished
            while True:
                with self.hash_lock:
                    if self.gen != gen or self.hash_pos >= upto:
                        break
                    if buf is None:
                        buf = bytearray(_BUF)  # allocated only when reading back: RSS stays flat
                        view = memoryview(buf)
                    try:
                        n = os.preadv(self.fd, [view[: min(len(buf), upto - self.hash_pos)]], self.hash_pos)
                    except OSError:
                        return  # the file was closed (cancel/failure): the hash is not needed
                    if n <= 0:
                        break
                    self.sha.update(view[:n])
                    if self.git is not None:
                        self.git.update(view[:n])
                    self.hash_pos += n
            if complete:
                return

    def hasher_waiting(self) -> bool:
        """Does the hasher thread need a wake-up (fell behind by the lag)?"""
        return self.prefix_hint() - self.hash_pos >= _HASH_LAG

    def prefix_hint(self) -> int:
        with self.lock:
            return self.prefix()

    def notify(self) -> None:
        with self.lock:
            self.lock.notify_all()


@dataclass
class _Segment:
    job: _FileJob
    start: int
    end: int  # exclusive; -1 for an unknown size (single stream to EOF)
    gen: int
    sid: int
    pos: int = 0  # next byte to fetch


class _Engine:
    """Runs the segment queue on ``max_connections`` threads."""

    def __init__(self, settings: DownloadSettings, partial_dir: Path, on_event, cancel: threading.Event) -> None:
        self.settings = settings
        self.partial_dir = partial_dir
        self._on_event = on_event
        self.event_lock = threading.Lock()
        self.cancel = cancel
        self.conns = _Conns(settings)
        self.queue: "queue.Queue[_Segment | None]" = queue.Queue()
        self.sid = 0
        self.sid_lock = threading.Lock()
        self.fatal: BaseException | None = None

    def emit(self, event: Event) -> None:
        with self.event_lock:
            try:
                self._on_event(event)
            except Exception:  # a broken front end must not break a transfer
                pass

    def next_sid(self) -> int:
        with self.sid_lock:
            self.sid += 1
            return self.sid

    # -- planning -------------------------------------------------------------------------------
    def plan(self, job: _FileJob, gen: int | None = None) -> None:
        """Queue the missing ranges of ``job`` (a fresh, resumed or restarted job).

        ``gen``: plan only if that is still the job's generation (another restart may have won).
        """
        with job.lock:
            if gen is not None and gen != job.gen:
                return
            gen = job.gen
            pieces: list[tuple[int, int]] = []
            if job.size < 0:
                job.done = []
                pieces = [(0, -1)]  # unknown size: one stream to EOF
            elif not job.ranges_ok:
                gaps = _missing(job.done, job.size)
                if gaps:  # this server streams only: one request from the end of the prefix
                    pieces = [(gaps[0][0], job.size)]
            else:
                step = max(self.settings.split_size, 1 << 20)
                for a, b in _missing(job.done, job.size):
                    # a large file: ranges of split_size fetched in order on several connections, so
                    # the hashed prefix grows steadily behind them
                    while a < b:
                        pieces.append((a, min(b, a + step)))
                        a += step
            job.pending = len(pieces)
            segs = [_Segment(job, a, b, gen, self.next_sid(), a) for a, b in pieces]
        if not segs:
            self.finish(job)
            return
        for seg in segs:
            self.queue.put(seg)

    def restart(
        self, job: _FileJob, reason: str, *, ranges_ok: bool, adopt: _Segment | None = None,
        size: int | None = None, etag: str | None = None,
    ) -> int:
        """Throw away what we have of ``job`` and begin again from zero; -> the new generation.

        ``adopt``: the caller's segment becomes the file's only segment (a 200 answer streamed from 0).
        """
        with job.restart_lock:
            job.restarts += 1
            if job.restarts > _MAX_RESTARTS:
                raise DownloadError(
                    f"{job.name}: the file keeps changing on the server ({reason}) at {redact_url(job.rf.url)}",
                    "try again later",
                )
            with job.lock:
                job.gen += 1
                gen = job.gen
                job.done = []
                job.inflight.clear()
                job.ranges_ok = ranges_ok
                if etag:
                    job.etag = etag
                if size is not None:
                    job.size = size
                if job.fd >= 0:
                    os.ftruncate(job.fd, 0)
                if adopt is not None:
                    adopt.gen, adopt.sid, adopt.start, adopt.pos, adopt.end = gen, self.next_sid(), 0, 0, job.size
                    job.pending = 1
                job.lock.notify_all()
            old = job.hasher
            if old is not None and old.ident is not None:
                old.join()
            job.start_hasher()
        job.save(force=True)
        self.emit(Retrying(name=job.name, reason=reason, delay=0.0))
        return gen

    # -- workers ---------------------------------------------------------------------------------
    def worker(self) -> None:
        buf = bytearray(_BUF)
        try:
            while True:
                seg = self.queue.get()
                if seg is None:
                    return
                job = seg.job
                if job.error is not None or seg.gen != job.gen or self.cancel.is_set() or self.fatal is not None:
                    self._segment_done(seg, counted=False)
                    continue
                try:
                    self.run_segment(seg, buf)
                except BaseException as exc:  # noqa: BLE001 - recorded on the job, re-raised by download()
                    with job.lock:
                        if job.error is None and seg.gen == job.gen:
                            job.error = exc
                        job.lock.notify_all()
                    if not isinstance(exc, InstallerError):
                        self.fatal = exc
                self._segment_done(seg, counted=True)
        finally:
            self.conns.close_thread()

    def _segment_done(self, seg: _Segment, counted: bool) -> None:
        job = seg.job
        with job.lock:
            if seg.gen != job.gen:
                return
            job.pending -= 1
            last = job.pending == 0
        if last:
            self.finish(job)

    def run_segment(self, seg: _Segment, buf: bytearray) -> None:
        job = seg.job
        settings = self.settings
        attempts = 0
        while not self.cancel.is_set() and seg.gen == job.gen and job.error is None:
            before = seg.pos
            try:
                self._transfer(seg, buf)
                return
            except _Retry as r:
                attempts = 0 if seg.pos > before else attempts + 1
                if attempts > settings.retries:
                    raise DownloadError(
                        f"{job.name}: {r.reason}; gave up after {attempts} tries ({redact_url(job.rf.url)})"
                    ) from None
                delay = r.delay if r.delay is not None else _backoff(settings, max(0, attempts - 1))
                self.emit(Retrying(name=job.name, reason=r.reason, delay=delay))
                if self.cancel.wait(delay):
                    return
            except _Restart:
                return

    def _transfer(self, seg: _Segment, buf: bytearray) -> None:
        """One request for ``[seg.pos, seg.end)``; returns when the segment is complete (or superseded)."""
        job = seg.job
        settings = self.settings
        pos = seg.pos
        url = job.rf.url  # redirect targets (signed CDN URLs) may expire: always ask the original URL
        headers: dict[str, str] = {}
        ranged = pos > 0 or (seg.end >= 0 and seg.end < job.size)
        if ranged:
            headers["Range"] = f"bytes={pos}-{seg.end - 1}" if seg.end >= 0 else f"bytes={pos}-"
            if job.etag and not job.etag.startswith("W/"):
                headers["If-Range"] = job.etag
        resp, final = _open(self.conns, url, settings, headers, what=job.name)
        status = resp.status
        if status == 416:
            _discard_body(self.conns, final, resp)
            self.plan(job, self.restart(job, "the remote file changed (416)", ranges_ok=True))
            raise _Restart()
        if status not in (200, 206):
            _fail_status(self.conns, resp, final, settings, job.name, _backoff(settings, 0))
        self._sniff(job, resp, final)
        etag = resp.getheader("ETag")
        if status == 206:
            m = re.match(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", resp.getheader("Content-Range") or "")
            total = int(m.group(3)) if m and m.group(3) != "*" else job.size
            if m and job.rf.size >= 0 and total != job.rf.size and not (job.etag and etag and etag != job.etag):
                self.conns.drop(final)
                raise IntegrityError(f"{job.name}: expected {job.rf.size} bytes, the server has {total} ({redact_url(job.rf.url)})")
            if not m or int(m.group(1)) != pos or (job.size >= 0 and total != job.size) or (job.etag and etag and etag != job.etag):
                self.conns.drop(final)
                self.plan(job, self.restart(job, "the remote file changed", ranges_ok=True))
                raise _Restart()
            if etag and not job.etag:
                job.etag = etag
        elif ranged:
            # 200 to a range request: the server ignores ranges, or If-Range saw another version.
            # Clean restart, streaming this very response as the file's only segment.
            changed = bool(job.etag and etag and etag != job.etag)
            length = resp.getheader("Content-Length")
            self.restart(
                job, "the remote file changed" if changed else "the server ignores byte ranges", ranges_ok=False, adopt=seg,
                size=int(length) if length and length.isdigit() and job.rf.size < 0 else None, etag=etag,
            )
        else:
            if etag and not job.etag:
                job.etag = etag
            length = resp.getheader("Content-Length")
            if job.size < 0 and length and length.isdigit():
                job.size = int(length)
                seg.end = job.size
        self._stream(seg, resp, final, buf)

    def _sniff(self, job: _FileJob, resp: http.client.HTTPResponse, url: str) -> None:
        """A page (HTML/JSON by Content-Type) where weights were expected: refuse before writing."""
        ctype = (resp.getheader("Content-Type") or "").split(";")[0].strip().lower()
        if http_errors.expects_model(job.name) and ctype in ("text/html", "application/json", "application/problem+json"):
            err = http_errors.sniff_not_a_model(b"", ctype, url, relpath=job.name, hub_endpoint=self.settings.hf_endpoint)
            if err is not None:
                self.conns.drop(url)
                raise err

    def _stream(self, seg: _Segment, resp: http.client.HTTPResponse, url: str, buf: bytearray) -> None:
        job = seg.job
        view = memoryview(buf)
        end = seg.end
        pos = seg.pos
        with job.lock:
            job.inflight[seg.sid] = [pos, pos]
        first = pos == 0
        try:
            while end < 0 or pos < end:
                if self.cancel.is_set() or seg.gen != job.gen or job.error is not None:
                    self.conns.drop(url)
                    return
                want = len(buf) if end < 0 else min(len(buf), end - pos)
                try:
                    n = resp.readinto(view[:want])
                except (OSError, http.client.HTTPException) as exc:
                    self.conns.drop(url)
                    if self.cancel.is_set():
                        return
                    raise _Retry(f"connection lost at {human_bytes(pos)} ({type(exc).__name__})") from exc
                if not n:
                    if end < 0:
                        break
                    self.conns.drop(url)
                    raise _Retry(f"connection closed at {human_bytes(pos)}")
                if first:
                    first = False
                    err = http_errors.sniff_not_a_model(
                        bytes(view[: min(n, 512)]), resp.getheader("Content-Type"), url, relpath=job.name,
                        hub_endpoint=self.settings.hf_endpoint,
                    )
                    if err is not None:
                        self.conns.drop(url)
                        raise err
                with job.lock:
                    if seg.gen != job.gen or job.fd < 0:
                        return
                    try:
                        os.pwrite(job.fd, view[:n], pos)
                    except OSError as exc:
                        raise _write_error(exc, job.part, job.name) from None
                    job.inflight[seg.sid][1] = pos + n
                    job.fetched += n
                job.hash_inline(seg.gen, pos, view[:n])
                pos += n
                seg.pos = pos
                if job.hasher_waiting():
                    job.notify()
                self._progress(job)
                job.save()
            if end < 0:
                with job.lock:
                    job.size = pos
        finally:
            with job.lock:
                span = job.inflight.pop(seg.sid, None)
                if span is not None and seg.gen == job.gen and span[1] > span[0]:
                    job.done = _merge([*job.done, span])
                job.lock.notify_all()

    def _progress(self, job: _FileJob, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - job.last_event < 0.2:  # ~5 events/s per file
            return
        with job.lock:
            done = sum(b - a for a, b in _merge([*map(list, job.done), *[list(v) for v in job.inflight.values()]]))
            dt = now - job.last_event if job.last_event else now - job.started_at
            speed = (done - job.last_event_done) / dt if dt > 0 else 0.0
            job.last_event = now
            job.last_event_done = done
        self.emit(FileProgress(name=job.name, done=done, total=job.size, speed=max(0.0, speed)))

    # -- finishing ---------------------------------------------------------------------------------
    def finish(self, job: _FileJob) -> None:
        """All segments of the current generation ended: verify and move, or record the failure."""
        try:
            self._finish(job)
        except BaseException as exc:  # noqa: BLE001 - never leave the engine waiting for this file
            if job.error is None:
                job.error = exc
            if not getattr(job, "closed", False):
                self._close(job, ok=False)

    def _finish(self, job: _FileJob) -> None:
        if job.error is not None or self.cancel.is_set():
            with job.lock:
                job.lock.notify_all()
            job.save(force=True)
            self._close(job, ok=False)
            return
        with job.lock:
            missing = _missing(job.done, job.size) if job.size >= 0 else []
            job.finished = True
            job.lock.notify_all()
        if missing:
            job.error = DownloadError(f"{job.name}: incomplete download ({len(missing)} range(s) missing)")
            job.save(force=True)
            self._close(job, ok=False)
            return
        job.hasher.join()
        size = os.fstat(job.fd).st_size
        digest = job.sha.hexdigest()
        problem = None
        if job.rf.size >= 0 and size != job.rf.size:
            problem = f"expected {job.rf.size} bytes, got {size}"
        elif job.rf.sha256 and digest != job.rf.sha256.lower():
            problem = f"expected sha256 {job.rf.sha256.lower()}, got {digest}"
        elif job.git is not None and job.git.hexdigest() != job.rf.git_oid:
            problem = f"expected git blob {job.rf.git_oid}, got {job.git.hexdigest()}"
        if problem:
            if job.integrity_retries < 1:
                job.integrity_retries += 1
                with job.lock:
                    job.finished = False
                self.plan(job, self.restart(job, f"verification failed ({problem}); downloading again", ranges_ok=job.ranges_ok))
                return
            job.error = IntegrityError(f"{job.name} from {redact_url(job.rf.url)}: {problem}")
            self._discard(job)
            self._close(job, ok=False)
            return
        job.dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(job.part, job.dest)
        except OSError:  # another filesystem: copy then remove
            shutil.copyfile(job.part, job.dest)
            os.unlink(job.part)
        job.digest = digest
        try:
            job.meta.unlink()
        except OSError:
            pass
        self._progress(job, force=True)
        self.emit(FileFinished(name=job.name, size=size, sha256=digest, fetched=job.fetched))
        self._close(job, ok=True)

    def _discard(self, job: _FileJob) -> None:
        for p in (job.part, job.meta):
            try:
                p.unlink()
            except OSError:
                pass

    def _close(self, job: _FileJob, ok: bool) -> None:
        with job.lock:
            if job.closed:
                return
            job.finished = True
            job.closed = True
            job.lock.notify_all()
            if job.fd >= 0:
                os.close(job.fd)  # releases the flock; under the lock so no writer can hit a reused fd
                job.fd = -1
        self.engine_done(job)

    def engine_done(self, job: _FileJob) -> None:
        with self.sid_lock:
            self.remaining -= 1
            if self.remaining == 0:
                for _ in range(self.nthreads):
                    self.queue.put(None)


def _write_error(exc: OSError, path: Path, name: str) -> InstallerError:
    """A failed write of downloaded bytes as one of our errors (a full disk says so)."""
    if exc.errno == errno.ENOSPC:
        return DiskSpaceError(f"disk full while writing {name} into {path.parent}")
    return DownloadError(f"cannot write {name} into {path.parent}: {exc.strerror or exc}", "check the folder's permissions")


def _sha256_of(path: Path, cancel: threading.Event | None = None) -> str:
    h = hashlib.sha256()
    buf = bytearray(_BUF * 4)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(view):
            h.update(view[:n])
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"{path.name}: cancelled while checking")
    return h.hexdigest()


def download(
    resolved: Resolved,
    dest_dir: str | os.PathLike,
    *,
    partial_dir: str | os.PathLike,
    settings: DownloadSettings,
    on_event: Callable[[Event], None] = discard,
    cancel: threading.Event | None = None,
) -> DownloadResult:
    """Fetch every file of ``resolved`` into ``dest_dir/<relpath>``, verified; resumable and parallel.

    Files already in ``dest_dir`` with the right size and sha256 are kept (fetched 0).  Raises
    :class:`Cancelled` (partials kept), :class:`OfflineError`, :class:`DiskSpaceError`, or the first
    file's :class:`DownloadError` subclass (other files that finished stay in ``dest_dir``).
    """
    dest_dir = Path(dest_dir)
    partial = Path(partial_dir)
    cancel = cancel or threading.Event()
    paths: dict[str, Path] = {}
    sha: dict[str, str] = {}
    todo: list[tuple[RemoteFile, Path]] = []
    for rf in resolved.files:
        rel = safe_relpath(rf.relpath, resolved.label or redact_url(rf.url))
        dest = dest_dir.joinpath(*rel.split("/"))
        paths[rel] = dest
        if dest.is_file() and (rf.size < 0 or dest.stat().st_size == rf.size):
            digest = _sha256_of(dest, cancel)
            if rf.sha256 is None or digest == rf.sha256.lower():
                if rf.git_oid is None or _git_oid_of(dest) == rf.git_oid:
                    sha[rel] = digest
                    on_event(FileFinished(name=rel, size=dest.stat().st_size, sha256=digest, fetched=0))
                    continue
        todo.append((rf, dest))
    if not todo:
        return DownloadResult(paths, 0, sha)
    if settings.offline:
        names = ", ".join(rf.relpath for rf, _ in todo[:3]) + (" ..." if len(todo) > 3 else "")
        raise OfflineError(f"{resolved.label}: offline mode is on (HF_HUB_OFFLINE) and {len(todo)} file(s) are missing ({names})")
    partial.mkdir(parents=True, exist_ok=True)
    engine = _Engine(settings, partial, on_event, cancel)
    jobs = [_FileJob(engine, rf, dest) for rf, dest in todo]
    opened: list[_FileJob] = []
    try:
        have = 0
        for job in jobs:
            have += job.load()
            opened.append(job)
        needed = sum(max(0, j.size) for j in jobs) - have
        check_disk_space(needed, partial, free=settings.disk_free)
    except BaseException:
        for job in opened:
            job.save(force=True)
            os.close(job.fd)
        raise
    nthreads = max(1, min(settings.max_connections, 64))
    engine.remaining = len(jobs)
    engine.nthreads = nthreads
    threads = [threading.Thread(target=engine.worker, daemon=True, name=f"dl-{i}") for i in range(nthreads)]
    watcher_stop = threading.Event()

    def watch_cancel() -> None:
        # cancel must be prompt even while a read blocks on a stalled server: shut the sockets down
        while not watcher_stop.is_set():
            if cancel.wait(0.1):
                engine.conns.abort_all()
                return

    watcher = threading.Thread(target=watch_cancel, daemon=True, name="dl-cancel")
    watcher.start()
    for t in threads:
        t.start()
    for job in jobs:
        resumed = sum(b - a for a, b in job.done)
        engine.emit(FileStarted(name=job.name, total=job.size, resumed_from=resumed))
        job.start_hasher()
        engine.plan(job)
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.2)
    finally:
        watcher_stop.set()
        for job in jobs:
            if job.fd >= 0:
                job.save(force=True)
                os.close(job.fd)
                job.fd = -1
    fetched = sum(j.fetched for j in jobs)
    if engine.fatal is not None:
        raise engine.fatal
    errors = [j.error for j in jobs if j.error is not None]
    if cancel.is_set():
        raise Cancelled(f"{resolved.label}: download cancelled; partial files kept for a later resume")
    if errors:
        raise errors[0]
    for job in jobs:
        sha[job.name] = job.digest
    return DownloadResult(paths, fetched, sha)


def _git_oid_of(path: Path) -> str:
    h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as fh:
        while chunk := fh.read(_BUF):
            h.update(chunk)
    return h.hexdigest()
