"""Faults: the daemon killed or stopped under load, a full source filesystem, source files changed behind the
mount, and a daemon out of file descriptors."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

import pytest

from shuntfs.mount import find_mount

from .conftest import MODES, _pid_alive, wait_for

# A client that loops over pre-made files until the filesystem fails it; it prints the errno it got.
CLIENT = r"""
import os, sys
root, n = sys.argv[1], 0
names = [os.path.join(root, f"pre{i}") for i in range(4)]
try:
    while True:
        for p in names:
            fd = os.open(p, os.O_RDWR)
            os.pwrite(fd, b"x" * 65536, (n % 16) * 65536)
            os.pread(fd, 65536, 0)
            os.close(fd)
            os.stat(p)
            os.listdir(root)
            n += 1
except OSError as e:
    print(e.errno, n, flush=True)
"""

# A writer that reports each acknowledged record: record i is 4 KiB of the byte i % 251 with i in its first bytes.
WRITER = r"""
import os, sys
path, count = sys.argv[1], int(sys.argv[2])
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
i = 0
try:
    for i in range(count):
        rec = i.to_bytes(8, "little") + bytes([i % 251]) * 4088
        os.write(fd, rec)
        print(i, flush=True)
    os.close(fd)
    print("closed", flush=True)
except OSError as e:
    print("error", e.errno, flush=True)
