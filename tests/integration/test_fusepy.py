"""shuntfs.fusepy on real mounts: fusepy-style filesystems (tests/integration/fusepy_filesystems.py) served by
``FUSE(...)`` from a thread, checked operation by operation against a native directory."""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from shuntfs import control_client
from shuntfs.fusepy import FUSE, FuseOSError, LoggingMixIn, Operations
from shuntfs.mount import find_mount

from .conftest import wait_for
from .fusepy_filesystems import Loopback, Memory


@contextmanager
def fuse(ops, mnt: Path, **options) -> Iterator[Path]:
    """``FUSE(ops, mnt, foreground=True, ...)`` on a thread of its own, as a program calling it from a worker
    thread would; on the way out, ``fusermount3 -u`` must make the call return."""
    failure: list[BaseException] = []

    def serve() -> None:
        try:
            FUSE(ops, str(mnt), foreground=True, **options)
        except BaseException as e:  # noqa: BLE001 (reported to the test)
            failure.append(e)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    wait_for(lambda: find_mount(str(mnt)) is not None or failure, 10)
    if failure:
        raise failure[0]
    try:
        yield mnt
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], check=False)
        thread.join(10)
        assert not thread.is_alive(), "FUSE() did not return after fusermount3 -u"
        assert not failure, failure
        assert find_mount(str(mnt)) is None


def test_a_memory_filesystem_behaves_as_a_native_directory(tree, workdir, caplog):
    _src, mnt = tree
    native = workdir / "native"
    native.mkdir()
    ops = Memory()
    with caplog.at_level(logging.DEBUG, logger="fuse.log-mixin"), fuse(ops, mnt):
        for root in (native, mnt):
            (root / "d").mkdir(0o750)
            (root / "d" / "sub").mkdir()
            (root / "d" / "f").write_bytes(b"hello world")
            with open(root / "d" / "f", "r+b") as f:
                f.seek(20)
                f.write(b"tail")
            os.truncate(root / "d" / "f", 8)
            os.chmod(root / "d" / "f", 0o640)
            os.utime(root / "d" / "f", (1_000_000_000.5, 1_200_000_000.25))
            os.symlink("d/f", root / "link")
            os.rename(root / "d", root / "moved")
        for path in ("moved", "moved/f", "moved/sub", "link"):
            a, b = os.lstat(native / path), os.lstat(mnt / path)
            assert stat.S_IFMT(a.st_mode) == stat.S_IFMT(b.st_mode), path
            if not stat.S_ISLNK(a.st_mode):
                assert stat.S_IMODE(a.st_mode) == stat.S_IMODE(b.st_mode), path
        assert (mnt / "moved" / "f").read_bytes() == (native / "moved" / "f").read_bytes() == b"hello wo"
        assert os.stat(mnt / "moved" / "f").st_mtime == 1_200_000_000.25  # float seconds, kept to the microsecond
        assert os.readlink(mnt / "link") == "d/f"
        assert sorted(os.listdir(mnt / "moved")) == sorted(os.listdir(native / "moved")) == ["f", "sub"]
        assert not (mnt / "d").exists()
        # extended attributes, and a missing one: ENODATA
        os.setxattr(mnt / "moved" / "f", "user.colour", b"blue")
        assert os.getxattr(mnt / "moved" / "f", "user.colour") == b"blue"
        assert os.listxattr(mnt / "moved" / "f") == ["user.colour"]
        with pytest.raises(OSError) as e:
            os.getxattr(mnt / "moved" / "f", "user.nothing")
        assert e.value.errno == errno.ENODATA
        os.removexattr(mnt / "moved" / "f", "user.colour")
        assert os.listxattr(mnt / "moved" / "f") == []
        # removing, and the errors of a missing name
        os.unlink(mnt / "moved" / "f")
        os.rmdir(mnt / "moved" / "sub")
        with pytest.raises(FileNotFoundError):
            os.stat(mnt / "moved" / "f")
        assert os.statvfs(mnt).f_blocks == 4096
        # fuse_get_context(): the creating process, as the kernel reported it
        (mnt / "ctx").write_bytes(b"")
        assert ops.contexts[-1] == (os.getuid(), os.getgid(), threading.get_native_id())
    logged = [r.getMessage() for r in caplog.records if r.name == "fuse.log-mixin"]
    assert any(m.startswith("-> mkdir /d ") for m in logged) and any(m.startswith("<- mkdir ") for m in logged)


