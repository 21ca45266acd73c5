"""Passthrough, proven by the daemon's own counters: a passthrough file's data never reaches the daemon."""

from __future__ import annotations

import mmap
import os
import random
import subprocess
import time

import pytest

from .conftest import as_user, wait_for


def _exercise(path) -> None:
    """Plain write, read, pread/pwrite, sendfile and mmap on one file, with caches dropped in between."""
    data = os.urandom(1 << 20)
    with open(path, "wb") as f:
        f.write(data)
    with open(path, "rb") as f:
        assert f.read() == data
    fd = os.open(path, os.O_RDWR)
    try:
        os.pwrite(fd, b"patched", 4096)
        assert os.pread(fd, 7, 4096) == b"patched"
        with mmap.mmap(fd, 8192) as m:
            m[0:4] = b"MMAP"
            assert m[4096:4103] == b"patched"
        out = os.open(os.devnull, os.O_WRONLY)
        try:
            assert os.sendfile(out, fd, 0, 65536) == 65536
        finally:
            os.close(out)
    finally:
        os.close(fd)
    subprocess.run(["sh", "-c", "echo 1 > /proc/sys/vm/drop_caches"], check=True)
    with open(path, "rb") as f:
        assert f.read(4) == b"MMAP"


def test_passthrough_data_never_reaches_the_daemon(mount_factory):
    m = mount_factory()
    assert m.stats()["passthrough"] is True
    before = m.requests()
    _exercise(m.mnt / "data")
    after = m.requests()
    assert after.get("OPEN", 0) + after.get("CREATE", 0) > before.get("OPEN", 0)
    assert after.get("READ", 0) == before.get("READ", 0) == 0
    assert after.get("WRITE", 0) == before.get("WRITE", 0) == 0
    assert (m.source / "data").read_bytes()[:4] == b"MMAP"


def test_fallback_serves_data_in_userspace(mount_factory):
    m = mount_factory("passthrough=off")
    stats = m.stats()
    assert stats["passthrough"] is False
    assert "PASSTHROUGH" not in stats["capabilities"]
    _exercise(m.mnt / "data")
    counts = m.requests()
    assert counts.get("READ", 0) > 0
    assert counts.get("WRITE", 0) > 0
    assert (m.source / "data").read_bytes()[:4] == b"MMAP"


@pytest.mark.parametrize("transport", ["io_uring=on", "io_uring=off"])
def test_fallback_reads_arrive_a_mebibyte_at_a_time(mount_factory, transport):
    """A root daemon raises the mount's readahead from the kernel's 128 KiB to max_pages, and READ replies are put
    in place (the ring entry or a page-aligned buffer): the data must still be exactly the file's."""
    m = mount_factory("passthrough=off", transport)
    dev = os.stat(m.mnt).st_dev
    bdi = f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb"
    with open(bdi) as f:
        assert int(f.read()) == 1024
    data = os.urandom(8 << 20)
    (m.source / "big").write_bytes(data)
    before = m.requests().get("READ", 0)
    with open(m.mnt / "big", "rb", buffering=0) as f:
        got = b"".join(iter(lambda: f.read(1 << 20), b""))
    assert got == data
    assert m.requests()["READ"] - before <= 10  # 64 at 128 KiB


