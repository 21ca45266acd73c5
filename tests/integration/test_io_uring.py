"""FUSE over io_uring: the default transport where the kernel has it. One queue per possible CPU, requests land on
the queue of the caller's CPU, passthrough still keeps data away from the daemon, userspace I/O of 1 MiB requests
fits the entries, and io_uring=off stays on /dev/fuse."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from shuntfs import ROOT_INODE, EntryAttributes, FileInfo, FUSEError, Operations, Session, uring_queues
from shuntfs.mount import find_mount

from .conftest import wait_for
from .test_passthrough import _exercise

HAS_URING = uring_queues.kernel_allows() is not None


def queue_counts(m) -> list[int]:
    """Requests served per qid (each queue may have several threads)."""
    counts = [0] * uring_queues.possible_cpus()
    for q in m.stats()["io_uring_queues"]:
        counts[q["qid"]] += q["requests"]
    return counts


def test_default_mount_serves_over_one_queue_per_cpu(mount_factory):
    m = mount_factory()
    stats = m.stats()
    if not HAS_URING:
        assert stats["transport"] == "/dev/fuse" and stats["io_uring_queues"] == []
        pytest.fail("this kernel has no FUSE over io_uring: the fallback is proven above, the feature is not")
    assert stats["transport"] == "io_uring"
    assert "OVER_IO_URING" in stats["capabilities"]
    assert sorted({q["qid"] for q in stats["io_uring_queues"]}) == list(range(uring_queues.possible_cpus()))
    assert all(q["error"] is None for q in stats["io_uring_queues"])
    for i in range(50):
        (m.source / f"f{i}").write_text("x")
    for cpu in sorted(os.sched_getaffinity(0)):
        before = queue_counts(m)
        # cache=auto keeps entries: fresh names make each stat a LOOKUP from this CPU
        subprocess.run(["taskset", "-c", str(cpu), "stat", *[str(m.mnt / f"n{cpu}-{i}") for i in range(20)]],
                       capture_output=True)
        after = queue_counts(m)
        assert after[cpu] - before[cpu] >= 20, (cpu, before, after)


@pytest.mark.skipif(not HAS_URING, reason="no FUSE over io_uring in this kernel (test_default_mount_... fails)")
def test_passthrough_over_io_uring_keeps_data_away(mount_factory):
    m = mount_factory()
    assert m.stats()["transport"] == "io_uring"
    _exercise(m.mnt / "data")
    counts = m.requests()
    assert counts.get("OPEN", 0) + counts.get("CREATE", 0) > 0
    assert counts.get("READ", 0) == 0 and counts.get("WRITE", 0) == 0
    assert sum(queue_counts(m)) > 0


@pytest.mark.skipif(not HAS_URING, reason="no FUSE over io_uring in this kernel (test_default_mount_... fails)")
def test_userspace_io_of_whole_megabytes_over_io_uring(mount_factory):
    m = mount_factory("passthrough=off")
    assert m.stats()["transport"] == "io_uring"
    data = os.urandom(4 << 20)
    (m.mnt / "big").write_bytes(data)
    subprocess.run(["sh", "-c", "echo 1 > /proc/sys/vm/drop_caches"], check=True)
    assert (m.mnt / "big").read_bytes() == data
    assert (m.source / "big").read_bytes() == data
    counts = m.requests()
    assert counts.get("READ", 0) > 0 and counts.get("WRITE", 0) > 0
    served_on_queues = sum(queue_counts(m))
    assert served_on_queues >= counts["READ"] + counts["WRITE"]


def test_io_uring_off_stays_on_dev_fuse(mount_factory):
    m = mount_factory("io_uring=off")
    (m.mnt / "f").write_text("hello")
    assert (m.mnt / "f").read_text() == "hello"
    stats = m.stats()
    assert stats["transport"] == "/dev/fuse"
    assert stats["io_uring_queues"] == []
    assert "OVER_IO_URING" not in stats["capabilities"]


def poll_counts(m) -> tuple[int, int]:
    """(completions found while polling, polls that ran out) over all queue threads."""
    queues = m.stats()["io_uring_queues"]
    return sum(q["polled"] for q in queues), sum(q["missed"] for q in queues)


_GETXATTR_LOOP = """
import os, sys, time
path, n, gap = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
for _ in range(n):
    try:
        os.getxattr(path, "user.none")
    except OSError:
        pass
    if gap:
        time.sleep(gap)
