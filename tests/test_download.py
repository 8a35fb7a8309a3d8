"""The download engine against the loopback file server: verify, resume (in and across processes), faults."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from invokeai_model_install.net import engine, splice, urls
from invokeai_model_install.net.settings import DownloadSettings, RemoteFile, Resolved
from invokeai_model_install.root import disk
from invokeai_model_install.errors import (
    AuthError,
    Cancelled,
    DiskSpaceError,
    DownloadError,
    IntegrityError,
    NotAModelError,
    NotFoundError,
    OfflineError,
    UnsafeNameError,
)
from invokeai_model_install.events import FileFinished, FileProgress, FileStarted, Retrying
from invokeai_model_install.net.sources import UrlSource

MB = 1 << 20


def settings(**kw) -> DownloadSettings:
    base = dict(hf_endpoint="http://127.0.0.1:9", backoff=0.01, retries=3, read_timeout=10, split_size=1 * MB, max_connections=4)
    base.update(kw)
    return DownloadSettings(**base)


def put(server, name: str, size: int, seed: int = 1) -> tuple[bytes, str]:
    """A file of pseudo-random bytes in the server's folder; -> (data, sha256)."""
    data = hashlib.sha256(str(seed).encode()).digest() * (size // 32 + 1)
    data = bytes(b ^ (i & 0xFF) for i, b in enumerate(data[:size])) if size < 4096 else data[:size]
    path = server.folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data, hashlib.sha256(data).hexdigest()


def requested_range(record, size: int) -> tuple[int, int]:
    """The byte range ``[a, b)`` a GET asked for (the whole file without a Range header)."""
    value = record.header("Range")
    if not value:
        return (0, size)
    a, _, b = value.removeprefix("bytes=").partition("-")
    return (int(a), int(b) + 1 if b else size)


def covered(ranges: list[tuple[int, int]]) -> int:
    """Length of the prefix ``[0, n)`` that the ranges cover together."""
    n = 0
    for a, b in sorted(ranges):
        if a > n:
            break
        n = max(n, b)
    return n


def one(server, name: str, data: bytes, sha: str | None) -> Resolved:
    rf = RemoteFile(server.url_for(name), name, len(data), sha)
    return Resolved(files=(rf,), commit=None, label=name, kind_hint=None, total_size=len(data))


def test_downloads_verifies_and_reports(file_server, tmp_path):
    data, sha = put(file_server, "model.safetensors", 3 * MB + 123)
    events = []
    res = engine.download(one(file_server, "model.safetensors", data, sha), tmp_path / "dest", partial_dir=tmp_path / "part", settings=settings(), on_event=events.append)
    assert (tmp_path / "dest" / "model.safetensors").read_bytes() == data
    assert res.paths == {"model.safetensors": tmp_path / "dest" / "model.safetensors"}
    assert res.sha256 == {"model.safetensors": sha}
    assert res.fetched_bytes == len(data)
    kinds = [type(e) for e in events]
    assert kinds[0] is FileStarted and kinds[-1] is FileFinished and FileProgress in kinds
    assert events[-1].sha256 == sha and events[-1].fetched == len(data)
    assert list((tmp_path / "part").iterdir()) == []  # nothing left behind
    # a large file was split into ranges on several connections (at least one per connection)
    ranges = [r.header("Range") for r in file_server.stats.requests_for("/model.safetensors", "GET")]
    assert len(ranges) >= 4 and all(r and r.startswith("bytes=") for r in ranges)


def test_several_files_at_once_and_present_files_are_kept(file_server, tmp_path):
    files = [put(file_server, f"unet/part{i}.bin", 300_000 + i, seed=i) for i in range(5)]
    rfs = tuple(RemoteFile(file_server.url_for(f"unet/part{i}.bin"), f"unet/part{i}.bin", len(d), s) for i, (d, s) in enumerate(files))
    resolved = Resolved(files=rfs, commit=None, label="five", kind_hint=None, total_size=sum(len(d) for d, _ in files))
    res = engine.download(resolved, tmp_path / "dest", partial_dir=tmp_path / "part", settings=settings())
    for i, (d, _s) in enumerate(files):
        assert (tmp_path / "dest" / "unet" / f"part{i}.bin").read_bytes() == d
    file_server.stats.reset()
    events = []
    res = engine.download(resolved, tmp_path / "dest", partial_dir=tmp_path / "part", settings=settings(), on_event=events.append)
    assert res.fetched_bytes == 0 and file_server.stats.requests == []
    assert sorted(e.name for e in events if isinstance(e, FileFinished)) == [f"unet/part{i}.bin" for i in range(5)]
    assert all(e.fetched == 0 for e in events)


def test_present_file_with_wrong_bytes_is_fetched_again(file_server, tmp_path):
    data, sha = put(file_server, "m.ckpt", 200_000)
    dest = tmp_path / "dest" / "m.ckpt"
    dest.parent.mkdir()
    dest.write_bytes(bytes(len(data)))  # right size, wrong bytes
    res = engine.download(one(file_server, "m.ckpt", data, sha), tmp_path / "dest", partial_dir=tmp_path / "part", settings=settings())
    assert dest.read_bytes() == data and res.fetched_bytes == len(data)


def test_wrong_bytes_of_the_right_size_are_never_accepted(file_server, tmp_path):
    data, sha = put(file_server, "m.safetensors", 2 * MB)
    file_server.faults.corrupt("/m.safetensors")  # every time
    events = []
    with pytest.raises(IntegrityError) as err:
        engine.download(one(file_server, "m.safetensors", data, sha), tmp_path / "dest", partial_dir=tmp_path / "part", settings=settings(), on_event=events.append)
    assert f"expected sha256 {sha}, got " in str(err.value)
    assert not (tmp_path / "dest" / "m.safetensors").exists()
    assert list((tmp_path / "part").iterdir()) == []  # discarded
    assert any(isinstance(e, Retrying) and "verification failed" in e.reason for e in events)  # retried once
    assert file_server.stats.served("/m.safetensors") == 2 * len(data)


def test_one_corrupt_transfer_is_retried_and_then_accepted(file_server, tmp_path):
    data, sha = put(file_server, "m.safetensors", 500_000)
    file_server.faults.corrupt("/m.safetensors", times=1)
    res = engine.download(one(file_server, "m.safetensors", data, sha), tmp_path / "dest", partial_dir=tmp_path / "part", settings=settings())
    assert (tmp_path / "dest" / "m.safetensors").read_bytes() == data and res.sha256["m.safetensors"] == sha


def test_dropped_connection_resumes_where_it_stopped(file_server, tmp_path):
    data, sha = put(file_server, "m.ckpt", 3 * MB)
    file_server.faults.drop("/m.ckpt", after_bytes=700_000, times=2)
    events = []
    engine.download(one(file_server, "m.ckpt", data, sha), tmp_path / "dest", partial_dir=tmp_path / "part", settings=settings(split_size=64 * MB), on_event=events.append)
    assert (tmp_path / "dest" / "m.ckpt").read_bytes() == data
    assert any(isinstance(e, Retrying) for e in events)
    assert file_server.stats.served("/m.ckpt") == len(data)  # nothing fetched twice
    gets = file_server.stats.requests_for("/m.ckpt", "GET")
    assert gets[1].header("Range") == "bytes=700000-" + str(len(data) - 1)
    assert gets[1].header("If-Range")  # validated against the ETag


@pytest.mark.parametrize("code", [500, 503, 429])
def test_server_errors_are_retried_with_retry_after(file_server, tmp_path, code):
    data, sha = put(file_server, "m.pt", 100_000)
    file_server.faults.status("/m.pt", code, times=2, retry_after=1 if code == 429 else None)
    events = []
    engine.download(one(file_server, "m.pt", data, sha), tmp_path / "dest", partial_dir=tmp_path / "part", settings=settings(), on_event=events.append)
    assert (tmp_path / "dest" / "m.pt").read_bytes() == data
    retries = [e for e in events if isinstance(e, Retrying)]
    assert len(retries) == 2 and all(f"HTTP {code}" in e.reason for e in retries)
    if code == 429:
        assert all(e.delay == 1.0 for e in retries)


def test_gives_up_after_the_retries(file_server, tmp_path):
    data, sha = put(file_server, "m.pt", 10_000)
    file_server.faults.status("/m.pt", 503, times=None)
    with pytest.raises(DownloadError, match="HTTP 503") as err:
        engine.download(one(file_server, "m.pt", data, sha), tmp_path / "dest", partial_dir=tmp_path / "part", settings=settings(retries=2))
    assert "gave up after 3 tries" in str(err.value)
    assert len(file_server.stats.requests_for("/m.pt")) == 3


def test_404_and_401_are_final(file_server, tmp_path):
    rf = RemoteFile(file_server.url_for("missing.safetensors"), "missing.safetensors", 10, None)
    with pytest.raises(NotFoundError, match="missing.safetensors"):
        engine.download(Resolved((rf,), None, "missing", None, 10), tmp_path / "d", partial_dir=tmp_path / "p", settings=settings())
    data, sha = put(file_server, "m.pt", 1000)
    file_server.faults.status("/m.pt", 401, times=None)
    with pytest.raises(AuthError) as err:
        engine.download(one(file_server, "m.pt", data, sha), tmp_path / "d", partial_dir=tmp_path / "p", settings=settings())
    assert "INVOKEAI_URL_TOKENS" in err.value.hint
    assert len(file_server.stats.requests_for("/m.pt")) == 1  # not retried


def test_html_login_page_is_refused(file_server, tmp_path):
    data, sha = put(file_server, "m.safetensors", 50_000)
    file_server.faults.html("/m.safetensors")
    with pytest.raises(NotAModelError) as err:
        urls.resolve_url(UrlSource(file_server.url_for("m.safetensors")), settings())
    assert "HTML" in str(err.value) and "token" in err.value.hint.lower() or "login" in err.value.hint.lower()
    with pytest.raises(NotAModelError):
        engine.download(one(file_server, "m.safetensors", data, None), tmp_path / "d", partial_dir=tmp_path / "p", settings=settings())
    assert not (tmp_path / "d" / "m.safetensors").exists()


def test_text_body_without_content_type_is_refused(file_server, tmp_path):
    (file_server.folder / "weights.ckpt").write_bytes(b"<!DOCTYPE html><html><body>Please log in</body></html>")
    rf = RemoteFile(file_server.url_for("weights.ckpt"), "weights.ckpt", 55, None)
    with pytest.raises(NotAModelError):
        engine.download(Resolved((rf,), None, "w", None, 55), tmp_path / "d", partial_dir=tmp_path / "p", settings=settings())


def test_server_ignoring_range_gets_a_clean_restart(file_server, tmp_path):
    data, sha = put(file_server, "m.bin", 2 * MB)
    with pytest.raises(NotFoundError):
        engine.download(one(file_server, "m.bin", data, sha), tmp_path / "d", partial_dir=tmp_path / "p", settings=settings(split_size=64 * MB), on_event=interrupt(file_server, "/m.bin", 500_000))
    assert any(p.suffix == ".json" for p in (tmp_path / "p").iterdir())  # partial kept
    file_server.faults.ignore_range("/m.bin")
    events = []
    engine.download(one(file_server, "m.bin", data, sha), tmp_path / "d", partial_dir=tmp_path / "p", settings=settings(), on_event=events.append)
    assert (tmp_path / "d" / "m.bin").read_bytes() == data
    assert any(isinstance(e, Retrying) and "ignores byte ranges" in e.reason for e in events)


def test_resume_with_a_changed_etag_restarts_clean(file_server, tmp_path):
    old, _ = put(file_server, "m.ckpt", 1 * MB, seed=1)
    with pytest.raises(NotFoundError):
        engine.download(one(file_server, "m.ckpt", old, None), tmp_path / "d", partial_dir=tmp_path / "p", settings=settings(), on_event=interrupt(file_server, "/m.ckpt", 300_000))
    time.sleep(0.01)
    new, new_sha = put(file_server, "m.ckpt", 1 * MB, seed=2)  # same size, other bytes: new ETag
    resolved = urls.resolve_url(UrlSource(file_server.url_for("m.ckpt")), settings())
    before = len(file_server.stats.requests_for("/m.ckpt", "GET"))
    engine.download(resolved, tmp_path / "d", partial_dir=tmp_path / "p", settings=settings())
    assert (tmp_path / "d" / "m.ckpt").read_bytes() == new
    # nothing of the old partial was kept: the requests of this run asked for every byte of the new file
    asked = [requested_range(r, len(new)) for r in file_server.stats.requests_for("/m.ckpt", "GET")[before:]]
    assert covered(asked) == len(new)


def test_cancel_is_prompt_and_keeps_the_partial_file(file_server, tmp_path):
    data, sha = put(file_server, "m.safetensors", 2 * MB)
    file_server.faults.throttle("/m.safetensors", 400_000)
    cancel = threading.Event()
    events = []

    def on_event(e):
        events.append(e)
        if isinstance(e, FileProgress) and e.done > 200_000:
            cancel.set()

    box = {}
    t = threading.Thread(target=lambda: box.setdefault("err", _catch(lambda: engine.download(
        one(file_server, "m.safetensors", data, sha), tmp_path / "d", partial_dir=tmp_path / "p",
        settings=settings(split_size=64 * MB), on_event=on_event, cancel=cancel))))
    t.start()
    t.join(30)
    assert not t.is_alive()
    assert isinstance(box["err"], Cancelled)
    sidecar = [p for p in (tmp_path / "p").iterdir() if p.suffix == ".json"]
    assert sidecar and json.loads(sidecar[0].read_text())["done"][0][1] > 0
    file_server.faults.clear()
    before = file_server.stats.served("/m.safetensors")
    engine.download(one(file_server, "m.safetensors", data, sha), tmp_path / "d", partial_dir=tmp_path / "p", settings=settings())
    assert (tmp_path / "d" / "m.safetensors").read_bytes() == data
    assert file_server.stats.served("/m.safetensors") - before < len(data)


def test_cancel_during_a_stalled_read(file_server, tmp_path):
    data, sha = put(file_server, "m.safetensors", 1 * MB)
    file_server.faults.stall("/m.safetensors", seconds=60, after_bytes=100_000)
    cancel = threading.Event()
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("err", _catch(lambda: engine.download(
        one(file_server, "m.safetensors", data, sha), tmp_path / "d", partial_dir=tmp_path / "p",
        settings=settings(read_timeout=60), cancel=cancel))))
    t.start()
    while file_server.stats.served("/m.safetensors") < 100_000:
        time.sleep(0.05)
    cancel.set()
    t.join(30)
    assert not t.is_alive() and isinstance(box["err"], Cancelled)


