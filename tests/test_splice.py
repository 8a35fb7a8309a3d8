"""Zero-copy receive (net/splice.py) on real descriptors: a socket pair and files."""

from __future__ import annotations

import os
import socket

import pytest

from invokeai_model_install.net import splice
from invokeai_model_install.net.splice import SpliceUnsupported, Splicer

pytestmark = pytest.mark.skipif(not splice.available(), reason="this platform has no splice(2): the engine uses readinto")


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    b.settimeout(5)  # like the engine's connections: a timeout makes the descriptor non-blocking underneath
    yield a, b
    a.close()
    b.close()


def test_bytes_go_from_the_socket_into_the_file_at_their_offset(pair, tmp_path):
    sender, receiver = pair
    data = os.urandom(300_000)
    path = tmp_path / "f.part"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    sp = Splicer()
    try:
        sender.sendall(data[:100_000])
        got = 0
        while got < 100_000:
            n = sp.fill(receiver.fileno(), 100_000 - got, timeout=5)
            assert n > 0
            sp.drain(fd, n, 5000 + got)  # written at an offset, like a range of a split file
            got += n
        assert sp.pending == 0
        assert os.pread(fd, 100_000, 5000) == data[:100_000]
        assert os.pread(fd, 5000, 0) == bytes(5000)  # nothing before the offset
    finally:
        os.close(fd)
        sp.close()


def test_fill_never_takes_more_than_asked(pair):
    sender, receiver = pair
    sender.sendall(b"x" * 50_000)
    sp = Splicer()
    try:
        assert sp.fill(receiver.fileno(), 1000, timeout=5) == 1000
        assert receiver.recv(100_000, socket.MSG_PEEK) and len(receiver.recv(100_000)) == 49_000  # the rest stays in the socket
    finally:
        sp.close()


def test_a_silent_socket_times_out_and_a_closed_one_ends(pair):
    sender, receiver = pair
    sp = Splicer()
    try:
        with pytest.raises(TimeoutError):
            sp.fill(receiver.fileno(), 1000, timeout=0.2)
        sender.shutdown(socket.SHUT_WR)
        assert sp.fill(receiver.fileno(), 1000, timeout=5) == 0
    finally:
        sp.close()


def test_reset_forgets_bytes_left_in_the_pipe(pair, tmp_path):
    sender, receiver = pair
    sender.sendall(b"a" * 10_000)
    sp = Splicer()
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        n = sp.fill(receiver.fileno(), 10_000, timeout=5)
        sp.drain(fd, n // 2, 0)  # a steal cut the range short: half of what came is not ours
        sp.reset()
        assert sp.pending == 0
        sender.sendall(b"b" * 100)
        m = sp.fill(receiver.fileno(), 100, timeout=5)
        sp.drain(fd, m, 0)
        assert os.pread(fd, 100, 0) == b"b" * 100  # no stale "a" from the old pipe
    finally:
        os.close(fd)
        sp.close()


def test_a_descriptor_the_kernel_cannot_splice_says_so(tmp_path):
    sp = Splicer()
    fd = os.open(tmp_path, os.O_RDONLY)  # a directory: the kernel answers EINVAL, as it would for a socket type it cannot splice
    try:
        with pytest.raises(SpliceUnsupported):
            sp.fill(fd, 100, timeout=1)
        assert not sp.usable  # the engine reads the rest of this body with readinto
    finally:
        os.close(fd)
        sp.close()


def test_a_socket_numbered_above_1024_is_waited_for(pair, tmp_path):
    import resource

    sender, receiver = pair
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft <= 1500:
        if hard != resource.RLIM_INFINITY and hard <= 1500:
            pytest.skip(f"this process may open at most {hard} files: no descriptor 1500 to test with")
        resource.setrlimit(resource.RLIMIT_NOFILE, (2048, hard))
    high = os.dup2(receiver.fileno(), 1500)  # a process with many files open (select() would refuse it)
    sp = Splicer()
    try:
        with pytest.raises(TimeoutError):
            sp.fill(high, 10, timeout=0.2)
        sender.sendall(b"z" * 10)
        assert sp.fill(high, 10, timeout=5) == 10
    finally:
        sp.close()
        os.close(high)
