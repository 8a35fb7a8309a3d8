"""Run a command with a folder read-only, for the "read-only root" tests.

The tests run as root on our machines and in CI, and ``chmod`` does not stop root.  So:

* where ``unshare`` can make a private mount namespace (root, or an unprivileged user
  namespace), the folder is bind-mounted onto itself and remounted read-only *inside that
  namespace only*: nothing outside sees it and nothing is left mounted when the command ends;
* otherwise, as a normal user, the folder is made read-only with chmod (restored afterwards).

:func:`readonly_mode` says which works here; a test skips only when neither does.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

_SCRIPT = 'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" "$0" && exec "$@"'


def _unshare_prefix(path: Path) -> list[str]:
    flags = "-m" if os.geteuid() == 0 else "-rm"
    return ["unshare", flags, "sh", "-c", _SCRIPT, str(path)]


@functools.lru_cache(maxsize=1)
def readonly_mode() -> str | None:
    """``"unshare"``, ``"chmod"`` or None (neither stops writes here)."""
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp)
        if shutil.which("unshare"):
            done = subprocess.run(_unshare_prefix(probe) + ["touch", str(probe / "x")], capture_output=True)
            if done.returncode != 0 and b"Read-only" in done.stderr and not (probe / "x").exists():
                return "unshare"
        if os.geteuid() != 0:
            return "chmod"
    return None


@contextlib.contextmanager
def readonly(path: Path) -> Iterator[list[str]]:
    """While in the block, commands started with the yielded argv prefix cannot write ``path``."""
    mode = readonly_mode()
    if mode == "unshare":
        yield _unshare_prefix(path)
        return
    if mode != "chmod":
        raise RuntimeError("no way to make a folder read-only here")
    changed = []
    for folder, dirs, files in os.walk(path):
        for p in [folder] + [os.path.join(folder, f) for f in files]:
            mode_bits = os.stat(p).st_mode
            changed.append((p, mode_bits))
            os.chmod(p, stat.S_IMODE(mode_bits) & ~0o222)
    try:
        yield []
    finally:
        for p, mode_bits in reversed(changed):
            os.chmod(p, stat.S_IMODE(mode_bits))


def run_readonly(path: Path, argv: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
    """Run ``argv`` while ``path`` (a folder) cannot be written; returns the finished process."""
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    with readonly(path) as prefix:
        return subprocess.run(prefix + list(argv), **kwargs)