def interrupt(server, path: str, after_bytes: int):
    """Make the next download of ``path`` stop for good after ``after_bytes`` (a partial file is left)."""
    server.faults.drop(path, after_bytes=after_bytes, times=1)

    def on_event(e):
        if isinstance(e, Retrying):
            server.faults.status(path, 404, times=1)

    return on_event


def _catch(fn):
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001
        return exc
    return None


_CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from invokeai_model_install.net import engine
    from invokeai_model_install.net.settings import DownloadSettings, RemoteFile, Resolved
    rf = RemoteFile(sys.argv[1], "big.safetensors", int(sys.argv[2]), sys.argv[3])
    res = Resolved((rf,), None, "big", None, rf.size)
    s = DownloadSettings(hf_endpoint="http://127.0.0.1:9", split_size=1 << 20, max_connections=2, sidecar_interval=0.1)
    engine.download(res, Path(sys.argv[4]), partial_dir=Path(sys.argv[5]), settings=s)
    """
)


def _settled(read, quiet: float = 0.3, limit: float = 10.0):
    """``read()`` once it has stopped changing for ``quiet`` seconds."""
    value, deadline = read(), time.monotonic() + limit
    while time.monotonic() < deadline:
        time.sleep(quiet)
        again = read()
        if again == value:
            break
        value = again
    return value


def test_sigkill_mid_file_then_a_new_process_fetches_only_the_rest(file_server, tmp_path):
    data, sha = put(file_server, "big.safetensors", 4 * MB)
    path = "/big.safetensors"
    file_server.faults.throttle(path, 1_000_000)
    dest, part = tmp_path / "dest", tmp_path / "part"
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, file_server.url_for("big.safetensors"), str(len(data)), sha, str(dest), str(part)])
    try:
        deadline = time.monotonic() + 60
        while file_server.stats.served(path) < 1_500_000 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(0.3)  # let a sidecar save happen after that
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    first = _settled(lambda: file_server.stats.served(path))  # a server thread may send one more chunk to the dead socket
    assert 0 < first < len(data)
    assert not (dest / "big.safetensors").exists()
    file_server.faults.clear()
    events = []
    res = engine.download(
        Resolved((RemoteFile(file_server.url_for("big.safetensors"), "big.safetensors", len(data), sha),), None, "big", None, len(data)),
        dest, partial_dir=part, settings=settings(split_size=1 * MB, max_connections=2), on_event=events.append,
    )
    assert (dest / "big.safetensors").read_bytes() == data and res.sha256["big.safetensors"] == sha
    second = file_server.stats.served(path) - first
    assert second < len(data)
    assert first + second < 2 * len(data)
    started = [e for e in events if isinstance(e, FileStarted)][0]
    assert started.resumed_from > 0 and res.fetched_bytes == second


def test_offline_mode(file_server, tmp_path):
    data, sha = put(file_server, "m.pt", 1000)
    with pytest.raises(OfflineError, match="m.pt"):
        engine.download(one(file_server, "m.pt", data, sha), tmp_path / "d", partial_dir=tmp_path / "p", settings=settings(offline=True))
    with pytest.raises(OfflineError):
        urls.resolve_url(UrlSource(file_server.url_for("m.pt")), settings(offline=True))
    assert file_server.stats.requests == []
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "m.pt").write_bytes(data)
    res = engine.download(one(file_server, "m.pt", data, sha), tmp_path / "d", partial_dir=tmp_path / "p", settings=settings(offline=True))
    assert res.fetched_bytes == 0 and res.sha256["m.pt"] == sha
    assert file_server.stats.requests == []


def test_disk_space_is_checked_before_starting(file_server, tmp_path):
    data, sha = put(file_server, "m.pt", 5000)
    with pytest.raises(DiskSpaceError) as err:
        engine.download(one(file_server, "m.pt", data, sha), tmp_path / "d", partial_dir=tmp_path / "p", settings=settings(disk_free=lambda p: 1234))
    assert "5000 bytes" in str(err.value) and "1234 bytes" in str(err.value)
    assert file_server.stats.requests == []
    with pytest.raises(DiskSpaceError, match=str(10**18)):
        disk.check_disk_space(10**18, tmp_path / "not" / "yet")
    disk.check_disk_space(1, tmp_path)


@pytest.mark.parametrize(
    "disposition, expected",
    [
        ('attachment; filename="../../evil.ckpt"', "evil.ckpt"),
        ('attachment; filename="/etc/passwd"', "passwd"),
        ("attachment; filename=\"bad\x01\x1bname.safetensors\"", "badname.safetensors"),
        ("attachment; filename*=UTF-8''..%2F..%2Fx%C3%A9.safetensors", "xé.safetensors"),
        ('attachment; filename=".."', "42"),
    ],
)
def test_malicious_content_disposition_names_stay_inside(file_server, tmp_path, disposition, expected):
    data, sha = put(file_server, "real.safetensors", 4000)
    url = file_server.route("/api/download/models/42", "real.safetensors")
    file_server.content_disposition["real.safetensors"] = disposition
    resolved = urls.resolve_url(UrlSource(url), settings())
    assert resolved.files[0].relpath == expected and resolved.files[0].size == len(data)
    res = engine.download(resolved, tmp_path / "d", partial_dir=tmp_path / "p", settings=settings())
    assert res.paths[expected].resolve().parent == (tmp_path / "d").resolve()
    assert res.paths[expected].read_bytes() == data


@pytest.mark.parametrize("relpath", ["../evil.ckpt", "/etc/passwd", "a/../../b.ckpt", "x\x00y.ckpt", "c:\\x.ckpt", "a\\..\\b"])
def test_unsafe_relpaths_are_refused(file_server, tmp_path, relpath):
    rf = RemoteFile(file_server.url_for("x"), relpath, 1, None)
    with pytest.raises(UnsafeNameError):
        engine.download(Resolved((rf,), None, "x", None, 1), tmp_path / "d", partial_dir=tmp_path / "p", settings=settings())
    assert file_server.stats.requests == []


def test_resolve_url_name_size_and_hash(file_server, tmp_path):
    data, sha = put(file_server, "sub/Fancy Model.safetensors", 7000)
    r = urls.resolve_url(UrlSource(file_server.url_for("sub/Fancy Model.safetensors"), sha256=sha), settings())
    (rf,) = r.files
    assert (rf.relpath, rf.size, rf.sha256, r.total_size) == ("Fancy Model.safetensors", 7000, sha, 7000)
    assert r.commit is None and r.kind_hint is None


def test_token_never_reaches_a_foreign_host(make_file_server, tls_cert, tmp_path, monkeypatch):
    # over https: URL tokens are never sent in clear text (tests/test_security_net.py)
    from tests.plugin_servers import _other_loopback_host

    monkeypatch.setenv("SSL_CERT_FILE", str(tls_cert[0]))
    file_server, other_file_server = make_file_server(tls=tls_cert), make_file_server(host=_other_loopback_host(), tls=tls_cert)
    data, sha = put(other_file_server, "cdn.safetensors", 300_000)
    (file_server.folder / "placeholder").write_bytes(b"")
    url = file_server.route("/api/download/models/7", "placeholder")
    file_server.faults.redirect("/api/download/models/7", other_file_server.url_for("cdn.safetensors"))
    host = f"{file_server.host}:{file_server.port}"
    secret = "civitai-secret-token-123"
    s = settings(url_tokens=((host, secret),))
    events = []
    resolved = urls.resolve_url(UrlSource(url, sha256=sha), s)
    res = engine.download(resolved, tmp_path / "d", partial_dir=tmp_path / "p", settings=s, on_event=events.append)
    assert res.paths["cdn.safetensors"].read_bytes() == data
    assert other_file_server.stats.requests and other_file_server.stats.auth_headers() == []
    assert set(file_server.stats.auth_headers()) == {f"Bearer {secret}"}
    assert secret not in repr(s) and all(secret not in repr(e) for e in events)


def test_token_in_url_query_is_not_written_to_the_sidecar(file_server, tmp_path):
    data, sha = put(file_server, "m.safetensors", 1 * MB)
    url = file_server.url_for("m.safetensors") + "?token=supersecret123"
    rf = RemoteFile(url, "m.safetensors", len(data), sha)
    with pytest.raises(NotFoundError) as err:
        engine.download(Resolved((rf,), None, "m", None, len(data)), tmp_path / "d", partial_dir=tmp_path / "p", settings=settings(), on_event=interrupt(file_server, "/m.safetensors", 200_000))
    assert "supersecret123" not in err.value.one_line()
    for p in (tmp_path / "p").iterdir():
        assert "supersecret123" not in p.name
        if p.suffix == ".json":
            assert "supersecret123" not in p.read_text()


def test_settings_from_env(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("hf_from_store\n")
    env = {
        "HF_ENDPOINT": "http://mirror.example:8080/",
        "HF_HUB_OFFLINE": "1",
        "INVOKEAI_MAX_CONNECTIONS": "3",
        "CIVITAI_API_TOKEN": "civ",
        "INVOKEAI_URL_TOKENS": "models.example.org=abc, *.cdn.example:8443=def",
        "HF_TOKEN_PATH": str(token_file),
    }
    s = DownloadSettings.from_env(env)
    assert s.hf_endpoint == "http://mirror.example:8080" and s.offline and s.max_connections == 3
    assert s.hf_token == "hf_from_store"
    assert s.url_tokens == (("civitai.com", "civ"), ("civitai.green", "civ"), ("civitai.red", "civ"),
                            ("models.example.org", "abc"), ("*.cdn.example:8443", "def"))
    assert "hf_from_store" not in repr(s) and "civ'" not in repr(s)
    s2 = DownloadSettings.from_env({"HF_TOKEN": "hf_env", "HF_TOKEN_PATH": str(token_file), "INVOKEAI_MAX_CONNECTIONS": "x"})
    assert s2.hf_token == "hf_env" and s2.hf_endpoint == "https://huggingface.co" and not s2.offline and s2.max_connections == 8
    assert DownloadSettings.from_env({"HF_TOKEN_PATH": str(tmp_path / "none")}).hf_token is None


def test_partial_state_is_thrown_away_when_the_size_changed(file_server, tmp_path):
    data, sha = put(file_server, "m.ckpt", 600_000)
    with pytest.raises(NotFoundError):
        engine.download(one(file_server, "m.ckpt", data, sha), tmp_path / "d", partial_dir=tmp_path / "p", settings=settings(), on_event=interrupt(file_server, "/m.ckpt", 100_000))
    data2, sha2 = put(file_server, "m.ckpt", 700_000, seed=5)
    before = file_server.stats.served("/m.ckpt")
    engine.download(one(file_server, "m.ckpt", data2, sha2), tmp_path / "d", partial_dir=tmp_path / "p", settings=settings())
    assert (tmp_path / "d" / "m.ckpt").read_bytes() == data2
    assert file_server.stats.served("/m.ckpt") - before == len(data2)


def test_a_dropped_range_in_the_middle_is_fetched_again(file_server, tmp_path):
    data, sha = put(file_server, "m.safetensors", 4 * MB)
    file_server.faults.drop("/m.safetensors", after_bytes=300_000, times=3)
    res = engine.download(one(file_server, "m.safetensors", data, sha), tmp_path / "d", partial_dir=tmp_path / "p", settings=settings(max_connections=4))
    assert res.paths["m.safetensors"].read_bytes() == data
    assert file_server.stats.served("/m.safetensors") == len(data)  # every byte exactly once


def test_two_downloads_of_the_same_file_at_once(file_server, tmp_path):
    data, sha = put(file_server, "m.safetensors", 2 * MB)
    file_server.faults.throttle("/m.safetensors", 4_000_000)
    results = {}

    def run(name):
        results[name] = _catch(lambda: engine.download(
            one(file_server, "m.safetensors", data, sha), tmp_path / name, partial_dir=tmp_path / "p", settings=settings()))

    threads = [threading.Thread(target=run, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == {"a": None, "b": None}
    assert (tmp_path / "a" / "m.safetensors").read_bytes() == data
    assert (tmp_path / "b" / "m.safetensors").read_bytes() == data


def test_zero_byte_file(file_server, tmp_path):
    (file_server.folder / "empty.txt").write_bytes(b"")
    rf = RemoteFile(file_server.url_for("empty.txt"), "empty.txt", 0, hashlib.sha256(b"").hexdigest())
    res = engine.download(Resolved((rf,), None, "e", None, 0), tmp_path / "d", partial_dir=tmp_path / "p", settings=settings())
    assert res.paths["empty.txt"].read_bytes() == b""


def test_a_size_that_does_not_match_the_server_fails_clearly(file_server, tmp_path):
    data, sha = put(file_server, "m.safetensors", 3 * MB)
    rf = RemoteFile(file_server.url_for("m.safetensors"), "m.safetensors", 3 * MB + 5, None)
    with pytest.raises(IntegrityError, match="expected"):
        engine.download(Resolved((rf,), None, "m", None, rf.size), tmp_path / "d", partial_dir=tmp_path / "p", settings=settings())
    rf = RemoteFile(file_server.url_for("m.safetensors"), "m.safetensors", 5 * MB, None)  # ranges past the end: 416
    with pytest.raises(DownloadError):
        engine.download(Resolved((rf,), None, "m", None, rf.size), tmp_path / "d2", partial_dir=tmp_path / "p2", settings=settings())
    assert not (tmp_path / "d" / "m.safetensors").exists() and not (tmp_path / "d2" / "m.safetensors").exists()


def test_a_stalled_server_is_retried_after_the_read_timeout(file_server, tmp_path):
    data, sha = put(file_server, "m.safetensors", 4 * MB)
    file_server.faults.stall("/m.safetensors", seconds=30, after_bytes=2_500_000, times=1)
    events = []
    res = engine.download(one(file_server, "m.safetensors", data, sha), tmp_path / "d", partial_dir=tmp_path / "p", settings=settings(read_timeout=1, split_size=64 * MB), on_event=events.append)
    assert res.paths["m.safetensors"].read_bytes() == data
    assert any(isinstance(e, Retrying) and "connection lost" in e.reason for e in events)
    # what was received before the stall is kept, except at most one receive buffer (1 MiB)
    assert file_server.stats.served("/m.safetensors") - 2_500_000 <= len(data) - 2_500_000 + engine._BUF


def test_a_write_failure_is_reported_as_ours(file_server, tmp_path, monkeypatch):
    import errno as _errno

    data, sha = put(file_server, "m.safetensors", 2 * MB)
    real = os.pwrite
    calls = {"n": 0}

    def full_disk(fd, buf, offset):
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError(_errno.ENOSPC, "No space left on device")
        return real(fd, buf, offset)

    monkeypatch.setattr(engine.os, "pwrite", full_disk)
    with pytest.raises(DiskSpaceError, match="disk full"):
        engine.download(one(file_server, "m.safetensors", data, sha), tmp_path / "d", partial_dir=tmp_path / "p", settings=settings(max_connections=1, zero_copy=False))


needs_splice = pytest.mark.skipif(not splice.available(), reason="this platform has no splice(2): bodies are always read with readinto")


@needs_splice
def test_plain_http_bodies_go_socket_to_file_without_a_copy(file_server, tmp_path):
    data, sha = put(file_server, "m.safetensors", 6 * MB)
    res = engine.download(one(file_server, "m.safetensors", data, sha), tmp_path / "d", partial_dir=tmp_path / "p",
                          settings=settings(max_connections=2))
    assert res.paths["m.safetensors"].read_bytes() == data and res.sha256["m.safetensors"] == sha
    gets = file_server.stats.requests_for("/m.safetensors", "GET")
    # all but the first read of each response (sniffed) and what http.client had buffered went through the pipe
    assert len(data) - len(gets) * (engine._READ_START + io.DEFAULT_BUFFER_SIZE) <= res.spliced_bytes < res.fetched_bytes == len(data)
    # the response is finished for http.client too: its connection carries the next range
    assert len({r.client_port for r in gets}) < len(gets), [r.client_port for r in gets]


@pytest.mark.parametrize("zero_copy", [True, False], ids=["splice", "readinto"])
def test_both_receive_paths_write_the_same_bytes_through_faults(file_server, tmp_path, zero_copy):
    data, sha = put(file_server, "m.safetensors", 5 * MB + 17)
    file_server.faults.drop("/m.safetensors", after_bytes=900_000, times=2)  # mid-body, while splicing
    res = engine.download(one(file_server, "m.safetensors", data, sha), tmp_path / "d", partial_dir=tmp_path / "p",
                          settings=settings(zero_copy=zero_copy, max_connections=2))
    assert res.paths["m.safetensors"].read_bytes() == data
    assert res.fetched_bytes == len(data)  # what arrived before each drop was kept
    assert (res.spliced_bytes > 0) == (zero_copy and splice.available())


def test_tls_bodies_are_read_the_ordinary_way(make_file_server, tls_cert, tmp_path, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_cert[0]))
    server = make_file_server(tls=tls_cert)
    data, sha = put(server, "m.safetensors", 2 * MB)
    res = engine.download(one(server, "m.safetensors", data, sha), tmp_path / "d", partial_dir=tmp_path / "p", settings=settings())
    assert res.paths["m.safetensors"].read_bytes() == data and res.spliced_bytes == 0


def test_capped_connections_get_company_and_plain_http_starts_with_one(file_server, tmp_path):
    data, sha = put(file_server, "m.safetensors", 6 * MB)
    file_server.faults.throttle("/m.safetensors", 2_000_000)  # every connection capped at 2 MB/s: a CDN-like link
    res = engine.download(one(file_server, "m.safetensors", data, sha), tmp_path / "d", partial_dir=tmp_path / "p",
                          settings=settings(max_connections=4))
    assert res.paths["m.safetensors"].read_bytes() == data
    gets = file_server.stats.requests_for("/m.safetensors", "GET")
    assert gets[0].header("Range") and requested_range(gets[0], len(data))[0] == 0
    assert len({r.client_port for r in gets}) >= 3  # the ramp (net/ramp.py) opened more connections


def test_https_starts_with_every_connection_plain_http_with_one(make_file_server, tls_cert, tmp_path, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_cert[0]))
    seen = {}
    for scheme, server in (("https", make_file_server(tls=tls_cert)), ("http", make_file_server())):
        data, sha = put(server, "m.safetensors", 4 * MB)
        server.faults.stall("/m.safetensors", seconds=1.0, after_bytes=0, times=1)  # the first answer sends nothing for 1 s
        timer = threading.Timer(0.6, lambda s=server, k=scheme: seen.setdefault(k, len(s.stats.requests_for("/m.safetensors", "GET"))))
        timer.start()
        res = engine.download(one(server, "m.safetensors", data, sha), tmp_path / scheme, partial_dir=tmp_path / f"p-{scheme}",
                              settings=settings(max_connections=4))
        timer.join()
        assert res.paths["m.safetensors"].read_bytes() == data
    # while the first answer stalled: https had asked on every connection; plain http waits for a rate to measure
    assert seen["https"] >= 4 and seen["http"] == 1, seen


def test_start_connections_from_the_environment():
    assert DownloadSettings.from_env({}).start_connections is None  # by scheme
    assert DownloadSettings.from_env({"INVOKEAI_START_CONNECTIONS": "8"}).start_connections == 8
    assert DownloadSettings.from_env({"INVOKEAI_ZERO_COPY": "0"}).zero_copy is False
    assert DownloadSettings.from_env({}).zero_copy is True


_FULL_DISK = """
import sys
from pathlib import Path
from invokeai_model_install.errors import DiskSpaceError
from invokeai_model_install.net import engine
from invokeai_model_install.net.settings import DownloadSettings, RemoteFile, Resolved
url, size, sha, where, zero_copy = sys.argv[1], int(sys.argv[2]), sys.argv[3], Path(sys.argv[4]), sys.argv[5] == "1"
s = DownloadSettings(hf_endpoint="http://127.0.0.1:9", retries=1, backoff=0.01, split_size=1 << 20, max_connections=2,
                     zero_copy=zero_copy, disk_free=lambda p: 1 << 40)  # the pre-check believes there is room