"""


#: What a call gets once the server died: ENOTCONN or ECONNABORTED, and ECANCELED for a request that was queued on
#: an io_uring queue when the server's rings went away (6.18).
DAEMON_GONE = (errno.ENOTCONN, errno.ECONNABORTED, errno.ECANCELED)


def start_clients(mnt, count=4):
    for i in range(4):
        (mnt / f"pre{i}").write_bytes(b"")
    return [subprocess.Popen([sys.executable, "-c", CLIENT, str(mnt)], stdout=subprocess.PIPE, text=True)
            for _ in range(count)]


def process_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][0]
    except OSError:
        return "gone"


@pytest.mark.parametrize("mode", list(MODES))
def test_sigkill_under_load_with_auto_unmount(mount_factory, mode):
    m = mount_factory(*MODES[mode])
    clients = start_clients(m.mnt)
    time.sleep(0.5)
    assert all(c.poll() is None for c in clients), "clients failed before the kill"
    os.kill(m.pid, signal.SIGKILL)
    killed = time.monotonic()
    assert wait_for(lambda: find_mount(str(m.mnt)) is None, 2.0)
    assert time.monotonic() - killed < 2.0
    # every client gets an error and ends; none is stuck in uninterruptible sleep (one may pass through it briefly
    # on its way out, as any exiting process may)
    for c in clients:
        assert wait_for(lambda: process_state(c.pid) != "D", 2.0), c.pid
        out, _ = c.communicate(timeout=10)
        assert int(out.split()[0]) in DAEMON_GONE + (errno.ENOENT, errno.EIO), out


@pytest.mark.parametrize("mode", list(MODES))
def test_sigkill_under_load_without_auto_unmount_gives_enotconn(mount_factory, mode):
    m = mount_factory("noauto_unmount", *MODES[mode])
    clients = start_clients(m.mnt)
    time.sleep(0.5)
    os.kill(m.pid, signal.SIGKILL)
    try:
        for c in clients:
            out, _ = c.communicate(timeout=10)
            assert int(out.split()[0]) in DAEMON_GONE, out
        assert find_mount(str(m.mnt)) is not None  # nobody removed it: that is what noauto_unmount means
    finally:
        subprocess.run(["umount", "-l", str(m.mnt)], check=True)


def check_records(path, acknowledged: int) -> None:
    data = path.read_bytes()
    assert len(data) >= (acknowledged + 1) * 4096, f"{len(data)} bytes for {acknowledged + 1} records"
    for i in range(acknowledged + 1):
        rec = data[i * 4096:(i + 1) * 4096]
        assert rec == i.to_bytes(8, "little") + bytes([i % 251]) * 4088, f"record {i}"


@pytest.mark.parametrize("mode", list(MODES))
def test_sigterm_with_writes_in_flight_loses_nothing(mount_factory, mode):
    """SIGTERM unmounts lazily: the open file keeps being served until the writer closes it, then the daemon
    exits. Every write acknowledged before, during and after the signal is in the source."""
    m = mount_factory(*MODES[mode])
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(m.mnt / "log"), "6000"],
                              stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "0"
    os.kill(m.pid, signal.SIGTERM)
    assert wait_for(lambda: find_mount(str(m.mnt)) is None, 5)
    out, _ = writer.communicate(timeout=60)
    lines = out.split()
    assert lines[-1] == "closed", lines[-3:]
    check_records(m.source / "log", 5999)
    assert wait_for(lambda: not _pid_alive(m.pid), 10), "the daemon did not exit after the last close"


@pytest.mark.parametrize("mode", list(MODES))
def test_second_sigterm_exits_and_keeps_acknowledged_writes(mount_factory, mode):
    m = mount_factory(*MODES[mode])
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(m.mnt / "log"), "10000000"],
                              stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "0"
    os.kill(m.pid, signal.SIGTERM)
    assert wait_for(lambda: find_mount(str(m.mnt)) is None, 5)
    os.kill(m.pid, signal.SIGTERM)
    assert wait_for(lambda: not _pid_alive(m.pid), 5)
    if mode == "passthrough":
        # The writer's open file is the kernel's business now; end it ourselves.
        writer.kill()
    out, _ = writer.communicate(timeout=30)
    lines = out.split()
    # the record numbers printed before any "error ERRNO" (an errno such as 103 is not a record)
    records = lines[:lines.index("error")] if "error" in lines else lines
    acked = [int(x) for x in records if x.isdigit()]
    assert acked, out[-200:]
    if mode == "fallback":
        assert lines[-2] == "error" and int(lines[-1]) in (errno.ENOTCONN, errno.ECONNABORTED), lines[-3:]
    check_records(m.source / "log", acked[-1])


@pytest.fixture
def small_source(tree):
    src, _mnt = tree
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(src)], check=True)
    yield src
    subprocess.run(["umount", "-l", str(src)], check=True)


@pytest.mark.parametrize("mode", list(MODES))
def test_full_source_gives_enospc_and_the_daemon_keeps_serving(small_source, mount_factory, mode):
    m = mount_factory(*MODES[mode])
    with pytest.raises(OSError) as e:
        with open(m.mnt / "big", "wb") as f:
            for _ in range(40):
                f.write(b"z" * 65536)
                f.flush()
            os.fsync(f.fileno())
    assert e.value.errno == errno.ENOSPC
    assert "big" in os.listdir(m.mnt)
    os.unlink(m.mnt / "big")
    # The space comes back when the last reference goes: the kernel's RELEASE and FORGET of the unlinked file are
    # asynchronous, as with every FUSE server, so wait for them rather than race them.
    assert wait_for(lambda: os.statvfs(small_source).f_bfree * os.statvfs(small_source).f_frsize > 512 * 1024, 5)
    (m.mnt / "small").write_bytes(b"s" * 100_000)
    assert (m.mnt / "small").read_bytes() == b"s" * 100_000
    assert (small_source / "small").stat().st_size == 100_000


@pytest.mark.parametrize("cache", ["auto", "none"])
@pytest.mark.parametrize("mode", list(MODES))
def test_source_files_renamed_or_deleted_behind_the_mount(mount_factory, mode, cache):
    m = mount_factory(f"cache={cache}", *MODES[mode])
    src, mnt = m.source, m.mnt
    (src / "a").write_bytes(b"first")
    fd = os.open(mnt / "a", os.O_RDWR)
    try:
        os.rename(src / "a", src / "b")
        os.pwrite(fd, b"FIRST", 0)  # the open file is the inode, wherever its name went
        assert (src / "b").read_bytes() == b"FIRST"
        assert wait_for(lambda: not os.path.exists(mnt / "a"), 3)
        assert (mnt / "b").read_bytes() == b"FIRST"
        os.unlink(src / "b")
        assert os.pread(fd, 5, 0) == b"FIRST"  # still open: still readable
        assert wait_for(lambda: not os.path.exists(mnt / "b"), 3)
        # A new file under the old name is a new file through the mount too.
        (src / "a").write_bytes(b"second")
        assert wait_for(lambda: os.path.exists(mnt / "a") and (mnt / "a").read_bytes() == b"second", 3)
    finally:
        os.close(fd)
    # a directory moved behind the mount: its cached inode still works, its old name goes away
    (src / "dir").mkdir()
    (mnt / "dir" / "inner").write_bytes(b"inner")
    os.rename(src / "dir", src / "moved")
    assert wait_for(lambda: (mnt / "moved" / "inner").exists() and not (mnt / "dir").exists(), 3)


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.parametrize("mode", list(MODES))
def test_fd_exhaustion_in_the_daemon_is_an_error_not_a_crash(mount_factory, mode):
    m = mount_factory(*MODES[mode])
    for i in range(200):
        (m.source / f"f{i}").write_bytes(b"x")
    os.listdir(m.mnt)
    limit = open_fds(m.pid) + 40
    subprocess.run(["prlimit", f"--pid={m.pid}", f"--nofile={limit}:{limit}"], check=True)
    held, failure = [], None
    try:
        for i in range(200):
            try:
                held.append(os.open(m.mnt / f"f{i}", os.O_RDONLY))
            except OSError as e:
                failure = e
                break
        assert failure is not None and failure.errno in (errno.EMFILE, errno.ENFILE), failure
        assert _pid_alive(m.pid)
        # still serving what needs no new fd: attributes, and reads of what is open
        assert os.stat(m.mnt / "f0").st_size == 1
        assert os.pread(held[0], 1, 0) == b"x"
    finally:
        for fd in held:
            os.close(fd)
    # recovers once the fds are given back (the kernel forgets the inodes it no longer uses)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("2")
    assert wait_for(lambda: open_fds(m.pid) < limit - 20, 5)
    for i in range(150, 200):
        assert (m.mnt / f"f{i}").read_bytes() == b"x"
