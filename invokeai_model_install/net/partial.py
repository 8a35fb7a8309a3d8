"""Partial files: a file's bytes in flight, the JSON sidecar that lets a new process resume them, its hash.

On disk (``partial_dir``)::

    <partial_dir>/<sha256(url)[:32]>.part    the bytes, written in place at their offsets
    <partial_dir>/<sha256(url)[:32]>.json    sidecar: redacted url, relpath, etag, size, ranges done
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from invokeai_model_install.errors import Cancelled
from invokeai_model_install.net.settings import RemoteFile
from invokeai_model_install.net.sources import redact_url

_HASH_BUF = 2 << 20  # bytes per read-back of the hasher thread


def try_lock(fd: int) -> bool:
    """An exclusive lock on an open file, without waiting (released when the file is closed).

    False when another process holds it.  ``fcntl`` is imported here, not at the top: the package
    must import on Windows, where ``msvcrt`` locks the first byte instead.
    """
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def partial_key(url: str, relpath: str) -> str:
    """Name of a file's partial data in ``partial_dir``: a hash of its URL (tokens never in names)."""
    return hashlib.sha256(f"{url}\n{relpath}".encode()).hexdigest()[:32]


def merge_ranges(ranges: list[list[int]]) -> list[list[int]]:
    out: list[list[int]] = []
    for a, b in sorted(ranges):
        if b <= a:
            continue
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def missing_ranges(done: list[list[int]], size: int) -> list[tuple[int, int]]:
    gaps, pos = [], 0
    for a, b in merge_ranges(done):
        if a > pos:
            gaps.append((pos, a))
        pos = max(pos, b)
    if pos < size:
        gaps.append((pos, size))
    return gaps


#: not on Windows (where a plain user cannot create symlinks anyway)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def open_nofollow(path: Path, flags: int, mode: int = 0o644, *, fresh: bool = False) -> int:
    """``os.open`` that never follows a symlink at ``path`` (a shared root: another user could plant one
    pointing at your files).  A symlink found there is removed (never followed) and the open retried;
    ``fresh``: remove whatever is there first (a leftover temp file)."""
    for _attempt in range(3):
        if fresh:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        try:
            return os.open(path, flags | _NOFOLLOW, mode)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.EEXIST) or not (os.path.islink(path) or fresh):
                raise
            os.unlink(path)  # unlink removes the link itself
    raise OSError(errno.ELOOP, "a symbolic link keeps appearing here", str(path))


def read_nofollow(path: Path) -> str:
    """The text of ``path``; a symlink is not followed (OSError)."""
    fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    with os.fdopen(fd, "r", encoding="utf-8") as fh:
        return fh.read()


