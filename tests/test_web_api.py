"""The web manager's JSON API and security rules, through an HTTP client (Starlette's TestClient, in-process).

Every endpoint, every security rule and every error answer; installs and
conversions run for real (tiny models, worker in thread mode).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("starlette")
pytest.importorskip("httpx")

from starlette.testclient import TestClient  # noqa: E402

from invokeai_model_install.app.web.server import COOKIE, WebState, create_app  # noqa: E402
from invokeai_model_install.root.registry import Registry  # noqa: E402
from tests.web_support import LEGACY, LORA, OUTSIDE, build_template_root, copy_root  # noqa: E402

TOKEN = "test-token-123"
PORT = 9090
BASE = f"http://127.0.0.1:{PORT}"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def template(tmp_path_factory, tiny_checkpoints, tiny_extras):
    base = tmp_path_factory.mktemp("web-template")
    return build_template_root(base / "root", base / "outside", tiny_checkpoints, tiny_extras)


@pytest.fixture
def layout(template, tmp_path):
    return copy_root(template, tmp_path / "root")


@pytest.fixture
def state(layout):
    return WebState(layout, token=TOKEN, host="127.0.0.1", port=PORT, worker_mode="thread")


@pytest.fixture
def client(state):
    with TestClient(create_app(state), base_url=BASE) as c:
        yield c
    state.shutdown(wait=10)


def wait_job(client: TestClient, *, question: bool = False, timeout: float = 60) -> dict:
    """Poll /api/state until the job is finished (or, with ``question``, until it asks)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get("/api/state", headers=AUTH).json()["job"]
        if job is not None:
            if question and job["question"]:
                return job
            if not question and not job["running"]:
                return job
        time.sleep(0.05)
    raise AssertionError(f"job did not {'ask' if question else 'finish'} in {timeout} s")


def models(client: TestClient) -> dict[str, dict]:
    return {m["name"]: m for m in client.get("/api/models", headers=AUTH).json()["models"]}


# --- security ------------------------------------------------------------------------------------