@pytest.mark.parametrize("transport", ["io_uring=on", "io_uring=off"])
def test_fallback_write_only_opens_bypass_the_page_cache_and_stay_coherent(mount_factory, transport):
    """Served in userspace, a write-only open gets direct I/O: one WRITE carries a whole page-aligned mebibyte
    wherever it lands in the file, where the page cache splits it at page boundaries. Another open's cached pages
    and mappings see the direct writes."""
    m = mount_factory("passthrough=off", transport)
    (m.source / "f").write_bytes(b"a" * (2 << 20))
    mib = mmap.mmap(-1, 1 << 20)  # page-aligned, so direct I/O pins exactly 256 pages
    mib.write(b"b" * (1 << 20))

    def writes_for_a_mib_at_100(mode: int) -> int:
        fd = os.open(m.mnt / "f", mode)
        try:
            before = m.requests().get("WRITE", 0)
            assert os.pwrite(fd, mib, 100) == 1 << 20
            return m.requests()["WRITE"] - before
        finally:
            os.close(fd)

    assert writes_for_a_mib_at_100(os.O_WRONLY) == 1
    assert writes_for_a_mib_at_100(os.O_RDWR) == 2  # cached: 256 pages from byte 100 leave 100 bytes over
    mib.close()

    reader = os.open(m.mnt / "f", os.O_RDONLY)
    writer = os.open(m.mnt / "f", os.O_WRONLY)
    try:
        assert os.pread(reader, 4, 1 << 20) == b"bbbb"  # now in the reader's page cache
        view = mmap.mmap(reader, 2 << 20, prot=mmap.PROT_READ)
        assert view[(1 << 20) : (1 << 20) + 4] == b"bbbb"
        os.pwrite(writer, b"cccc", 1 << 20)
        assert os.pread(reader, 4, 1 << 20) == b"cccc"
        assert view[(1 << 20) : (1 << 20) + 4] == b"cccc"
        view.close()
    finally:
        os.close(reader)
        os.close(writer)
    assert (m.source / "f").read_bytes()[(1 << 20) - 4 : (1 << 20) + 8] == b"bbbbccccbbbb"


def test_fallback_write_only_and_cached_opens_agree_byte_for_byte(mount_factory):
    """Random unaligned writes through a write-only (direct) open, appends included, interleaved with reads through a
    cached open of the same file, checked against a model of its bytes."""
    m = mount_factory("passthrough=off")
    rng = random.Random(4)
    model = bytearray(rng.randbytes(300_000))
    (m.source / "f").write_bytes(model)
    reader = os.open(m.mnt / "f", os.O_RDONLY)
    writer = os.open(m.mnt / "f", os.O_WRONLY)
    appender = os.open(m.mnt / "f", os.O_WRONLY | os.O_APPEND)
    try:
        for _ in range(300):
            op = rng.random()
            if op < 0.4:
                off, size = rng.randrange(len(model)), rng.randrange(1, 70_000)
                data = rng.randbytes(size)
                assert os.pwrite(writer, data, off) == size
                model[off : off + size] = data
            elif op < 0.5:
                data = rng.randbytes(rng.randrange(1, 9000))
                assert os.write(appender, data) == len(data)
                model += data
            else:
                off, size = rng.randrange(len(model)), rng.randrange(1, 70_000)
                assert os.pread(reader, size, off) == bytes(model[off : off + size]), (off, size)
        with mmap.mmap(reader, len(model), prot=mmap.PROT_READ) as view:
            assert view[:] == bytes(model)
    finally:
        for fd in (reader, writer, appender):
            os.close(fd)
    assert (m.source / "f").read_bytes() == bytes(model)


def test_one_backing_id_per_inode_shared_by_opens(mount_factory):
    m = mount_factory()
    (m.source / "a").write_bytes(b"A" * 100)
    (m.source / "b").write_bytes(b"B" * 100)
    os.link(m.source / "a", m.source / "a2")
    fa1 = os.open(m.mnt / "a", os.O_RDONLY)
    fa2 = os.open(m.mnt / "a2", os.O_RDWR)  # same inode through another name and mode
    fb = os.open(m.mnt / "b", os.O_RDONLY)
    try:
        backing = m.stats()["backing_files"]
        by_path = {b["path"]: b for b in backing}
        assert len(backing) == 2
        a = by_path[str(m.source / "a")] if str(m.source / "a") in by_path else by_path[str(m.source / "a2")]
        assert a["opens"] == 2
        assert by_path[str(m.source / "b")]["opens"] == 1
        assert len({b["id"] for b in backing}) == 2
        assert os.pread(fa2, 3, 0) == b"AAA"
        os.pwrite(fa2, b"zz", 0)
        assert os.pread(fa1, 3, 0) == b"zzA"
    finally:
        os.close(fa1)
        os.close(fa2)
        os.close(fb)
    # the ids are closed with the last release (RELEASE is asynchronous)
    assert wait_for(lambda: m.stats()["backing_files"] == [], 5)
    assert m.requests().get("READ", 0) == 0


