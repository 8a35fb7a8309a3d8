"""A plain static file server over loopback, with faults on demand.

Used by the download tests (and the worker/TUI tests) instead of any real host.
Everything listens on 127.0.0.x only.

Quick use::

    with FileServer(folder) as srv:            # or srv = FileServer(folder); srv.start(); ...; srv.stop()
        url = srv.url_for("model.safetensors")  # http://127.0.0.1:PORT/model.safetensors
        srv.route("/api/download/models/42", "model.safetensors")   # civitai-like URL without extension
        srv.content_disposition["model.safetensors"] = 'attachment; filename="../../evil.ckpt"'
        srv.faults.drop("*.safetensors", after_bytes=1000)          # next GET dies after 1000 body bytes
        srv.stats.served("/model.safetensors")                      # body bytes sent for that path
        srv.stats.requests                                          # [RequestRecord(method, path, query, headers)]

Behaviour (no fault set):
- ``GET``/``HEAD`` of ``/relpath`` serves ``folder/relpath`` (or a :meth:`FileServer.route` alias) with
  ``Content-Length``, ``ETag`` (``"<size hex>-<mtime_ns hex>"``: changes when the file is rewritten),
  ``Accept-Ranges: bytes``, ``Content-Type: application/octet-stream``, and ``Content-Disposition``
  when set for the relpath (the raw header value you give; control characters are sent as they are,
  CR/LF are not allowed by http.server).
- ``Range: bytes=a-b`` / ``a-`` / ``-n`` gives 206 with ``Content-Range``; a start past the end gives 416.
  ``If-Range`` that does not match the current ETag gives the full body with 200 (as real servers do).
- HTTP/1.1 keep-alive; missing files give 404.
- ``require_token(glob, token)``: requests to matching paths without ``Authorization: Bearer <token>``
  get 401.

Faults (:class:`Faults`, the ``.faults`` attribute; ``glob`` is an :mod:`fnmatch` pattern matched against
the URL path without the query, e.g. ``"*.safetensors"`` or ``"/api/download/*"``; ``times`` is how many
matching requests the fault applies to, ``None`` for all of them; each added fault returns a
:class:`Fault` whose ``.hits`` counts its uses):

- ``drop(glob, after_bytes, times=1)``: close the connection after ``after_bytes`` body bytes.
- ``stall(glob, seconds, after_bytes=0, times=1)``: stop sending for ``seconds`` after ``after_bytes``, then go on.
- ``throttle(glob, bytes_per_s, times=None)``: send the body at that rate.
- ``corrupt(glob, times=None)``: wrong bytes of the right size (every byte XOR 0x5A).
- ``ignore_range(glob, times=None)``: answer a Range request with 200 and the full body.
- ``status(glob, code, times=1, retry_after=None, headers=None, methods=("GET","HEAD"))``:
  answer with that status (401/403/404/429/500/503...), a small JSON body, ``Retry-After`` when given.
- ``html(glob, times=None)``: a 200 ``text/html`` login page instead of the file.
- ``redirect(glob, target, times=None, code=302)``: redirect; ``target`` is a full URL or a callable
  ``(path) -> url`` (e.g. another server's ``url_for``) - use it to test cross-host redirects.
- ``clear()``: remove all faults.

:class:`ServerStats` (``.stats``): ``served(path)`` body bytes sent for a path (all requests, all runs),
``requests`` (list of :class:`RequestRecord`), ``requests_for(glob)``, ``auth_headers(glob="*")``
(the ``Authorization`` values that reached this server), ``reset()``.

The fault machinery, stats and range handling here are shared with :mod:`tests.hubserver`.
"""

from __future__ import annotations

import fnmatch
import json
import os
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

LOGIN_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head>"
    b"<body><form action=\"/login\" method=\"post\"><h1>Sign in to download this model</h1>"
    b"<input name=\"username\"><input name=\"password\" type=\"password\"></form></body></html>\n"
)

_CHUNK = 1 << 20
_XOR_TABLE = bytes(b ^ 0x5A for b in range(256))


# --------------------------------------------------------------------------- faults


@dataclass
class Fault:
    """One fault rule; see the module docstring for the kinds."""

    glob: str
    kind: str
    times: int | None = 1
    after_bytes: int = 0
    seconds: float = 0.0
    rate: int = 0
    code: int = 0
    retry_after: int | float | None = None
    headers: dict[str, str] = field(default_factory=dict)
    target: str | Callable[[str], str] | None = None
    methods: tuple[str, ...] = ("GET",)
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return method in self.methods and fnmatch.fnmatchcase(path, self.glob) and (self.times is None or self.times > 0)


