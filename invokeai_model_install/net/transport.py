"""HTTP plumbing shared by the engine and the URL resolver: keep-alive connections, redirects, retries.

Redirects are followed here, not by ``http.client``, so tokens stay on their host
(:func:`tokens.headers_after_redirect`); non-2xx answers become our errors through :mod:`http_errors`.
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import threading
import time
import urllib.parse

from invokeai_model_install.errors import DownloadError, OfflineError
from invokeai_model_install.net import http_errors, tokens
from invokeai_model_install.net.settings import DownloadSettings
from invokeai_model_install.net.sources import redact_url

USER_AGENT = "invokeai-model-install"

_TLS_LOCK = threading.Lock()
_TLS: dict[tuple[str | None, str | None, str | None], ssl.SSLContext] = {}


def tls_context(ca_bundle: str | None = None) -> ssl.SSLContext:
    """A verifying TLS context, built once per CA setting: ``ca_bundle`` (REQUESTS_CA_BUNDLE,
    CURL_CA_BUNDLE or SSL_CERT_FILE, see :class:`DownloadSettings`) when given, else the system's CAs
    (OpenSSL reads ``SSL_CERT_FILE``/``SSL_CERT_DIR`` itself).

    Loading the system CA bundle takes milliseconds of CPU; every connection used to pay for it.
    """
    key = (ca_bundle, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    with _TLS_LOCK:
        ctx = _TLS.get(key)
        if ctx is None:
            try:
                ctx = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else ssl.create_default_context()
            except (OSError, ssl.SSLError) as exc:
                raise DownloadError(f"cannot read the CA bundle {ca_bundle} ({exc})",
                                    "check REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE / SSL_CERT_FILE") from None
            _TLS[key] = ctx
        return ctx


class Conns:
    """Keep-alive connections per thread, keyed by origin; registry of live sockets for cancel."""

    def __init__(self, settings: DownloadSettings) -> None:
        self.settings = settings
        self.local = threading.local()
        self.lock = threading.Lock()
        self.live: set[http.client.HTTPConnection] = set()
        self.closed = False

    def tls(self) -> ssl.SSLContext:
        """The TLS context for this pool's connections: the system's CAs, or the settings' CA bundle."""
        return tls_context(getattr(self.settings, "ca_bundle", None))

    def _pool(self) -> dict[tuple[str, str, int], http.client.HTTPConnection]:
        """This thread's connections by origin."""
        return self.local.__dict__.setdefault("pool", {})

    def get(self, url: str) -> http.client.HTTPConnection:
        scheme, host, port = tokens.origin(url)
        pool = self._pool()
        key = (scheme, host, port)
        conn = pool.get(key)
        if conn is None:
            if scheme not in ("http", "https"):
                raise DownloadError(f"{redact_url(url)}: only http and https URLs can be downloaded")
            timeout = self.settings.connect_timeout
            proxy = proxy_for(url, self.settings)
            if proxy is None:
                if scheme == "https":
                    conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=self.tls())
                else:
                    conn = http.client.HTTPConnection(host, port, timeout=timeout)
            else:
                p_host, p_port, p_auth = proxy
                extra = {"Proxy-Authorization": p_auth} if p_auth else {}
                if scheme == "https":  # a CONNECT tunnel, then TLS to the origin through it
                    conn = http.client.HTTPSConnection(p_host, p_port, timeout=timeout, context=self.tls())
                    conn.set_tunnel(host, port, headers=extra)
                else:  # plain proxying: absolute-form request targets
                    conn = http.client.HTTPConnection(p_host, p_port, timeout=timeout)
                    conn.proxy_headers = extra  # type: ignore[attr-defined]
            pool[key] = conn
            with self.lock:
                self.live.add(conn)
        return conn

    def socket_of(self, url: str) -> socket.socket | None:
        """The socket of this thread's connection to ``url``'s origin (None when not connected)."""
        conn = self._pool().get(tokens.origin(url))
        return None if conn is None else conn.sock

    def connect(self, conn: http.client.HTTPConnection) -> None:
        if conn.sock is None:
            conn.connect()
            conn.sock.settimeout(self.settings.read_timeout)
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)

    def drop(self, url: str) -> None:
        conn = self._pool().pop(tokens.origin(url), None)
        if conn is not None:
            conn.close()
            with self.lock:
                self.live.discard(conn)

    def close_thread(self) -> None:
        for conn in self._pool().values():
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