def test_size_and_mtime_stay_coherent_after_passthrough_writes(mount_factory):
    m = mount_factory()
    path = m.mnt / "grow"
    with open(path, "wb") as f:
        for _ in range(10):
            f.write(b"x" * 1000)
            f.flush()
            assert os.fstat(f.fileno()).st_size == os.stat(m.source / "grow").st_size
    st, ref = os.stat(path), os.stat(m.source / "grow")
    assert (st.st_size, st.st_mtime_ns) == (ref.st_size, ref.st_mtime_ns) == (10000, ref.st_mtime_ns)


@pytest.mark.parametrize("cache", ["auto", "none"])
def test_mtime_after_a_write_through_a_shared_mapping(mount_factory, cache):
    """The documented limit: a write through a mapping of a passthrough file reaches the backing file without a
    word to the daemon, so the mount shows the new mtime once its cached attributes expire; cache=none at once."""
    m = mount_factory(f"cache={cache}")
    path = m.mnt / "mapped"
    path.write_bytes(bytes(8192))
    fd = os.open(path, os.O_RDWR)
    try:
        with mmap.mmap(fd, 8192) as mapping:
            mapping[0:4] = b"page"
            mapping.flush()
            os.stat(path)  # attributes cached now
            time.sleep(0.05)
            mapping[4096:4100] = b"next"  # a first write to the second page: the source's mtime moves
            mapping.flush()
            source = os.stat(m.source / "mapped").st_mtime_ns
            shown = os.stat(path).st_mtime_ns
            assert (shown == source) is (cache == "none")
            assert wait_for(lambda: os.stat(path).st_mtime_ns == source, 3)
    finally:
        os.close(fd)
    assert m.requests().get("WRITE", 0) == 0


def test_readahead_still_works_on_passthrough_files(mount_factory):
    """posix_fadvise(WILLNEED) sends READ even for passthrough files; it must be served, not fail."""
    m = mount_factory()
    (m.source / "f").write_bytes(b"r" * 65536)
    fd = os.open(m.mnt / "f", os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 65536, os.POSIX_FADV_WILLNEED)
        assert os.read(fd, 5) == b"rrrrr"
    finally:
        os.close(fd)


def test_stacked_source_falls_back_per_file(mount_factory, workdir):
    """A source that is itself a FUSE passthrough mount is too deep for depth 1: files fall back, nothing fails."""
    inner_src = workdir / "inner-src"
    inner_mnt = workdir / "inner-mnt"
    outer_mnt = workdir / "outer-mnt"
    for p in (inner_src, inner_mnt, outer_mnt):
        p.mkdir()
    (inner_src / "f").write_bytes(b"deep")
    mount_factory(source=inner_src, mountpoint=inner_mnt)
    outer = mount_factory("max_stack_depth=1", source=inner_mnt, mountpoint=outer_mnt)
    assert (outer_mnt / "f").read_bytes() == b"deep"
    (outer_mnt / "g").write_bytes(b"written")
    assert (inner_src / "g").read_bytes() == b"written"
    stats = outer.stats()
    assert stats["fallback_opens"] >= 2
    assert stats["requests"].get("READ", 0) > 0


def test_killpriv_is_default(mount_factory):
    assert "HANDLE_KILLPRIV_V2" in mount_factory().stats()["capabilities"]


def test_killpriv_can_be_declined(mount_factory):
    assert "HANDLE_KILLPRIV_V2" not in mount_factory("killpriv=off").stats()["capabilities"]