def test_large_directories_neither_loop_nor_lose_entries(tree):
    _src, mnt = tree
    names = [f"entry-{i:05d}-" + "x" * 40 for i in range(3000)]

    class Big(Operations):
        def getattr(self, path, fh=None):
            if path == "/":
                return dict(st_mode=stat.S_IFDIR | 0o755, st_nlink=2)
            return dict(st_mode=stat.S_IFREG | 0o644, st_nlink=1, st_size=0)

        def readdir(self, path, fh):  # a generator of (name, attrs, offset), as mfusepy users write it
            for index, name in enumerate([".", ".."] + names):
                yield name, {"st_mode": stat.S_IFREG | 0o644}, index + 1

    with fuse(Big(), mnt):
        listed = os.listdir(mnt)
        assert len(listed) == len(names) and sorted(listed) == names


def test_readdir_with_offset_is_used_when_defined(tree):
    _src, mnt = tree

    class Offsets(Operations):
        def getattr(self, path, fh=None):
            return dict(st_mode=(stat.S_IFDIR | 0o755) if path == "/" else (stat.S_IFREG | 0o444), st_nlink=1)

        def readdir(self, path, fh):
            raise AssertionError("readdir_with_offset is the one to call")

        def readdir_with_offset(self, path, offset, fh):
            for index, name in enumerate(["a", "b", "c"]):
                if index >= offset:
                    yield name, None, index + 1

    with fuse(Offsets(), mnt):
        assert sorted(os.listdir(mnt)) == ["a", "b", "c"]


class CreatesWithTwoArguments(LoggingMixIn, Operations):
    """create(path, mode), wrapped by LoggingMixIn: told apart from create(path, mode, fi)."""

    def __init__(self) -> None:
        self.made: dict[str, int] = {}

    def getattr(self, path, fh=None):
        if path == "/":
            return dict(st_mode=stat.S_IFDIR | 0o755, st_nlink=2)
        if path not in self.made:
            raise FuseOSError(errno.ENOENT)
        return dict(st_mode=self.made[path], st_nlink=1, st_size=0)

    def create(self, path, mode):
        self.made[path] = mode
        return 0

    def utimens(self, path, times=None):
        return 0

    mkdir = None  # not implemented: ENOSYS, not fusepy's base EROFS

    def chmod(self, path, mode):
        raise ValueError("a bug")  # anything but an OSError: EINVAL, logged

    def rename(self, old, new):
        raise FuseOSError(errno.EXDEV)


def test_what_fusepy_code_relies_on(tree, caplog):
    _src, mnt = tree
    ops = CreatesWithTwoArguments()
    with fuse(ops, mnt):
        (mnt / "new").write_bytes(b"")
        assert stat.S_IMODE(ops.made["/new"]) == 0o644 & ~0o022 or ops.made["/new"] & stat.S_IFREG
        with pytest.raises(OSError) as e:
            os.mkdir(mnt / "dir")
        assert e.value.errno == errno.ENOSYS
        with caplog.at_level(logging.ERROR), pytest.raises(OSError) as e:
            os.chmod(mnt / "new", 0o600)
        assert e.value.errno == errno.EINVAL and "a bug" in caplog.text
        with pytest.raises(OSError) as e:
            os.rename(mnt / "new", mnt / "other")
        assert e.value.errno == errno.EXDEV
        with pytest.raises(OSError) as e:
            os.getxattr(mnt / "new", "user.x")  # no xattr methods at all
        assert e.value.errno == errno.ENOTSUP
        entry = find_mount(str(mnt))
        assert entry is not None and entry.source == "CreatesWithTwoArguments"  # fsname: the class's name


