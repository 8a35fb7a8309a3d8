"""Item 1 of issue 11: every OS error (read-only root, permission, no space, a file where a folder
should be) is ONE line naming the path and what to do, never a traceback, never "a bug", never
"run again to resume".  The read-only root is real: see tests/rofs.py (we run as root, so chmod
alone would not stop anything)."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from invokeai_model_install.app import configure
from invokeai_model_install.errors import FileSystemError, from_os_error
from invokeai_model_install.root.layout import RootLayout
from invokeai_model_install.root.registry import Registry
from tests.modelgen import make_lora_file, make_vae_file
from tests.rofs import readonly_mode, run_readonly


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("INVOKEAI_ROOT", None)
    env["INVOKEAI_INSTALL_WORKER"] = "thread"
    return env


@pytest.fixture
def setup(tmp_path: Path):
    """A root with one model registered, and two model files outside it."""
    layout = RootLayout(tmp_path / "invokeai")
    configure.create_layout(layout)
    files = tmp_path / "files"
    files.mkdir()
    vae = make_vae_file(files / "my-vae.safetensors")
    make_lora_file(files / "my-lora.safetensors")
    with Registry(layout.models_yaml).transaction() as doc:
        doc.add("my-vae", {"description": "a VAE", "weights": str(vae), "format": "ckpt"})
    return layout, files


COMMANDS = {
    "delete": ["delete", "my-vae"],
    "edit": ["edit", "my-vae", "--description", "new"],
    "default": ["default", "my-vae"],
    "add": ["--add", "{files}/my-lora.safetensors"],
    "scan-dir-autoscan": ["--scan-dir", "{files}", "--autoscan"],
    "scan": ["scan", "{files}"],
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_read_only_root_is_one_line_naming_the_path(setup, name):
    if readonly_mode() is None:
        pytest.skip("neither a private read-only mount (unshare) nor chmod can stop writes here")
    layout, files = setup
    before = layout.models_yaml.read_bytes()
    argv = [a.replace("{files}", str(files)) for a in COMMANDS[name]]
    done = run_readonly(layout.root, [sys.executable, "-m", "invokeai_model_install", "--root", str(layout.root), *argv],
                        env=_env(), timeout=300)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert len(lines) == 1, done.stderr
    line = lines[0]
    assert str(layout.root) in line
    assert "read-only" in line or "permission denied" in line
    assert "--root" in line  # what to do
    for bad in ("Traceback", "bug", "resume", "Errno"):
        assert bad not in done.stdout + done.stderr
    assert layout.models_yaml.read_bytes() == before


def test_configure_on_a_read_only_parent_is_one_line(tmp_path):
    if readonly_mode() is None:
        pytest.skip("neither a private read-only mount (unshare) nor chmod can stop writes here")
    parent = tmp_path / "ro"
    parent.mkdir()
    done = run_readonly(parent, [sys.executable, "-m", "invokeai_model_install.app.configure", "--root", str(parent / "r"),
                                 "--skip-sd-weights", "--skip-support-models"], env=_env(), timeout=300)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert str(parent / "r") in lines[0] and "Traceback" not in done.stderr


def test_a_file_where_a_folder_should_be(setup):
    layout, files = setup
    shutil.rmtree(layout.models_dir)
    layout.models_dir.write_text("not a folder")
    done = subprocess.run([sys.executable, "-m", "invokeai_model_install", "--root", str(layout.root), "--add",
                           str(files / "my-lora.safetensors")], capture_output=True, text=True, env=_env(), timeout=300)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert str(layout.models_dir) in lines[0] and "a file of that name is already there" in lines[0]
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "code, words",
    [
        (errno.EROFS, "read-only file system"),
        (errno.EACCES, "permission denied"),
        (errno.ENOSPC, "no space left"),
        (errno.ENOTDIR, "a file is where a folder should be"),
        (errno.EEXIST, "a file of that name is already there"),
    ],
)
def test_os_errors_become_one_line_with_the_path_and_a_hint(code, words):
    err = from_os_error(OSError(code, os.strerror(code), "/r/configs/.models.yaml.abc123.tmp"))
    assert isinstance(err, FileSystemError)
    line = err.one_line()
    assert words in line and "\n" not in line
    assert line.startswith("/r/configs ")  # a temporary file's folder, which the user can act on
    assert err.hint and "Errno" not in line


def test_the_form_on_a_read_only_root_says_so_in_one_line_and_stays_usable(setup, tmp_path):
    """The form opens (no log file can be written: no crash), and DONE says why nothing can be installed."""
    if readonly_mode() is None:
        pytest.skip("neither a private read-only mount (unshare) nor chmod can stop writes here")
    from tests.ptyterm import PtyTerm, keys
    from tests.rofs import readonly

    layout, files = setup
    catalog = tmp_path / "empty-catalog.yaml"
    catalog.write_text("")
    with readonly(layout.root) as prefix:
        argv = prefix + [sys.executable, "-m", "invokeai_model_install", "--root", str(layout.root), "--catalog", str(catalog)]
        with PtyTerm(argv, env={"INVOKEAI_INSTALL_WORKER": "thread"}) as term:
            term.wait_for("No starter models in the catalogue.")
            term.type(str(files / "my-lora.safetensors"))
            term.wait_for("+ 1 import line")
            term.press("DONE")
            term.wait_for("Cannot start")
            flat = " ".join(" ".join(line.strip("│ ") for line in term.lines()).split())
            assert "only file system" in flat or "permission denied" in flat, term.dump()  # (npyscreen wraps at "read-")
            assert "invokeai/models" in flat  # the folder that cannot be written
            term.send(keys.ENTER)  # OK: back on the form, the import line still there
            term.wait_gone("Cannot start")
            term.wait_for("my-lora.safetensors")
            term.press("CANCEL", keys.BTAB)
            assert term.wait_exit() == 0
            assert "Traceback" not in term.raw.decode("utf-8", "replace")
