"""Fixtures: stand-in hub and plain file servers over loopback (see tests/hubserver.py, tests/fileserver.py).

- ``hub_server``: a started :class:`tests.hubserver.HubServer` (function scope); ``HF_ENDPOINT`` is
  monkeypatched to its URL for the test.  Publish repos with ``hub_server.add_repo(repo_id, folder)``.
- ``file_server``: a started :class:`tests.fileserver.FileServer` over a fresh folder
  (``file_server.folder``, inside ``tmp_path``); put files there and use ``file_server.url_for(relpath)``.
- ``other_file_server``: a second file server on another host (127.0.0.2 when it binds, else another
  port on 127.0.0.1) - "a foreign host" for the token rules (host:port differs from both others).
- ``make_file_server(folder, host="127.0.0.1")``: a factory for more servers; all are stopped at teardown.
"""

from __future__ import annotations

import socket
from typing import Callable, Iterator

import pytest

from tests.fileserver import FileServer
from tests.hubserver import HubServer


def _other_loopback_host() -> str:
    """127.0.0.2 when this machine lets us bind it (Linux does), else 127.0.0.1."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.2", 0))
        return "127.0.0.2"
    except OSError:
        return "127.0.0.1"


@pytest.fixture
def hub_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """A stand-in hub on 127.0.0.1; HF_ENDPOINT points at it for the test."""
    hub = HubServer().start()
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    try:
        yield hub
    finally:
        hub.stop()


@pytest.fixture
def make_file_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., FileServer]]:
    """Factory: ``make_file_server(folder=None, host="127.0.0.1", tls=None) -> FileServer`` (started; stopped
    at teardown).  ``tls``: the ``tls_cert`` fixture's (cert, key) to serve https."""
    servers: list[FileServer] = []

    def make(folder=None, host: str = "127.0.0.1", tls=None) -> FileServer:
        if folder is None:
            folder = tmp_path_factory.mktemp("files")
        srv = FileServer(folder, host=host)
        if tls is not None:
            from tests.tlsproxy import server_context

            srv.tls = server_context(*tls)
        srv.start()
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.stop()


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory: pytest.TempPathFactory):
    """(cert.pem, key.pem): a self-signed certificate for localhost and 127.0.0.1-3 (trust it with SSL_CERT_FILE)."""
    from tests.tlsproxy import self_signed

    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def file_server(make_file_server) -> FileServer:
    """A plain file server on 127.0.0.1 over a fresh folder (``file_server.folder``)."""
    return make_file_server()


@pytest.fixture
def other_file_server(make_file_server) -> FileServer:
    """A second file server on another host (127.0.0.2 if possible): a foreign host for tokens."""
    return make_file_server(host=_other_loopback_host())