@pytest.mark.parametrize("method,path", [
    ("GET", "/"), ("GET", "/static/app.js"), ("GET", "/api/models"), ("GET", "/api/events"), ("GET", "/api/complete?path=/"),
    ("POST", "/api/install"), ("DELETE", f"/api/models/{LEGACY}?purge=1"), ("POST", f"/api/models/{LEGACY}/default"),
])
def test_without_the_token_nothing_happens(client, state, layout, method, path):
    before = layout.models_yaml.read_text()
    body = {"items": [str(layout.root)]} if method == "POST" else None
    r = client.request(method, path, json=body)
    assert r.status_code == 401
    assert "token" in r.json()["error"]
    r = client.request(method, path, json=body, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 403
    client.cookies.set(COOKIE, "wrong")
    r = client.request(method, path, json=body)
    assert r.status_code == 403
    assert layout.models_yaml.read_text() == before
    assert state.jobs_started == 0


def test_token_in_the_address_becomes_an_httponly_strict_cookie(client):
    r = client.get(f"/?token={TOKEN}")
    assert r.status_code == 200
    assert "text/html" in r.headers["content-type"]
    cookie = r.headers["set-cookie"]
    assert f"{COOKIE}={TOKEN}" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert r.headers["x-frame-options"] == "DENY"
    assert "default-src 'self'" in r.headers["content-security-policy"]
    # the cookie alone is enough from now on (the page's own requests)
    assert client.get("/api/models").status_code == 200
    assert client.get("/static/app.js").status_code == 200


def test_bearer_token_works_without_cookie(client):
    r = client.get("/api/models", headers=AUTH)
    assert r.status_code == 200
    assert "set-cookie" not in r.headers


@pytest.mark.parametrize("host,ok", [
    (f"127.0.0.1:{PORT}", True), (f"localhost:{PORT}", True), ("localhost", True),
    ("evil.example", False), (f"evil.example:{PORT}", False), (f"127.0.0.1:{PORT + 1}", False), ("", False),
    (f"127.0.0.1.nip.io:{PORT}", False),
])
def test_host_header_must_be_our_address(client, host, ok):
    r = client.get("/api/models", headers={**AUTH, "Host": host})
    assert (r.status_code == 200) is ok, r.text
    if not ok:
        assert r.status_code == 403 and "Host" in r.json()["error"]


@pytest.mark.parametrize("headers", [
    {"Origin": "http://evil.example"},
    {"Origin": f"http://127.0.0.1:{PORT + 1}"},  # same site, other origin: another local page
    {"Origin": f"https://127.0.0.1:{PORT}"},
    {"Origin": "null"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
])
def test_state_changes_from_a_foreign_origin_are_refused(client, state, layout, headers):
    before = layout.models_yaml.read_text()
    r = client.post("/api/install", json={"items": [str(layout.kind_dir("main"))]}, headers={**AUTH, **headers})
    assert r.status_code == 403
    r = client.delete(f"/api/models/{LEGACY}?purge=1", headers={**AUTH, **headers})
    assert r.status_code == 403
    r = client.patch(f"/api/models/{LEGACY}", json={"description": "x"}, headers={**AUTH, **headers})
    assert r.status_code == 403
    assert state.jobs_started == 0
    assert layout.models_yaml.read_text() == before
    assert (layout.kind_dir("main") / f"{LEGACY}.safetensors").exists()


def test_same_origin_requests_are_accepted(client):
    r = client.post(f"/api/models/{LEGACY}/default",
                    headers={**AUTH, "Origin": BASE, "Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 200


def test_bodies_must_be_json(client, state):
    r = client.post("/api/install", content=b"items=/tmp", headers={**AUTH, "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415
    r = client.post("/api/install", content=b"{not json", headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 400
    r = client.post("/api/install", json=["a list"], headers=AUTH)
    assert r.status_code == 400
    assert state.jobs_started == 0


def test_typed_paths_are_listed_never_read(client, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    r = client.get(f"/api/complete?path={tmp_path}/sec", headers=AUTH)
    assert r.status_code == 200
    assert r.json()["entries"] == [{"name": "secret.txt", "dir": False, "model": False}]
    assert "TOP-SECRET" not in r.text
    # a file is not a folder to search, and its contents never come back
    r = client.post("/api/scan", json={"folder": str(secret)}, headers=AUTH)
    assert r.status_code == 400 and "TOP-SECRET" not in r.text
    r = client.post("/api/install", json={"items": [str(secret)]}, headers=AUTH)
    assert r.status_code == 202
    job = wait_job(client)
    assert job["items"][0]["status"] == "failed"
    assert "TOP-SECRET" not in str(job)
    for path in ("/static/../../../../etc/passwd", "/static/%2e%2e/%2e%2e/etc/passwd", "/etc/passwd"):
        r = client.get(path, headers=AUTH)
        assert r.status_code == 404, path
        assert "root:" not in r.text


# --- models ----------------------------------------------------------------------------------------


def test_models_list(client, layout):
    ms = models(client)
    assert list(ms) == [LEGACY, OUTSIDE, LORA]
    legacy = ms[LEGACY]
    assert legacy["kind"] == "main" and legacy["base"] == "sd-1" and legacy["format"] == "ckpt"
    assert legacy["size"] == (layout.kind_dir("main") / f"{LEGACY}.safetensors").stat().st_size
    assert legacy["convertible"] is True
    assert ms[LORA]["kind"] == "lora" and ms[LORA]["convertible"] is False
    assert ms[OUTSIDE]["size"] == len(b"not ours to delete")
    assert [m["default"] for m in ms.values()].count(True) <= 1


def test_starters_with_sizes(client):
    starters = client.get("/api/starters", headers=AUTH).json()["starters"]
    assert starters and all(s["size"] > 0 for s in starters)
    assert {"key", "description", "repo_id", "recommended", "default", "installed"} <= set(starters[0])


def test_state(client, layout):
    st = client.get("/api/state", headers=AUTH).json()
    assert st["root"] == str(layout.root) and st["busy"] is False and st["job"] is None


def test_edit(client, layout):
    r = client.patch(f"/api/models/{LEGACY}", json={"name": "renamed", "description": "new words", "width": 640, "height": 768,
                                                     "config": "v1-inpainting-inference"}, headers=AUTH)
    assert r.status_code == 200, r.text
    m = r.json()["model"]
    assert (m["name"], m["description"], m["width"], m["height"]) == ("renamed", "new words", 640, 768)
    assert m["config"].endswith("v1-inpainting-inference.yaml")
    assert list(models(client)) == ["renamed", OUTSIDE, LORA]  # same place in the file
    assert (layout.manifests_dir / "renamed.json").exists()
    # InvokeAI 2.3.5 gives a checkpoint model only a single-file VAE: a repo id is refused, a file is taken
    r = client.patch("/api/models/renamed", json={"vae": "stabilityai/sd-vae-ft-mse"}, headers=AUTH)
    assert r.status_code == 400 and "single-file VAE" in r.json()["error"]
    vae_file = layout.kind_dir("vae") / "some.vae.safetensors"
    vae_file.write_bytes(b"vae")
    r = client.patch("/api/models/renamed", json={"vae": str(vae_file)}, headers=AUTH)
    assert r.json()["model"]["vae"] == "models/vae/some.vae.safetensors"
    r = client.patch("/api/models/renamed", json={"vae": ""}, headers=AUTH)
    assert r.json()["model"]["vae"] == ""


@pytest.mark.parametrize("body,status,words", [
    ({}, 400, "nothing to change"),
    ({"name": "bad name/.."}, 400, "not a valid model name"),
    ({"name": LORA}, 409, "already installed"),
    ({"width": -3}, 400, "whole number"),
    ({"width": "wide"}, 400, "whole number"),
    ({"vae": "/no/such/vae.pt"}, 400, "neither an existing file"),
    ({"config": "no-such-config"}, 400, "not a file"),
    ({"colour": "red"}, 400, "unknown field"),
])
def test_edit_errors(client, layout, body, status, words):
    before = layout.models_yaml.read_text()
    r = client.patch(f"/api/models/{LEGACY}", json=body, headers=AUTH)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]
    assert layout.models_yaml.read_text() == before


def test_edit_unknown_model_is_404(client):
    r = client.patch("/api/models/nope", json={"description": "x"}, headers=AUTH)
    assert r.status_code == 404 and "nope" in r.json()["error"]


def test_make_default(client):
    assert client.post(f"/api/models/{LEGACY}/default", headers=AUTH).status_code == 200
    ms = models(client)
    assert ms[LEGACY]["default"] and not ms[OUTSIDE]["default"]
    assert client.post(f"/api/models/{OUTSIDE}/default", headers=AUTH).status_code == 200
    ms = models(client)
    assert ms[OUTSIDE]["default"] and not ms[LEGACY]["default"]


def test_a_lora_cannot_be_the_default(client):
    r = client.post(f"/api/models/{LORA}/default", headers=AUTH)
    assert r.status_code == 400 and "not a main model" in r.json()["error"]
    assert not models(client)[LORA]["default"]
    assert client.post("/api/models/nope/default", headers=AUTH).status_code == 404


def test_delete_keeps_files_without_purge(client, layout):
    r = client.delete(f"/api/models/{LEGACY}", headers=AUTH)
    assert r.status_code == 200 and r.json()["deleted"] == []
    assert LEGACY not in models(client)
    assert (layout.kind_dir("main") / f"{LEGACY}.safetensors").exists()


def test_delete_with_purge_stays_inside_models(client, layout):
    r = client.delete(f"/api/models/{LEGACY}?purge=1", headers=AUTH)
    assert r.status_code == 200
    assert r.json()["deleted"] == [str(layout.kind_dir("main") / f"{LEGACY}.safetensors")]
    assert not (layout.kind_dir("main") / f"{LEGACY}.safetensors").exists()
    assert not (layout.manifests_dir / f"{LEGACY}.json").exists()
    outside = Path(Registry(layout.models_yaml).get(OUTSIDE)["weights"])
    r = client.delete(f"/api/models/{OUTSIDE}?purge=1", headers=AUTH)
    assert r.status_code == 200
    assert r.json()["deleted"] == [] and "outside" in r.json()["kept"][0]["why"]
    assert outside.exists()
    assert client.delete("/api/models/nope?purge=1", headers=AUTH).status_code == 404


def test_scan_lists_model_files_with_sizes(client, layout, tmp_path, tiny_checkpoints):
    folder = tmp_path / "downloads"
    (folder / "sub").mkdir(parents=True)
    shutil.copyfile(tiny_checkpoints["sd-1", "safetensors"], folder / "sub" / "a.safetensors")
    (folder / "notes.txt").write_text("hello")
    r = client.post("/api/scan", json={"folder": str(folder)}, headers=AUTH)
    assert r.status_code == 200
    files = r.json()["files"]
    assert [f["relative"] for f in files] == ["sub/a.safetensors"]
    assert files[0]["size"] > 0 and files[0]["installed"] is False
    # the root's own checkpoint folder: the installed file is marked
    r = client.post("/api/scan", json={"folder": str(layout.kind_dir("main"))}, headers=AUTH)
    assert r.json()["files"][0]["installed"] is True
    assert client.post("/api/scan", json={"folder": str(tmp_path / "nope")}, headers=AUTH).status_code == 400
    assert client.post("/api/scan", json={}, headers=AUTH).status_code == 400


def test_complete_paths(client, tmp_path):
    (tmp_path / "models-a").mkdir()
    (tmp_path / "model.ckpt").write_bytes(b"x")
    (tmp_path / ".hidden").mkdir()
    r = client.get(f"/api/complete?path={tmp_path}/mod", headers=AUTH).json()
    assert r["entries"] == [{"name": "models-a", "dir": True, "model": False}, {"name": "model.ckpt", "dir": False, "model": True}]
    assert r["base"] == f"{tmp_path}/"
    r = client.get(f"/api/complete?path={tmp_path}/", headers=AUTH).json()
    assert ".hidden" not in [e["name"] for e in r["entries"]]
    assert client.get("/api/complete?path=owner/repo", headers=AUTH).json()["entries"] == []
    assert client.get("/api/complete?path=/no/such/dir/x", headers=AUTH).json()["entries"] == []


# --- installs, questions, conversions ----------------------------------------------------------------


@pytest.mark.parametrize("body,words", [
    ({}, "nothing to install"),
    ({"items": "not-a-list"}, "list of strings"),
    ({"starters": ["no-such-starter"]}, "not starter models"),
    ({"items": ["x"], "prediction_type": "sideways"}, "prediction_type"),
    ({"items": ["x"], "convert": "yes"}, "true or false"),
    ({"autoscan": True}, "autoscan needs a scan folder"),
    ({"scan_dir": "/no/such/folder"}, "not a folder"),
    ({"items": ["x"], "in_place": "yes"}, "'in_place' must be true or false"),
    ({"items": ["x"], "in_place": 1}, "'in_place' must be true or false"),
    ({"items": ["x"], "in_place": ["true"]}, "'in_place' must be true or false"),
    ({"items": ["x"], "inplace": True}, "unknown field(s): inplace"),  # a misspelt choice must not copy silently
])
def test_install_validation(client, state, body, words):
    r = client.post("/api/install", json=body, headers=AUTH)
    assert r.status_code == 400 and words in r.json()["error"], r.text
    assert state.jobs_started == 0


def test_install_a_local_file_and_read_the_event_stream(client, state, layout, tmp_path, tiny_checkpoints):
    src = tmp_path / "dl" / "new-model.safetensors"
    src.parent.mkdir()
    shutil.copyfile(tiny_checkpoints["sd-1", "safetensors"], src)
    r = client.post("/api/install", json={"items": [str(src), "not a valid line at all"]}, headers=AUTH)
    assert r.status_code == 202
    job = wait_job(client)
    statuses = {it["label"]: (it["status"], it["error"]) for it in job["items"]}
    assert statuses[str(src)][0] == "installed" or ("installed", "") in statuses.values()
    failed = [it for it in job["items"] if it["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["error"]  # one readable line next to the failing item
    assert "\n" not in failed[0]["error"]
    assert "new-model" in models(client)
    assert job["result"]["ok"] is False
    # the event log as the page gets it: a finite stream once the server stops
    state.stopping.set()
    r = client.get("/api/events?after=0", headers=AUTH)
    assert r.headers["content-type"].startswith("text/event-stream")
    kinds = [line for line in r.text.splitlines() if line.startswith("data: ")]
    text = "\n".join(kinds)
    for word in ('"JobStarted"', '"PlanStarted"', '"ItemRegistered"', '"ItemFailed"', '"JobFinished"', '"ServerStopping"'):
        assert word in text, word


def test_sd2_question_is_asked_and_answered(client, state, layout, tmp_path, tiny_checkpoints):
    src = tmp_path / "dl" / "sd2.safetensors"
    src.parent.mkdir()
    shutil.copyfile(tiny_checkpoints["sd-2", "safetensors"], src)
    assert client.post("/api/answer", json={"qid": "q1", "choice": "v"}, headers=AUTH).status_code == 409
    assert client.post("/api/install", json={"items": [str(src)]}, headers=AUTH).status_code == 202
    job = wait_job(client, question=True)
    q = job["question"]
    assert q["kind"] == "prediction_type" and q["choices"] == ["epsilon", "v", "skip"]
    # busy: a second install waits its turn
    r = client.post("/api/install", json={"items": [str(src)]}, headers=AUTH)
    assert r.status_code == 409
    assert client.post("/api/answer", json={"qid": q["qid"], "choice": "sideways"}, headers=AUTH).status_code == 400
    assert client.post("/api/answer", json={"qid": "other", "choice": "v"}, headers=AUTH).status_code == 409
    assert client.post("/api/answer", json={}, headers=AUTH).status_code == 400
    assert client.post("/api/answer", json={"qid": q["qid"], "choice": "v"}, headers=AUTH).status_code == 200
    job = wait_job(client)
    assert job["items"][0]["status"] == "installed", job
    stanza = Registry(layout.models_yaml).get("sd2")
    assert stanza["config"].endswith("v2-inference-v.yaml") and stanza["width"] == 768


def test_cancel(client, state, tmp_path, tiny_checkpoints):
    assert client.post("/api/cancel", headers=AUTH).status_code == 409
    src = tmp_path / "dl" / "sd2.safetensors"
    src.parent.mkdir()
    shutil.copyfile(tiny_checkpoints["sd-2", "safetensors"], src)
    client.post("/api/install", json={"items": [str(src)]}, headers=AUTH)
    wait_job(client, question=True)
    assert client.post("/api/cancel", headers=AUTH).status_code == 200
    job = wait_job(client)
    assert job["cancelled"] and job["items"][0]["status"] == "failed"
    assert "sd2" not in models(client)


def test_convert_an_installed_checkpoint(client, layout):
    ckpt = layout.kind_dir("main") / f"{LEGACY}.safetensors"
    r = client.post(f"/api/models/{LEGACY}/convert", json={}, headers=AUTH)
    assert r.status_code == 202, r.text
    job = wait_job(client)
    assert job["kind"] == "convert" and job["items"][0]["status"] == "installed", job
    m = models(client)[LEGACY]
    assert m["format"] == "diffusers" and m["location"] == f"models/converted_ckpts/{LEGACY}" and not m["convertible"]
    assert list(models(client)) == [LEGACY, OUTSIDE, LORA]
    assert (layout.converted_dir / LEGACY / "model_index.json").is_file()
    assert ckpt.exists()  # kept unless asked
    doc = yaml.safe_load(layout.models_yaml.read_text())
    assert "weights" not in doc[LEGACY] and doc[LEGACY]["path"] == f"models/converted_ckpts/{LEGACY}"
    # again: already diffusers
    r = client.post(f"/api/models/{LEGACY}/convert", json={}, headers=AUTH)
    assert r.status_code == 400 and "already a diffusers model" in r.json()["error"]


def test_convert_and_delete_the_original(client, layout):
    ckpt = layout.kind_dir("main") / f"{LEGACY}.safetensors"
    assert client.post(f"/api/models/{LEGACY}/convert", json={"delete_original": True}, headers=AUTH).status_code == 202
    job = wait_job(client)
    assert job["items"][0]["status"] == "installed", job
    assert not ckpt.exists()
    assert models(client)[LEGACY]["format"] == "diffusers"


@pytest.mark.parametrize("name,status,words", [("nope", 404, "no model named"), (LORA, 400, "not a main model")])
def test_convert_errors(client, state, name, status, words):
    r = client.post(f"/api/models/{name}/convert", json={}, headers=AUTH)
    assert r.status_code == status and words in r.json()["error"]
    assert state.jobs_started == 0


def test_convert_a_file_that_is_no_model_fails_on_its_item(client, layout):
    before = layout.models_yaml.read_text()
    assert client.post(f"/api/models/{OUTSIDE}/convert", json={}, headers=AUTH).status_code == 202
    job = wait_job(client)
    item = job["items"][0]
    assert item["status"] == "failed" and item["error"] and "\n" not in item["error"]
    assert layout.models_yaml.read_text() == before


def test_an_os_error_is_one_line_not_a_traceback(client, monkeypatch):
    from invokeai_model_install.app.web import models_api

    def fail(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/root/configs/models.yaml")

    monkeypatch.setattr(models_api, "delete_model", fail)
    r = client.delete(f"/api/models/{LEGACY}", headers=AUTH)
    assert r.status_code == 500
    assert r.json()["error"] == "/root/configs/models.yaml: Permission denied (check the path and its permissions)"


def test_a_wildcard_bind_accepts_this_machines_own_name_only(layout):
    import socket

    state = WebState(layout, token=TOKEN, host="0.0.0.0", port=PORT, worker_mode="thread")
    assert state.host_ok(f"{socket.gethostname()}:{PORT}") and state.host_ok(f"0.0.0.0:{PORT}")
    assert not state.host_ok(f"evil.example:{PORT}")


def test_install_with_convert_and_prediction_type_asks_nothing(client, layout, tmp_path, tiny_checkpoints):
    src = tmp_path / "dl" / "sd2conv.safetensors"
    src.parent.mkdir()
    shutil.copyfile(tiny_checkpoints["sd-2", "safetensors"], src)
    r = client.post("/api/install", json={"items": [str(src)], "convert": True, "prediction_type": "epsilon"}, headers=AUTH)
    assert r.status_code == 202
    job = wait_job(client)
    assert job["items"][0]["status"] == "installed", job
    assert not any(e for e in job["items"][0]["notes"] if "question" in e)
    m = models(client)["sd2conv"]
    assert m["format"] == "diffusers" and m["location"] == "models/converted_ckpts/sd2conv"


def test_autoscan_folder_is_imported_and_remembered(client, layout, tmp_path, tiny_extras):
    folder = tmp_path / "auto"
    folder.mkdir()
    shutil.copyfile(tiny_extras["embedding.safetensors"], folder / "my-embedding.safetensors")
    r = client.post("/api/install", json={"scan_dir": str(folder), "autoscan": True}, headers=AUTH)
    assert r.status_code == 202
    job = wait_job(client)
    assert [it["status"] for it in job["items"]] == ["installed"], str(job["items"])
    assert client.get("/api/state", headers=AUTH).json()["autoscan"] == str(folder)
    assert "--autoconvert" in layout.init_file.read_text()


# --- in place: local files registered where they are (the CLI's --in-place, the form's checkbox) -------------


def _comfy_tree(tmp_path: Path, tiny_checkpoints, tiny_extras) -> tuple[Path, Path, Path, Path]:
    """A ComfyUI-like ``models/`` folder: an SD-1 checkpoint, a LoRA, and a file no probe knows."""
    tree = tmp_path / "ComfyUI" / "models"
    ckpt = tree / "checkpoints" / "dreamshaper.safetensors"
    lora = tree / "loras" / "style.safetensors"
    noise = tree / "unknown" / "noise.safetensors"
    for path, src in ((ckpt, tiny_checkpoints["sd-1", "safetensors"]), (lora, tiny_extras["lora-sd-1.safetensors"]),
                      (noise, tiny_extras["random.safetensors"])):
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, path)
    return tree, ckpt, lora, noise


def _stat(tree: Path) -> dict[Path, tuple[int, int, int]]:
    return {p: (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns) for p in tree.rglob("*") if p.is_file()}


def test_in_place_install_registers_local_models_where_they_are(client, state, layout, tmp_path, tiny_checkpoints,
                                                                tiny_extras, file_server):
    tree, ckpt, lora, noise = _comfy_tree(tmp_path, tiny_checkpoints, tiny_extras)
    shutil.copyfile(tiny_checkpoints["sd-1", "safetensors"], file_server.folder / "downloaded.safetensors")
    url = file_server.url_for("downloaded.safetensors")
    before = _stat(tree)
    root_files = {p for p in layout.root.rglob("*") if p.is_file()}
    r = client.post("/api/install", json={"items": [str(tree), url], "in_place": True}, headers=AUTH)
    assert r.status_code == 202, r.text
    job = wait_job(client)
    by_status = sorted((it["status"], it["label"]) for it in job["items"])
    assert [s for s, _ in by_status] == ["installed", "installed", "installed", "skipped"], job["items"]
    skipped = next(it for it in job["items"] if it["status"] == "skipped")
    assert str(noise) in skipped["label"] and "left where it is, not registered" in skipped["message"], skipped

    ms = models(client)
    assert ms["dreamshaper"]["location"] == str(ckpt) and ms["dreamshaper"]["in_place"] is True
    assert ms["dreamshaper"]["kind"] == "main" and ms["dreamshaper"]["registered"] is True
    assert Registry(layout.models_yaml).get("dreamshaper")["weights"] == str(ckpt)  # its own path, outside the root
    assert ms["style"]["location"] == str(lora) and ms["style"]["in_place"] is True and ms["style"]["kind"] == "lora"
    assert "recorded where it is (in place)" in ms["style"]["description"]
    assert "finds it in" not in ms["style"]["description"]  # 2.3.5 reads LoRAs only from ROOT/loras, not from there
    assert not any("noise" in name for name in ms)
    # the URL in the same request is downloaded into the root as always: in place is for local files only
    assert ms["downloaded"]["location"].startswith("models/") and ms["downloaded"]["in_place"] is False
    assert ms[LEGACY]["in_place"] is False and ms[OUTSIDE]["in_place"] is True  # a path outside the root, given by hand

    # nothing of the tree was copied, moved, linked or touched
    assert _stat(tree) == before
    inodes = {ino for ino, _, _ in before.values()}
    assert not [p for p in layout.root.rglob("*") if p.is_file() and p.stat().st_ino in inodes]
    new = {p for p in layout.root.rglob("*") if p.is_file()} - root_files
    copied = [p for p in new if p.suffix in (".safetensors", ".ckpt", ".pt", ".pth", ".bin")]
    assert [p.name for p in copied] == ["downloaded.safetensors"], copied
    assert not list(layout.kind_dir("lora").glob("style*"))

    # the notes say what happened without naming a command-line flag (the choice came from the page)
    notes = [n for it in job["items"] for n in it["notes"]]
    assert any("style.safetensors: registered in place" in n for n in notes), notes
    assert not any("--in-place" in n for n in notes), notes

    # the same folder again: already installed, nothing changes
    yaml_before = layout.models_yaml.read_text()
    assert client.post("/api/install", json={"items": [str(tree)], "in_place": True}, headers=AUTH).status_code == 202
    job = wait_job(client)
    assert sorted(it["status"] for it in job["items"]) == ["skipped", "skipped", "skipped"], job["items"]
    assert layout.models_yaml.read_text() == yaml_before
    assert _stat(tree) == before

    # deleting the in-place LoRA (no stanza) forgets it without asking for a purge; its file stays where it is
    r = client.delete("/api/models/style", headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["deleted"] == [] and "registered in place" in r.json()["kept"][0]["why"]
    assert "style" not in models(client) and lora.exists() and _stat(tree) == before


def test_in_place_with_convert_is_refused_in_one_line(client, state, layout, tmp_path, tiny_checkpoints, tiny_extras):
    from invokeai_model_install.app.web.server import CONVERT_LABEL, IN_PLACE_LABEL, STATIC_DIR

    tree, *_ = _comfy_tree(tmp_path, tiny_checkpoints, tiny_extras)
    before = layout.models_yaml.read_text()
    r = client.post("/api/install", json={"items": [str(tree)], "in_place": True, "convert": True}, headers=AUTH)
    assert r.status_code == 400
    line = r.json()["error"]
    assert "\n" not in line
    assert line.startswith(f'"{IN_PLACE_LABEL}" (in_place) and "{CONVERT_LABEL}" (convert) exclude each other'), line
    assert "untick one" in line
    page = (STATIC_DIR / "index.html").read_text()
    assert IN_PLACE_LABEL in page and CONVERT_LABEL in page  # the line names the boxes the user sees
    assert line in (Path(__file__).resolve().parent.parent / "docs" / "web.md").read_text()  # quoted there as it is
    assert state.jobs_started == 0
    assert layout.models_yaml.read_text() == before
    # either one alone is fine (false and null are "not asked")
    for body in ({"in_place": True, "convert": False}, {"in_place": False, "convert": True}, {"in_place": None, "convert": True}):
        r = client.post("/api/install", json={"items": ["no such thing at all"], **body}, headers=AUTH)
        assert r.status_code == 202, (body, r.text)
        wait_job(client)


@pytest.mark.parametrize("path,body", [
    ("/api/scan", {"folder": "/tmp", "recursive": True}),
    ("/api/answer", {"qid": "q1", "choice": "v", "choise": "v"}),
    ("/api/models/anything/convert", {"delete_orignal": True}),
])
def test_every_json_endpoint_refuses_fields_it_does_not_know(client, state, path, body):
    # a misspelt option must never be ignored silently (e.g. a convert that keeps what should be deleted)
    r = client.post(path, json=body, headers=AUTH)
    assert r.status_code == 400 and "unknown field(s):" in r.json()["error"], r.text
    assert state.jobs_started == 0