rf = RemoteFile(url, "m.safetensors", size, sha)
try:
    engine.download(Resolved((rf,), None, "m", None, size), where / "d", partial_dir=where / "p", settings=s)
except DiskSpaceError as exc:
    print("DISKFULL", exc.one_line())
"""


@pytest.mark.parametrize("zero_copy", [True, False], ids=["splice", "readinto"])
def test_a_full_disk_is_reported_as_ours(file_server, tmp_path, zero_copy):
    # a real full filesystem: a 2 MiB tmpfs mounted in a private mount namespace (root, or a user namespace)
    if not shutil.which("unshare") or subprocess.run(["unshare", "-m" if os.geteuid() == 0 else "-rm", "true"]).returncode:
        pytest.skip("no private mount namespace here (unshare): cannot make a small full filesystem")
    data, sha = put(file_server, "m.safetensors", 6 * MB)
    small = tmp_path / "small"
    small.mkdir()
    script = tmp_path / "full.py"
    script.write_text(_FULL_DISK)
    mount = 'mount -t tmpfs -o size=2m tmpfs "$0" && exec "$@"'
    done = subprocess.run(
        ["unshare", "-m" if os.geteuid() == 0 else "-rm", "sh", "-c", mount, str(small), sys.executable, str(script),
         file_server.url_for("m.safetensors"), str(len(data)), sha, str(small), "1" if zero_copy else "0"],
        capture_output=True, text=True, timeout=120, cwd=os.getcwd(),
    )
    assert done.returncode == 0, done.stderr
    assert "DISKFULL disk full while writing m.safetensors into " in done.stdout, done.stdout + done.stderr


def _stolen(records, size: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Pairs (victim, thief) of requested ranges where the thief starts inside the victim's range.

    Pieces are carved without overlap, so such a pair only comes from a split of a running range.
    """
    ranges = [requested_range(r, size) for r in records]
    return [(a, b) for a in ranges for b in ranges if a[0] < b[0] < a[1]]


