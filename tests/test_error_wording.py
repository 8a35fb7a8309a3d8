"""Issue 11 item 10: error wording a new user met.  Each failure is ONE `error:` line that names the
item once and says what happened in words (no repeated names, no raw exception class names)."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from invokeai_model_install.app import cli, configure
from invokeai_model_install.install.item import ItemOutcome
from invokeai_model_install.net.http_errors import describe_network_error, sniff_not_a_model
from invokeai_model_install.root.layout import RootLayout


@pytest.fixture
def layout(tmp_path: Path) -> RootLayout:
    layout = RootLayout(tmp_path / "invokeai")
    configure.create_layout(layout)
    return layout


def _errors(layout: RootLayout, *items: str, env: dict | None = None) -> tuple[int, list[str]]:
    full = dict(os.environ, INVOKEAI_INSTALL_WORKER="thread", INVOKEAI_DOWNLOAD_RETRIES="0", **(env or {}))
    full.pop("INVOKEAI_ROOT", None)
    done = subprocess.run([sys.executable, "-m", "invokeai_model_install", "--root", str(layout.root), "--add", *items],
                          capture_output=True, text=True, env=full, timeout=300)
    return done.returncode, [line for line in done.stderr.splitlines() if line.startswith("error:")]


def test_a_text_file_named_safetensors_is_not_a_safetensors_file_named_once(layout, tmp_path):
    fake = tmp_path / "fake.safetensors"
    fake.write_text("hello, this is not a model\n")
    code, lines = _errors(layout, str(fake))
    assert code == 1 and len(lines) == 1, lines
    assert "not a safetensors file" in lines[0] and "header too large" not in lines[0]
    assert lines[0].count("fake.safetensors") == 1, lines[0]  # was: X: X: X cannot be read... (X: ...)


def test_an_empty_checkpoint_says_empty(layout, tmp_path):
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    code, lines = _errors(layout, str(empty))
    assert code == 1 and len(lines) == 1 and "empty (0 bytes)" in lines[0], lines
    assert lines[0].count("empty.ckpt") == 1


def test_a_garbage_line_with_spaces_is_one_item_with_one_error(layout):
    code, lines = _errors(layout, "foo bar baz")
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith("error: foo bar baz: 'foo bar baz' is not a URL")
    assert lines[0].count("is not") == 1


def test_connection_refused_says_cannot_reach_host(layout):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/model.safetensors"
    code, lines = _errors(layout, url)
    assert code == 1 and len(lines) == 1, lines
    line = lines[0]
    assert f"cannot reach 127.0.0.1:{port}: connection refused" in line
    assert "ConnectionRefusedError" not in line and "Errno" not in line and "partial downloads resume" not in line
    assert line.count(url) == 1


@pytest.mark.parametrize(
    "exc, words, hint_words",
    [
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
         "cannot reach no-such-host.invalid: the host name cannot be resolved", "host name"),
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), "cannot reach no-such-host.invalid:8080: connection refused", "port"),
        (TimeoutError("timed out"), "cannot reach no-such-host.invalid:8080: no answer", "proxy"),
    ],
)
def test_network_errors_in_words(exc, words, hint_words):
    reason, hint = describe_network_error(exc, "http://no-such-host.invalid:8080/x.safetensors")
    assert reason.startswith(words) or words in reason
    assert hint and hint_words in hint and "resume" not in hint
    assert "gaierror" not in reason and "Error" not in reason


@pytest.mark.parametrize("body, article", [(b"just some text here\n", "a text page"), (b"<html><body>login</body></html>", "an HTML page"),
                                           (b'{"error": "login"}', "a JSON page")])
def test_pages_get_the_right_article(body, article):
    err = sniff_not_a_model(body, "text/plain", "https://example.com/x.safetensors")
    assert err is not None and article in err.message and " an text" not in err.message


def test_outcome_line_names_the_item_once():
    assert ItemOutcome("i", "X", "failed", message="X: X cannot be read", hint="h").one_line() == "X cannot be read (h)"
    assert ItemOutcome("i", "http://h/x", "failed", message="http://h/x sent a text page").one_line() == "http://h/x sent a text page"


def test_config_file_typo_says_the_file_does_not_exist(layout, capsys):
    typo = layout.configs_dir / "modles.yaml"
    assert cli.main(["--root", str(layout.root), "--config_file", str(typo), "list"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{typo}: the file does not exist" in err and "--yes" in err
    assert not typo.exists()
    # created only when asked
    assert cli.main(["--root", str(layout.root), "--config_file", str(typo), "--create-root"]) == 0
    assert typo.exists() and "Created" in capsys.readouterr().err
    assert cli.main(["--root", str(layout.root), "--config_file", str(typo), "list"]) == 0
