"""Partial files: a file's bytes in flight, the JSON sidecar that lets a new process resume them, its hash.

On disk (``partial_dir``)::

    <partial_dir>/<sha256(url)[:32]>.part    the bytes, written in place at their offsets
    <partial_dir>/<sha256(url)[:32]>.json    sidecar: redacted url, relpath, etag, size, ranges done
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path
from invokeai_model_install.errors import Cancelled
from invokeai_model_install.net.settings import RemoteFile
from invokeai_model_install.net.sources import redact_url

_READBACK = 1 << 20  # bytes per read-back of the hasher thread
HASH_LAG = 8 << 20  # the hasher thread reads back only when in-line hashing fell this far behind


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


class FileJob:
    """State of one file in flight: partial file, ranges done, hasher, generation (bumped on restart)."""

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
        self.inflight: dict[int, list[int]] = {}  # segment id -> [start, current]
        self.ranges_ok = True
        self.pending = 0  # segments not finished in this generation
        self.fetched = 0
        self.integrity_retries = 0
        self.error: BaseException | None = None
        self.finished = False
        self.fd = -1
        self.digest = ""
        self.closed = False
        self.hash_pos = 0
        self.sha = hashlib.sha256()
        self.git = None
        self.hasher: threading.Thread | None = None
        self.last_save = 0.0
        self.save_lock = threading.Lock()
        self.restart_lock = threading.Lock()
        self.restarts = 0
        self.hash_lock = threading.Lock()
        self.last_event = 0.0
        self.last_event_done = 0
        self.started_at = time.monotonic()
        self.effective_url: str | None = None

    # -- sidecar --------------------------------------------------------------------------
    def load(self) -> int:
        """Open/lock the partial file and take the ranges a previous run finished; -> bytes already there."""
        while True:
            self.fd = os.open(self.part, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o644)
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
            state = json.loads(self.meta.read_text())
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
            os.ftruncate(self.fd, 0)
        return sum(b - a for a, b in self.done)

    def save(self, force: bool = False) -> None:
        now = time.monotonic()
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
            tmp.write_text(json.dumps(state))
            os.replace(tmp, self.meta)
        finally:
            self.save_lock.release()

    def prefix(self) -> int:
        """End of the contiguous written range starting at 0."""
        ranges = merge_ranges([*map(list, self.done), *[list(v) for v in self.inflight.values()]])
        return ranges[0][1] if ranges and ranges[0][0] == 0 else 0

    # -- hashing ------------------------------------------------------------------------------
    # The sha256 is computed in file order.  The worker that writes the bytes right at ``hash_pos``
    # hashes them straight from its receive buffer (no second copy; the kernel keeps the socket
    # pipeline full meanwhile).  Bytes that arrive out of order (parallel ranges, a resumed prefix)
    # are read back from the page cache by the hasher thread once they join the contiguous prefix.
    def start_hasher(self) -> None:
        with self.hash_lock:
            self.hash_pos = 0
            self.sha = hashlib.sha256()
            self.git = hashlib.sha1(f"blob {self.rf.size}\0".encode()) if self.rf.git_oid and self.rf.size >= 0 else None
        gen = self.gen
        hasher = threading.Thread(target=self._hash_loop, args=(gen,), daemon=True, name=f"hash:{self.name}")
        hasher.start()
        self.hasher = hasher

    def hash_inline(self, gen: int, pos: int, data: memoryview) -> None:
        """Hash ``data`` (just written at ``pos``) when it is exactly the next piece of the hash."""
        if not self.hash_lock.acquire(blocking=False):
            return  # the hasher thread is reading back: it will cover these bytes
        try:
            if self.gen == gen and self.hash_pos == pos:
                self.sha.update(data)
                if self.git is not None:
                    self.git.update(data)
                self.hash_pos += len(data)
        finally:
            self.hash_lock.release()

    def _hash_loop(self, gen: int) -> None:
        buf = None
        view = memoryview(b"")
        while True:
            with self.lock:
                while (
                    self.gen == gen and not self.finished and self.error is None
                    and self.prefix() - self.hash_pos < HASH_LAG
                ):
                    self.lock.wait(0.5)
                if self.gen != gen or self.error is not None:
                    return
                upto = self.prefix()
                complete = self.finished
            while True:
                with self.hash_lock:
                    if self.gen != gen or self.hash_pos >= upto:
                        break
                    if buf is None:
                        buf = bytearray(_READBACK)  # allocated only when reading back: RSS stays flat
                        view = memoryview(buf)
                    try:
                        n = os.preadv(self.fd, [view[: min(len(buf), upto - self.hash_pos)]], self.hash_pos)
                    except OSError:
                        return  # the file was closed (cancel/failure): the hash is not needed
                    if n <= 0:
                        break
                    self.sha.update(view[:n])
                    if self.git is not None:
                        self.git.update(view[:n])
                    self.hash_pos += n
            if complete:
                return

    def hasher_waiting(self) -> bool:
        """Does the hasher thread need a wake-up (fell behind by the lag)?"""
        return self.prefix_hint() - self.hash_pos >= HASH_LAG

    def prefix_hint(self) -> int:
        with self.lock:
            return self.prefix()

    def notify(self) -> None:
        with self.lock:
            self.lock.notify_all()
