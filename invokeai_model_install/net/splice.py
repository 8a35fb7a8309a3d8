"""Zero-copy receive for plain-http bodies on Linux: socket -> pipe -> file with ``splice(2)``.

Why our own (measured, docs/performance.md): on a fast link the receive thread is CPU-bound. Reading
with ``readinto`` copies every byte twice in the CPU (kernel socket buffer -> our buffer -> page
cache); ``splice`` moves the socket's pages into a pipe by reference and from the pipe into the page
cache with one kernel copy, and never holds the GIL while doing it.  1 GB from nginx on loopback,
single connection, sha256 on its own thread, same run: readinto 1.5-4 s (it fights the hasher for the
GIL and the second core), splice 1.37-1.49 s with 1.24 s of CPU, curl 1.37-1.64 s.  No library wraps
this (``socket.sendfile`` goes the other way: file -> socket).

Only for plain sockets (TLS decrypts in user space: nothing to splice), bodies of known length that
are not chunked, and when the kernel agrees: anything unexpected (``EINVAL``, ``ENOSYS``: a
filesystem that cannot take spliced pages, an old kernel) makes :class:`Splicer` say ``usable =
False`` and the caller goes back to ``readinto`` for good.
"""

from __future__ import annotations

import errno
import os
import select

_SPLICE = getattr(os, "splice", None)  # Linux, Python >= 3.10
_F_SETPIPE_SZ = 1031  # linux/fcntl.h (F_LINUX_SPECIFIC_BASE + 7); fcntl has it from Python 3.10 on some builds only
_PIPE_SIZE = 1 << 20  # as big as an unprivileged process may ask for by default (/proc/sys/fs/pipe-max-size)
_NONBLOCK = getattr(os, "SPLICE_F_NONBLOCK", 2)
_MOVE = getattr(os, "SPLICE_F_MOVE", 1)
_MORE = getattr(os, "SPLICE_F_MORE", 4)
_FALLBACK_ERRNOS = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF, errno.ESPIPE}


def available() -> bool:
    """Whether this platform has ``splice`` at all."""
    return _SPLICE is not None


class SpliceUnsupported(Exception):
    """The kernel refused to splice between these descriptors: use ``readinto`` instead."""


class Splicer:
    """One pipe, owned by one receive thread and reused for every response it reads.

    :meth:`fill` moves what the socket has (up to ``want``) into the pipe; :meth:`drain` moves bytes
    from the pipe into a file at an offset; :meth:`reset` forgets whatever is left in the pipe (a
    stolen range, a dropped connection).
    """

    def __init__(self) -> None:
        self._r = -1
        self._w = -1
        self.capacity = 64 << 10
        self.pending = 0  # bytes in the pipe, not yet written to a file
        self.usable = available()

    def _open(self) -> None:
        self._r, self._w = os.pipe()
        try:
            import fcntl

            self.capacity = fcntl.fcntl(self._w, _F_SETPIPE_SZ, _PIPE_SIZE)
        except (ImportError, OSError):  # a smaller pipe still works, with more calls
            self.capacity = 64 << 10

    def fill(self, sock_fd: int, want: int, timeout: float) -> int:
        """Move up to ``want`` bytes from the socket into the pipe; -> bytes moved (0: end of stream).

        Waits at most ``timeout`` seconds for the first byte (``TimeoutError``); connection errors
        are the socket's ``OSError``; :class:`SpliceUnsupported` when the kernel refuses.
        """
        if self._r < 0:
            self._open()
        want = min(want, self.capacity - self.pending)
        while True:
            try:
                n = _SPLICE(sock_fd, self._w, want, flags=_MOVE | _MORE | _NONBLOCK)
            except BlockingIOError:
                # poll, not select: select cannot watch a descriptor numbered 1024 or more
                poller = select.poll()
                poller.register(sock_fd, select.POLLIN)
                if not poller.poll(max(0, int(timeout * 1000))):
                    raise TimeoutError(errno.ETIMEDOUT, "timed out") from None
                continue
            except OSError as exc:
                if exc.errno in _FALLBACK_ERRNOS:
                    self.usable = False
                    raise SpliceUnsupported(str(exc)) from None
                raise
            self.pending += n
            return n

    def drain(self, fd: int, count: int, offset: int) -> None:
        """Write ``count`` bytes from the pipe into ``fd`` at ``offset`` (``OSError`` as a write would)."""
        while count > 0:
            try:
                n = _SPLICE(self._r, fd, count, offset_dst=offset, flags=_MOVE)
            except OSError as exc:
                if exc.errno in _FALLBACK_ERRNOS:
                    # this file cannot take spliced pages: copy these bytes through memory, then give up on splice
                    self.usable = False
                    data = os.read(self._r, count)
                    os.pwrite(fd, data, offset)
                    n = len(data)
                else:
                    raise
            if n <= 0:
                raise OSError(errno.EIO, "the pipe ran dry")
            count -= n
            offset += n
            self.pending -= n

    def reset(self) -> None:
        """Drop whatever is in the pipe (a new pipe next time)."""
        if self.pending:
            self.close()

    def close(self) -> None:
        for fd in (self._r, self._w):
            if fd >= 0:
                os.close(fd)
        self._r = self._w = -1
        self.pending = 0
