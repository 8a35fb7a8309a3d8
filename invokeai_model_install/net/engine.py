"""The download engine: verified, resumable (across processes), parallel HTTP transfers.

Why our own data path instead of ``huggingface_hub.hf_hub_download`` (measured, FACTS.md): it reaches
~208 MB/s on loopback (CPU-bound in its 10 MiB chunk loop) where a plain socket reaches ~720 MB/s; it
does not hash what it downloads (a file of the right size with wrong bytes is accepted and kept); and it
cannot resume across processes (a SIGKILL leaves an orphan ``*.incomplete`` and the next run starts from
zero).  huggingface_hub stays in charge of hub *metadata* (see :mod:`hub`); the bytes go through here:
stdlib ``http.client`` for the request and headers, then the body: over plain http on Linux straight from
the socket into the file at its offset (``splice``, :mod:`splice`: no copy through Python), otherwise
``readinto`` one reused buffer per connection and ``os.pwrite``; the sha256 is computed by one hasher
thread per file that reads the contiguous written prefix back from the page cache
(:class:`partial.FileJob`), so receiving and hashing run on separate cores.

Scheduling (:meth:`Engine.take`): a file of at least ``split_size`` is fetched as pieces carved in file
order from what is still missing, each a share of what is left per connection (at most 32 MiB, at least
2 MiB: large first, small at the end), on up to ``max_connections`` keep-alive connections (how many of
them at a time is the connection ramp's call, :mod:`ramp`: all over https, one over plain http and more
while they raise the rate); a worker that
finds nothing left to carve splits the largest remaining range of a running piece (work stealing: the
victim stops at the new end and drops its connection), so the slowest connection never decides the end.
In file order the written prefix stays close behind the transfers: little is left to hash at the end.

Layout on disk while a file is in flight (``partial_dir``, inside the root: ``layout.partial_dir``)::

    <partial_dir>/<sha256(url)[:32]>.part    the bytes, written in place at their offsets
    <partial_dir>/<sha256(url)[:32]>.json    sidecar: redacted url, relpath, etag, size, ranges done

A new process that finds the pair continues from the ranges done (a SIGKILL loses at most the last
sidecar interval), sending ``If-Range: <etag>``; a changed remote (another ETag, a 200 to a range
request, a 416) restarts the file cleanly.  The file moves into ``dest_dir`` (``os.replace``) only
after its size and sha256 are verified.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import re
import shutil
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from invokeai_model_install.errors import (
    Cancelled,
    DiskSpaceError,
    DownloadError,
    InstallerError,
    IntegrityError,
    OfflineError,
)
from invokeai_model_install.events import Event, FileFinished, FileProgress, FileStarted, Retrying, discard
from invokeai_model_install.net import http_errors
from invokeai_model_install.net.partial import FileJob, merge_ranges, missing_ranges
from invokeai_model_install.net.ramp import ConnectionRamp
from invokeai_model_install.net.settings import DownloadResult, DownloadSettings, RemoteFile, Resolved
from invokeai_model_install.net.sources import redact_url
from invokeai_model_install.net.splice import SpliceUnsupported, Splicer
from invokeai_model_install.net.transport import Conns, Retry, backoff, discard_body, fail_status, open_request
from invokeai_model_install.net.urls import safe_relpath
from invokeai_model_install.root.disk import check_disk_space
from invokeai_model_install.root.manifest import sha256_file
from invokeai_model_install.units import human_bytes

_BUF = 1 << 20  # bytes per readinto; one buffer per connection keeps RSS flat whatever the file size
_MAX_RESTARTS = 4  # clean restarts of one file (changed remote, ignored ranges, one bad hash) before giving up
_PIECE_MAX = 32 << 20  # largest piece asked for in one request (hf_transfer asks for 10 MiB)
_PIECE_MIN = 2 << 20  # smallest piece carved from a large file; a steal leaves both halves at least this big
_ALIGN = 64 << 10  # stolen halves start on this boundary
_HASH_AHEAD = 16 << 20  # receive threads pause while the hasher has this much contiguous data to catch up on
# (the most the hasher can have left when the last byte arrives: ~10 ms of sha256, measured 64 MiB: 40 ms)
_READ_START, _READ_MIN, _READ_TIME = 64 << 10, 64 << 10, 0.05  # read sizes: first, smallest; seconds' worth per read


class _Restart(Exception):
    """The remote changed or ignores ranges: start this file again from zero."""


@dataclass(eq=False)
class _Segment:
    """One request's worth of a file: ``[start, end)``, fetched up to ``pos``; ``end`` shrinks when stolen from."""

    job: FileJob
    start: int
    end: int  # exclusive; -1 for an unknown size (single stream to EOF)
    gen: int
    sid: int
    pos: int = 0  # next byte to fetch
    claimed: int = 0  # end of the bytes being written right now (a steal starts after them)
    counted: bool = False  # a piece of a split file: counts against the connection ramp's limit


