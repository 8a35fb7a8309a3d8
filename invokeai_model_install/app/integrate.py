"""``invokeai-model-install integrate [--undo]``: make InvokeAI 2.3.5's launcher run our commands.

2.3.5's ``invoke.sh`` / ``invoke.bat`` (copied into the root by its installer) activate ``ROOT/.venv``
and run ``invokeai-model-install`` (menu 5) and ``invokeai-configure`` (menus 6 and 7) from it.  Our
package cannot live in that venv (2.3.5 pins diffusers 0.16.1, safetensors 0.3, torch 2.0), so this
command replaces those two entries of ``ROOT/.venv/bin`` (``Scripts\\`` on Windows) with small shims
that run OUR installed commands, and keeps 2.3.5's originals beside them
(``<name>.invokeai-2.3.5``; ``<name>.invokeai-2.3.5.exe`` on Windows).

* Linux/macOS: a ``/bin/sh`` script ``exec "<our bin>/<name>" "$@"``.
* Windows: ``invoke.bat`` runs ``python .venv\\Scripts\\<name>.exe`` with 2.3.5's Python, which executes
  the zip appended to the ``.exe``.  The shim is therefore such an ``.exe``: pip's own launcher
  (``t64.exe`` from pip's vendored distlib, when present) + ``#!<our python>`` + a zip whose
  ``__main__.py`` runs our interpreter with the arguments.  Run as ``python X.exe`` (the launcher) or
  directly (typing the command), it starts our installer.  Without pip's launcher the ``.exe`` is
  the zip alone: ``python X.exe`` (what invoke.bat does) still works, typing the bare command
  does not; a ``<name>-ours.cmd`` is written beside it for that.
* Menu 6 (``invokeai-configure --skip-sd-weight(s) --skip-support-models`` without ``--yes``) is
  2.3.5's form that edits ``invokeai.init``: the configure shim hands exactly that call to the kept
  2.3.5 original.
* ``--undo`` puts each original back (byte for byte: a rename) when the file there is still our
  shim; a file ``invokeai-update`` rewrote is left alone and named.  ``invokeai-update`` (menu 9)
  reinstalls 2.3.5's scripts and so undoes the integration: run ``integrate`` again after it.
"""

from __future__ import annotations

import argparse
import io
import os
import stat
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invokeai_model_install.errors import ConfigError, RootError

COMMANDS = ("invokeai-model-install", "invokeai-configure")
MARKER = "invokeai-model-install integrate shim"
BACKUP_SUFFIX = ".invokeai-2.3.5"

#: how each command is started when its console script is not beside our interpreter
_ENTRY = {
    "invokeai-model-install": "invokeai_model_install.app.cli",
    "invokeai-configure": "invokeai_model_install.app.configure",
}


@dataclass(frozen=True)
class Target:
    """Our side: the interpreter and where our console scripts are."""

    python: Path
    scripts: Path

    @classmethod
    def current(cls) -> "Target":
        py = Path(sys.executable).absolute()
        return cls(py, py.parent)

    def command(self, name: str, windows: bool) -> Path | None:
        p = self.scripts / (name + (".exe" if windows else ""))
        return p if p.is_file() else None


def register_subcommand(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "integrate",
        help="make InvokeAI 2.3.5's launcher (invoke.sh/invoke.bat) run this installer (--undo reverses it)",
        description="Point ROOT/.venv/bin/invokeai-model-install and invokeai-configure (Scripts\\*.exe on Windows), "
        "which InvokeAI 2.3.5's invoke.sh/invoke.bat run for 'Download and install models' and the setup, at this "
        "installer's commands. 2.3.5's originals are kept beside them as NAME.invokeai-2.3.5; --undo puts them back.",
    )
    p.add_argument("--undo", action="store_true", help="put InvokeAI 2.3.5's original commands back")
    p.add_argument("--venv", metavar="DIR", help="InvokeAI's virtual environment (default: ROOT/.venv)")
    p.set_defaults(handler=cmd_integrate)


def cmd_integrate(args: argparse.Namespace, layout: Any, catalog_path: Path | None) -> int:
    venv = Path(os.path.expanduser(args.venv)).absolute() if args.venv else layout.root / ".venv"
    lines = undo(venv) if args.undo else integrate(venv, Target.current())
    for line in lines:
        print(line)
    return 0


def scripts_dir(venv: Path) -> tuple[Path, bool]:
    """``venv/bin`` (POSIX) or ``venv/Scripts`` (Windows), and whether it is the Windows layout."""
    if (venv / "bin").is_dir():
        return venv / "bin", False
    if (venv / "Scripts").is_dir():
        return venv / "Scripts", True
    raise RootError(f"no InvokeAI virtual environment at {venv} (neither bin/ nor Scripts/)",
                    "give --root the folder with invoke.sh/invoke.bat, or --venv the InvokeAI venv")


def _file(folder: Path, name: str, windows: bool) -> Path:
    return folder / (name + (".exe" if windows else ""))


def _backup(path: Path, windows: bool) -> Path:
    return path.with_name(path.stem + BACKUP_SUFFIX + ".exe") if windows else path.with_name(path.name + BACKUP_SUFFIX)


def is_shim(path: Path) -> bool:
    try:
        data = path.read_bytes()
    except OSError:
        return False
    if MARKER.encode() in data[:4096]:
        return True
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return MARKER in zf.read("__main__.py").decode("utf-8", "replace")
    except (zipfile.BadZipFile, KeyError):
        return False


