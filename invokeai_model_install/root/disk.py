"""Files on disk: free space at a path (its nearest existing folder), a check that names both numbers, a file's sha256."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

from invokeai_model_install.errors import DiskSpaceError
from invokeai_model_install.units import human_bytes


def nearest_existing(path: str | os.PathLike) -> Path:
    """``path``, or its nearest parent that exists (a root not created yet is measured where it will be)."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def free_space(path: str | os.PathLike) -> int:
    """Free bytes on the disk holding ``path`` (or its nearest existing parent); -1 when that cannot be told."""
    try:
        return shutil.disk_usage(nearest_existing(Path(path).absolute())).free
    except OSError:
        return -1


def check_disk_space(needed_bytes: int, path: str | os.PathLike, *, free: Callable[[Path], int] | None = None) -> None:
    """Raise :class:`DiskSpaceError` naming both numbers when ``needed_bytes`` do not fit at ``path``."""
    p = nearest_existing(path)
    available = free(p) if free is not None else shutil.disk_usage(p).free
    if needed_bytes > available:
        raise DiskSpaceError(
            f"not enough disk space in {path}: need {human_bytes(needed_bytes)} ({needed_bytes} bytes), "
            f"{human_bytes(available)} ({available} bytes) free"
        )