class Faults:
    """Per-server fault rules; thread-safe.  Rules are checked in the order they were added."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._rules.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def take(self, method: str, path: str, kinds: tuple[str, ...]) -> Fault | None:
        """The first live rule of one of ``kinds`` for this request, counted as used."""
        with self._lock:
            for rule in self._rules:
                if rule.kind in kinds and rule.matches(method, path):
                    rule.hits += 1
                    if rule.times is not None:
                        rule.times -= 1
                    return rule
        return None

    # convenience constructors ------------------------------------------------------
    def drop(self, glob: str, after_bytes: int, times: int | None = 1) -> Fault:
        return self.add(Fault(glob, "drop", times=times, after_bytes=after_bytes))

    def stall(self, glob: str, seconds: float, after_bytes: int = 0, times: int | None = 1) -> Fault:
        return self.add(Fault(glob, "stall", times=times, after_bytes=after_bytes, seconds=seconds))

    def throttle(self, glob: str, bytes_per_s: int, times: int | None = None) -> Fault:
        return self.add(Fault(glob, "throttle", times=times, rate=int(bytes_per_s)))

    def corrupt(self, glob: str, times: int | None = None) -> Fault:
        return self.add(Fault(glob, "corrupt", times=times))

    def ignore_range(self, glob: str, times: int | None = None) -> Fault:
        return self.add(Fault(glob, "ignore_range", times=times))

    def status(
        self,
        glob: str,
        code: int,
        times: int | None = 1,
        retry_after: int | float | None = None,
        headers: dict[str, str] | None = None,
        methods: tuple[str, ...] = ("GET", "HEAD"),
    ) -> Fault:
        return self.add(
            Fault(glob, "status", times=times, code=code, retry_after=retry_after, headers=dict(headers or {}), methods=methods)
        )

    def html(self, glob: str, times: int | None = None) -> Fault:
        return self.add(Fault(glob, "html", times=times, methods=("GET", "HEAD")))

    def redirect(self, glob: str, target: str | Callable[[str], str], times: int | None = None, code: int = 302) -> Fault:
        return self.add(Fault(glob, "redirect", times=times, target=target, code=code, methods=("GET", "HEAD")))


# --------------------------------------------------------------------------- stats


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it (headers as a plain dict, original case of names)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    client_port: int = 0  # the client's end of the TCP connection: requests on one connection share it

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


class ServerStats:
    """Bytes served per path and a log of requests; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._served: dict[str, int] = {}
        self.requests: list[RequestRecord] = []

    def record(self, rec: RequestRecord) -> None:
        with self._lock:
            self.requests.append(rec)

    def add_bytes(self, path: str, n: int) -> None:
        with self._lock:
            self._served[path] = self._served.get(path, 0) + n

    def served(self, path: str) -> int:
        """Body bytes sent for ``path`` (a glob is accepted too: the sum over matching paths)."""
        with self._lock:
            if path in self._served:
                return self._served[path]
            return sum(v for k, v in self._served.items() if fnmatch.fnmatchcase(k, path))

    def requests_for(self, glob: str = "*", method: str | None = None) -> list[RequestRecord]:
        with self._lock:
            return [r for r in self.requests if fnmatch.fnmatchcase(r.path, glob) and (method is None or r.method == method)]

    def auth_headers(self, glob: str = "*") -> list[str]:
        """Every ``Authorization`` value that reached this server for matching paths."""
        return [v for r in self.requests_for(glob) if (v := r.header("Authorization")) is not None]

    def reset(self) -> None:
        with self._lock:
            self._served.clear()
            self.requests.clear()


# --------------------------------------------------------------------------- base server


def parse_range(value: str | None, size: int) -> tuple[int, int] | None | str:
    """``(start, end_inclusive)`` for a single ``bytes=`` range, None when absent/unparsable, "416" when unsatisfiable."""
    if not value or not value.startswith("bytes=") or "," in value:
        return None
    spec = value[len("bytes=") :].strip()
    first, _, last = spec.partition("-")
    try:
        if first == "":
            n = int(last)
            if n <= 0:
                return "416"
            return (max(0, size - n), size - 1)
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size or end < start:
        return "416"
    return (start, min(end, size - 1))


