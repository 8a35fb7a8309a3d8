"""HTTP answers -> our errors (the one place that maps them)."""

from __future__ import annotations

import pytest

from invokeai_model_install.net import http_errors
from invokeai_model_install.errors import AuthError, DownloadError, NotAModelError, NotFoundError, OfflineError

URL = "https://example.com/m.safetensors?token=secret1"


@pytest.mark.parametrize(
    "status, headers, cls, words",
    [
        (404, {}, NotFoundError, "not found"),
        (410, {}, NotFoundError, "not found"),
        (401, {}, AuthError, "access denied"),
        (403, {}, AuthError, "access denied"),
        (401, {"X-Error-Code": "GatedRepo"}, AuthError, "gated"),
        (404, {"X-Error-Code": "RepoNotFound"}, NotFoundError, "repository not found"),
        (404, {"X-Error-Code": "RevisionNotFound"}, NotFoundError, "revision"),
        (429, {}, DownloadError, "too many requests"),
        (503, {}, DownloadError, "server error"),
        (418, {}, DownloadError, "unexpected"),
    ],
)
def test_error_for_status(status, headers, cls, words):
    err = http_errors.error_for_status(status, URL, headers=headers)
    assert type(err) is cls and words in str(err) and err.hint
    assert "secret1" not in err.one_line()


def test_gated_names_the_license_page_and_token_hints():
    err = http_errors.error_for_status(403, "http://hub.local:1/o/n/resolve/abc/unet/x.safetensors", headers={"X-Error-Code": "GatedRepo"}, hub_endpoint="http://hub.local:1")
    assert "http://hub.local:1/o/n" in str(err) and "HF_TOKEN" in err.hint
    assert "CIVITAI_API_TOKEN" in http_errors.error_for_status(401, "https://civitai.com/api/download/models/1").hint
    for host in ("civitai.green", "civitai.red", "www.civitai.red"):
        hint = http_errors.error_for_status(401, f"https://{host}/api/download/models/1").hint
        assert "CIVITAI_API_TOKEN" in hint and host in hint
    assert "CIVITAI_API_TOKEN" not in http_errors.error_for_status(401, "https://evilcivitai.com/x").hint
    assert "huggingface-cli login" in http_errors.error_for_status(401, "https://huggingface.co/o/n/resolve/main/x").hint


def test_retry_rules():
    assert all(http_errors.is_retryable(c) for c in (429, 500, 502, 503, 504))
    assert not any(http_errors.is_retryable(c) for c in (400, 401, 403, 404, 416))
    assert http_errors.retry_after({"Retry-After": "7"}, 1.0) == 7.0
    assert http_errors.retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 1.0) == 0.0
    assert http_errors.retry_after({"Retry-After": "soon"}, 2.5) == 2.5
    assert http_errors.retry_after(None, 3.0) == 3.0


def test_sniff_not_a_model():
    page = b"<!DOCTYPE html>\n<html><body>Sign in</body></html>"
    err = http_errors.sniff_not_a_model(page, "text/html; charset=utf-8", URL)
    assert isinstance(err, NotAModelError) and "HTML" in str(err) and "secret1" not in str(err)
    assert isinstance(http_errors.sniff_not_a_model(b'{"error": "Unauthorized"}', "application/json", URL), NotAModelError)
    assert isinstance(http_errors.sniff_not_a_model(b"   <html>", "application/octet-stream", URL), NotAModelError)
    assert isinstance(http_errors.sniff_not_a_model(b"", "text/html", URL), NotAModelError)
    # weights are never mistaken for pages, even when their first byte is '{' or '<'
    st_header = (123).to_bytes(8, "little") + b'{"__metadata__":{}}'
    assert http_errors.sniff_not_a_model(st_header, "application/octet-stream", URL) is None
    assert http_errors.sniff_not_a_model((60).to_bytes(8, "little") + b"{}", None, URL) is None
    assert http_errors.sniff_not_a_model(b"PK\x03\x04" + bytes(100), None, URL) is None
    assert http_errors.sniff_not_a_model(b"\x80\x02}q\x00", None, URL) is None
    # a JSON config where JSON is expected is fine
    assert http_errors.sniff_not_a_model(b"{}", "application/json", URL, relpath="unet/config.json") is None
    assert isinstance(http_errors.sniff_not_a_model(b"{}", "application/json", URL, relpath="unet/x.safetensors"), NotAModelError)


def test_from_hf_exception(hub_server, tmp_path):
    from huggingface_hub import HfApi
    from huggingface_hub.errors import OfflineModeIsEnabled

    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "x.safetensors").write_bytes(b"x")
    hub_server.add_repo("o/private", tmp_path / "r", private=True)
    api = HfApi(endpoint=hub_server.url, token=False)
    for repo, rev, cls in [("o/missing", None, NotFoundError), ("o/private", None, NotFoundError)]:
        try:
            api.model_info(repo, revision=rev)
        except Exception as exc:  # noqa: BLE001
            err = http_errors.from_hf_exception(exc, repo_id=repo, endpoint=hub_server.url)
            assert type(err) is cls and repo in str(err)
        else:
            pytest.fail("no error")
    err = http_errors.from_hf_exception(OfflineModeIsEnabled("off"), repo_id="o/n", endpoint=hub_server.url)
    assert isinstance(err, OfflineError)
    err = http_errors.from_hf_exception(ConnectionRefusedError("refused"), repo_id="o/n", endpoint="http://127.0.0.1:9")
    assert type(err) is DownloadError and "127.0.0.1:9" in str(err)
