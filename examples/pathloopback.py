#!/usr/bin/env python3
"""A loopback filesystem on the path-based API: SOURCE shown at MOUNTPOINT, file data passed through to the kernel.

    python3 examples/pathloopback.py SOURCE MOUNTPOINT [-f] [-o OPTIONS]

It takes the whole ``shuntfs`` command line from ``shuntfs.main`` (daemon, -f, -d, -o ro/allow_other/...,
``shuntfs-ctl stats MOUNTPOINT``). Every open answers ``FileInfo(fh=fd, passthrough_fd=fd)``: reads and writes go
from the kernel to the file in SOURCE without reaching this process (``-o passthrough=off`` serves them here).
Calls run as the daemon's user: mount it for yourself, or add ``-o default_permissions`` for others. Hard links are
nodes of their own (see the tutorial); the conformance suite runs it with ``-o attr_timeout=0`` for that reason.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import sys
import time
from typing import Iterator

import shuntfs
from shuntfs import UTIME_NOW, UTIME_OMIT, FileInfo, FUSEError, PathOperations
from shuntfs.options import UsageError

_libc = ctypes.CDLL(None, use_errno=True)  # renameat2 and fallocate with flags, which the os module lacks
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
AT_FDCWD = -100


class PathLoopback(PathOperations):
    #: a file unlinked while open goes at once, as in SOURCE (its link count, its other hard links' ctime), and the
    #: calls on its open handles get path None: they work on the fd, which is all this loopback needs
    nullpath_ok = True
    #: SOURCE's directories change their mtime with their entries: the kernel may keep listings and check that
    cache_listings = True

    def __init__(self, source: str) -> None:
        self.source = os.path.realpath(source)

    # ---- as a command: SOURCE before MOUNTPOINT
    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument("source", metavar="SOURCE")

    @classmethod
    def from_arguments(cls, config) -> PathLoopback:
        if not os.path.isdir(config.source):
            raise UsageError(f"source {config.source}: not a directory")
        config.fsname = config.fsname or os.path.realpath(config.source)
        return cls(config.source)

    def _real(self, path: str) -> str:
        return self.source + path if path != "/" else self.source

    # ---- names and attributes
    def getattr(self, path: str, fh: int | None = None) -> os.stat_result:
        if fh is not None:
            return os.fstat(fh)
        return os.lstat(self._real(path))

    def readdir(self, path: str, fh: int) -> Iterator[os.DirEntry]:
        # scandir's entries: stat'ed by shuntfs only where the kernel wants the attributes, so `ls -l` needs no
        # getattr per name and a plain listing needs no stat at all
        with os.scandir(self._real(path)) as entries:
            yield from entries

    def readlink(self, path: str) -> str:
        return os.readlink(self._real(path))

    def mknod(self, path: str, mode: int, rdev: int) -> None:
        os.mknod(self._real(path), mode, rdev)

    def mkdir(self, path: str, mode: int) -> None:
        os.mkdir(self._real(path), mode)

    def unlink(self, path: str) -> None:
        os.unlink(self._real(path))

    def rmdir(self, path: str) -> None:
        os.rmdir(self._real(path))

    def symlink(self, path: str, target: str) -> None:
        os.symlink(target, self._real(path))

    def rename(self, old: str, new: str, flags: int) -> None:
        if not flags:
            os.rename(self._real(old), self._real(new))
        elif _libc.renameat2(AT_FDCWD, os.fsencode(self._real(old)), AT_FDCWD, os.fsencode(self._real(new)),
                             flags) < 0:  # RENAME_NOREPLACE, RENAME_EXCHANGE: os.rename has no flags
            raise FUSEError(ctypes.get_errno())

    def link(self, path: str, new: str) -> None:
        os.link(self._real(path), self._real(new), follow_symlinks=False)

    def chmod(self, path: str | None, mode: int, fh: int | None) -> None:
        os.chmod(self._real(path) if path is not None else fh, stat.S_IMODE(mode))

    def chown(self, path: str | None, uid: int, gid: int, fh: int | None) -> None:
        if path is None:  # unlinked while open
            os.chown(fh, uid, gid)
        else:
            os.chown(self._real(path), uid, gid, follow_symlinks=False)

    def truncate(self, path: str, length: int, fh: int | None) -> None:
        if fh is not None:
            os.ftruncate(fh, length)
        else:
            os.truncate(self._real(path), length)

    def utimens(self, path: str | None, atime_ns: int, mtime_ns: int, fh: int | None) -> None:
        # by path without following a symlink; by fd once unlinked while open
        target, how = (fh, {}) if path is None else (self._real(path), {"follow_symlinks": False})
        if atime_ns == UTIME_NOW and mtime_ns == UTIME_NOW:
            os.utime(target, **how)
            return
        st = os.stat(target, **how)
        now = time.time_ns()
        times = [now if value == UTIME_NOW else current if value == UTIME_OMIT else value
                 for value, current in ((atime_ns, st.st_atime_ns), (mtime_ns, st.st_mtime_ns))]
        os.utime(target, ns=(times[0], times[1]), **how)

    # ---- open files: the kernel reads and writes the fd itself
    def open(self, path: str, flags: int) -> FileInfo:
        fd = os.open(self._real(path), flags & ~os.O_CREAT)
        return FileInfo(fh=fd, passthrough_fd=fd)

    def create(self, path: str, mode: int, flags: int) -> FileInfo:
        fd = os.open(self._real(path), flags | os.O_CREAT, mode)
        return FileInfo(fh=fd, passthrough_fd=fd)

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        return os.pread(fh, size, offset)  # only without passthrough

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        return os.pwrite(fh, data, offset)

    def release(self, path: str, fh: int) -> None:
        os.close(fh)

    def fsync(self, path: str, datasync: bool, fh: int) -> None:
        (os.fdatasync if datasync else os.fsync)(fh)

    def lseek(self, path: str, offset: int, whence: int, fh: int) -> int:
        return os.lseek(fh, offset, whence)  # SEEK_DATA, SEEK_HOLE: only without passthrough

    def fallocate(self, path: str, mode: int, offset: int, length: int, fh: int) -> None:
        if _libc.fallocate(fh, mode, offset, length) < 0:  # KEEP_SIZE, PUNCH_HOLE, ...
            raise FUSEError(ctypes.get_errno())

    # ---- the rest
    def statfs(self, path: str) -> os.statvfs_result:
        return os.statvfs(self.source)

    def access(self, path: str, mode: int) -> None:
        if not os.access(self._real(path), mode, follow_symlinks=False):
            raise FUSEError(errno.EACCES)

    def setxattr(self, path: str, name: str, value: bytes, flags: int) -> None:
        os.setxattr(self._real(path), name, value, flags, follow_symlinks=False)

    def getxattr(self, path: str, name: str) -> bytes:
        return os.getxattr(self._real(path), name, follow_symlinks=False)

    def listxattr(self, path: str) -> list[str]:
        return os.listxattr(self._real(path), follow_symlinks=False)

    def removexattr(self, path: str, name: str) -> None:
        os.removexattr(self._real(path), name, follow_symlinks=False)


if __name__ == "__main__":
    sys.exit(shuntfs.main(PathLoopback, description="Show SOURCE at MOUNTPOINT (path-based loopback)."))
