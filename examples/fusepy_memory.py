#!/usr/bin/env python3
"""An in-memory filesystem written for fusepy, run unchanged on shuntfs.fusepy.

    python3 examples/fusepy_memory.py MOUNTPOINT

The two lines under "the alias" are all a fusepy program needs: ``from fuse import ...`` then finds shuntfs.fusepy
(a program that already has a ``fuse`` module loaded, such as the benchmark running it on mfusepy, keeps it).
"""

from __future__ import annotations

import errno
import stat
import sys
import time
from collections import defaultdict

import shuntfs.fusepy

sys.modules.setdefault("fuse", shuntfs.fusepy)  # the alias

from fuse import FUSE, FuseOSError, Operations  # noqa: E402 (after the alias)


class Memory(Operations):
    """fusepy's classic idiom: a dict of attributes per path, float times, integer handles."""

    def __init__(self) -> None:
        now = time.time()
        self.files = {"/": dict(st_mode=stat.S_IFDIR | 0o755, st_ctime=now, st_mtime=now, st_atime=now, st_nlink=2)}
        self.data: dict[str, bytes] = defaultdict(bytes)
        self.fd = 0

    def getattr(self, path, fh=None):
        if path not in self.files:
            raise FuseOSError(errno.ENOENT)
        return self.files[path]

    def chmod(self, path, mode):
        self.files[path]["st_mode"] = (self.files[path]["st_mode"] & 0o170000) | mode

    def create(self, path, mode, fi=None):
        now = time.time()
        self.files[path] = dict(st_mode=stat.S_IFREG | mode, st_nlink=1, st_size=0, st_ctime=now, st_mtime=now,
                                st_atime=now)
        self.fd += 1
        return self.fd

    def mkdir(self, path, mode):
        now = time.time()
        self.files[path] = dict(st_mode=stat.S_IFDIR | mode, st_nlink=2, st_size=0, st_ctime=now, st_mtime=now,
                                st_atime=now)

    def open(self, path, flags):
        self.fd += 1
        return self.fd

    def read(self, path, size, offset, fh):
        return self.data[path][offset:offset + size]

    def readdir(self, path, fh):
        prefix = path.rstrip("/") + "/"
        return [".", ".."] + [p[len(prefix):] for p in self.files
                              if p != "/" and p.startswith(prefix) and "/" not in p[len(prefix):]]

    def rename(self, old, new):
        self.files[new] = self.files.pop(old)
        if old in self.data:
            self.data[new] = self.data.pop(old)

    def rmdir(self, path):
        self.files.pop(path)

    def truncate(self, path, length, fh=None):
        self.data[path] = self.data[path][:length].ljust(length, b"\0")
        self.files[path]["st_size"] = length

    def unlink(self, path):
        self.files.pop(path)
        self.data.pop(path, None)

    def utimens(self, path, times=None):
        now = time.time()
        self.files[path]["st_atime"], self.files[path]["st_mtime"] = times if times else (now, now)

    def write(self, path, data, offset, fh):
        old = self.data[path]
        self.data[path] = old[:offset].ljust(offset, b"\0") + data + old[offset + len(data):]
        self.files[path]["st_size"] = len(self.data[path])
        return len(data)


if __name__ == "__main__":
    FUSE(Memory(), sys.argv[1], foreground=True)