def proxy_for(url: str, settings: DownloadSettings) -> tuple[str, int, str | None] | None:
    """``(host, port, Proxy-Authorization value)`` of the proxy for ``url``, or None to connect directly.

    The same rules as huggingface_hub's metadata calls and curl: ``<scheme>_proxy`` (or ``all_proxy``),
    unless the host is in ``no_proxy`` (names, ``.domain`` suffixes, ``host:port``, ``*``).
    """
    scheme, host, port = tokens.origin(url)
    proxy = dict(settings.proxies).get(scheme)
    if not proxy:
        return None
    if settings.no_proxy:
        from urllib.request import proxy_bypass_environment

        no = {"no": settings.no_proxy}
        if settings.no_proxy.strip() == "*" or proxy_bypass_environment(f"{host}:{port}", no) or proxy_bypass_environment(host, no):
            return None
    parts = urllib.parse.urlsplit(proxy)
    if parts.scheme.lower() not in ("http", ""):
        raise DownloadError(f"proxy {redact_url(proxy)}: only http:// proxies are supported",
                            "set HTTPS_PROXY/HTTP_PROXY to an http://host:port proxy")
    auth = None
    if parts.username:
        import base64

        pair = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        auth = "Basic " + base64.b64encode(pair.encode()).decode()
    return (parts.hostname or ""), (parts.port or 80), auth


class Retry(Exception):
    """A transient failure: try again after ``delay`` (None: computed backoff)."""

    def __init__(self, reason: str, delay: float | None = None, hint: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay
        self.hint = hint  # what to do when the retries run out (None: the generic network hint)



def open_request(
    conns: Conns,
    url: str,
    settings: DownloadSettings,
    headers: dict[str, str],
    *,
    method: str = "GET",
    what: str = "",
) -> tuple[http.client.HTTPResponse, str]:
    """Send a request, following redirects ourselves (tokens stay on their host); -> (response, final url).

    Raises :class:`Retry` for transient failures and our errors for final ones.
    """
    current = url
    hdrs = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **tokens.auth_headers(url, settings), **headers}
    for _hop in range(10):
        conn = conns.get(current)
        parts = urllib.parse.urlsplit(current)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        send = hdrs
        via = getattr(conn, "proxy_headers", None)
        if via is not None:  # plain http through a proxy: absolute-form target, proxy credentials
            target = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path or "/", parts.query, ""))
            send = {**hdrs, **via}
        try:
            conns.connect(conn)
            conn.request(method, target, headers=send)
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conns.drop(current)
            reason, hint = http_errors.describe_network_error(exc, current)
            raise Retry(reason, hint=hint) from exc
        if resp.status in (301, 302, 303, 307, 308):
            location = resp.getheader("Location")
            discard_body(conns, current, resp)
            if not location:
                raise DownloadError(f"{what or redact_url(url)}: redirect without a Location from {redact_url(current)}")
            new = urllib.parse.urljoin(current, location)
            hdrs = tokens.headers_after_redirect(current, new, hdrs, settings)
            current = new
            continue
        return resp, current
    raise DownloadError(f"{what or redact_url(url)}: too many redirects")


def discard_body(conns: Conns, url: str, resp: http.client.HTTPResponse, limit: int = 64 << 10) -> None:
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


def fail_status(conns: Conns, resp: http.client.HTTPResponse, url: str, settings: DownloadSettings, what: str, attempt_delay: float) -> None:
    """Raise the right thing for a non-2xx answer."""
    headers = dict(resp.getheaders())
    discard_body(conns, url, resp)
    if http_errors.is_retryable(resp.status):
        # Retry-After is respected, up to 5 minutes (a cancel interrupts the wait anyway)
        delay = min(300.0, http_errors.retry_after(headers, attempt_delay)) if resp.status in (429, 503) else None
        raise Retry(f"HTTP {resp.status}", delay)
    raise http_errors.error_for_status(resp.status, url, headers=headers, what=what, hub_endpoint=settings.hf_endpoint)


def fetch_small(url: str, settings: DownloadSettings, *, limit: int = 4 << 20, what: str = "") -> bytes:
    """GET a small document (e.g. ``model_index.json``) with retries; tokens follow the same rules."""
    if settings.offline:
        raise OfflineError(f"{what or redact_url(url)}: offline mode is on (HF_HUB_OFFLINE)")
    conns = Conns(settings)
    try:
        for attempt in range(settings.retries + 1):
            try:
                resp, final = open_request(conns, url, settings, {}, what=what)
                if resp.status != 200:
                    fail_status(conns, resp, final, settings, what, backoff(settings, attempt))
                body = resp.read(limit + 1)
                if len(body) > limit:
                    raise DownloadError(f"{what or redact_url(url)}: larger than {limit} bytes")
                return body
            except Retry as r:
                if attempt >= settings.retries:
                    raise DownloadError(f"{what or redact_url(url)}: {r.reason}, after {attempt + 1} tries", r.hint) from None
                time.sleep(r.delay if r.delay is not None else backoff(settings, attempt))
            except (OSError, http.client.HTTPException) as exc:
                if attempt >= settings.retries:
                    raise http_errors.from_network_error(exc, url, what) from None
                time.sleep(backoff(settings, attempt))
        raise DownloadError(f"{what or redact_url(url)}: failed")  # pragma: no cover
    finally:
        conns.close_thread()


def backoff(settings: DownloadSettings, attempt: int) -> float:
    return min(settings.backoff_max, settings.backoff * (2 ** attempt))