def integrate(venv: Path, target: Target) -> list[str]:
    folder, windows = scripts_dir(venv)
    if target.python.absolute().parent == folder.absolute():
        raise ConfigError(f"this installer runs from {venv} itself", "install it in its own environment (pipx) and run integrate from there")
    lines = []
    for name in COMMANDS:
        path = _file(folder, name, windows)
        backup = _backup(path, windows)
        if path.exists() and not is_shim(path):
            if backup.exists():
                # a newer 2.3.5 script (invokeai-update rewrote it) replaces the old backup
                backup.unlink()
            os.replace(path, backup)
            lines.append(f"kept InvokeAI 2.3.5's {path.name} as {backup.name}")
        elif not path.exists():
            lines.append(f"{path.name} was not there (InvokeAI 2.3.5 not installed in {venv}?); added ours")
        _write_shim(path, name, target, windows, backup if backup.exists() else None)
        lines.append(f"{path} -> runs {target.command(name, windows) or target.python}")
    lines.append("InvokeAI's launcher (invoke.sh/invoke.bat) now runs this installer; `integrate --undo` reverses it "
                 "(`invokeai-update` also reverses it: run integrate again after an update)")
    return lines


def undo(venv: Path) -> list[str]:
    folder, windows = scripts_dir(venv)
    lines = []
    for name in COMMANDS:
        path = _file(folder, name, windows)
        backup = _backup(path, windows)
        cmd_file = folder / f"{name}-ours.cmd"
        if cmd_file.exists():
            cmd_file.unlink()
        if path.exists() and not is_shim(path):
            lines.append(f"left {path.name} alone: it is not our shim any more (InvokeAI's update rewrote it?)"
                         + (f"; {backup.name} kept" if backup.exists() else ""))
            continue
        if backup.exists():
            os.replace(backup, path)
            lines.append(f"restored InvokeAI 2.3.5's {path.name}")
        elif path.exists():
            path.unlink()
            lines.append(f"removed our {path.name} (there was no original to restore)")
        else:
            lines.append(f"{path.name}: nothing to undo")
    return lines


def _posix_shim(name: str, target: Target, backup: Path | None) -> str:
    ours = target.command(name, False)
    run = f'exec "{ours}" "$@"' if ours else f'exec "{target.python}" -m {_ENTRY[name]} "$@"'
    lines = ["#!/bin/sh", f"# {MARKER}: runs {name} from {target.scripts}",
             f"# InvokeAI 2.3.5's original is beside this file as {name}{BACKUP_SUFFIX}; "
             "`invokeai-model-install integrate --undo` puts it back."]
    if name == "invokeai-configure" and backup is not None:
        # menu 6 of invoke.sh: 2.3.5's own form for the startup options (invokeai.init) -> 2.3.5's original
        lines += [
            "sd=0; sup=0; yes=0",
            'for a in "$@"; do',
            '  case "$a" in',
            "    --skip-sd-weight|--skip-sd-weights|--skip_sd_weights) sd=1 ;;",
            "    --skip-support-models|--skip_support_models) sup=1 ;;",
            "    --yes|-y) yes=1 ;;",
            "  esac",
            "done",
            f'if [ $sd = 1 ] && [ $sup = 1 ] && [ $yes = 0 ]; then exec "$(dirname "$0")/{backup.name}" "$@"; fi',
        ]
    lines.append(run)
    return "\n".join(lines) + "\n"


def _main_py(name: str, target: Target, backup: Path | None) -> str:
    module = _ENTRY[name]
    menu6 = ""
    if name == "invokeai-configure" and backup is not None:
        menu6 = f"""
a = sys.argv[1:]
if (any(x in ("--skip-sd-weight", "--skip-sd-weights", "--skip_sd_weights") for x in a)
        and any(x in ("--skip-support-models", "--skip_support_models") for x in a) and not any(x in ("--yes", "-y") for x in a)):
    # invoke.bat menu 6: InvokeAI 2.3.5's own form for the startup options
    sys.exit(subprocess.call([sys.executable, os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), {backup.name!r}), *a]))
"""
    return f"""# {MARKER}: runs {name} with {target.python}
import os, subprocess, sys
{menu6}
sys.exit(subprocess.call([{str(target.python)!r}, "-c",
    "import sys; from {module} import main; sys.argv[0] = {name!r}; sys.exit(main())", *sys.argv[1:]]))
"""


def _launcher() -> bytes | None:
    """pip's Windows console launcher (distlib ``t64.exe``), or None."""
    try:
        import pip._vendor.distlib as distlib  # noqa: PLC0415
    except ImportError:
        return None
    for name in ("t64.exe", "t32.exe"):
        p = Path(distlib.__file__).parent / name
        if p.is_file():
            return p.read_bytes()
    return None


def _write_shim(path: Path, name: str, target: Target, windows: bool, backup: Path | None) -> None:
    if not windows:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(_posix_shim(name, target, backup), encoding="utf-8")
        tmp.chmod(tmp.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH | stat.S_IRUSR)
        os.replace(tmp, path)
        return
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("__main__.py", _main_py(name, target, backup))
    launcher = _launcher()
    head = launcher + f"#!{target.python}\r\n".encode() if launcher else b""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(head + buf.getvalue())
    os.replace(tmp, path)
    (path.parent / f"{name}-ours.cmd").write_text(f'@echo off\r\nrem {MARKER}\r\n"{target.python}" "{path}" %*\r\n', encoding="utf-8")
