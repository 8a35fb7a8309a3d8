"""`invokeai-model-install integrate [--undo]` on a fake InvokeAI 2.3.5 root (ROOT/.venv with its scripts)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from invokeai_model_install.app import cli
from invokeai_model_install.app.integrate import BACKUP_SUFFIX, MARKER, Target, integrate, is_shim, undo

ORIGINAL = {
    "invokeai-model-install": "#!/bin/sh\necho 'InvokeAI 2.3.5 model installer' \"$@\"\n",
    "invokeai-configure": "#!/bin/sh\necho 'InvokeAI 2.3.5 configure' \"$@\"\n",
}


def fake_root(tmp_path: Path, windows: bool = False) -> Path:
    root = tmp_path / "invokeai"
    folder = root / ".venv" / ("Scripts" if windows else "bin")
    folder.mkdir(parents=True)
    for name, text in ORIGINAL.items():
        p = folder / (name + (".exe" if windows else ""))
        p.write_bytes(b"MZ fake pip launcher\x00" + text.encode() if windows else text.encode())
        p.chmod(0o755)
    (root / "invoke.sh").write_text("#!/bin/bash\n. .venv/bin/activate\ninvokeai-model-install --root ${INVOKEAI_ROOT}\n")
    return root


def run(path: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(path), *args], capture_output=True, text=True, timeout=120, **kw)


def test_integrate_posix_runs_ours_keeps_originals_and_undo_restores_exactly(tmp_path, capsys):
    root = fake_root(tmp_path)
    bin_ = root / ".venv" / "bin"
    before = {n: (bin_ / n).read_bytes() for n in ORIGINAL}
    mode = {n: (bin_ / n).stat().st_mode for n in ORIGINAL}
    assert cli.main(["--root", str(root), "integrate"]) == 0
    out = capsys.readouterr().out
    assert "kept InvokeAI 2.3.5's invokeai-model-install as invokeai-model-install.invokeai-2.3.5" in out
    for name in ORIGINAL:
        assert (bin_ / (name + BACKUP_SUFFIX)).read_bytes() == before[name]
        assert is_shim(bin_ / name) and MARKER in (bin_ / name).read_text()
    # the launcher's menu 5 reaches OUR installer (our --help lists `integrate`)
    p = run(bin_ / "invokeai-model-install", "--help")
    assert p.returncode == 0 and "integrate" in p.stdout and "2.3.5 model installer" not in p.stdout
    p = run(bin_ / "invokeai-configure", "--help")
    assert p.returncode == 0 and "--skip-support-models" in p.stdout and "--default_only" in p.stdout
    # menu 6 (both skip flags, no --yes): 2.3.5's own startup-options form, i.e. the kept original
    p = run(bin_ / "invokeai-configure", "--root", ".", "--skip-sd-weights", "--skip-support-models")
    assert p.stdout.startswith("InvokeAI 2.3.5 configure"), p.stdout + p.stderr
    # a second integrate changes nothing it should keep
    assert cli.main(["--root", str(root), "integrate"]) == 0
    assert all((bin_ / (n + BACKUP_SUFFIX)).read_bytes() == before[n] for n in ORIGINAL)
    assert cli.main(["--root", str(root), "integrate", "--undo"]) == 0
    for name in ORIGINAL:
        assert (bin_ / name).read_bytes() == before[name] and (bin_ / name).stat().st_mode == mode[name]
        assert not (bin_ / (name + BACKUP_SUFFIX)).exists()
    assert sorted(os.listdir(bin_)) == sorted(ORIGINAL)


def test_undo_leaves_a_script_that_an_update_rewrote(tmp_path):
    root = fake_root(tmp_path)
    bin_ = root / ".venv" / "bin"
    integrate(root / ".venv", Target.current())
    (bin_ / "invokeai-configure").write_text("#!/bin/sh\necho new 2.3.x\n")  # invokeai-update reinstalled it
    lines = undo(root / ".venv")
    assert any("left invokeai-configure alone" in line for line in lines)
    assert (bin_ / "invokeai-configure").read_text() == "#!/bin/sh\necho new 2.3.x\n"
    assert (bin_ / "invokeai-model-install").read_text() == ORIGINAL["invokeai-model-install"]


def test_integrate_windows_exe_runs_ours_under_python_x_exe(tmp_path):
    """invoke.bat runs `python .venv\\Scripts\\invokeai-model-install.exe`: the shim is a launcher + zip whose
    __main__.py starts OUR interpreter; checked here by running it the same way."""
    root = fake_root(tmp_path, windows=True)
    scripts = root / ".venv" / "Scripts"
    before = {n: (scripts / f"{n}.exe").read_bytes() for n in ORIGINAL}
    lines = integrate(root / ".venv", Target.current())
    assert any("invokeai-model-install.invokeai-2.3.5.exe" in line for line in lines)
    exe = scripts / "invokeai-model-install.exe"
    assert zipfile.is_zipfile(exe) and is_shim(exe)
    assert (scripts / "invokeai-model-install.invokeai-2.3.5.exe").read_bytes() == before["invokeai-model-install"]
    p = subprocess.run([sys.executable, str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "integrate" in p.stdout, p.stderr
    assert (scripts / "invokeai-model-install-ours.cmd").is_file()
    undo(root / ".venv")
    assert {n: (scripts / f"{n}.exe").read_bytes() for n in ORIGINAL} == before
    assert not (scripts / "invokeai-model-install-ours.cmd").exists()


def test_integrate_without_a_venv_is_one_line(tmp_path, capsys):
    assert cli.main(["--root", str(tmp_path), "integrate"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no InvokeAI virtual environment" in err[0]


@pytest.mark.skipif(not Path(sys.executable).with_name("invokeai-model-install").exists(), reason="needs our console script")
def test_invoke_sh_menu5_reaches_us(tmp_path):
    """The line invoke.sh runs for 'Download and install models', with 2.3.5's venv activated."""
    root = fake_root(tmp_path)
    integrate(root / ".venv", Target.current())
    (root / ".venv" / "bin" / "activate").write_text(f'VIRTUAL_ENV="{root / ".venv"}"\nPATH="$VIRTUAL_ENV/bin:$PATH"\nexport VIRTUAL_ENV PATH\n')
    script = 'cd "$1"; . .venv/bin/activate; export INVOKEAI_ROOT=.; invokeai-model-install --root ${INVOKEAI_ROOT} starters --json'
    p = subprocess.run(["bash", "-c", script, "sh", str(root)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and '"name": "stable-diffusion-1.5"' in p.stdout, p.stderr