class _QuietServer(ThreadingHTTPServer):
    """Clients that hang up mid-body (the point of many tests) are not errors worth printing."""

    def handle_error(self, request, client_address) -> None:
        import sys

        if isinstance(sys.exc_info()[1], (ConnectionError, BrokenPipeError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class LoopbackServer:
    """Base for the loopback servers: lifecycle, faults, stats, and file sending with faults."""

    handler_class: type[BaseHTTPRequestHandler]

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.faults = Faults()
        self.stats = ServerStats()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.stopping = threading.Event()
        #: set before start() to serve https (see tests/tlsproxy.py for a self-signed certificate)
        self.tls: "ssl.SSLContext | None" = None
        #: the host name put in URLs (default: the address listened on)
        self.url_host: str | None = None

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``http://127.0.0.1:43123`` (``https://`` with ``tls``)."""
        return f"{'https' if self.tls is not None else 'http'}://{self.url_host or self.host}:{self.port}"

    def start(self) -> "LoopbackServer":
        server = self

        class Handler(self.handler_class):  # type: ignore[misc, valid-type]
            owner = server

        httpd = _QuietServer((self.host, self.port), Handler)
        if self.tls is not None:  # the handshake happens in the handler's thread, on first read
            httpd.socket = self.tls.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
        httpd.daemon_threads = True
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class BaseHandler(BaseHTTPRequestHandler):
    """Request handler with fault-aware file sending.  ``owner`` is set to the server object."""

    protocol_version = "HTTP/1.1"
    owner: LoopbackServer

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - keep test output quiet
        pass

    # -- helpers ----------------------------------------------------------------------
    def _split(self) -> tuple[str, str]:
        parsed = urllib.parse.urlsplit(self.path)
        return urllib.parse.unquote(parsed.path), parsed.query

    def _record(self) -> tuple[str, str]:
        path, query = self._split()
        self.owner.stats.record(RequestRecord(self.command, path, query, {k: v for k, v in self.headers.items()}, self.client_address[1]))
        return path, query

    def send_simple(self, code: int, body: bytes = b"", ctype: str = "application/json", headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD" and body:
            try:
                self.wfile.write(body)
            except OSError:
                self.close_connection = True

    def send_json(self, code: int, obj, headers: dict[str, str] | None = None) -> None:
        self.send_simple(code, json.dumps(obj).encode(), "application/json", headers)

    def apply_early_faults(self, path: str, kinds: tuple[str, ...] = ("status", "html", "redirect")) -> bool:
        """Status / html / redirect faults; True when the request has been answered."""
        fault = self.owner.faults.take(self.command, path, kinds)
        if fault is None:
            return False
        self.answer_fault(fault, path)
        return True

    def answer_fault(self, fault: Fault, path: str) -> None:
        """Answer the request with a status/html/redirect fault."""
        if fault.kind == "status":
            headers = dict(fault.headers)
            if fault.retry_after is not None:
                headers["Retry-After"] = str(fault.retry_after)
            self.send_json(fault.code, {"error": f"injected {fault.code}"}, headers)
        elif fault.kind == "html":
            self.send_simple(200, LOGIN_PAGE, "text/html; charset=utf-8")
        else:
            target = fault.target(path) if callable(fault.target) else str(fault.target)
            self.send_simple(fault.code, b"", "text/plain", {"Location": target, **self.redirect_headers(path)})

    def redirect_headers(self, path: str) -> dict[str, str]:
        """Extra headers on an injected redirect (the hub adds its metadata here)."""
        return {}

    def send_file(self, path: str, file: Path, etag: str, headers: dict[str, str] | None = None) -> None:
        """Send ``file`` honouring Range/If-Range and the body faults for ``path``."""
        size = file.stat().st_size
        method = self.command
        rng = parse_range(self.headers.get("Range"), size)
        if_range = self.headers.get("If-Range")
        if rng is not None and if_range is not None and if_range != etag:
            rng = None  # resource changed: full body, 200
        if rng is not None and self.owner.faults.take(method, path, ("ignore_range",)) is not None:
            rng = None
        if rng == "416":
            self.send_simple(416, b"", "text/plain", {"Content-Range": f"bytes */{size}", "ETag": etag})
            return
        start, end = rng if isinstance(rng, tuple) else (0, size - 1)
        length = max(0, end - start + 1)
        self.send_response(206 if isinstance(rng, tuple) else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes")
        if isinstance(rng, tuple):
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if method == "HEAD" or length == 0:
            return
        drop = self.owner.faults.take(method, path, ("drop",))
        stall = self.owner.faults.take(method, path, ("stall",))
        throttle = self.owner.faults.take(method, path, ("throttle",))
        corrupt = self.owner.faults.take(method, path, ("corrupt",))
        try:
            with open(file, "rb") as fh:
                if not (drop or stall or throttle or corrupt):
                    # Fast path: sendfile, so the benchmark measures the client, not this server.
                    sent = 0
                    while sent < length:
                        n = self.connection.sendfile(fh, start + sent, length - sent)
                        if not n:
                            break
                        sent += n
                        self.owner.stats.add_bytes(path, n)
                    return
                self._send_slow(path, fh, start, length, drop, stall, throttle, corrupt)
        except (OSError, ValueError):
            self.close_connection = True

    def _send_slow(self, path, fh, start, length, drop, stall, throttle, corrupt) -> None:
        fh.seek(start)
        sent = 0
        limit = drop.after_bytes if drop else length
        chunk = _CHUNK
        if throttle:
            chunk = max(1024, min(_CHUNK, throttle.rate // 20))
        t0 = time.monotonic()
        stalled = False
        while sent < min(length, limit):
            if stall and not stalled and sent >= stall.after_bytes:
                stalled = True
                if self.owner.stopping.wait(stall.seconds):
                    break
            n = min(chunk, limit - sent, length - sent)
            if stall and not stalled:
                n = min(n, stall.after_bytes - sent) or n
            data = fh.read(n)
            if not data:
                break
            if corrupt:
                data = data.translate(_XOR_TABLE)
            self.wfile.write(data)
            sent += len(data)
            self.owner.stats.add_bytes(path, len(data))
            if throttle and throttle.rate > 0:
                ahead = sent / throttle.rate - (time.monotonic() - t0)
                if ahead > 0 and self.owner.stopping.wait(ahead):
                    break
        if drop or sent < length:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


# --------------------------------------------------------------------------- file server


class _FileHandler(BaseHandler):
    owner: "FileServer"

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path, _query = self._record()
        srv = self.owner
        if self.apply_early_faults(path):
            return
        for glob, token in srv.tokens:
            if fnmatch.fnmatchcase(path, glob) and self.headers.get("Authorization") != f"Bearer {token}":
                self.send_json(401, {"error": "token required"})
                return
        rel = srv.routes.get(path, path.lstrip("/"))
        file = srv.resolve(rel)
        if file is None:
            self.send_json(404, {"error": "not found"})
            return
        headers = dict(srv.extra_headers.get(rel, {}))
        if rel in srv.content_disposition:
            headers["Content-Disposition"] = srv.content_disposition[rel]
        st = file.stat()
        self.send_file(path, file, f'"{st.st_size:x}-{st.st_mtime_ns:x}"', headers)


class FileServer(LoopbackServer):
    """Static files from ``folder`` over loopback, with faults; see the module docstring."""

    handler_class = _FileHandler

    def __init__(self, folder: str | os.PathLike, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.folder = Path(folder).resolve()
        self.routes: dict[str, str] = {}
        self.content_disposition: dict[str, str] = {}
        #: more response headers by relpath (e.g. ``{"m.safetensors": {"Repr-Digest": "sha-256=:...:"}}``)
        self.extra_headers: dict[str, dict[str, str]] = {}
        self.tokens: list[tuple[str, str]] = []

    def url_for(self, relpath: str) -> str:
        """Full URL of a file (relpath inside the folder, or a routed path starting with ``/``)."""
        return f"{self.url}/{urllib.parse.quote(relpath.lstrip('/'))}"

    def route(self, url_path: str, relpath: str) -> str:
        """Serve ``folder/relpath`` at ``url_path`` too (e.g. ``/api/download/models/42``); returns its URL."""
        self.routes[url_path] = relpath
        return f"{self.url}{url_path}"

    def require_token(self, glob: str, token: str) -> None:
        """Answer 401 to matching paths unless ``Authorization: Bearer <token>`` is sent."""
        self.tokens.append((glob, token))

    def resolve(self, relpath: str) -> Path | None:
        file = (self.folder / relpath).resolve()
        if not file.is_relative_to(self.folder) or not file.is_file():
            return None
        return file