def test_a_slow_connection_has_its_range_split_by_the_idle_ones(file_server, tmp_path):
    data, sha = put(file_server, "m.safetensors", 8 * MB)
    file_server.faults.throttle("/m.safetensors", 256_000, times=1)  # one connection crawls
    s = settings(split_size=256 << 10, max_connections=4)
    res = engine.download(one(file_server, "m.safetensors", data, sha), tmp_path / "d", partial_dir=tmp_path / "p", settings=s)
    assert res.paths["m.safetensors"].read_bytes() == data and res.sha256["m.safetensors"] == sha
    assert res.fetched_bytes == len(data)  # each byte written once, whatever was cut short
    gets = file_server.stats.requests_for("/m.safetensors", "GET")
    assert _stolen(gets, len(data)), [r.header("Range") for r in gets]  # the crawling range was split by idle connections


def test_resume_after_a_stolen_split_fetches_only_the_holes(file_server, tmp_path):
    data, sha = put(file_server, "m.safetensors", 8 * MB)
    path = "/m.safetensors"
    file_server.faults.throttle(path, 128_000, times=1)  # one connection crawls: the others split its range
    s = settings(split_size=256 << 10, max_connections=4, sidecar_interval=0.05)
    cancel = threading.Event()

    def watch():  # stop (as Ctrl-C would) soon after a range was split
        while not cancel.is_set():
            if _stolen(file_server.stats.requests_for(path, "GET"), len(data)):
                time.sleep(0.1)  # the thief is fast: let it write its half
                cancel.set()
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    err = _catch(lambda: engine.download(one(file_server, "m.safetensors", data, sha), tmp_path / "d", partial_dir=tmp_path / "p",
                                         settings=s, cancel=cancel))
    cancel.set()
    watcher.join()
    assert isinstance(err, Cancelled), err
    sidecar = [p for p in (tmp_path / "p").iterdir() if p.suffix == ".json"]
    assert len(sidecar) == 1
    done = json.loads(sidecar[0].read_text())["done"]
    assert len(done) >= 2  # holes in the middle: the split left ranges apart
    have = sum(b - a for a, b in done)
    assert 0 < have < len(data)

    file_server.faults.clear()
    before = len(file_server.stats.requests_for(path, "GET"))
    events = []
    res = engine.download(one(file_server, "m.safetensors", data, sha), tmp_path / "d", partial_dir=tmp_path / "p",
                          settings=s, on_event=events.append)
    assert res.paths["m.safetensors"].read_bytes() == data and res.sha256["m.safetensors"] == sha
    started = [e for e in events if isinstance(e, FileStarted)][0]
    assert started.resumed_from == have and res.fetched_bytes == len(data) - have
    # the second run asked only for the holes
    for a, b in (requested_range(r, len(data)) for r in file_server.stats.requests_for(path, "GET")[before:]):
        assert not any(x < b and a < y for x, y in done), (a, b, done)
    assert list((tmp_path / "p").iterdir()) == []