def test_passthrough_writes_cost_no_round_trip(mount_factory):
    """With HANDLE_KILLPRIV_V2 the kernel stops asking for security.capability before each passthrough write (one
    GETXATTR per write otherwise): many small writes reach the daemon at most once."""
    m = mount_factory()
    (m.source / "small").write_bytes(b"\0" * 65536)
    fd = os.open(m.mnt / "small", os.O_WRONLY)
    try:
        before = m.requests()
        for i in range(200):
            os.pwrite(fd, b"w" * 4096, (i % 16) * 4096)
        after = m.requests()
    finally:
        os.close(fd)
    assert after.get("WRITE", 0) == before.get("WRITE", 0) == 0
    # each stats query asks the mount's root for the control socket's name: one GETXATTR of its own
    assert after.get("GETXATTR", 0) - before.get("GETXATTR", 0) <= 2, (before, after)


_WRITER = """
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
if len(sys.argv) > 2:  # become set-uid while open, as root arranges through a second path
    input()
os.pwrite(fd, b"y", 0)
os.close(fd)
"""


def _source_file(m, name: str, owner: int, mode: int) -> None:
    path = m.source / name
    path.write_bytes(b"x")
    os.chown(path, owner, owner)
    path.chmod(mode)


def test_set_id_files_are_passthrough_and_cleared_as_natively(mount_factory):
    """Writable opens of set-id files are passthrough too. Root's writes keep S_ISUID (the backing file writes with
    the daemon's CAP_FSETID); another user's write clears it first: the kernel's file_remove_privs sends an empty
    SETATTR as that user, which the library turns into clearing the bits. Neither write reaches the daemon."""
    m = mount_factory("allow_other")
    _source_file(m, "root-writes", 65534, 0o4777)
    with open(m.mnt / "root-writes", "r+b") as f:
        f.write(b"r")
    assert (m.source / "root-writes").stat().st_mode & 0o7777 == 0o4777
    _source_file(m, "nobody-writes", 65534, 0o4777)
    subprocess.run(as_user("nobody", ["/usr/bin/python3", "-c", _WRITER, str(m.mnt / "nobody-writes")]), check=True)
    assert (m.source / "nobody-writes").stat().st_mode & 0o7777 == 0o777
    assert os.stat(m.mnt / "nobody-writes").st_mode & 0o7777 == 0o777
    assert (m.source / "nobody-writes").read_bytes() == b"y"
    counts = m.requests()
    assert counts.get("WRITE", 0) == 0 and counts.get("READ", 0) == 0
    assert m.stats()["fallback_opens"] == 0


def test_set_id_bit_set_during_a_passthrough_open(mount_factory):
    """A file already open for passthrough writing when it becomes set-uid: the kernel's cached mode is updated by
    the chmod, so the next write by a user without CAP_FSETID still clears the bit, and root's still keeps it."""
    m = mount_factory("allow_other")
    for name in ("late-nobody", "late-root"):
        _source_file(m, name, 65534, 0o777)
    command = ["/usr/bin/python3", "-c", _WRITER, str(m.mnt / "late-nobody"), "wait"]
    writer = subprocess.Popen(as_user("nobody", command), stdin=subprocess.PIPE)
    fd = os.open(m.mnt / "late-root", os.O_WRONLY)
    try:
        wait_for(lambda: m.stats()["open_files"] >= 2, 5)
        os.chmod(m.mnt / "late-nobody", 0o4777)
        os.chmod(m.mnt / "late-root", 0o4777)
        writer.communicate(b"\n", timeout=10)
        assert writer.returncode == 0
        os.pwrite(fd, b"y", 0)
    finally:
        os.close(fd)
    assert (m.source / "late-nobody").stat().st_mode & 0o7777 == 0o777
    assert (m.source / "late-root").stat().st_mode & 0o7777 == 0o4777
    assert m.requests().get("WRITE", 0) == 0
