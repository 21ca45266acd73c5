"""The path-based API (shuntfs.PathOperations) on real mounts: a fusepy-style in-memory filesystem and a loopback
with passthrough, operation by operation."""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import stat
from pathlib import Path

import pytest

from shuntfs import Session
from shuntfs.mount import find_mount

from .conftest import wait_for
from .path_filesystems import LoopbackPaths, MemoryPaths, NullpathLoopbackPaths, ScandirLoopbackPaths


@pytest.fixture
def serve(tree):
    sessions: list[Session] = []

    def start(fs, **options) -> Path:
        _src, mnt = tree
        session = Session(fs, str(mnt), auto_unmount=False, **options)
        session.mount()
        session.start()
        assert session.wait_init()
        sessions.append(session)
        return mnt

    start.sessions = sessions  # type: ignore[attr-defined]
    yield start
    for session in sessions:
        session.unmount()
        session.wait()
        assert find_mount(session.mountpoint) is None


def test_files_and_directories_by_path(serve):
    fs = MemoryPaths()
    mnt = serve(fs)
    (mnt / "d").mkdir(0o750)
    (mnt / "d" / "f").write_bytes(b"hello")
    assert (mnt / "d" / "f").read_bytes() == b"hello"
    assert sorted(os.listdir(mnt / "d")) == ["f"]
    st = os.stat(mnt / "d")
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o750
    os.chmod(mnt / "d" / "f", 0o600)
    os.truncate(mnt / "d" / "f", 2)
    os.utime(mnt / "d" / "f", ns=(1_000_000_000, 2_500_000_000))
    st = os.stat(mnt / "d" / "f")
    assert (stat.S_IMODE(st.st_mode), st.st_size, st.st_mtime_ns) == (0o600, 2, 2_500_000_000)
    os.symlink("d/f", mnt / "l")
    assert os.readlink(mnt / "l") == "d/f" and (mnt / "l").read_bytes() == b"he"
    os.link(mnt / "d" / "f", mnt / "hard")
    assert (mnt / "hard").read_bytes() == b"he" and os.stat(mnt / "hard").st_nlink == 2
    with pytest.raises(OSError) as caught:
        os.rmdir(mnt / "d")
    assert caught.value.errno == errno.ENOTEMPTY
    os.unlink(mnt / "d" / "f")
    os.rmdir(mnt / "d")
    assert sorted(os.listdir(mnt)) == ["hard", "l"]
    name = os.fsdecode(b"caf\xe9")  # not UTF-8: round-trips as a surrogate escape
    (mnt / name).write_bytes(b"x")
    assert os.fsencode(name) in os.listdir(os.fsencode(mnt))


def test_a_renamed_directory_takes_its_subtree_and_open_files_along(serve):
    fs = MemoryPaths()
    mnt = serve(fs)
    (mnt / "a" / "b").mkdir(parents=True)
    (mnt / "a" / "b" / "f").write_bytes(b"inside")
    with open(mnt / "a" / "b" / "f", "r+b") as f:
        os.rename(mnt / "a", mnt / "z")
        f.write(b"IN")  # the open file follows its directory
        f.flush()
    assert (mnt / "z" / "b" / "f").read_bytes() == b"INside"
    assert fs.files["/z/b/f"]["data"] == b"INside"
    assert not (mnt / "a").exists()


def test_a_file_unlinked_while_open_keeps_working(serve):
    fs = MemoryPaths()
    mnt = serve(fs)
    (mnt / "f").write_bytes(b"still here")
    with open(mnt / "f", "r+b") as f:
        os.unlink(mnt / "f")
        assert not (mnt / "f").exists() and os.listdir(mnt) == []
        assert f.read() == b"still here"
        f.write(b"!")
        f.flush()
        st = os.fstat(f.fileno())
        assert (st.st_size, st.st_nlink) == (11, 0)  # the hidden name is no link, as natively
    # gone with its last release (which the kernel sends after close returns)
    assert wait_for(lambda: not any(name.startswith("/.fuse_hidden") for name in fs.files), 5), fs.files.keys()
    assert os.listdir(mnt) == []