class FileJob:
    """State of one file in flight: partial file, ranges done and unassigned, live segments, hasher.

    ``gen`` is bumped on a clean restart; anything of an older generation is ignored.
    """

    def __init__(self, rf: RemoteFile, dest: Path, *, partial_dir: Path, sidecar_interval: float, cancel: threading.Event) -> None:
        self.cancel = cancel
        self.sidecar_interval = sidecar_interval
        self.rf = rf
        self.dest = dest
        self.name = rf.relpath
        key = partial_key(rf.url, rf.relpath)
        self.part = partial_dir / f"{key}.part"
        self.meta = partial_dir / f"{key}.json"
        self.lock = threading.Condition()
        self.gen = 0
        self.size = rf.size
        self.etag = rf.etag
        self.done: list[list[int]] = []  # completed ranges [a, b)
        self.inflight: dict[int, list[int]] = {}  # segment id -> [start, current] being written
        self.gaps: list[list[int]] = []  # ranges no segment owns yet (carved into pieces on demand)
        self.segs: dict[int, Any] = {}  # live segments (engine._Segment) of this generation, by id
        self.steals = 0  # ranges split off a running segment
        self.writers = 0  # receive threads writing right now (outside the lock)
        self.ranges_ok = True
        self.finishing = False
        self.fetched = 0
        self.spliced = 0  # of which socket -> file without a copy in user space (net/splice.py)
        self.integrity_retries = 0
        self.error: BaseException | None = None
        self.finished = False
        self.fd = -1
        self.digest = ""
        self.closed = False
        self.prefix_end = 0  # end of the contiguous written range starting at 0
        self.hash_pos = 0
        self.sha = hashlib.sha256()
        self.git = None
        self.hasher: threading.Thread | None = None
        self.last_save = 0.0
        self.save_lock = threading.Lock()
        self.restart_lock = threading.Lock()
        self.restarts = 0
        self.last_event = 0.0
        self.last_event_done = 0
        self.started_at = time.monotonic()

    # -- sidecar --------------------------------------------------------------------------
    def load(self) -> int:
        """Open/lock the partial file and take the ranges a previous run finished; -> bytes already there."""
        while True:
            self.fd = open_nofollow(self.part, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0))
            if not try_lock(self.fd):
                # another installer is fetching the same file: wait for it
                os.close(self.fd)
                self.fd = -1
                if self.cancel.wait(0.2):
                    raise Cancelled(f"{self.name}: cancelled while waiting for another download of it")
                continue
            try:
                same = os.stat(self.part).st_ino == os.fstat(self.fd).st_ino
            except OSError:
                same = False
            if same:
                break
            # the other process finished and moved that inode into place: never touch it, start anew
            os.close(self.fd)
            self.fd = -1
        try:
            state = json.loads(read_nofollow(self.meta))
        except (OSError, ValueError):
            state = None
        disk = os.fstat(self.fd).st_size
        if (
            isinstance(state, dict)
            and state.get("key") == partial_key(self.rf.url, self.rf.relpath)
            and (self.rf.size < 0 or state.get("size") == self.rf.size)
            and (self.rf.etag is None or state.get("etag") in (None, self.rf.etag))
            and isinstance(state.get("done"), list)
        ):
            self.size = int(state.get("size", self.rf.size))
            self.etag = state.get("etag") or self.etag
            self.done = merge_ranges([[int(a), min(int(b), disk)] for a, b in state["done"] if int(a) < disk])
            self.ranges_ok = bool(state.get("ranges_ok", True))
        else:
            self.done = []
            if disk:
                # (truncating an empty file would make ext4 flush the whole file on close:
                # auto_da_alloc treats truncate-to-0 + rewrite as a replace)
                os.ftruncate(self.fd, 0)
        with self.lock:
            self._advance_prefix()
        return sum(b - a for a, b in self.done)

    def save(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_save < self.sidecar_interval:
            return  # the common case, decided without the lock every receive thread wants
        with self.lock:
            if not force and now - self.last_save < self.sidecar_interval:
                return
            self.last_save = now
            ranges = merge_ranges([*map(list, self.done), *[list(v) for v in self.inflight.values()]])
            state = {
                "key": partial_key(self.rf.url, self.rf.relpath),
                "url": redact_url(self.rf.url),
                "relpath": self.rf.relpath,
                "etag": self.etag,
                "size": self.size,
                "ranges_ok": self.ranges_ok,
                "done": ranges,
            }
        if not self.save_lock.acquire(blocking=force):
            return  # another thread of this file is saving right now
        try:
            tmp = self.meta.with_suffix(".json.tmp")
            fd = open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, fresh=True)
            with os.fdopen(fd, "w") as fh:
                fh.write(json.dumps(state))
            os.replace(tmp, self.meta)  # replaces a link itself, never what it points to
        finally:
            self.save_lock.release()

    def _advance_prefix(self) -> None:
        """Move ``prefix_end`` over every written range that touches it (call with ``lock`` held)."""
        p = self.prefix_end
        moved = True
        while moved:
            moved = False
            for a, b in self.done:
                if a <= p < b:
                    p, moved = b, True
            for a, b in self.inflight.values():
                if a <= p < b:
                    p, moved = b, True
        if p != self.prefix_end:
            self.prefix_end = p
            self.lock.notify_all()  # the hasher follows the prefix

    # -- hashing ------------------------------------------------------------------------------
    # The sha256 is computed in file order by one hasher thread per file, reading the bytes back from
    # the page cache as the contiguous written prefix grows: the receive threads only copy (socket ->
    # file), the hasher only hashes, so on two cores copying and hashing run side by side.  Pieces are
    # handed out in file order (see Engine.take), so the prefix stays close behind the downloads and
    # little is left to hash when the last byte arrives.
    def start_hasher(self) -> None:
        with self.lock:
            self.hash_pos = 0
            self.sha = hashlib.sha256()
            self.git = hashlib.sha1(f"blob {self.rf.size}\0".encode()) if self.rf.git_oid and self.rf.size >= 0 else None
            gen = self.gen
        hasher = threading.Thread(target=self._hash_loop, args=(gen,), daemon=True, name=f"hash:{self.name}")
        hasher.start()
        self.hasher = hasher

    def _hash_loop(self, gen: int) -> None:
        buf = None
        view = memoryview(b"")
        sha, git = self.sha, self.git
        pos = 0
        while True:
            with self.lock:
                while self.gen == gen and self.error is None and not self.closed and not self.finished and self.prefix_end <= pos:
                    self.lock.wait(0.5)
                if self.gen != gen or self.error is not None or self.closed:
                    return
                upto = self.prefix_end
                complete = self.finished
                fd = self.fd
            while pos < upto:
                if buf is None:
                    buf = bytearray(_HASH_BUF)  # allocated only while hashing: RSS stays flat
                    view = memoryview(buf)
                try:
                    n = os.preadv(fd, [view[: min(len(buf), upto - pos)]], pos)
                except OSError:
                    return  # the file was closed (cancel/failure): the hash is not needed
                if n <= 0 or self.gen != gen:
                    return
                sha.update(view[:n])
                if git is not None:
                    git.update(view[:n])
                pos += n
                self.hash_pos = pos
            if complete and pos >= upto:
                return