def test_use_ns_times_are_integer_nanoseconds(tree):
    _src, mnt = tree
    seen = []

    class Nanoseconds(Operations):
        use_ns = True
        mtime = 1_500_000_000_123_456_789

        def getattr(self, path, fh=None):
            return dict(st_mode=(stat.S_IFDIR | 0o755) if path == "/" else (stat.S_IFREG | 0o644), st_nlink=1,
                        st_mtime=self.mtime, st_atime=self.mtime, st_ctime=self.mtime)

        def utimens(self, path, times=None):
            seen.append(times)
            self.mtime = times[1]

    with fuse(Nanoseconds(), mnt):
        assert os.stat(mnt / "f").st_mtime_ns == 1_500_000_000_123_456_789
        os.utime(mnt / "f", ns=(5, 1_600_000_000_000_000_001))
        assert seen[-1] == (5, 1_600_000_000_000_000_001) and all(isinstance(t, int) for t in seen[-1])


def test_unknown_keyword_options_are_refused_before_mounting(tree):
    _src, mnt = tree
    with pytest.raises(ValueError, match="unknown option 'colour=blue'"):
        FUSE(Memory(), str(mnt), foreground=True, colour="blue")
    with pytest.raises(ValueError, match="threads"):
        FUSE(Memory(), str(mnt), foreground=True, threads=0)
    assert find_mount(str(mnt)) is None


def test_libfuse_keywords_fusepy_programs_pass(tree):
    _src, mnt = tree
    with fuse(Memory(), mnt, use_ino=True, auto_cache=True, direct_io=True, io_uring=False):
        (mnt / "f").write_bytes(b"data")
        assert (mnt / "f").read_bytes() == b"data"
        assert _stats(mnt)["transport"] == "/dev/fuse"  # io_uring=False: off, as it reads


def _stats(mnt: Path) -> dict:
    return control_client.query(str(mnt), "stats")


@pytest.mark.parametrize("passthrough", [True, False], ids=["passthrough", "userspace"])
def test_a_loopback_gets_passthrough_as_one_argument(tree, passthrough):
    """fusepy's loopback idiom (``__call__`` prefixes the root; open returns an fd): with ``passthrough=True`` the
    kernel reads and writes the fd itself, and shuntfs-ctl stats answers for the library mount."""
    src, mnt = tree
    (src / "data").write_bytes(os.urandom(1 << 20))
    ops = Loopback(str(src))
    with fuse(ops, mnt, passthrough=passthrough):
        payload = os.urandom(300_000)
        (mnt / "new").write_bytes(payload)  # create(path, mode): the two-argument form
        assert (src / "new").read_bytes() == payload
        assert (mnt / "data").read_bytes() == (src / "data").read_bytes()
        os.mkdir(mnt / "dir")
        os.rename(mnt / "new", mnt / "dir" / "moved")
        assert (src / "dir" / "moved").read_bytes() == payload
        os.link(mnt / "dir" / "moved", mnt / "hard")
        assert os.stat(src / "hard").st_nlink == 2
        os.symlink("dir/moved", mnt / "sym")
        assert os.readlink(src / "sym") == "dir/moved"
        stats = _stats(mnt)
    requests = stats["requests"]
    if passthrough:
        assert stats["passthrough"] is True
        assert requests.get("READ", 0) == 0 and requests.get("WRITE", 0) == 0 and ops.reads == 0
    else:
        assert requests["READ"] > 0 and requests["WRITE"] > 0 and ops.reads > 0


