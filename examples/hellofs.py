#!/usr/bin/env python3
"""A tiny filesystem on the shuntfs API: two read-only files.

- ``hello.txt`` is produced by the filesystem itself (served through ``read``);
- ``data.bin`` is a real file elsewhere, handed to the kernel with ``passthrough_fd``: its reads never reach us.

    python3 examples/hellofs.py MOUNTPOINT [BACKING_FILE]

On unmount it prints the requests it served, as JSON, on stdout.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
import tempfile
import time

from shuntfs import (
    ROOT_INODE,
    DirEntry,
    EntryAttributes,
    FileInfo,
    FUSEError,
    Operations,
    Session,
)

HELLO = b"Hello from shuntfs!\n"
HELLO_INODE, DATA_INODE = 2, 3


class HelloFS(Operations):
    def __init__(self, backing_path: str) -> None:
        self.backing_path = backing_path
        self.names = {b"hello.txt": HELLO_INODE, b"data.bin": DATA_INODE}
        self.started = time.time_ns()

    def _attrs(self, inode: int) -> EntryAttributes:
        if inode == ROOT_INODE:
            mode, size, nlink = stat.S_IFDIR | 0o555, 0, 2
        elif inode == HELLO_INODE:
            mode, size, nlink = stat.S_IFREG | 0o444, len(HELLO), 1
        elif inode == DATA_INODE:
            mode, size, nlink = stat.S_IFREG | 0o444, os.stat(self.backing_path).st_size, 1
        else:
            raise FUSEError(errno.ENOENT)
        t = self.started
        return EntryAttributes(st_ino=inode, st_mode=mode, st_size=size, st_nlink=nlink,
                               st_uid=os.getuid(), st_gid=os.getgid(),
                               st_atime_ns=t, st_mtime_ns=t, st_ctime_ns=t)

    def lookup(self, parent, name, ctx):
        if parent != ROOT_INODE or name not in self.names:
            raise FUSEError(errno.ENOENT)
        return self._attrs(self.names[name])

    def getattr(self, inode, fh, ctx):
        return self._attrs(inode)

    def readdir(self, fh, offset, ctx):
        entries = [(b".", ROOT_INODE), (b"..", ROOT_INODE)] + list(self.names.items())
        for index in range(offset, len(entries)):
            name, inode = entries[index]
            yield DirEntry(name, inode, stat.S_IFMT(self._attrs(inode).st_mode) >> 12, index + 1)

    def open(self, inode, flags, ctx):
        if flags & os.O_ACCMODE != os.O_RDONLY:
            raise FUSEError(errno.EROFS)
        if inode == DATA_INODE:
            fd = os.open(self.backing_path, os.O_RDONLY | os.O_CLOEXEC)
            return FileInfo(fh=fd, passthrough_fd=fd)  # the one argument that makes it passthrough
        return FileInfo(fh=0)

    def read(self, fh, offset, size):
        return HELLO[offset : offset + size]

    def release(self, fh):
        if fh:
            os.close(fh)


def main() -> int:
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    mountpoint = sys.argv[1]
    if len(sys.argv) == 3:
        backing = sys.argv[2]
    else:
        handle, backing = tempfile.mkstemp(prefix="hellofs-")
        os.write(handle, os.urandom(1 << 20))
        os.close(handle)
    session = Session(HelloFS(backing), mountpoint)  # passthrough where this daemon may use it
    session.serve()  # returns once unmounted (SIGINT/SIGTERM unmount)
    json.dump({"passthrough": session.passthrough, "requests": session.request_counts()}, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
