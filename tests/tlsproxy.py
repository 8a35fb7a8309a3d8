"""https on loopback (a self-signed certificate made with openssl) and a stand-in HTTP proxy.

- :func:`self_signed` writes ``cert.pem``/``key.pem`` for ``localhost``, ``127.0.0.1``-``127.0.0.3`` and
  any extra names; point ``SSL_CERT_FILE`` (or ``REQUESTS_CA_BUNDLE``) at ``cert.pem`` to trust it;
  :func:`server_context` is the server side.
- :class:`StandInProxy`: ``CONNECT host:port`` tunnels (for https) and absolute-form requests
  (``GET http://host:port/path``, plain proxying for http).  ``resolve`` maps names to addresses, so a
  URL whose host only the proxy knows (``models.internal.test``) proves the request went through it.
  ``seen`` records ``(method, target)`` of every request it received; ``auth`` the Proxy-Authorization values.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from pathlib import Path

PROXY_ONLY_HOST = "models.internal.test"


def self_signed(folder: Path, names: tuple[str, ...] = (PROXY_ONLY_HOST,)) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "cert.pem", folder / "key.pem"
    if not cert.exists():
        san = ",".join(["DNS:localhost", "IP:127.0.0.1", "IP:127.0.0.2", "IP:127.0.0.3", *(f"DNS:{n}" for n in names)])
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                        "-days", "2", "-subj", "/CN=localhost", "-addext", f"subjectAltName={san}"],
                       check=True, capture_output=True)
    return cert, key


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def _pipe(a: socket.socket, b: socket.socket) -> None:
    try:
        while True:
            data = a.recv(1 << 16)
            if not data:
                break
            b.sendall(data)
    except OSError:
        pass
    finally:
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class StandInProxy:
    """A small forward proxy on 127.0.0.1 (see the module docstring)."""

    def __init__(self, resolve: dict[str, str] | None = None) -> None:
        self.resolve = dict(resolve or {})
        self.seen: list[tuple[str, str]] = []
        self.auth: list[str | None] = []
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> "StandInProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop = True
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _upstream(self, hostport: str) -> socket.socket:
        host, _, port = hostport.rpartition(":")
        return socket.create_connection((self.resolve.get(host, host), int(port)), timeout=30)

    def _handle(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(1 << 16)
            if not chunk:
                client.close()
                return
            head += chunk
        head, _, rest = head.partition(b"\r\n\r\n")
        lines = head.decode("latin1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        headers = [line for line in lines[1:] if line]
        self.seen.append((method, target))
        self.auth.append(next((h.split(":", 1)[1].strip() for h in headers if h.lower().startswith("proxy-authorization:")), None))
        try:
            if method == "CONNECT":
                upstream = self._upstream(target)
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                if rest:
                    upstream.sendall(rest)
            else:  # plain proxying, one request per connection (we answer "Connection: close")
                from urllib.parse import urlsplit

                parts = urlsplit(target)
                upstream = self._upstream(f"{parts.hostname}:{parts.port or 80}")
                origin_form = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
                kept = [h for h in headers if not h.lower().startswith(("proxy-", "connection:"))]
                request = f"{method} {origin_form} {version}\r\n" + "".join(h + "\r\n" for h in kept) + "Connection: close\r\n\r\n"
                upstream.sendall(request.encode("latin1") + rest)
                reply = b""
                while b"\r\n\r\n" not in reply:
                    chunk = upstream.recv(1 << 16)
                    if not chunk:
                        break
                    reply += chunk
                head, _, body = reply.partition(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                kept_reply = [h for h in lines[1:] if not h.lower().startswith(b"connection:")]
                client.sendall(b"\r\n".join([lines[0], b"Connection: close", *kept_reply]) + b"\r\n\r\n" + body)
                _pipe(upstream, client)
                client.close()
                upstream.close()
                return
        except OSError:
            client.close()
            return
        threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()
        _pipe(client, upstream)
