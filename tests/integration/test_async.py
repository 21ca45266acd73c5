"""``async def`` handlers on asyncio: served from the running loop by ``serve_async`` and from a private loop by
``serve``; errors become errnos; concurrent slow handlers overlap."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import stat
import threading
import time

import pytest

from shuntfs import ROOT_INODE, DirEntry, EntryAttributes, FileInfo, FUSEError, Operations, Session
from shuntfs.mount import find_mount

from .conftest import wait_for


class SlowFiles(Operations):
    """Files named by a number of milliseconds; reading one sleeps that long on the event loop."""

    def __init__(self) -> None:
        self.loop_threads: set[str] = set()

    async def lookup(self, parent, name, ctx):
        await asyncio.sleep(0)
        if name == b"broken":
            raise ValueError("a bug in the filesystem")
        if not name.isdigit():
            raise FUSEError(errno.ENOENT)
        return self._attrs(1000 + int(name))

    def _attrs(self, inode):
        if inode == ROOT_INODE:
            return EntryAttributes(st_ino=inode, st_mode=stat.S_IFDIR | 0o755, st_nlink=2)
        return EntryAttributes(st_ino=inode, st_mode=stat.S_IFREG | 0o444, st_size=len(str(inode - 1000)))

    async def getattr(self, inode, fh, ctx):
        return self._attrs(inode)

    async def readdir(self, fh, offset, ctx):
        names = [b".", b"..", b"10", b"20"]
        for i in range(offset, len(names)):
            await asyncio.sleep(0)
            yield DirEntry(names[i], 1, 0, i + 1)

    def open(self, inode, flags, ctx):  # a synchronous handler next to async ones
        return FileInfo(fh=inode, direct_io=True)

    async def read(self, fh, offset, size):
        self.loop_threads.add(threading.current_thread().name)
        await asyncio.sleep((fh - 1000) / 1000)
        return str(fh - 1000).encode()[offset:offset + size]


def _read_all(mnt, names):
    out = {}

    def one(name):
        with open(mnt / name, "rb") as f:
            out[name] = f.read()
    threads = [threading.Thread(target=one, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def check(ops, mnt, caplog):
    assert sorted(os.listdir(mnt)) == ["10", "20"]
    started = time.monotonic()
    assert _read_all(mnt, ["300", "301", "302", "303"]) == {"300": b"300", "301": b"301", "302": b"302",
                                                          "303": b"303"}
    elapsed = time.monotonic() - started
    assert elapsed < 0.3 * 3, f"four 0.3 s reads on 4 workers took {elapsed:.2f} s: they did not overlap"
    with pytest.raises(FileNotFoundError):
        os.stat(mnt / "nope")
    with caplog.at_level(logging.ERROR, logger="shuntfs"):
        with pytest.raises(OSError) as e:
            os.stat(mnt / "broken")
    assert e.value.errno == errno.EIO
    assert "a bug in the filesystem" in caplog.text
    # the handlers ran on the event loop's thread, not on the workers (shuntfs-0, shuntfs-1, ...)
    assert len(ops.loop_threads) == 1 and not next(iter(ops.loop_threads)).removeprefix("shuntfs-").isdigit()


def test_serve_async_on_the_running_loop(tree, caplog):
    _src, mnt = tree
    ops = SlowFiles()
    session = Session(ops, str(mnt), passthrough=False, auto_unmount=False, threads=4)

    def run():
        asyncio.run(session.serve_async())
    t = threading.Thread(target=run)
    t.start()
    try:
        assert wait_for(lambda: session.dispatcher is not None and session.wait_init(0.1), 10)
        check(ops, mnt, caplog)
        assert ops.loop_threads == {t.name}
    finally:
        session.unmount()
        t.join(15)
    assert not t.is_alive() and find_mount(str(mnt)) is None


def test_serve_with_a_private_loop(tree, caplog):
    _src, mnt = tree
    ops = SlowFiles()
    session = Session(ops, str(mnt), passthrough=False, auto_unmount=False, threads=4)
    session.mount()
    session.start()
    try:
        assert session.wait_init()
        check(ops, mnt, caplog)
        assert ops.loop_threads == {"shuntfs-asyncio"}
    finally:
        session.unmount()
        session.wait()


def kill_a_waiting_client(ops: Operations, mnt, **options) -> Session:
    """Serve ``ops``, whose lookup of "hang" sets ``ops.started`` and waits a minute; SIGTERM a client stat-ing it
    once it waits (the kernel then sends INTERRUPT), and require that the client goes at once. Returns the session,
    unmounted."""
    import subprocess
    import sys

    session = Session(ops, str(mnt), passthrough=False, auto_unmount=False, **options)
    session.mount()
    session.start()
    try:
        assert session.wait_init()
        client = subprocess.Popen([sys.executable, "-c", f"import os; os.stat({str(mnt / 'hang')!r})"])
        assert ops.started.wait(10)
        started = time.monotonic()
        client.terminate()  # SIGTERM: the kernel sends INTERRUPT for the waiting LOOKUP
        client.wait(15)
        assert time.monotonic() - started < 5, "the client waited for the handler's minute"
    finally:
        session.unmount()
        session.wait()
    return session


class Hangs(Operations):
    """A lookup of "hang" waits a minute, as a network fetch might; an INTERRUPT must cancel it."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.cancelled = threading.Event()

    async def lookup(self, parent, name, ctx):
        if name != b"hang":
            raise FUSEError(errno.ENOENT)
        self.started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        raise FUSEError(errno.ENOENT)

    def getattr(self, inode, fh, ctx):
        return EntryAttributes(st_ino=inode, st_mode=stat.S_IFDIR | 0o755, st_nlink=2)


def test_an_interrupted_request_cancels_its_async_handler(tree):
    """A client killed by a signal while its request waits: the handler's coroutine is cancelled and the client
    goes at once (the kernel waits for the reply of a request already sent before it lets a dying caller go)."""
    _src, mnt = tree
    ops = Hangs()
    session = kill_a_waiting_client(ops, mnt)
    assert ops.cancelled.wait(5)
    assert session.request_counts().get("INTERRUPT", 0) >= 1


class HangsPolling(Operations):
    """A sync lookup of "hang" works for up to a minute in small steps, asking between them whether its caller gave
    up, as a sync handler fetching in chunks would."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.gave_up = threading.Event()

    def lookup(self, parent, name, ctx):
        if name != b"hang":
            raise FUSEError(errno.ENOENT)
        self.started.set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if ctx.interrupted:
                self.gave_up.set()
                raise FUSEError(errno.EINTR)
            time.sleep(0.01)
        raise FUSEError(errno.ENOENT)

    def getattr(self, inode, fh, ctx):
        return EntryAttributes(st_ino=inode, st_mode=stat.S_IFDIR | 0o755, st_nlink=2)


@pytest.mark.parametrize("io_uring", [False, True], ids=["dev-fuse", "io-uring"])
def test_a_sync_handler_sees_its_request_interrupted(tree, io_uring):

    _src, mnt = tree
    ops = HangsPolling()
    kill_a_waiting_client(ops, mnt, io_uring=io_uring)
    assert ops.gave_up.wait(5)
