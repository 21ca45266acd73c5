"""Kernel notifications from a library filesystem served in this process: invalidation of cached data, attributes
and names, pushing data into the page cache, and announcing deletions."""

from __future__ import annotations

import errno
import os
import stat
import threading

import pytest

from shuntfs import ROOT_INODE, DirEntry, EntryAttributes, FileInfo, FUSEError, Operations, Session

FILE = 2


class Changing(Operations):
    """One file whose contents and name change behind the kernel's back; everything is cached for an hour."""

    def __init__(self) -> None:
        self.data = b"version 1"
        self.names = {b"f": FILE}

    def _attrs(self, inode: int) -> EntryAttributes:
        if inode == ROOT_INODE:
            return EntryAttributes(st_ino=inode, st_mode=stat.S_IFDIR | 0o755, st_nlink=2,
                                   entry_timeout=3600, attr_timeout=3600)
        if inode == FILE:
            return EntryAttributes(st_ino=inode, st_mode=stat.S_IFREG | 0o644, st_size=len(self.data),
                                   entry_timeout=3600, attr_timeout=3600)
        raise FUSEError(errno.ENOENT)

    def lookup(self, parent, name, ctx):
        if name not in self.names:
            raise FUSEError(errno.ENOENT)
        return self._attrs(self.names[name])

    def getattr(self, inode, fh, ctx):
        return self._attrs(inode)

    def readdir(self, fh, offset, ctx):
        entries = [(b".", ROOT_INODE), (b"..", ROOT_INODE)] + list(self.names.items())
        for i in range(offset, len(entries)):
            yield DirEntry(entries[i][0], entries[i][1], 0, i + 1)

    def open(self, inode, flags, ctx):
        return FileInfo(fh=0, keep_cache=True)

    def read(self, fh, offset, size):
        return self.data[offset:offset + size]


@pytest.fixture
def served(tree):
    _src, mnt = tree
    ops = Changing()
    session = Session(ops, str(mnt), passthrough=False, auto_unmount=False)
    session.mount()
    session.start()
    assert session.wait_init()
    yield ops, session, mnt
    session.unmount()
    session.wait()


def test_invalidate_inode_drops_cached_data_and_attributes(served):
    ops, session, mnt = served
    assert (mnt / "f").read_bytes() == b"version 1"
    # Same size and mtime: the kernel re-reads attributes after a read (atime), but sees no change, so it keeps
    # the pages it has.
    ops.data = b"version 2"
    assert (mnt / "f").read_bytes() == b"version 1"
    # from another thread, as a filesystem watching its backend would
    t = threading.Thread(target=session.invalidate_inode, args=(FILE,))
    t.start()
    t.join()
    assert (mnt / "f").read_bytes() == b"version 2"


def test_invalidate_entry_and_notify_delete(served):
    ops, session, mnt = served
    assert os.path.exists(mnt / "f")
    ops.names = {b"g": FILE}
    assert os.path.exists(mnt / "f")  # cached name
    assert session.invalidate_entry(ROOT_INODE, b"f")
    assert not os.path.exists(mnt / "f") and os.path.exists(mnt / "g")
    ops.names = {}
    assert session.notify_delete(ROOT_INODE, FILE, b"g")
    assert not os.path.exists(mnt / "g")
    assert session.invalidate_entry(ROOT_INODE, b"never-looked-up") is False  # nothing cached: not an error


def test_notify_store_fills_the_page_cache(served):
    ops, session, mnt = served
    assert (mnt / "f").read_bytes() == b"version 1"
    reads = session.request_counts().get("READ", 0)
    ops.data = b"VERSION 3"
    assert session.notify_store(FILE, 0, b"VERSION 3")
    with open(mnt / "f", "rb") as f:
        assert f.read() == b"VERSION 3"
    assert session.request_counts().get("READ", 0) == reads  # served from the page cache we filled


def test_notifications_after_the_session_ended_raise(tree):
    _src, mnt = tree
    session = Session(Changing(), str(mnt), passthrough=False, auto_unmount=False)
    session.mount()
    session.start()
    assert session.wait_init()
    session.unmount()
    session.wait()
    with pytest.raises(RuntimeError):
        session.invalidate_inode(FILE)
