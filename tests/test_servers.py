"""Sanity tests of the loopback test servers themselves (tests/hubserver.py, tests/fileserver.py)."""

from __future__ import annotations

import hashlib
import http.client
import json
import urllib.error
import urllib.request

import pytest


def _get(url: str, headers: dict | None = None, method: str = "GET"):
    req = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def _repo(tmp_path):
    folder = tmp_path / "repo"
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]}))
    (folder / "unet" / "config.json").write_text("{}")
    (folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(bytes(range(256)) * 40)
    return folder


def test_file_server_range_etag_and_faults(file_server):
    data = bytes(range(256)) * 100
    (file_server.folder / "m.ckpt").write_bytes(data)
    url = file_server.url_for("m.ckpt")
    code, headers, body = _get(url)
    assert code == 200 and body == data and headers["ETag"]
    code, headers, body = _get(url, {"Range": "bytes=100-199"})
    assert code == 206 and body == data[100:200] and headers["Content-Range"] == f"bytes 100-199/{len(data)}"
    assert _get(url, {"Range": f"bytes={len(data)}-"})[0] == 416
    code, _, body = _get(url, {"Range": "bytes=10-", "If-Range": '"other"'})
    assert code == 200 and body == data
    file_server.faults.corrupt("/m.ckpt", times=1)
    code, _, body = _get(url)
    assert len(body) == len(data) and body != data
    assert _get(url)[2] == data
    file_server.faults.ignore_range("*", times=1)
    assert _get(url, {"Range": "bytes=5-9"})[0] == 200
    file_server.faults.status("*", 429, times=1, retry_after=3)
    code, headers, _ = _get(url)
    assert code == 429 and headers["Retry-After"] == "3"
    file_server.faults.html("*", times=1)
    code, headers, body = _get(url)
    assert code == 200 and headers["Content-Type"].startswith("text/html") and body.startswith(b"<!DOCTYPE html>")
    file_server.faults.drop("*", after_bytes=1000, times=1)
    conn = http.client.HTTPConnection(file_server.host, file_server.port, timeout=10)
    conn.request("GET", "/m.ckpt")
    resp = conn.getresponse()
    with pytest.raises(http.client.IncompleteRead):
        resp.read()
    assert file_server.stats.served("/m.ckpt") > 0
    assert [r.method for r in file_server.stats.requests_for("/m.ckpt")].count("GET") >= 8


def test_file_server_disposition_route_and_tokens(file_server, other_file_server):
    (file_server.folder / "a.safetensors").write_bytes(b"x" * 10)
    url = file_server.route("/api/download/models/42", "a.safetensors")
    file_server.content_disposition["a.safetensors"] = 'attachment; filename="../../evil.ckpt"'
    file_server.require_token("/api/*", "civ")
    assert _get(url)[0] == 401
    code, headers, body = _get(url, {"Authorization": "Bearer civ"})
    assert code == 200 and body == b"x" * 10 and "evil.ckpt" in headers["Content-Disposition"]
    assert (other_file_server.host, other_file_server.port) != (file_server.host, file_server.port)
    file_server.faults.redirect("/a.safetensors", lambda p: other_file_server.url_for("b.bin"))
    code, headers, _ = _get(file_server.url_for("a.safetensors"), method="HEAD")
    assert code == 404  # urllib followed the redirect to the other host, which has no b.bin
    assert other_file_server.stats.requests_for("/b.bin")


def test_hub_server_with_huggingface_hub(hub_server, tmp_path):
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    folder = _repo(tmp_path)
    sha = hub_server.add_repo("owner/pipe", folder)
    api = HfApi(endpoint=hub_server.url)
    info = api.model_info("owner/pipe", files_metadata=True)
    assert info.sha == sha
    sib = {s.rfilename: s for s in info.siblings}
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    assert sib["unet/diffusion_pytorch_model.safetensors"].lfs.sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert sib["model_index.json"].lfs is None
    hub_server.page_size = 2
    tree = list(api.list_repo_tree("owner/pipe", recursive=True))
    assert {t.path for t in tree} >= {"model_index.json", "unet", "unet/config.json", "unet/diffusion_pytorch_model.safetensors"}
    path = hf_hub_download("owner/pipe", "unet/diffusion_pytorch_model.safetensors", endpoint=hub_server.url, cache_dir=tmp_path / "c")
    assert open(path, "rb").read() == weights.read_bytes()
    with pytest.raises(RevisionNotFoundError):
        api.model_info("owner/pipe", revision="nope")
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("owner/missing")
    hub_server.add_repo("owner/gated", folder, gated=True)
    with pytest.raises(GatedRepoError):
        hf_hub_download("owner/gated", "model_index.json", endpoint=hub_server.url, cache_dir=tmp_path / "c")
    hub_server.grant("owner/gated", "hf_ok")
    hf_hub_download("owner/gated", "model_index.json", endpoint=hub_server.url, cache_dir=tmp_path / "c", token="hf_ok")
    assert "Bearer hf_ok" in hub_server.stats.auth_headers("/owner/gated/*")


def test_hub_server_cdn_redirect(hub_server, make_file_server, tmp_path):
    folder = _repo(tmp_path)
    sha = hub_server.add_repo("owner/pipe", folder)
    cdn = make_file_server(folder, host="127.0.0.2")
    hub_server.faults.redirect("/owner/pipe/resolve/*", lambda p: cdn.url_for(p.split("/", 5)[5]))
    code, headers, _ = _get(hub_server.resolve_url("owner/pipe", "unet/diffusion_pytorch_model.safetensors"), method="HEAD")
    assert code == 200  # urllib followed to the CDN
    assert cdn.stats.requests_for("/unet/diffusion_pytorch_model.safetensors")
    conn = http.client.HTTPConnection(hub_server.host, hub_server.port, timeout=10)
    conn.request("HEAD", "/owner/pipe/resolve/main/unet/diffusion_pytorch_model.safetensors")
    resp = conn.getresponse()
    assert resp.status == 302 and resp.getheader("X-Repo-Commit") == sha and resp.getheader("X-Linked-Size")
