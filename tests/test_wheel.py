"""The wheel: built from this checkout, installed into a fresh venv, run from another directory.

No dependency is downloaded: the fresh venv gets our wheel only (``--no-deps``)
and finds the runtime dependencies through ``PYTHONPATH`` pointing at the test
venv's site-packages.  Our own editable install is *not* visible that way
(editable installs work through a ``.pth`` file, which ``PYTHONPATH`` entries
do not run), so the package that runs is the one from the wheel.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from invokeai_model_install.root.catalog import load_catalog
from invokeai_model_install.root.resources import LEGACY_CONFIG_NAMES

REPO = Path(__file__).resolve().parent.parent


def _build_wheel(out: Path) -> Path:
    if importlib.util.find_spec("hatchling") is not None:
        # The build backend is installed: build offline, without an isolated env.
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(REPO)]
    else:  # pip fetches the backend (hatchling) from the package index into an isolated env
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(out), str(REPO)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    wheels = list(out.glob("invokeai_model_install-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("wheel")
    wheel = _build_wheel(base / "dist")
    env_dir = base / "fresh-venv"
    venv.EnvBuilder(with_pip=False, clear=True).create(env_dir)
    python = env_dir / "bin" / "python"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "VIRTUAL_ENV", "INVOKEAI_ROOT")}
    env["PYTHONPATH"] = sysconfig.get_paths()["purelib"]  # runtime deps of the test venv, not our package
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    workdir = base / "elsewhere"
    workdir.mkdir()
    return {"wheel": wheel, "python": python, "bin": env_dir / "bin", "env": env, "cwd": workdir, "venv": env_dir}


def _run(installed: dict, *cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True, cwd=installed["cwd"], env=installed["env"], timeout=300)


def test_wheel_carries_catalogue_and_legacy_configs(installed: dict) -> None:
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    assert "invokeai_model_install/configs/INITIAL_MODELS.yaml" in names
    for name in LEGACY_CONFIG_NAMES:
        assert f"invokeai_model_install/configs/stable-diffusion/{name}" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(installed["wheel"]).read(entry_points).decode()
    for script in ("invokeai-model-install", "invokeai-configure", "invokeai ="):
        assert script in text


def test_installed_help_runs_from_another_directory(installed: dict) -> None:
    done = _run(installed, str(installed["bin"] / "invokeai-model-install"), "--help")
    assert done.returncode == 0, done.stderr
    assert "list" in done.stdout and "delete" in done.stdout and "--root" in done.stdout
    done = _run(installed, str(installed["python"]), "-m", "invokeai_model_install", "--help")
    assert done.returncode == 0, done.stderr


def test_installed_copy_uses_its_own_packaged_files(installed: dict) -> None:
    code = (
        "import invokeai_model_install, invokeai_model_install.root.resources as r\n"
        "from invokeai_model_install.root.catalog import load_catalog\n"
        "print(invokeai_model_install.__file__)\n"
        "print(r.package_configs_dir())\n"
        "print(len(load_catalog()))\n"
    )
    done = _run(installed, str(installed["python"]), "-c", code)
    assert done.returncode == 0, done.stderr
    module_file, configs_dir, count = done.stdout.strip().splitlines()
    venv_dir = str(installed["venv"])
    assert module_file.startswith(venv_dir), module_file  # the wheel's copy, not the checkout
    assert configs_dir.startswith(venv_dir) and configs_dir.endswith("invokeai_model_install/configs")
    assert int(count) == len(load_catalog())


def test_installed_configure_creates_a_root(installed: dict, tmp_path: Path) -> None:
    root = tmp_path / "root-from-wheel"
    done = _run(
        installed, str(installed["bin"] / "invokeai-configure"), "--root", str(root), "--skip-sd-weights", "--skip-support-models"
    )
    assert done.returncode == 0, done.stderr
    for name in LEGACY_CONFIG_NAMES:
        assert (root / "configs" / "stable-diffusion" / name).is_file()
    done = _run(installed, str(installed["bin"] / "invokeai-model-install"), "--root", str(root), "list", "--json")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_installed_web_manager_serves_its_packaged_page(installed: dict, tmp_path: Path) -> None:
    """The page's files travel in the wheel as package data (invokeai_model_install/app/web/static)."""
    import urllib.request

    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    for name in ("index.html", "app.js", "app.css"):
        assert f"invokeai_model_install/app/web/static/{name}" in names
    root = tmp_path / "root-for-web"
    done = _run(installed, str(installed["bin"] / "invokeai-configure"), "--root", str(root), "--skip-sd-weights", "--skip-support-models")
    assert done.returncode == 0, done.stderr
    proc = subprocess.Popen([str(installed["bin"] / "invokeai-model-install"), "--root", str(root), "web", "--port", "0", "--no-browser"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=installed["cwd"], env=installed["env"])
    try:
        url = proc.stdout.readline().strip().split(": ", 1)[1]
        with urllib.request.urlopen(url, timeout=30) as resp:
            assert b"InvokeAI model manager" in resp.read()
        cookie = resp.headers["Set-Cookie"].split(";")[0]
        req = urllib.request.Request(url.split("?")[0] + "static/app.js", headers={"Cookie": cookie})
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert b"EventSource" in resp.read()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
