"""Hostile input through the mount: permission bypass attempts under passthrough, escapes from SOURCE through
symlinks and rename races, and names that are not text."""

from __future__ import annotations

import errno
import os
import threading
import time

import pytest

from shuntfs.mirror import Mirror
from shuntfs.operations import ROOT_INODE, FUSEError, RequestContext

from .conftest import MODES
from .test_users import nobody_errno


@pytest.fixture(params=list(MODES))
def shared_file(request, mount_factory, tree):
    src, _mnt = tree
    (src / "f").write_bytes(b"root's data")
    (src / "f").chmod(0o644)
    m = mount_factory("allow_other", *MODES[request.param])
    m.mode = request.param
    return m


def test_a_reader_cannot_write_through_a_shared_backing_file(shared_file):
    """Root holds the file open for writing, so its inode has a read-write backing file registered; nobody's
    read-only open shares that backing id and still must not be able to write, map shared-writable or truncate."""
    path = str(shared_file.mnt / "f")
    holder = os.open(path, os.O_RDWR)
    try:
        os.pwrite(holder, b"R", 0)
        code = (
            f"fd = os.open({path!r}, os.O_RDONLY)\n"
            "    import mmap\n"
            "    for attempt in (lambda: os.write(fd, b'x'), lambda: os.ftruncate(fd, 0),\n"
            "                    lambda: mmap.mmap(fd, 4, mmap.MAP_SHARED, mmap.PROT_WRITE)):\n"
            "        try:\n"
            "            attempt(); print('WROTE'); sys.exit(0)\n"
            "        except OSError as e:\n"
            "            assert e.errno in (errno.EBADF, errno.EINVAL, errno.EACCES), e\n"
            "    os.open(" + repr(path) + ", os.O_RDWR)"
        )
        assert nobody_errno("import errno\n    " + code) == errno.EACCES
        assert (shared_file.source / "f").read_bytes() == b"Root's data"
        if shared_file.mode == "passthrough":
            assert any(b["path"].endswith("/f") for b in shared_file.stats()["backing_files"])
    finally:
        os.close(holder)


def test_symlinks_and_rename_races_never_resolve_outside_source(mount_factory, workdir):
    """SOURCE and MOUNTPOINT have different parents, so "../outside" means different things to the client (who
    follows symlinks) and to the daemon (who must never follow one). A loop swaps a directory with such a symlink
    while readers look names up through it: they may see the directory's file or an error, never the outside."""
    src, outside = workdir / "src", workdir / "outside"
    mnt = workdir / "deeper" / "mnt"
    for d in (src, outside, mnt):
        d.mkdir(parents=True, exist_ok=True)
    (outside / "file").write_bytes(b"OUTSIDE")
    (src / "d").mkdir()
    (src / "d" / "file").write_bytes(b"inside")
    os.symlink("../outside", src / "swap")
    os.symlink("/", src / "root")
    # cache=none: every path walk is a LOOKUP, so the daemon itself races the swaps; fallback: it reads the data too
    mount_factory("passthrough=off", "cache=none", source=src, mountpoint=mnt)

    stop = threading.Event()

    def swapper():
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        a, b = os.fsencode(src / "d"), os.fsencode(src / "swap")
        while not stop.is_set():
            libc.renameat2(-100, a, -100, b, 2)  # RENAME_EXCHANGE
            time.sleep(0.0002)

    t = threading.Thread(target=swapper)
    t.start()
    seen: dict = {}
    try:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            for name in ("d", "swap"):
                try:
                    with open(mnt / name / "file", "rb") as f:
                        got = f.read()
                except OSError as e:
                    got = errno.errorcode[e.errno]
                seen[got] = seen.get(got, 0) + 1
    finally:
        stop.set()
        t.join()
    assert b"OUTSIDE" not in seen
    assert seen.get(b"inside", 0) > 0
    # A symlink to / is followed by the client in its own namespace, as on any filesystem.
    assert sorted(os.listdir(mnt / "root")) == sorted(os.listdir("/"))


def test_dotdot_lookup_never_leaves_the_source(workdir):
    """The kernel sends LOOKUP ".." with export support (to reconnect a directory found by a file handle): the root's
    ".." is the root itself, never SOURCE's parent, and a directory moved out of SOURCE has none (ESTALE)."""
    source = workdir / "src"
    (source / "d").mkdir(parents=True)
    m = Mirror(str(source))
    ctx = RequestContext(0, 0, 0, 0)
    try:
        assert m.lookup(ROOT_INODE, b"..", ctx).shown_ino == os.stat(source).st_ino
        d = m.lookup(ROOT_INODE, b"d", ctx)
        assert m.lookup(d.st_ino, b"..", ctx).st_ino == ROOT_INODE
        (source / "d" / "e").mkdir()
        e = m.lookup(d.st_ino, b"e", ctx)
        os.rename(source / "d", workdir / "out")
        for nodeid in (d.st_ino, e.st_ino):
            with pytest.raises(FUSEError) as caught:
                m.lookup(nodeid, b"..", ctx)
            assert caught.value.errno == errno.ESTALE
    finally:
        m.destroy()


NAMES = [b"new\nline", b"\xff\xfe invalid utf-8", b"L" * 255, b"tab\tand space ", b"-leading-dash", b"\x01\x7f"]


@pytest.mark.parametrize("mode", list(MODES))
def test_names_that_are_not_text_round_trip(mount_factory, tree, mode):
    src, mnt = tree
    mount_factory(*MODES[mode])
    bmnt, bsrc = os.fsencode(mnt), os.fsencode(src)
    for name in NAMES:
        with open(os.path.join(bmnt, name), "wb") as f:
            f.write(name)
        os.mkdir(os.path.join(bmnt, name[:253] + b".d"))
    assert sorted(os.listdir(bmnt)) == sorted(os.listdir(bsrc))
    for name in NAMES:
        with open(os.path.join(bsrc, name), "rb") as f:
            assert f.read() == name
    with pytest.raises(OSError) as e:
        open(os.path.join(bmnt, b"L" * 256), "wb")
    assert e.value.errno == errno.ENAMETOOLONG
