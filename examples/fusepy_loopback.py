#!/usr/bin/env python3
"""A loopback filesystem written for fusepy, with shuntfs's passthrough as one argument.

    python3 examples/fusepy_loopback.py SOURCE MOUNTPOINT

``open`` and ``create`` return real file descriptors, so ``FUSE(..., passthrough=True)`` lets the kernel read and
write them itself: data never reaches this process. On fusepy or mfusepy the same code runs without the argument.
"""

from __future__ import annotations

import errno
import os
import sys
import threading

import shuntfs.fusepy

sys.modules.setdefault("fuse", shuntfs.fusepy)  # the alias

from fuse import FUSE, FuseOSError, Operations  # noqa: E402 (after the alias)


class Loopback(Operations):
    """fusepy's loopback idiom: ``__call__`` puts every path below ``root``."""

    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(root)
        self.rwlock = threading.Lock()

    def __call__(self, op, path, *args):
        return super().__call__(op, self.root + path, *args)

    def access(self, path, mode):
        if not os.access(path, mode):
            raise FuseOSError(errno.EACCES)

    chmod = os.chmod
    chown = os.chown

    def create(self, path, mode, fi=None):
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, mode)

    def fsync(self, path, datasync, fh):
        return os.fdatasync(fh) if datasync else os.fsync(fh)

    def getattr(self, path, fh=None):
        st = os.lstat(path)
        return {key: getattr(st, key) for key in ("st_atime", "st_ctime", "st_gid", "st_mode", "st_mtime",
                                                   "st_nlink", "st_size", "st_uid")}

    def link(self, target, source):
        return os.link(self.root + source, target)

    mkdir = os.mkdir
    mknod = os.mknod
    open = os.open

    def read(self, path, size, offset, fh):
        return os.pread(fh, size, offset)

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(path)

    readlink = os.readlink

    def release(self, path, fh):
        return os.close(fh)

    def rename(self, old, new):
        return os.rename(old, self.root + new)

    rmdir = os.rmdir

    def statfs(self, path):
        stv = os.statvfs(path)
        return {key: getattr(stv, key) for key in ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail",
                                                    "f_ffree", "f_files", "f_flag", "f_frsize", "f_namemax")}

    def symlink(self, target, source):
        return os.symlink(source, target)

    def truncate(self, path, length, fh=None):
        os.truncate(path, length)

    unlink = os.unlink
    utimens = os.utime

    def write(self, path, data, offset, fh):
        return os.pwrite(fh, data, offset)


if __name__ == "__main__":
    options = {"passthrough": True} if getattr(sys.modules["fuse"], "__name__", "") == "shuntfs.fusepy" else {}
    FUSE(Loopback(sys.argv[1]), sys.argv[2], foreground=True, **options)