def test_a_directory_removed_while_open_still_answers_fstat(serve):
    fs = MemoryPaths()
    mnt = serve(fs)
    serve.sessions[0].ops.attr_timeout = 0  # every fstat asks the bridge
    (mnt / "d").mkdir()
    fd = os.open(mnt / "d", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.rmdir(mnt / "d")
        st = os.fstat(fd)
        assert stat.S_ISDIR(st.st_mode) and st.st_nlink == 0
        assert os.lseek(fd, 0, os.SEEK_CUR) == 0
        os.fsync(fd)
    finally:
        os.close(fd)
    assert wait_for(lambda: fs.released_dirs == ["-"], 5), fs.released_dirs  # its handle is not leaked


def test_with_nullpath_ok_an_open_file_is_unlinked_at_once_and_served_by_handle(serve, workdir):
    backing = workdir / "backing"
    backing.mkdir()
    mnt = serve(NullpathLoopbackPaths(str(backing)), passthrough=False)
    serve.sessions[0].ops.attr_timeout = 0  # every fstat asks the bridge
    (mnt / "f").write_bytes(b"0123456789")
    fd = os.open(mnt / "f", os.O_RDWR)
    try:
        os.unlink(mnt / "f")
        assert os.listdir(backing) == []  # no hidden name: gone from SOURCE at once
        st = os.fstat(fd)  # no handle in the request: the bridge finds the file's open one
        assert (st.st_nlink, st.st_size) == (0, 10)
        os.ftruncate(fd, 3)
        os.fchmod(fd, 0o600)
        st = os.fstat(fd)
        assert (st.st_size, stat.S_IMODE(st.st_mode)) == (3, 0o600)
        assert os.pread(fd, 10, 0) == b"012"
    finally:
        os.close(fd)


def _link_fd(fd: int, new: Path) -> None:
    """linkat(fd, "", AT_FDCWD, new, AT_EMPTY_PATH): how a program names an O_TMPFILE file."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.linkat(fd, b"", -100, os.fsencode(new), 0x1000) < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))


def test_o_tmpfile_is_a_hidden_file_until_linked(serve):
    fs = MemoryPaths()  # its rename takes no flags: the name comes by link and unlink of the hidden one
    mnt = serve(fs)
    (mnt / "d").mkdir()
    fd = os.open(mnt / "d", os.O_TMPFILE | os.O_RDWR, 0o640)
    try:
        os.write(fd, b"unnamed")
        assert os.listdir(mnt / "d") == [] and os.fstat(fd).st_nlink == 0
        _link_fd(fd, mnt / "d" / "named")
        assert os.fstat(fd).st_nlink == 1
        os.write(fd, b", then named")
    finally:
        os.close(fd)
    assert (mnt / "d" / "named").read_bytes() == b"unnamed, then named"
    assert os.listdir(mnt / "d") == ["named"]
    fd = os.open(mnt / "d", os.O_TMPFILE | os.O_RDWR, 0o600)  # never named: gone with its close
    os.write(fd, b"scratch")
    os.close(fd)
    assert wait_for(lambda: sorted(fs.files) == ["/", "/d", "/d/named"], 5), sorted(fs.files)


def test_readdirplus_uses_the_listings_attributes_and_forget_empties_the_table(serve):
    fs = MemoryPaths()
    mnt = serve(fs)
    for i in range(50):
        (mnt / f"f{i}").write_bytes(b"x" * i)
    session = serve.sessions[0]
    bridge = session.ops
    sizes = {entry.name: entry.stat().st_size for entry in os.scandir(mnt)}
    assert sizes == {f"f{i}": i for i in range(50)}
    Path("/proc/sys/vm/drop_caches").write_text("2\n")
    assert wait_for(lambda: len(bridge._nodes) == 1, 10), len(bridge._nodes)  # only the root is left


def _read_through(mnt: Path, session: Session) -> tuple[bytes, int]:
    """The file's content read through a fresh open, and the READs that reached the filesystem meanwhile."""
    before = session.request_counts().get("READ", 0)
    data = (mnt / "f").read_bytes()
    return data, session.request_counts().get("READ", 0) - before


def test_auto_cache_keeps_data_until_mtime_or_size_changes(serve):
    fs = MemoryPaths()
    mnt = serve(fs)
    session = serve.sessions[0]
    session.ops.auto_cache = True
    (mnt / "f").write_bytes(b"one" * 1000)
    assert _read_through(mnt, session)[0] == b"one" * 1000
    assert _read_through(mnt, session) == (b"one" * 1000, 0)  # unchanged: from the page cache
    fs.files["/f"]["data"] = b"two" * 1000  # changed behind the kernel's back, as a network filesystem's file is
    fs.files["/f"]["st_mtime"] += 5
    assert _read_through(mnt, session)[0] == b"two" * 1000
    session.ops.auto_cache = False
    data, reads = _read_through(mnt, session)
    assert data == b"two" * 1000 and reads > 0  # the default: every open reads afresh


def test_direct_io_sends_every_read_to_the_filesystem(serve):
    fs = MemoryPaths()
    mnt = serve(fs)
    session = serve.sessions[0]
    (mnt / "f").write_bytes(b"x" * 4096)
    for direct in (False, True):
        session.ops.direct_io = direct
        with open(mnt / "f", "rb", buffering=0) as f:
            before = session.request_counts().get("READ", 0)
            assert os.pread(f.fileno(), 4096, 0) == os.pread(f.fileno(), 4096, 0) == b"x" * 4096
            reads = session.request_counts().get("READ", 0) - before
        assert reads == (2 if direct else 1), (direct, reads)


def test_readdir_may_yield_scandir_entries(serve, workdir):
    backing = workdir / "backing"
    backing.mkdir()
    (backing / "dir").mkdir()
    (backing / "link").symlink_to("nowhere")
    os.mkfifo(backing / "fifo")
    for i in range(300):  # past the first READDIRPLUS buffer: later names come by plain READDIR
        (backing / f"file{i:03}").write_bytes(b"x" * i)
    mnt = serve(ScandirLoopbackPaths(str(backing)))

    def listing(root):
        return {e.name: (e.inode(), e.is_dir(follow_symlinks=False), e.is_symlink(), e.is_file(follow_symlinks=False))
                for e in os.scandir(root)}

    def attributes(root):
        return {name: (st.st_ino, st.st_mode, st.st_size, st.st_mtime_ns)
                for name in os.listdir(root) for st in [os.lstat(root / name)]}

    assert listing(mnt) == listing(backing)
    assert attributes(mnt) == attributes(backing)
    assert sorted(os.listdir(mnt)) == sorted(os.listdir(backing))


@pytest.mark.parametrize("passthrough", [True, False])
def test_a_loopback_with_passthrough_is_one_argument(serve, tree, workdir, passthrough):
    backing = workdir / "backing"
    backing.mkdir()
    (backing / "data").write_bytes(os.urandom(1 << 20))
    mnt = serve(LoopbackPaths(str(backing)), passthrough="auto" if passthrough else False)
    session = serve.sessions[0]
    assert session.passthrough is passthrough
    assert (mnt / "data").read_bytes() == (backing / "data").read_bytes()
    with open(mnt / "new", "wb") as f:
        f.write(b"y" * 100_000)
    assert (backing / "new").read_bytes() == b"y" * 100_000
    counts = session.request_counts()
    if passthrough:
        assert counts.get("READ", 0) == 0 and counts.get("WRITE", 0) == 0, counts
    else:
        assert counts["READ"] > 0 and counts["WRITE"] > 0


def test_seek_data_and_hole_reach_the_filesystem(serve, workdir):
    backing = workdir / "backing"
    backing.mkdir()
    with open(backing / "sparse", "wb") as f:
        f.truncate(1 << 20)
        f.seek(512 << 10)
        f.write(b"x" * 4096)
    mnt = serve(LoopbackPaths(str(backing)), passthrough=False)  # with passthrough the kernel asks the file itself

    def holes(path):
        fd = os.open(path, os.O_RDONLY)
        try:
            return [os.lseek(fd, offset, whence) for offset, whence in
                    ((0, os.SEEK_DATA), (0, os.SEEK_HOLE), (600 << 10, os.SEEK_HOLE))]
        finally:
            os.close(fd)

    assert holes(mnt / "sparse") == holes(backing / "sparse") != [0, 1 << 20, 1 << 20]
    assert serve.sessions[0].request_counts().get("LSEEK", 0) >= 3


class AsyncMemoryPaths(MemoryPaths):
    """The same filesystem with async handlers, an async generator among them."""

    async def getattr(self, path, fh=None):
        await asyncio.sleep(0)
        return MemoryPaths.getattr(self, path, fh)

    async def readdir(self, path, fh):
        for name in MemoryPaths.readdir(self, path, fh):
            await asyncio.sleep(0)
            yield name

    async def read(self, path, size, offset, fh):
        await asyncio.sleep(0.01)
        return MemoryPaths.read(self, path, size, offset, fh)


def test_async_path_handlers(serve):
    mnt = serve(AsyncMemoryPaths())
    (mnt / "f").write_bytes(b"async")
    assert (mnt / "f").read_bytes() == b"async"
    assert sorted(os.listdir(mnt)) == ["f"] and os.stat(mnt / "f").st_size == 5
    with pytest.raises(FileNotFoundError):
        os.stat(mnt / "nope")


@pytest.mark.parametrize("cached", [False, True])
def test_listings_are_kept_by_the_kernel_only_when_the_filesystem_says_so(serve, tree, cached):
    src, _mnt = tree
    for i in range(50):
        (src / f"n{i}").touch()
    fs = ScandirLoopbackPaths(str(src))
    fs.cache_listings = cached
    mnt = serve(fs)
    session = serve.sessions[0]
    assert len(os.listdir(mnt)) == 50
    before = session.request_counts()
    assert len(os.listdir(mnt)) == 50
    after = session.request_counts()
    listed = sum(after.get(op, 0) - before.get(op, 0) for op in ("READDIR", "READDIRPLUS"))
    assert (listed == 0) is cached, (before, after)
    (mnt / "new").touch()  # a change through the mount drops the kept listing
    assert "new" in os.listdir(mnt)
