"""``invokeai-model-install web`` as a real process: the printed line, Server-Sent Events over HTTP, Ctrl-C, --host."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from tests.web_support import LINE, WebProcess, build_template_root, copy_root  # noqa: E402



@pytest.fixture(scope="module")
def template(tmp_path_factory, tiny_checkpoints, tiny_extras):
    base = tmp_path_factory.mktemp("web-server-template")
    return build_template_root(base / "root", base / "outside", tiny_checkpoints, tiny_extras)


@pytest.fixture
def web(template, tmp_path):
    layout = copy_root(template, tmp_path / "root")
    procs: list[WebProcess] = []

    def start(*extra: str, env: dict | None = None) -> WebProcess:
        p = WebProcess(layout.root, *extra, env=env)
        procs.append(p)
        return p

    start.layout = layout
    yield start
    for p in procs:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait()


class Events:
    """SSE messages of one streaming response (one line iterator for all reads)."""

    def __init__(self, resp) -> None:
        self.lines = resp.iter_lines()


def read_events(events: Events, until, timeout: float = 60) -> list[dict]:
    """SSE messages until ``until(msg)`` is true."""
    seen = []
    deadline = time.monotonic() + timeout
    for line in events.lines:
        if line.startswith("data: "):
            msg = json.loads(line[6:])
            seen.append(msg)
            if until(msg):
                return seen
        if time.monotonic() > deadline:
            break
    raise AssertionError(f"event not seen; got {[m.get('type') for m in seen]}")


def test_prints_one_line_serves_events_and_stops_on_ctrl_c(web, tmp_path, tiny_checkpoints):
    p = web()
    assert LINE.match(p.line), p.line
    src = tmp_path / "dl" / "one.safetensors"
    src.parent.mkdir()
    shutil.copyfile(tiny_checkpoints["sd-1", "safetensors"], src)
    with p.client() as c:
        assert c.get("/api/models").status_code == 200
        assert httpx.get(p.base + "/api/models").status_code == 401
        with c.stream("GET", "/api/events", timeout=60) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            ev = Events(resp)
            first = read_events(ev, lambda m: True)
            assert first[0]["type"] == "Snapshot" and first[0]["job"] is None
            assert c.post("/api/install", json={"items": [str(src)]}).status_code == 202
            seen = read_events(ev, lambda m: m["type"] == "JobFinished")
        kinds = [m["event"]["type"] for m in seen if m["type"] == "event"]
        assert "ItemRegistered" in kinds and seen[-1]["job"]["items"][0]["status"] == "installed"
        assert "one" in [m["name"] for m in c.get("/api/models").json()["models"]]
    assert p.stop(signal.SIGINT) == 0
    assert p.out_rest == ""  # exactly one line on stdout
    assert "Stopped." in p.err and "Traceback" not in p.err


def test_ctrl_c_cancels_a_running_download_and_keeps_the_partial_file(web, file_server, tiny_checkpoints):
    shutil.copyfile(tiny_checkpoints["sd-1", "safetensors"], file_server.folder / "slow.safetensors")
    file_server.faults.throttle("*.safetensors", 256 * 1024)
    p = web()
    with p.client() as c, c.stream("GET", "/api/events", timeout=60) as resp:
        ev = Events(resp)
        read_events(ev, lambda m: True)
        assert c.post("/api/install", json={"items": [file_server.url_for("slow.safetensors")]}).status_code == 202
        progress = read_events(ev, lambda m: m["type"] == "event" and m["event"]["type"] == "FileProgress" and m["event"]["done"] > 0)
        f = progress[-1]["item"]["files"]
        assert f and list(f.values())[0]["total"] > 0
    started = time.monotonic()
    assert p.stop(signal.SIGINT) == 0
    assert time.monotonic() - started < 20
    assert "install was cancelled" in p.err and "partial downloads are kept" in p.err
    parts = list(web.layout.partial_dir.glob("*.part"))  # the bytes so far, and their sidecar: a re-run resumes
    assert len(parts) == 1 and parts[0].with_suffix(".json").is_file()
    assert "slow.safetensors" in parts[0].with_suffix(".json").read_text()
    assert "slow" not in web.layout.models_yaml.read_text()


def test_sigterm_stops_cleanly_too(web):
    p = web()
    assert p.stop(signal.SIGTERM) == 0
    assert "Stopped." in p.err


def test_another_host_needs_the_flag_and_warns(web):
    p = web("--host", "0.0.0.0")
    assert p.line.startswith("Model manager: http://0.0.0.0:")
    assert p.stop() == 0
    assert "warning: listening on 0.0.0.0" in p.err


def test_default_is_loopback_only(web):
    p = web()
    assert p.line.startswith("Model manager: http://127.0.0.1:")
    assert p.stop() == 0
    assert "warning" not in p.err


def test_a_missing_root_is_one_error_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "invokeai_model_install", "--root", str(tmp_path / "none"), "web", "--no-browser"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stdout == ""
    assert "no InvokeAI root" in done.stderr and "invokeai-configure" in done.stderr


def test_a_busy_port_is_one_error_line(web, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "invokeai_model_install", "--root", str(web.layout.root), "web", "--no-browser",
                               "--port", str(port)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr


def test_the_web_stack_is_imported_only_by_the_web_command():
    code = ("import sys; from invokeai_model_install.app import cli; cli.build_parser(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('starlette', 'uvicorn', 'anyio', 'httpx')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_opens_the_browser_on_the_printed_address(web, tmp_path):
    """Without --no-browser the address goes to the user's browser ($BROWSER here: a script that records it)."""
    record = tmp_path / "record.py"
    opened = tmp_path / "opened.txt"
    record.write_text(f"import sys; open({str(opened)!r}, 'w').write(sys.argv[1])\n")
    env = {"BROWSER": f"{sys.executable} {record} %s"}
    p = WebProcess(web.layout.root, env=env, browser=True)
    try:
        deadline = time.monotonic() + 30
        while not opened.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert opened.read_text() == p.line.split(": ", 1)[1]
    finally:
        assert p.stop() == 0


def test_installs_run_in_a_worker_process_by_default(web, tmp_path, tiny_checkpoints):
    """Real use: the plan runs in a spawned worker process (torch's memory goes with it); the page still gets every event."""
    src = tmp_path / "dl" / "proc.safetensors"
    src.parent.mkdir()
    shutil.copyfile(tiny_checkpoints["sd-1", "safetensors"], src)
    p = web(env={"INVOKEAI_INSTALL_WORKER": "process"})
    with p.client() as c:
        assert c.post("/api/install", json={"items": [str(src)]}).status_code == 202
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            job = c.get("/api/state").json()["job"]
            if not job["running"]:
                break
            time.sleep(0.2)
        assert job["items"][0]["status"] == "installed", job
        assert "proc" in [m["name"] for m in c.get("/api/models").json()["models"]]
    assert p.stop() == 0