def test_the_import_alias_runs_code_written_for_fusepy(tree, workdir):
    """A script written ``from fuse import ...`` runs on shuntfs.fusepy by the alias the docs show, as its own
    process (the main thread: SIGTERM unmounts and FUSE() returns)."""
    src, mnt = tree
    script = workdir / "legacy.py"
    script.write_text(
        "import sys, shuntfs.fusepy\n"
        "sys.modules['fuse'] = shuntfs.fusepy\n"
        "from fuse import FUSE, Operations\n"
        "import stat\n"
        "class Hello(Operations):\n"
        "    def getattr(self, path, fh=None):\n"
        "        if path == '/':\n"
        "            return dict(st_mode=stat.S_IFDIR | 0o755, st_nlink=2)\n"
        "        return dict(st_mode=stat.S_IFREG | 0o444, st_nlink=1, st_size=6)\n"
        "    def readdir(self, path, fh):\n"
        "        return ['.', '..', 'hello']\n"
        "    def read(self, path, size, offset, fh):\n"
        "        return b'hello\\n'[offset:offset + size]\n"
        "FUSE(Hello(), sys.argv[1], foreground=True, ro=True)\n"
        "print('returned')\n"
    )
    proc = subprocess.Popen([sys.executable, str(script), str(mnt)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        wait_for(lambda: find_mount(str(mnt)) is not None or proc.poll() is not None, 15)
        assert (mnt / "hello").read_text() == "hello\n"
        assert os.listdir(mnt) == ["hello"]
        entry = find_mount(str(mnt))
        assert entry is not None and "ro" in entry.mount_options.split(",")
    finally:
        proc.terminate()
        out, err = proc.communicate(15)
    assert proc.returncode == 0 and out == "returned\n", err
    assert "Warning" not in err and err == "", err
    assert find_mount(str(mnt)) is None


def test_in_the_background_the_caller_exits_once_the_mount_is_live(tree, workdir):
    src, mnt = tree
    script = workdir / "daemon.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parents[2])!r})\n"
        "from shuntfs.fusepy import FUSE\n"
        "from tests.integration.fusepy_filesystems import Memory\n"
        "FUSE(Memory(), sys.argv[1])\n"
    )
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(script), str(mnt)], capture_output=True, text=True, timeout=30)
    try:
        assert done.returncode == 0, done.stderr
        assert find_mount(str(mnt)) is not None  # live when the caller returned
        (mnt / "f").write_bytes(b"x")
        assert (mnt / "f").read_bytes() == b"x"
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], check=False)
    assert time.monotonic() - started < 30
    wait_for(lambda: find_mount(str(mnt)) is None, 10)


def test_stats_json_is_valid_for_library_mounts(tree):
    _src, mnt = tree
    with fuse(Memory(), mnt):
        stats = _stats(mnt)
    assert stats["mountpoint"] == str(mnt) and json.dumps(stats)
    assert stats["filesystem"] is not None


def test_ioctl_gets_a_buffer_that_ctypes_can_read_and_write(tree):
    """mfusepy's ioctl idiom: ``data`` is a real buffer; the command's result goes back to the caller."""
    import ctypes
    import fcntl
    import struct

    _src, mnt = tree
    IOWR = (3 << 30) | (4 << 16) | (ord("M") << 8) | 1  # _IOWR('M', 1, uint32_t)

    class Counter(Memory):
        def ioctl(self, path, cmd, arg, fh, flags, data):
            if cmd != IOWR:
                raise FuseOSError(errno.ENOTTY)
            number = ctypes.c_uint32()
            ctypes.memmove(ctypes.byref(number), data, 4)
            number.value += 1
            ctypes.memmove(data, ctypes.byref(number), 4)
            return 0

    with fuse(Counter(), mnt):
        (mnt / "dev").write_bytes(b"")
        with open(mnt / "dev", "rb") as f:
            assert struct.unpack("<I", fcntl.ioctl(f, IOWR, struct.pack("<I", 41))) == (42,)
            with pytest.raises(OSError) as e:
                fcntl.ioctl(f, IOWR + 1, struct.pack("<I", 1))
            assert e.value.errno == errno.ENOTTY
