"""Write a small text file atomically: readers see the old file or the new one, never half of one.

Shared by the registry (models.yaml) and invokeai.init.  The recipe: write a
temp file in the same folder, fsync it, optionally keep the previous file as a
backup, ``os.replace`` it over the target, fsync the folder so the rename
itself survives a power cut.  Any failure removes the temp files and leaves the
target exactly as it was.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path


def fsync_path(path: Path) -> None:
    """fsync a file or a folder (a folder: persists a rename); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _mode_for(path: Path) -> int:
    """Keep the target's permissions; a new file gets 0666 minus the umask (like open())."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write_text(path: str | os.PathLike[str], text: str, *, backup: str | os.PathLike[str] | None = None) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically.

    :param backup: when given and ``path`` exists, the previous content is kept
        there (itself replaced atomically) before the new file goes in.
    """
    path = Path(path)
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    mode = _mode_for(path)
    leftovers: list[str] = []
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
        leftovers.append(tmp)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        if backup is not None and path.exists():
            backup = Path(backup)
            bfd, btmp = tempfile.mkstemp(dir=backup.parent, prefix=f".{backup.name}.", suffix=".tmp")
            leftovers.append(btmp)
            os.close(bfd)
            shutil.copyfile(path, btmp)
            with open(btmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.chmod(btmp, mode)
            os.replace(btmp, backup)
            leftovers.remove(btmp)
        os.replace(tmp, path)
        leftovers.remove(tmp)
        fsync_path(directory)
    finally:
        for name in leftovers:
            try:
                os.unlink(name)
            except OSError:
                pass