@dataclass(eq=False)
class _Receiver:
    """One receive thread's reusable means: a buffer for ``readinto`` and a pipe for zero copy (or None)."""

    buf: bytearray
    splicer: Splicer | None


class Engine:
    """``max_connections`` worker threads taking pieces from a shared scheduler (:meth:`take`).

    Pieces are carved in file order from each file's unassigned ranges, large at first and smaller
    towards the end (a share of what is left per connection); a worker that finds nothing left to
    carve splits the largest remaining range of a running segment (work stealing), so a slow
    connection never decides when a file ends.
    """

    def __init__(self, settings: DownloadSettings, partial_dir: Path, on_event, cancel: threading.Event, nthreads: int = 1,
                 start_connections: int = 1) -> None:
        self.settings = settings
        self.partial_dir = partial_dir
        self._on_event = on_event
        self.event_lock = threading.Lock()
        self.cancel = cancel
        self.conns = Conns(settings)
        self.cv = threading.Condition()  # scheduler state; taken before any job.lock, never after
        self.ready: list[_Segment] = []  # explicit segments (unknown size, streaming-only servers)
        self.jobs: list[FileJob] = []
        self.sid = 0
        self.sid_lock = threading.Lock()
        self.fatal: BaseException | None = None
        self.remaining = 0
        self.nthreads = nthreads
        self.ramp = ConnectionRamp(start_connections, nthreads)
        self.split_busy = 0  # pieces of split files in flight (at most ramp.limit)
        self.split_size = max(1, settings.split_size)
        self.min_piece = max(64 << 10, min(self.split_size // 2, _PIECE_MIN))

    def emit(self, event: Event) -> None:
        with self.event_lock:
            try:
                self._on_event(event)
            except Exception:  # a broken front end must not break a transfer
                pass

    def tune(self) -> None:
        """Feed the connection ramp one sample (called about every 25 ms while files are in flight)."""
        total = sum(j.fetched for j in self.jobs)
        with self.cv:
            before = self.ramp.limit
            if self.ramp.observe(time.monotonic(), total, self.split_busy) != before:
                self.cv.notify_all()

    def next_sid(self) -> int:
        with self.sid_lock:
            self.sid += 1
            return self.sid

    def stopping(self) -> bool:
        return self.cancel.is_set() or self.fatal is not None

    # -- planning -------------------------------------------------------------------------------
    def plan(self, job: FileJob, gen: int | None = None) -> None:
        """Set up the missing ranges of ``job`` (a fresh, resumed or restarted job) for the workers.

        ``gen``: plan only if that is still the job's generation (another restart may have won).
        """
        finish_now = False
        with self.cv:
            with job.lock:
                if gen is not None and gen != job.gen:
                    return
                gen = job.gen
                job.finishing = False
                job.gaps = []
                explicit: list[_Segment] = []
                if job.size < 0:
                    job.done = []
                    explicit = [_Segment(job, 0, -1, gen, self.next_sid(), 0)]  # unknown size: one stream to EOF
                elif not job.ranges_ok:
                    gaps = missing_ranges(job.done, job.size)
                    if gaps:  # this server streams only: one request from the end of the prefix
                        explicit = [_Segment(job, gaps[0][0], job.size, gen, self.next_sid(), gaps[0][0])]
                else:
                    job.gaps = [list(g) for g in missing_ranges(job.done, job.size)]
                for seg in explicit:
                    job.segs[seg.sid] = seg
                self.ready.extend(explicit)
                if not job.gaps and not job.segs:
                    job.finishing = True
                    finish_now = True
            self.cv.notify_all()
        if finish_now:
            self.finish(job)

    def _piece(self, job: FileJob) -> int:
        """Size of the next piece to carve from ``job``: what is left shared out, within bounds."""
        left = sum(b - a for a, b in job.gaps)
        if job.size < self.split_size:
            return left  # small file: one request
        share = left // (2 * self.ramp.limit)
        return max(self.min_piece, min(_PIECE_MAX, share))

    def take(self) -> _Segment | None:
        """The next segment for a worker: explicit ones, then a new piece, then a stolen half; None: no more work."""
        with self.cv:
            while True:
                if self.stopping() or self.remaining <= 0:
                    return None
                if self.ready:
                    return self.ready.pop(0)
                seg = self._carve() or self._steal()
                if seg is not None:
                    return seg
                self.cv.wait(0.05)

    def _carve(self) -> _Segment | None:
        for job in self.jobs:
            with job.lock:
                if not job.gaps:
                    continue
                if job.error is not None or job.finishing or job.closed:
                    job.gaps = []
                    continue
                split = job.size >= self.split_size
                if split and self.split_busy >= self.ramp.limit:
                    continue  # as many connections as the link rewards are on split files already
                a, b = job.gaps[0]
                piece = self._piece(job)
                if b - a <= piece + piece // 2:  # no crumbs: take the whole gap
                    end = b
                    job.gaps.pop(0)
                else:
                    end = a + piece
                    job.gaps[0][0] = end
                seg = _Segment(job, a, end, job.gen, self.next_sid(), a, counted=split)
                self.split_busy += split
                job.segs[seg.sid] = seg
                return seg
        return None

    def _steal(self) -> _Segment | None:
        if self.split_busy >= self.ramp.limit:
            return None
        best: tuple[int, _Segment] | None = None
        for job in self.jobs:
            if job.error is not None or job.finishing or job.closed or not job.ranges_ok or job.size < self.split_size:
                continue
            with job.lock:
                for seg in job.segs.values():
                    if seg.end >= 0 and seg.gen == job.gen:
                        left = seg.end - max(seg.pos, seg.claimed)
                        if left >= 2 * self.min_piece and (best is None or left > best[0]):
                            best = (left, seg)
        if best is None:
            return None
        victim = best[1]
        job = victim.job
        with job.lock:
            at = max(victim.pos, victim.claimed)  # bytes claimed for a write in flight stay the victim's
            left = victim.end - at
            if victim.gen != job.gen or left < 2 * self.min_piece:
                return None
            mid = at + left // 2
            mid -= mid % _ALIGN if mid - at > _ALIGN else 0
            seg = _Segment(job, mid, victim.end, job.gen, self.next_sid(), mid, counted=True)
            self.split_busy += 1
            victim.end = mid  # the victim stops there (and drops its connection if bytes were still coming)
            job.segs[seg.sid] = seg
            job.steals += 1
        return seg

    def restart(
        self, job: FileJob, reason: str, *, ranges_ok: bool, adopt: _Segment | None = None,
        size: int | None = None, etag: str | None = None,
    ) -> int:
        """Throw away what we have of ``job`` and begin again from zero; -> the new generation.

        ``adopt``: the caller's segment becomes the file's only segment (a 200 answer streamed from 0).
        """
        with job.restart_lock:
            job.restarts += 1
            if job.restarts > _MAX_RESTARTS:
                raise DownloadError(
                    f"{job.name}: the file keeps changing on the server ({reason}) at {redact_url(job.rf.url)}",
                    "try again later",
                )
            with self.cv:
                with job.lock:
                    job.gen += 1
                    gen = job.gen
                    job.done = []
                    job.inflight.clear()
                    job.gaps = []
                    job.segs = {}
                    job.prefix_end = 0
                    job.ranges_ok = ranges_ok
                    if etag:
                        job.etag = etag
                    if size is not None:
                        job.size = size
                    while job.writers:  # a write of the old generation must not land after the truncate
                        job.lock.wait(0.05)
                    if job.fd >= 0:
                        os.ftruncate(job.fd, 0)
                    if adopt is not None:
                        adopt.gen, adopt.sid, adopt.start, adopt.pos, adopt.end = gen, self.next_sid(), 0, 0, job.size
                        job.segs[adopt.sid] = adopt
                    job.lock.notify_all()
                self.ready = [s for s in self.ready if s.job is not job]
            old = job.hasher
            if old is not None and old.ident is not None:
                old.join()
            job.start_hasher()
        job.save(force=True)
        self.emit(Retrying(name=job.name, reason=reason, delay=0.0))
        return gen

    # -- workers ---------------------------------------------------------------------------------
    def worker(self) -> None:
        rx = _Receiver(bytearray(_BUF), Splicer() if self.settings.zero_copy else None)
        try:
            while True:
                seg = self.take()
                if seg is None:
                    return
                job = seg.job
                if job.error is not None or seg.gen != job.gen or self.stopping():
                    self._segment_done(seg)
                    continue
                try:
                    self.run_segment(seg, rx)
                except BaseException as exc:  # noqa: BLE001 - recorded on the job, re-raised by download()
                    with job.lock:
                        if job.error is None and seg.gen == job.gen:
                            job.error = exc
                        job.lock.notify_all()
                    if not isinstance(exc, InstallerError):
                        self.fatal = exc
                self._segment_done(seg)
        finally:
            self.conns.close_thread()
            if rx.splicer is not None:
                rx.splicer.close()

    def _segment_done(self, seg: _Segment) -> None:
        job = seg.job
        with self.cv:
            if seg.counted:
                seg.counted = False
                self.split_busy -= 1
                self.cv.notify_all()
            with job.lock:
                if seg.gen != job.gen:
                    return
                job.segs.pop(seg.sid, None)
                last = (
                    not job.segs and not job.finishing
                    and (not job.gaps or job.error is not None or self.stopping())
                )
                if last:
                    job.finishing = True
            self.cv.notify_all()
        if last:
            self.finish(job)

    def run_segment(self, seg: _Segment, rx: "_Receiver") -> None:
        job = seg.job
        settings = self.settings
        attempts = 0
        while not self.cancel.is_set() and seg.gen == job.gen and job.error is None:
            if seg.end >= 0 and seg.pos >= seg.end:
                return  # all of it was stolen before a byte came
            before = seg.pos
            try:
                self._transfer(seg, rx)
                return
            except Retry as r:
                attempts = 0 if seg.pos > before else attempts + 1
                if attempts > settings.retries:
                    raise DownloadError(
                        f"{job.name}: {r.reason}; gave up after {attempts} tries ({redact_url(job.rf.url)})", r.hint
                    ) from None
                delay = r.delay if r.delay is not None else backoff(settings, max(0, attempts - 1))
                self.emit(Retrying(name=job.name, reason=r.reason, delay=delay))
                if self.cancel.wait(delay):
                    return
            except _Restart:
                return

    def _transfer(self, seg: _Segment, rx: "_Receiver") -> None:
        """One request for ``[seg.pos, seg.end)``; returns when the segment is complete (or superseded)."""
        job = seg.job
        settings = self.settings
        pos = seg.pos
        url = job.rf.url  # redirect targets (signed CDN URLs) may expire: always ask the original URL
        headers: dict[str, str] = {}
        ranged = pos > 0 or (seg.end >= 0 and seg.end < job.size)
        if ranged:
            headers["Range"] = f"bytes={pos}-{seg.end - 1}" if seg.end >= 0 else f"bytes={pos}-"
            if job.etag and not job.etag.startswith("W/"):
                headers["If-Range"] = job.etag
        resp, final = open_request(self.conns, url, settings, headers, what=job.name)
        status = resp.status
        if status == 416:
            discard_body(self.conns, final, resp)
            self.plan(job, self.restart(job, "the remote file changed (416)", ranges_ok=True))
            raise _Restart()
        if status not in (200, 206):
            fail_status(self.conns, resp, final, settings, job.name, backoff(settings, 0))
        self._sniff(job, resp, final)
        etag = resp.getheader("ETag")
        if status == 206:
            m = re.match(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", resp.getheader("Content-Range") or "")
            total = int(m.group(3)) if m and m.group(3) != "*" else job.size
            if m and job.rf.size >= 0 and total != job.rf.size and not (job.etag and etag and etag != job.etag):
                self.conns.drop(final)
                raise IntegrityError(f"{job.name}: expected {job.rf.size} bytes, the server has {total} ({redact_url(job.rf.url)})")
            if not m or int(m.group(1)) != pos or (job.size >= 0 and total != job.size) or (job.etag and etag and etag != job.etag):
                self.conns.drop(final)
                self.plan(job, self.restart(job, "the remote file changed", ranges_ok=True))
                raise _Restart()
            if etag and not job.etag:
                job.etag = etag
        elif ranged:
            # 200 to a range request: the server ignores ranges, or If-Range saw another version.
            # Clean restart, streaming this very response as the file's only segment.
            changed = bool(job.etag and etag and etag != job.etag)
            length = resp.getheader("Content-Length")
            self.restart(
                job, "the remote file changed" if changed else "the server ignores byte ranges", ranges_ok=False, adopt=seg,
                size=int(length) if length and length.isdigit() and job.rf.size < 0 else None, etag=etag,
            )
        else:
            if etag and not job.etag:
                job.etag = etag
            length = resp.getheader("Content-Length")
            if job.size < 0 and length and length.isdigit():
                job.size = int(length)
                seg.end = job.size
        self._stream(seg, resp, final, rx)

    def _sniff(self, job: FileJob, resp: http.client.HTTPResponse, url: str) -> None:
        """A page (HTML/JSON by Content-Type) where weights were expected: refuse before writing."""
        ctype = (resp.getheader("Content-Type") or "").split(";")[0].strip().lower()
        if http_errors.expects_model(job.name) and ctype in ("text/html", "application/json", "application/problem+json"):
            err = http_errors.sniff_not_a_model(b"", ctype, url, relpath=job.name, hub_endpoint=self.settings.hf_endpoint)
            if err is not None:
                self.conns.drop(url)
                raise err

    def _stream(self, seg: _Segment, resp: http.client.HTTPResponse, url: str, rx: "_Receiver") -> None:
        job = seg.job
        buf = rx.buf
        view = memoryview(buf)
        splicer = rx.splicer
        # zero copy (net/splice.py) for a plain socket and a body of known length: after the first read
        # (sniffed) and one read of whatever http.client has buffered, the bytes go socket -> pipe -> file
        sock = self.conns.socket_of(url)
        zero_copy = (
            splicer is not None and splicer.usable and sock is not None and not isinstance(sock, ssl.SSLSocket)
            and not resp.chunked and resp.length is not None
        )
        splicing = False
        pos = seg.pos
        with job.lock:
            job.inflight[seg.sid] = [pos, pos]
        first = pos == 0
        # readinto blocks until its slice is full: ask for about _READ_TIME's worth of this connection's
        # rate, so a slow connection still comes back often to see a steal (or a cancel)
        chunk = _READ_START
        t0 = time.monotonic()
        got = 0
        try:
            while True:
                end = seg.end  # shrinks when another worker steals the second half
                if 0 <= end <= pos:
                    break
                if self.cancel.is_set() or seg.gen != job.gen or job.error is not None:
                    self.conns.drop(url)
                    return
                want = chunk if end < 0 else min(chunk, end - pos)
                while (
                    job.prefix_end - job.hash_pos > _HASH_AHEAD and seg.gen == job.gen and job.error is None
                    and not self.cancel.is_set() and job.hasher is not None and job.hasher.is_alive()
                ):
                    # the hasher has that much written data waiting: the CPU goes to it first (else, on a
                    # fast link, eight receive threads starve it and the hash finishes long after the last byte)
                    time.sleep(0.005)
                piped = splicing  # this read goes through the pipe
                try:
                    if piped:
                        n = splicer.fill(sock.fileno(), end - pos, self.settings.read_timeout)  # what the socket has
                        resp.length -= n
                    else:
                        if zero_copy and not first:
                            # what http.client has buffered (peek fills its buffer once when empty): read
                            # exactly that, so its buffer is empty and the socket holds the rest of the body
                            want = max(1, min(want, len(resp.fp.peek(1))))
                            splicing = True
                        n = resp.readinto(view[:want])
                except SpliceUnsupported:
                    splicing = zero_copy = False  # nothing was taken from the socket: read it the ordinary way
                    continue
                except (OSError, http.client.HTTPException) as exc:
                    if splicer is not None:
                        splicer.reset()
                    self.conns.drop(url)
                    if self.cancel.is_set():
                        return
                    raise Retry(f"connection lost at {human_bytes(pos)} ({type(exc).__name__})") from exc
                if not n:
                    if end < 0:
                        break
                    self.conns.drop(url)
                    raise Retry(f"connection closed at {human_bytes(pos)}")
                if first:
                    first = False
                    err = http_errors.sniff_not_a_model(
                        bytes(view[: min(n, 512)]), resp.getheader("Content-Type"), url, relpath=job.name,
                        hub_endpoint=self.settings.hf_endpoint,
                    )
                    if err is not None:
                        self.conns.drop(url)
                        raise err
                with job.lock:  # claim the bytes; the write itself runs without the lock
                    if seg.gen != job.gen or job.fd < 0:
                        if piped:
                            splicer.reset()
                        self.conns.drop(url)  # the rest of this body is not wanted
                        return
                    if 0 <= seg.end < pos + n:
                        n = max(0, seg.end - pos)  # stolen meanwhile: those bytes are the thief's
                    seg.claimed = pos + n
                    job.writers += 1
                    fd = job.fd
                try:
                    if piped:
                        if n:
                            splicer.drain(fd, n, pos)
                        splicer.reset()  # bytes beyond a stolen end (the connection is dropped below)
                    elif n:
                        os.pwrite(fd, view[:n], pos)
                except OSError as exc:
                    if piped:
                        splicer.reset()
                    raise _write_error(exc, job.part, job.name) from None
                finally:
                    with job.lock:
                        job.writers -= 1
                        if n and seg.gen == job.gen:
                            job.inflight[seg.sid][1] = pos + n
                            job.fetched += n
                            if piped:
                                job.spliced += n
                            if pos <= job.prefix_end < pos + n:
                                job._advance_prefix()
                        if not job.writers:
                            job.lock.notify_all()  # _close/restart wait for writes in flight
                pos += n
                seg.pos = pos
                got += n
                spent = time.monotonic() - t0
                if spent > 0.01:
                    chunk = min(len(buf), max(_READ_MIN, int(got / spent * _READ_TIME) // _READ_MIN * _READ_MIN))
                self._progress(job)
                job.save()
            if end < 0:
                with job.lock:
                    job.size = pos
            elif resp.length:
                self.conns.drop(url)  # the range was cut short by a steal: the rest is still on the wire
            elif splicing and not resp.isclosed():
                resp.read()  # the body went around http.client: tell it the response is over (keep-alive)
        finally:
            with job.lock:
                span = job.inflight.pop(seg.sid, None)
                if span is not None and seg.gen == job.gen and span[1] > span[0]:
                    job.done = merge_ranges([*job.done, span])
                    job._advance_prefix()
                job.lock.notify_all()

    def _progress(self, job: FileJob, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - job.last_event < 0.2:  # ~5 events/s per file
            return
        with job.lock:
            done = sum(b - a for a, b in merge_ranges([*map(list, job.done), *[list(v) for v in job.inflight.values()]]))
            dt = now - job.last_event if job.last_event else now - job.started_at
            speed = (done - job.last_event_done) / dt if dt > 0 else 0.0
            job.last_event = now
            job.last_event_done = done
        self.emit(FileProgress(name=job.name, done=done, total=job.size, speed=max(0.0, speed)))

    # -- finishing ---------------------------------------------------------------------------------
    def finish(self, job: FileJob) -> None:
        """All segments of the current generation ended: verify and move, or record the failure."""
        try:
            self._finish(job)
        except BaseException as exc:  # noqa: BLE001 - never leave the engine waiting for this file
            if job.error is None:
                job.error = exc
            if not getattr(job, "closed", False):
                self._close(job, ok=False)

    def _finish(self, job: FileJob) -> None:
        if job.error is not None or self.cancel.is_set():
            with job.lock:
                job.lock.notify_all()
            job.save(force=True)
            self._close(job, ok=False)
            return
        with job.lock:
            missing = missing_ranges(job.done, job.size) if job.size >= 0 else []
            job.finished = True
            job.lock.notify_all()
        if missing:
            job.error = DownloadError(f"{job.name}: incomplete download ({len(missing)} range(s) missing)")
            job.save(force=True)
            self._close(job, ok=False)
            return
        job.hasher.join()
        size = os.fstat(job.fd).st_size
        digest = job.sha.hexdigest()
        problem = None
        if job.rf.size >= 0 and size != job.rf.size:
            problem = f"expected {job.rf.size} bytes, got {size}"
        elif job.rf.sha256 and digest != job.rf.sha256.lower():
            problem = f"expected sha256 {job.rf.sha256.lower()}, got {digest}"
        elif job.git is not None and job.git.hexdigest() != job.rf.git_oid:
            problem = f"expected git blob {job.rf.git_oid}, got {job.git.hexdigest()}"
        if problem:
            if job.integrity_retries < 1:
                job.integrity_retries += 1
                with job.lock:
                    job.finished = False
                self.plan(job, self.restart(job, f"verification failed ({problem}); downloading again", ranges_ok=job.ranges_ok))
                return
            job.error = IntegrityError(f"{job.name} from {redact_url(job.rf.url)}: {problem}")
            self._discard(job)
            self._close(job, ok=False)
            return
        job.dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(job.part, job.dest)
        except OSError:  # another filesystem: copy then remove
            shutil.copyfile(job.part, job.dest)
            os.unlink(job.part)
        job.digest = digest
        try:
            job.meta.unlink()
        except OSError:
            pass
        self._progress(job, force=True)
        self.emit(FileFinished(name=job.name, size=size, sha256=digest, fetched=job.fetched))
        self._close(job, ok=True)

    def _discard(self, job: FileJob) -> None:
        for p in (job.part, job.meta):
            try:
                p.unlink()
            except OSError:
                pass

    def _close(self, job: FileJob, ok: bool) -> None:
        with job.lock:
            if job.closed:
                return
            job.finished = True
            job.closed = True
            job.lock.notify_all()
            while job.writers:  # no writer may hit a reused fd
                job.lock.wait(0.05)
            if job.fd >= 0:
                os.close(job.fd)  # releases the flock
                job.fd = -1
        self.engine_done(job)

    def engine_done(self, job: FileJob) -> None:
        with self.cv:
            self.remaining -= 1
            self.cv.notify_all()


def _write_error(exc: OSError, path: Path, name: str) -> InstallerError:
    """A failed write of downloaded bytes as one of our errors (a full disk says so)."""
    if exc.errno == errno.ENOSPC:
        return DiskSpaceError(f"disk full while writing {name} into {path.parent}")
    return DownloadError(f"cannot write {name} into {path.parent}: {exc.strerror or exc}", "check the folder's permissions")


def download(
    resolved: Resolved,
    dest_dir: str | os.PathLike,
    *,
    partial_dir: str | os.PathLike,
    settings: DownloadSettings,
    on_event: Callable[[Event], None] = discard,
    cancel: threading.Event | None = None,
) -> DownloadResult:
    """Fetch every file of ``resolved`` into ``dest_dir/<relpath>``, verified; resumable and parallel.

    Files already in ``dest_dir`` with the right size and sha256 are kept (fetched 0).  Raises
    :class:`Cancelled` (partials kept), :class:`OfflineError`, :class:`DiskSpaceError`, or the first
    file's :class:`DownloadError` subclass (other files that finished stay in ``dest_dir``).
    """
    dest_dir = Path(dest_dir)
    partial = Path(partial_dir)
    cancel = cancel or threading.Event()
    paths: dict[str, Path] = {}
    sha: dict[str, str] = {}
    todo: list[tuple[RemoteFile, Path]] = []
    for rf in resolved.files:
        rel = safe_relpath(rf.relpath, resolved.label or redact_url(rf.url))
        dest = dest_dir.joinpath(*rel.split("/"))
        paths[rel] = dest
        if dest.is_file() and (rf.size < 0 or dest.stat().st_size == rf.size):
            digest = sha256_file(dest, cancel)
            if rf.sha256 is None or digest == rf.sha256.lower():
                if rf.git_oid is None or _git_oid_of(dest) == rf.git_oid:
                    sha[rel] = digest
                    on_event(FileFinished(name=rel, size=dest.stat().st_size, sha256=digest, fetched=0))
                    continue
        todo.append((rf, dest))
    if not todo:
        return DownloadResult(paths, 0, sha)
    if settings.offline:
        names = ", ".join(rf.relpath for rf, _ in todo[:3]) + (" ..." if len(todo) > 3 else "")
        raise OfflineError(f"{resolved.label}: offline mode is on (HF_HUB_OFFLINE) and {len(todo)} file(s) are missing ({names})")
    partial.mkdir(parents=True, exist_ok=True)
    nthreads = max(1, min(settings.max_connections, 64))
    # see DownloadSettings.start_connections: all of them over https, one over plain http, unless set
    start = settings.start_connections or (nthreads if any(rf.url.lower().startswith("https:") for rf, _ in todo) else 1)
    engine = Engine(settings, partial, on_event, cancel, nthreads, start)
    jobs = [FileJob(rf, dest, partial_dir=partial, sidecar_interval=settings.sidecar_interval, cancel=cancel) for rf, dest in todo]
    opened: list[FileJob] = []
    try:
        have = 0
        for job in jobs:
            have += job.load()
            opened.append(job)
        needed = sum(max(0, j.size) for j in jobs) - have
        check_disk_space(needed, partial, free=settings.disk_free)
    except BaseException:
        for job in opened:
            job.save(force=True)
            os.close(job.fd)
        raise
    engine.remaining = len(jobs)
    engine.jobs = jobs
    threads = [threading.Thread(target=engine.worker, daemon=True, name=f"dl-{i}") for i in range(nthreads)]
    watcher_stop = threading.Event()

    def watch_cancel() -> None:
        # cancel must be prompt even while a read blocks on a stalled server: shut the sockets down;
        # between checks, the connection ramp gets its rate samples
        while not watcher_stop.is_set():
            if cancel.wait(engine.ramp.window / 2):
                engine.conns.abort_all()
                return
            engine.tune()

    watcher = threading.Thread(target=watch_cancel, daemon=True, name="dl-cancel")
    watcher.start()
    for job in jobs:
        resumed = sum(b - a for a, b in job.done)
        engine.emit(FileStarted(name=job.name, total=job.size, resumed_from=resumed))
        job.start_hasher()
        engine.plan(job)
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.2)
    finally:
        watcher_stop.set()
        for job in jobs:
            if job.fd >= 0:
                job.save(force=True)
                os.close(job.fd)
                job.fd = -1
    fetched = sum(j.fetched for j in jobs)
    spliced = sum(j.spliced for j in jobs)
    if engine.fatal is not None:
        raise engine.fatal
    errors = [j.error for j in jobs if j.error is not None]
    if cancel.is_set():
        raise Cancelled(f"{resolved.label}: download cancelled; partial files kept for a later resume")
    if errors:
        raise errors[0]
    for job in jobs:
        sha[job.name] = job.digest
    return DownloadResult(paths, fetched, sha, spliced_bytes=spliced)


def _git_oid_of(path: Path) -> str:
    h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as fh:
        while chunk := fh.read(_BUF):
            h.update(chunk)
    return h.hexdigest()
