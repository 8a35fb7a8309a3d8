"""A real filesystem with reflinks (XFS, ``mkfs.xfs -m reflink=1``) on a loop device, for the dedupe tests.

:func:`mounted_reflink_fs` makes a sparse 300 MB image (XFS's smallest; a few MB are written), formats
it and mounts it with ``mount -o loop`` in a fresh folder under the system temp folder (not pytest's
basetemp: a mount left behind by a killed run would stop pytest clearing it), and unmounts it and removes
the folder afterwards.  It needs root, loop devices, XFS in the kernel and ``mkfs.xfs`` (Debian: xfsprogs;
``.ci/run`` installs it): :func:`unavailable` says precisely which is missing.

What the tests check on it comes from the kernel, not from our code: ``filefrag -s -v`` (e2fsprogs; -s: written out first) lists
each file's extents with the ``shared`` flag, and :func:`free_bytes` reads statfs after freezing and
thawing the filesystem (XFS frees a replaced file's blocks in the background; a freeze flushes that).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

IMAGE_BYTES = 300 * 1024 * 1024
_FIFREEZE = 0xC0045877  # linux/fs.h: _IOWR('X', 119, int)
_FITHAW = 0xC0045878


def unavailable() -> str | None:
    """Why no reflink filesystem can be mounted here, or None when it can be tried."""
    if not sys.platform.startswith("linux"):
        return f"reflinks are tested on Linux only (this is {sys.platform})"
    if os.geteuid() != 0:
        return "mounting a test filesystem (XFS on a loop device) needs root"
    try:
        kernel_fs = Path("/proc/filesystems").read_text().split()
    except OSError as exc:
        return f"cannot read /proc/filesystems ({exc.strerror})"
    if "xfs" not in kernel_fs:
        return "this kernel has no XFS (not in /proc/filesystems)"
    if not Path("/dev/loop-control").exists():
        return "no loop devices here (/dev/loop-control is missing)"
    for tool, package in (("mkfs.xfs", "xfsprogs"), ("mount", "mount"), ("filefrag", "e2fsprogs")):
        if shutil.which(tool) is None:
            return f"{tool} is missing (Debian: apt-get install {package})"
    return None


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {(done.stderr or done.stdout).strip()}")


@contextlib.contextmanager
def mounted_reflink_fs() -> Iterator[Path]:
    """An empty XFS with reflinks, mounted; raises RuntimeError (the command and its message) when it cannot be."""
    work = Path(tempfile.mkdtemp(prefix="reflinkfs-"))
    image, mnt = work / "xfs.img", work / "mnt"
    mnt.mkdir()
    mounted = False
    try:
        with open(image, "wb") as fh:
            fh.truncate(IMAGE_BYTES)  # sparse
        _run(["mkfs.xfs", "-q", "-m", "reflink=1", str(image)])
        _run(["mount", "-o", "loop", str(image), str(mnt)])
        mounted = True
        yield mnt
    finally:
        if mounted:
            done = subprocess.run(["umount", str(mnt)], capture_output=True)
            if done.returncode != 0:  # something still open in it: detach now, gone when closed
                subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


def extents(path: Path) -> list[tuple[int, int, bool]]:
    """``path``'s extents as ``filefrag -s -v`` lists them: (first physical block, length in blocks, shared)."""
    out = subprocess.run(["filefrag", "-s", "-v", str(path)], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        m = re.match(r"\s*\d+:\s+\d+\.\.\s*\d+:\s+(\d+)\.\.\s*\d+:\s+(\d+):\s*(\d*):?\s*(\S*)", line)
        if m:
            found.append((int(m.group(1)), int(m.group(2)), "shared" in m.group(4).split(",")))
    assert found, f"filefrag listed no extents for {path}:\n{out}"
    return found


def free_bytes(mnt: Path) -> int:
    """Free bytes of the filesystem at ``mnt``, after a freeze/thaw has flushed pending frees."""
    import fcntl

    fd = os.open(mnt, os.O_RDONLY)
    try:
        fcntl.ioctl(fd, _FIFREEZE, 0)
        fcntl.ioctl(fd, _FITHAW, 0)
    finally:
        os.close(fd)
    st = os.statvfs(mnt)
    return st.f_bfree * st.f_frsize
