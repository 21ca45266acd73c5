"""The io_uring wrapper without FUSE: a uring command on a pipe, which has no ->uring_cmd, completes with
EOPNOTSUPP and our user_data; many rounds wrap the ring's indices; a read of an eventfd completes when it is
written, and wait() finds it by polling or asleep; closing releases the ring's fd and maps."""

from __future__ import annotations

import ctypes
import errno
import os
import threading
import time

import pytest

from shuntfs import io_uring

pytestmark = pytest.mark.skipif(not io_uring.supported_arch(), reason="the ring is implemented for x86-64 only")


def test_commands_complete_with_their_user_data_across_many_wraps():
    ring = io_uring.Ring(4, io_uring.SETUP_SQE128)
    r, w = os.pipe()
    try:
        seen = []
        for round_ in range(50):  # 150 SQEs through a 4-entry SQ ring and an 8-entry CQ ring
            for i in range(3):
                ring.put_uring_cmd(r, 1, 0, 0, round_ * 10 + i, bytes(24))
            ring.enter(3)
            seen += ring.completions()
        assert [d for d, _ in seen] == [r_ * 10 + i for r_ in range(50) for i in range(3)]
        assert {res for _, res in seen} == {-errno.EOPNOTSUPP}
    finally:
        ring.close()
        os.close(r)
        os.close(w)


def test_more_commands_than_the_sq_ring_holds_are_submitted_on_the_way():
    ring = io_uring.Ring(2, io_uring.SETUP_SQE128)
    r, w = os.pipe()
    try:
        for i in range(3):  # the third finds the SQ ring full and submits the first two itself
            ring.put_uring_cmd(r, 1, 0, 0, i, bytes(24))
        ring.enter(1)
        got = ring.completions()
        while len(got) < 3:
            ring.enter(1)
            got += ring.completions()
        assert sorted(d for d, _ in got) == [0, 1, 2]
    finally:
        ring.close()
        os.close(r)
        os.close(w)


def test_close_releases_the_fd():
    ring = io_uring.Ring(2, io_uring.SETUP_SQE128)
    fd = ring.fd
    ring.close()
    assert ring.fd == -1
    with pytest.raises(OSError):
        os.fstat(fd)


def _eventfd_read(ring: io_uring.Ring, user_data: int) -> tuple[int, ctypes.Array]:
    fd = os.eventfd(0, os.EFD_CLOEXEC)
    buf = ctypes.create_string_buffer(8)
    ring.put_read(fd, ctypes.addressof(buf), 8, user_data)
    return fd, buf


def test_wait_finds_a_completion_while_polling():
    ring = io_uring.Ring(2, io_uring.SETUP_SQE128)
    fd, _buf = _eventfd_read(ring, 7)
    writer = threading.Timer(0.002, os.eventfd_write, (fd, 1))
    try:
        writer.start()
        # The read is submitted by wait() itself; the write comes 2 ms later, well inside a 2 s poll.
        started = time.monotonic()
        assert ring.wait(2_000_000_000) is True
        assert time.monotonic() - started < 1.0
        assert ring.completions() == [(7, 8)]
    finally:
        writer.join()
        ring.close()
        os.close(fd)


def test_wait_sleeps_once_the_poll_runs_out_and_at_once_without_one():
    ring = io_uring.Ring(2, io_uring.SETUP_SQE128)
    fd, buf = _eventfd_read(ring, 8)
    writers = [threading.Timer(0.05, os.eventfd_write, (fd, 1)), threading.Timer(0.01, os.eventfd_write, (fd, 1))]
    try:
        writers[0].start()
        assert ring.wait(1_000_000) is False  # 1 ms of polling, then asleep until the write 50 ms in
        assert ring.completions() == [(8, 8)]
        ring.put_read(fd, ctypes.addressof(buf), 8, 9)
        writers[1].start()
        assert ring.wait(0) is False
        assert ring.completions() == [(9, 8)]
    finally:
        for w in writers:
            if w.is_alive():
                w.join()
        ring.close()
        os.close(fd)
