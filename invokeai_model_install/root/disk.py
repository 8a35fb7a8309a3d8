"""Free disk space: how much fits at a path (the nearest existing folder), and a check that names both numbers."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

from invokeai_model_install.errors import DiskSpaceError
from invokeai_model_install.units import human_bytes


def check_disk_space(needed_bytes: int, path: str | os.PathLike, *, free: Callable[[Path], int] | None = None) -> None:
    """Raise :class:`DiskSpaceError` naming both numbers when ``needed_bytes`` do not fit at ``path``."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    available = free(p) if free is not None else shutil.disk_usage(p).free
    if needed_bytes > available:
        raise DiskSpaceError(
            f"not enough disk space in {path}: need {human_bytes(needed_bytes)} ({needed_bytes} bytes), "
            f"{human_bytes(available)} ({available} bytes) free"
        )
