"""A filesystem written carelessly on the library: one file, ``f``, whose every open is answered with a read-only
``passthrough_fd`` of a root-owned file, whatever the open asks for. ``python -m tests.integration.careless_fs
MOUNTPOINT BACKING on|off`` serves it (allow_other) in the foreground until unmounted."""

from __future__ import annotations

import errno
import os
import stat
import sys

from shuntfs import ROOT_INODE, DirEntry, EntryAttributes, FileInfo, FUSEError, MountOptions, Operations, Session

FILE = 2


class CarelessFS(Operations):
    def __init__(self, backing: str) -> None:
        self.backing = backing

    def _attrs(self, inode: int) -> EntryAttributes:
        if inode == ROOT_INODE:
            return EntryAttributes(st_ino=inode, st_mode=stat.S_IFDIR | 0o755, st_nlink=2, attr_timeout=0)
        if inode == FILE:
            st = os.stat(self.backing)
            # Mode bits that let everyone write: the fd, not the mode, is what must hold the line.
            return EntryAttributes(st_ino=inode, st_mode=stat.S_IFREG | 0o666, st_size=st.st_size, attr_timeout=0,
                                   entry_timeout=0)
        raise FUSEError(errno.ENOENT)

    def lookup(self, parent, name, ctx):
        if parent == ROOT_INODE and name == b"f":
            return self._attrs(FILE)
        raise FUSEError(errno.ENOENT)

    def getattr(self, inode, fh, ctx):
        return self._attrs(inode)

    def readdir(self, fh, offset, ctx):
        entries = [(b".", ROOT_INODE, stat.S_IFDIR), (b"..", ROOT_INODE, stat.S_IFDIR), (b"f", FILE, stat.S_IFREG)]
        for index in range(offset, len(entries)):
            name, inode, kind = entries[index]
            yield DirEntry(name, inode, kind >> 12, index + 1)

    def open(self, inode, flags, ctx):
        fd = os.open(self.backing, os.O_RDONLY | os.O_CLOEXEC)  # whatever the open asked for
        return FileInfo(fh=fd, passthrough_fd=fd)

    def release(self, fh):
        os.close(fh)


def main() -> int:
    mountpoint, backing, passthrough = sys.argv[1:4]
    options = MountOptions(allow_other=True, default_permissions=True)
    session = Session(CarelessFS(backing), mountpoint, options, passthrough=passthrough == "on", io_uring=False)
    session.serve()
    print(session.request_counts().get("WRITE", 0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