"""


def _getxattrs(path, n: int, gap: float) -> None:
    # one GETXATTR per call: the name stays cached (cache=auto) for the second each loop takes at most
    subprocess.run([sys.executable, "-c", _GETXATTR_LOOP, str(path), str(n), str(gap)], check=True)


@pytest.mark.skipif(not HAS_URING, reason="no FUSE over io_uring in this kernel (test_default_mount_... fails)")
def test_queues_poll_through_a_burst_and_sleep_between_sparse_requests(mount_factory):
    m = mount_factory()
    (m.source / "f").write_text("x")
    os.stat(m.mnt / "f")
    _getxattrs(m.mnt / "f", 2000, 0)
    polled, missed = poll_counts(m)
    # back to back, nearly every request finds its queue thread still polling
    assert polled > 1000, (polled, missed)
    _getxattrs(m.mnt / "f", 100, 0.005)
    polled_after, missed_after = poll_counts(m)
    # 5 ms apart is no burst: the threads sleep at once instead of polling in vain
    assert missed_after - missed <= 10, (missed, missed_after)
    assert polled_after - polled <= 10


@pytest.mark.skipif(not HAS_URING, reason="no FUSE over io_uring in this kernel (test_default_mount_... fails)")
def test_busy_poll_0_always_sleeps(mount_factory):
    m = mount_factory("busy_poll=0")
    (m.source / "f").write_text("x")
    _getxattrs(m.mnt / "f", 500, 0)
    assert poll_counts(m) == (0, 0)
    assert sum(q["slept"] for q in m.stats()["io_uring_queues"]) >= 500


class Blocking(Operations):
    """Two files; reading "slow" blocks until released, which must not hold up the rest of its CPU's queue."""

    def __init__(self) -> None:
        self.unblock = threading.Event()
        self.reading = threading.Event()
        self.syncing = threading.Event()

    def _attrs(self, inode: int) -> EntryAttributes:
        if inode == ROOT_INODE:
            return EntryAttributes(st_ino=inode, st_mode=stat.S_IFDIR | 0o755, st_nlink=2)
        return EntryAttributes(st_ino=inode, st_mode=stat.S_IFREG | 0o444, st_size=4, attr_timeout=0,
                               entry_timeout=0)

    def lookup(self, parent, name, ctx):
        if name not in (b"slow", b"fast"):
            raise FUSEError(errno.ENOENT)
        return self._attrs(2 if name == b"slow" else 3)

    def getattr(self, inode, fh, ctx):
        return self._attrs(inode)

    def open(self, inode, flags, ctx):
        return FileInfo(fh=inode, direct_io=True)

    def read(self, fh, offset, size):
        if fh == 2:
            self.reading.set()
            self.unblock.wait(20)
        return b"data"[offset:offset + size]

    def fsync(self, fh, datasync):
        self.syncing.set()
        self.unblock.wait(20)


@contextlib.contextmanager
def serving_over_io_uring(ops: Operations, mnt, **options) -> Iterator[Session]:
    """A library session on ``mnt`` whose requests come over io_uring; unmounted and reaped on the way out."""
    assert uring_queues.usable()
    session = Session(ops, str(mnt), passthrough=False, auto_unmount=False, io_uring=True, **options)
    session.mount()
    session.start()
    try:
        assert session.wait_init()
        assert wait_for(lambda: session.stats()["transport"] == "io_uring", 5)
        yield session
    finally:
        session.unmount()
        session.wait()


@pytest.mark.skipif(not HAS_URING, reason="no FUSE over io_uring in this kernel (test_default_mount_... fails)")
@pytest.mark.parametrize("queue_threads", [2, 1])
def test_a_blocked_handler_and_its_cpus_queue(tree, queue_threads):
    """With two threads per queue a request from the CPU of a blocked handler is served at once; with one (the
    default), it waits for the blocked one: the documented price, paid only by handlers of opcodes the table does
    not mark slow."""
    _src, mnt = tree
    ops = Blocking()
    slow = fast = None
    with serving_over_io_uring(ops, mnt, queue_threads=queue_threads):
        try:
            slow = subprocess.Popen(["taskset", "-c", "0", "cat", str(mnt / "slow")], stdout=subprocess.PIPE)
            assert ops.reading.wait(10)
            fast = subprocess.Popen(["taskset", "-c", "0", "cat", str(mnt / "fast")], stdout=subprocess.PIPE)
            if queue_threads == 2:
                assert fast.communicate(timeout=5)[0] == b"data", (
                    "a request from the same CPU waited for the blocked one")
                assert slow.poll() is None
            else:
                time.sleep(1)
                assert fast.poll() is None, "one thread per queue served a second request while its handler blocked"
        finally:
            ops.unblock.set()
            if slow is not None:
                assert slow.communicate(timeout=15)[0] == b"data"
            if fast is not None and fast.returncode is None:  # the one-thread case: served once unblocked
                assert fast.communicate(timeout=15)[0] == b"data"
    assert find_mount(str(mnt)) is None


FSYNC_SLOW = """
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.fsync(fd)
print("synced")
"""


@pytest.mark.skipif(not HAS_URING, reason="no FUSE over io_uring in this kernel (test_default_mount_... fails)")
def test_a_blocked_fsync_holds_up_no_queue(tree):
    """With one thread per queue (the default), an fsync that blocks is served by the pool: a request from the same
    CPU is answered meanwhile, and the fsync's reply still reaches its caller once it is done."""
    _src, mnt = tree
    ops = Blocking()
    syncer = None
    with serving_over_io_uring(ops, mnt) as session:
        assert session.queue_threads == 1
        try:
            syncer = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-c", FSYNC_SLOW, str(mnt / "fast")],
                                      stdout=subprocess.PIPE)
            assert ops.syncing.wait(10)
            fast = subprocess.Popen(["taskset", "-c", "0", "cat", str(mnt / "fast")], stdout=subprocess.PIPE)
            assert fast.communicate(timeout=5)[0] == b"data", "a request from the same CPU waited for the fsync"
            assert syncer.poll() is None
        finally:
            ops.unblock.set()
            if syncer is not None:
                assert syncer.communicate(timeout=15)[0] == b"synced\n"
    assert find_mount(str(mnt)) is None
    assert session.request_counts().get("FSYNC") == 1
