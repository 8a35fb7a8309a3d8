"""Network security (issue 11): tokens only over https (14), one redaction (15), proxies (19).

https is served on loopback with a self-signed certificate (openssl) trusted through SSL_CERT_FILE /
REQUESTS_CA_BUNDLE; the proxy is a stand-in on loopback (tests/tlsproxy.py).
"""

from __future__ import annotations

import hashlib
import json

import pytest

from invokeai_model_install.net import engine, tokens, transport, urls
from invokeai_model_install.net.settings import DownloadSettings
from invokeai_model_install.net.sources import UrlSource
from invokeai_model_install.redact import is_secret_param, redact_text, redact_url, strip_secrets
from tests.fileserver import FileServer
from tests.tlsproxy import PROXY_ONLY_HOST, StandInProxy, self_signed, server_context

MB = 1 << 20


@pytest.fixture
def cert(tls_cert):
    return tls_cert


def _serve(folder, cert=None, host="127.0.0.1", url_host=None) -> FileServer:
    srv = FileServer(folder, host=host)
    if cert is not None:
        srv.tls = server_context(*cert)
    srv.url_host = url_host
    return srv.start()


def _put(srv, name: str, size: int = 300_000) -> tuple[bytes, str]:
    data = hashlib.sha256(name.encode()).digest() * (size // 32)
    (srv.folder / name).write_bytes(data)
    return data, hashlib.sha256(data).hexdigest()


def _settings(**kw) -> DownloadSettings:
    base = dict(hf_endpoint="https://huggingface.co", backoff=0.01, retries=2, read_timeout=10, split_size=1 * MB,
                max_connections=4)
    base.update(kw)
    return DownloadSettings(**base)


def _fetch(url: str, s: DownloadSettings, tmp_path, sha: str | None = None):
    resolved = urls.resolve_url(UrlSource(url, sha256=sha), s)
    return engine.download(resolved, tmp_path / "d", partial_dir=tmp_path / "p", settings=s, on_event=lambda e: None)


# --- 14: URL tokens only over https -------------------------------------------------------------


def test_url_tokens_need_https_but_the_users_hf_endpoint_is_exempt():
    s = DownloadSettings(hf_endpoint="http://mirror.local:8080", hf_token="hf_secret1",
                         url_tokens=(("civitai.com", "civ_secret"), ("127.0.0.2:9000", "local_secret")))
    assert tokens.token_for("http://civitai.com/api/download/models/1", s) is None
    assert tokens.token_for("https://civitai.com/api/download/models/1", s) == "civ_secret"
    assert tokens.token_for("http://127.0.0.2:9000/x", s) is None
    assert tokens.token_for("https://127.0.0.2:9000/x", s) == "local_secret"
    # the user chose an http mirror: its token goes there (as huggingface_hub does) ...
    assert tokens.token_for("http://mirror.local:8080/o/n/resolve/main/x", s) == "hf_secret1"
    # ... but the default hub gets it only over https
    default = DownloadSettings(hf_token="hf_t")
    assert tokens.token_for("http://huggingface.co/o/n/resolve/main/x", default) is None
    assert tokens.token_for("https://huggingface.co/o/n/resolve/main/x", default) == "hf_t"


def test_token_reaches_an_https_server_and_never_the_same_host_over_http(tmp_path, cert, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(cert[0]))
    (tmp_path / "tls").mkdir()
    (tmp_path / "plain").mkdir()
    secure = _serve(tmp_path / "tls", cert, url_host="localhost")
    plain = _serve(tmp_path / "plain", url_host="localhost")
    try:
        data, sha = _put(secure, "m.safetensors")
        _put(plain, "m.safetensors")
        s = _settings(url_tokens=(("localhost", "tok_very_secret"),))
        res = _fetch(secure.url_for("m.safetensors"), s, tmp_path / "a", sha)
        assert res.paths["m.safetensors"].read_bytes() == data
        assert set(secure.stats.auth_headers()) == {"Bearer tok_very_secret"}
        _fetch(plain.url_for("m.safetensors"), s, tmp_path / "b", sha)
        assert plain.stats.requests and plain.stats.auth_headers() == []
    finally:
        secure.stop()
        plain.stop()


def test_requests_ca_bundle_is_honoured_and_an_untrusted_certificate_fails(tmp_path, cert, monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    (tmp_path / "tls").mkdir()
    secure = _serve(tmp_path / "tls", cert)
    try:
        data, sha = _put(secure, "m.safetensors")
        s = DownloadSettings.from_env({"REQUESTS_CA_BUNDLE": str(cert[0])}, backoff=0.01, retries=1)
        assert s.ca_bundle == str(cert[0])
        assert _fetch(secure.url_for("m.safetensors"), s, tmp_path / "a", sha).paths["m.safetensors"].read_bytes() == data
        with pytest.raises(Exception) as err:  # the system's CAs do not know a self-signed certificate
            _fetch(secure.url_for("m.safetensors"), _settings(retries=0), tmp_path / "b", sha)
        assert "certificate" in str(err.value).lower() or "ssl" in str(err.value).lower()
    finally:
        secure.stop()


# --- 15: one redaction --------------------------------------------------------------------------

SECRETS = ["token", "api_key", "apikey", "key", "sig", "signature", "Signature", "X-Amz-Signature", "X-Amz-Credential",
           "X-Amz-Security-Token", "access_token", "auth", "Authorization", "X-Goog-Signature", "password", "client_secret"]


@pytest.mark.parametrize("param", SECRETS)
def test_every_credential_parameter_is_redacted_and_not_part_of_the_identity(param):
    url = f"https://cdn.example/m.safetensors?version=2&{param}=S3CR3TVALUE"
    assert is_secret_param(param)
    assert "S3CR3TVALUE" not in redact_url(url) and "version=2" in redact_url(url)
    assert "S3CR3TVALUE" not in strip_secrets(url) and param not in strip_secrets(url)
    assert "S3CR3TVALUE" not in redact_text(f"error: {url!r} failed (HTTP 403 from {url})")
    from invokeai_model_install.install.identity import source_key

    assert "S3CR3TVALUE" not in source_key(UrlSource(url))
    assert source_key(UrlSource(url)) == source_key(UrlSource(url.replace("S3CR3TVALUE", "rotated")))


def test_harmless_parameters_stay():
    for name in ("version", "type", "format", "size", "download"):
        assert not is_secret_param(name)
    assert redact_url("https://user:pw123456@host/x") == "https://user:***@host/x"


def test_unparseable_line_and_skipped_items_never_show_the_token(tmp_path):
    from invokeai_model_install.app.configure import create_layout
    from invokeai_model_install.install.plan import InstallPlan
    from invokeai_model_install.install.dry_run import resolve_plan
    from invokeai_model_install.install.run import run_plan
    from invokeai_model_install.root.layout import RootLayout

    layout = RootLayout(tmp_path / "root")
    create_layout(layout)
    bad = "https://civitai.com/api/download/models/1.zip?token=S3CR3TVALUE&type=Model"
    ftp = "ftp://example.com/m.ckpt?api_key=S3CR3TVALUE"
    events = []
    result = run_plan(InstallPlan(imports=(bad, ftp)), layout, settings=_settings(offline=True), on_event=events.append)
    text = repr(result) + repr(events) + json.dumps([o.__dict__ for o in result.outcomes])
    assert "S3CR3TVALUE" not in text
    planned = resolve_plan(InstallPlan(imports=(bad,)), layout, _settings(offline=True))
    assert "S3CR3TVALUE" not in repr(planned)


# --- 19: proxies ----------------------------------------------------------------------------------


def test_proxy_settings_from_env():
    s = DownloadSettings.from_env({"https_proxy": "http://u:p@proxy:3128", "HTTP_PROXY": "proxy2:8080", "NO_PROXY": "local,.corp"})
    assert dict(s.proxies) == {"https": "http://u:p@proxy:3128", "http": "http://proxy2:8080"}
    assert transport.proxy_for("https://huggingface.co/x", s)[:2] == ("proxy", 3128)
    assert transport.proxy_for("https://huggingface.co/x", s)[2].startswith("Basic ")
    assert transport.proxy_for("http://a.corp/x", s) is None and transport.proxy_for("http://local/x", s) is None
    assert transport.proxy_for("http://example.com/x", s)[:2] == ("proxy2", 8080)
    assert "u:p" not in repr(s)


def test_http_download_through_a_plain_proxy(tmp_path):
    (tmp_path / "srv").mkdir()
    srv = _serve(tmp_path / "srv", url_host=PROXY_ONLY_HOST)  # a name only the proxy can resolve
    try:
        data, sha = _put(srv, "m.safetensors", 3 * MB)
        with StandInProxy({PROXY_ONLY_HOST: "127.0.0.1"}) as proxy:
            s = DownloadSettings.from_env({"HTTP_PROXY": proxy.url}, backoff=0.01, retries=2, split_size=1 * MB,
                                          max_connections=3)
            res = _fetch(srv.url_for("m.safetensors"), s, tmp_path, sha)
            assert res.paths["m.safetensors"].read_bytes() == data
            assert proxy.seen and all(t.startswith(f"http://{PROXY_ONLY_HOST}:") for _m, t in proxy.seen)
    finally:
        srv.stop()


def test_https_download_through_a_connect_proxy_and_no_proxy_bypass(tmp_path, cert, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(cert[0]))
    (tmp_path / "srv").mkdir()
    srv = _serve(tmp_path / "srv", cert, url_host=PROXY_ONLY_HOST)
    try:
        data, sha = _put(srv, "m.safetensors", 3 * MB)
        with StandInProxy({PROXY_ONLY_HOST: "127.0.0.1"}) as proxy:
            env = {"HTTPS_PROXY": proxy.url.replace("http://", "http://user:pw@"), "SSL_CERT_FILE": str(cert[0])}
            s = DownloadSettings.from_env(env, backoff=0.01, retries=2, split_size=1 * MB, max_connections=3)
            res = _fetch(srv.url_for("m.safetensors"), s, tmp_path / "a", sha)
            assert res.paths["m.safetensors"].read_bytes() == data
            assert proxy.seen and {m for m, _t in proxy.seen} == {"CONNECT"}
            assert all(t == f"{PROXY_ONLY_HOST}:{srv.port}" for _m, t in proxy.seen)
            assert all(a and a.startswith("Basic ") for a in proxy.auth)
            # NO_PROXY: straight to the server (localhost resolves without the proxy)
            before = len(proxy.seen)
            direct = DownloadSettings.from_env({**env, "NO_PROXY": "localhost"}, backoff=0.01, retries=2)
            url = srv.url_for("m.safetensors").replace(PROXY_ONLY_HOST, "localhost")
            assert _fetch(url, direct, tmp_path / "b", sha).paths["m.safetensors"].read_bytes() == data
            assert len(proxy.seen) == before
    finally:
        srv.stop()


# --- 20: a reference hash from the server's digest header or civitai's API ------------------------


def _b64(hexdigest: str) -> str:
    import base64

    return base64.b64encode(bytes.fromhex(hexdigest)).decode()


def test_digest_headers_parsed():
    from invokeai_model_install.net.digests import sha256_from_headers

    h = "ab" * 32
    assert sha256_from_headers({"repr-digest": f"sha-512=:{'A' * 88}:, sha-256=:{_b64(h)}:"}, 206) == h
    assert sha256_from_headers({"content-digest": f"sha-256=:{_b64(h)}:"}, 200) == h
    assert sha256_from_headers({"content-digest": f"sha-256=:{_b64(h)}:"}, 206) is None  # digest of a range
    assert sha256_from_headers({"content-digest": f"sha-256=:{_b64(h)}:", "content-encoding": "gzip"}, 200) is None
    assert sha256_from_headers({"digest": f"SHA-256={_b64(h)}"}, 206) == h
    assert sha256_from_headers({"repr-digest": "sha-256=:bm90IGEgZGlnZXN0:"}, 200) is None


def test_repr_digest_verifies_a_plain_url(file_server, tmp_path):
    data, sha = _put(file_server, "m.safetensors", 2 * MB)
    file_server.extra_headers["m.safetensors"] = {"Repr-Digest": f"sha-256=:{_b64(sha)}:"}
    s = _settings(hf_endpoint="http://127.0.0.1:9")
    resolved = urls.resolve_url(UrlSource(file_server.url_for("m.safetensors")), s)
    assert resolved.files[0].sha256 == sha
    assert _fetch(file_server.url_for("m.safetensors"), s, tmp_path / "a").sha256["m.safetensors"] == sha
    file_server.faults.corrupt("/m.safetensors")  # the right size, other bytes: only a hash can tell
    from invokeai_model_install.errors import IntegrityError

    with pytest.raises(IntegrityError, match="m.safetensors"):
        _fetch(file_server.url_for("m.safetensors"), s, tmp_path / "b")


def test_civitai_published_sha256_verifies_the_download(tmp_path):
    (tmp_path / "srv").mkdir()
    srv = _serve(tmp_path / "srv", url_host="civitai.com")  # civitai.com only through the stand-in proxy
    try:
        data, sha = _put(srv, "dreamy.safetensors", 2 * MB)
        url = srv.route("/api/download/models/4242", "dreamy.safetensors")
        srv.content_disposition["dreamy.safetensors"] = 'attachment; filename="dreamy.safetensors"'
        api = {"id": 4242, "files": [
            {"name": "dreamy-vae.pt", "type": "VAE", "hashes": {"SHA256": "00" * 32}},
            {"name": "dreamy.safetensors", "type": "Model", "primary": True, "hashes": {"SHA256": sha.upper(), "AutoV2": "x"}},
        ]}
        (srv.folder / "version.json").write_text(json.dumps(api))
        srv.route("/api/v1/model-versions/4242", "version.json")
        with StandInProxy({"civitai.com": "127.0.0.1"}) as proxy:
            s = DownloadSettings.from_env({"HTTP_PROXY": proxy.url}, backoff=0.01, retries=1, split_size=1 * MB)
            resolved = urls.resolve_url(UrlSource(url), s)
            assert resolved.files[0].sha256 == sha and resolved.files[0].relpath == "dreamy.safetensors"
            srv.faults.corrupt("/api/download/models/4242")
            from invokeai_model_install.errors import IntegrityError

            with pytest.raises(IntegrityError):
                _fetch(url, s, tmp_path / "c")
            # an API that does not answer: no reference hash, the download goes on (size checked)
            srv.faults.clear()
            srv.faults.status("/api/v1/model-versions/*", 500, times=None)
            assert urls.resolve_url(UrlSource(url), s).files[0].sha256 is None
    finally:
        srv.stop()
