"""The io_uring wrapper without FUSE: a uring command on a pipe, which has no ->uring_cmd, completes with
EOPNOTSUPP and our user_data; many rounds wrap the ring's indices; closing releases the ring's fd and maps."""

from __future__ import annotations

import errno
import os

import pytest

from shuntfs import uring

pytestmark = pytest.mark.skipif(not uring.supported_arch(), reason="the ring is implemented for x86-64 only")


def test_commands_complete_with_their_user_data_across_many_wraps():
    ring = uring.Ring(4, uring.SETUP_SQE128)
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
    ring = uring.Ring(2, uring.SETUP_SQE128)
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
    ring = uring.Ring(2, uring.SETUP_SQE128)
    fd = ring.fd
    ring.close()
    assert ring.fd == -1
    with pytest.raises(OSError):
        os.fstat(fd)
