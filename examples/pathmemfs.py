#!/usr/bin/env python3
"""An in-memory filesystem on the path-based API, in fusepy's idiom: one record per path, gone on unmount.

    python3 examples/pathmemfs.py MOUNTPOINT [-f] [-o OPTIONS] [--size-limit BYTES]

``shuntfs.main`` gives it the whole ``shuntfs`` command line; ``--size-limit`` is its own option, declared by
``add_arguments``. The library keeps the node table: renaming a directory moves what is below it, and a file
unlinked while open keeps working through its open handles.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import threading
import time

import shuntfs
from shuntfs import UTIME_NOW, UTIME_OMIT, FUSEError, PathOperations


class File:
    __slots__ = ("mode", "uid", "gid", "atime", "mtime", "ctime", "data", "nlink", "rdev")

    def __init__(self, mode: int, uid: int, gid: int) -> None:
        self.mode, self.uid, self.gid, self.rdev = mode, uid, gid, 0
        self.atime = self.mtime = self.ctime = time.time_ns()
        self.data = bytearray()
        self.nlink = 2 if stat.S_ISDIR(mode) else 1


class PathMemory(PathOperations):
    def __init__(self, size_limit: int = 1 << 30) -> None:
        self.size_limit = size_limit
        self.lock = threading.Lock()  # handlers run on several worker threads
        self.files = {"/": File(stat.S_IFDIR | 0o755, os.getuid(), os.getgid())}

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument("--size-limit", type=int, default=1 << 30, help="largest file, in bytes")

    @classmethod
    def from_arguments(cls, config) -> PathMemory:
        return cls(config.size_limit)

    def _get(self, path: str) -> File:
        try:
            return self.files[path]
        except KeyError:
            raise FUSEError(errno.ENOENT) from None

    def _children(self, path: str) -> list[str]:
        prefix = path.rstrip("/") + "/"
        return [p[len(prefix):] for p in self.files if p != "/" and p.startswith(prefix) and "/" not in
                p[len(prefix):]]

    def _new(self, path: str, mode: int) -> File:
        parent = self._get(os.path.dirname(path))
        if path in self.files:
            raise FUSEError(errno.EEXIST)
        caller = shuntfs.request_context()
        f = File(mode, caller.uid if caller else 0, caller.gid if caller else 0)
        self.files[path] = f
        if stat.S_ISDIR(mode):
            parent.nlink += 1
        parent.mtime = parent.ctime = f.ctime
        return f

    def getattr(self, path: str, fh=None) -> dict:
        f = self._get(path)
        return dict(st_mode=f.mode, st_nlink=f.nlink, st_uid=f.uid, st_gid=f.gid, st_rdev=f.rdev,
                    st_size=len(f.data), st_atime_ns=f.atime, st_mtime_ns=f.mtime, st_ctime_ns=f.ctime)

    def readdir(self, path: str, fh) -> list[str]:
        with self.lock:
            return self._children(path)

    def mkdir(self, path: str, mode: int) -> None:
        with self.lock:
            self._new(path, stat.S_IFDIR | mode)

    def mknod(self, path: str, mode: int, rdev: int) -> None:
        with self.lock:
            self._new(path, mode).rdev = rdev

    def create(self, path: str, mode: int, flags: int) -> int:
        with self.lock:
            self._new(path, stat.S_IFREG | mode)
        return 0

    def symlink(self, path: str, target: str) -> None:
        with self.lock:
            self._new(path, stat.S_IFLNK | 0o777).data[:] = os.fsencode(target)

    def readlink(self, path: str) -> str:
        return os.fsdecode(bytes(self._get(path).data))

    def link(self, path: str, new: str) -> None:
        with self.lock:
            f = self._get(path)
            if new in self.files:
                raise FUSEError(errno.EEXIST)
            self.files[new] = f  # one record, two names
            f.nlink += 1

    def unlink(self, path: str) -> None:
        with self.lock:
            f = self.files.pop(path, None)
            if f is None:
                raise FUSEError(errno.ENOENT)
            f.nlink -= 1

    def rmdir(self, path: str) -> None:
        with self.lock:
            self._get(path)
            if self._children(path):
                raise FUSEError(errno.ENOTEMPTY)
            del self.files[path]
            self.files[os.path.dirname(path)].nlink -= 1

    def rename(self, old: str, new: str, flags: int) -> None:
        if flags:
            raise FUSEError(errno.EINVAL)
        with self.lock:
            moving = self._get(old)
            if new in self.files:
                if stat.S_ISDIR(self.files[new].mode) and self._children(new):
                    raise FUSEError(errno.ENOTEMPTY)
                del self.files[new]
            for path in [p for p in self.files if p == old or p.startswith(old + "/")]:
                self.files[new + path[len(old):]] = self.files.pop(path)
            moving.ctime = time.time_ns()

    def chmod(self, path: str, mode: int, fh) -> None:
        f = self._get(path)
        f.mode = stat.S_IFMT(f.mode) | stat.S_IMODE(mode)
        f.ctime = time.time_ns()

    def chown(self, path: str, uid: int, gid: int, fh) -> None:
        f = self._get(path)
        f.uid = f.uid if uid == -1 else uid
        f.gid = f.gid if gid == -1 else gid
        f.ctime = time.time_ns()

    def truncate(self, path: str, length: int, fh) -> None:
        if length > self.size_limit:
            raise FUSEError(errno.EFBIG)
        f = self._get(path)
        with self.lock:
            del f.data[length:]
            f.data.extend(bytes(length - len(f.data)))
            f.mtime = f.ctime = time.time_ns()

    def utimens(self, path: str, atime_ns: int, mtime_ns: int, fh) -> None:
        f = self._get(path)
        now = time.time_ns()
        f.atime = now if atime_ns == UTIME_NOW else f.atime if atime_ns == UTIME_OMIT else atime_ns
        f.mtime = now if mtime_ns == UTIME_NOW else f.mtime if mtime_ns == UTIME_OMIT else mtime_ns
        f.ctime = now

    def open(self, path: str, flags: int) -> int:
        self._get(path)
        return 0

    def read(self, path: str, size: int, offset: int, fh) -> bytes:
        return bytes(self._get(path).data[offset:offset + size])

    def write(self, path: str, data: bytes, offset: int, fh) -> int:
        if offset + len(data) > self.size_limit:
            raise FUSEError(errno.EFBIG)
        f = self._get(path)
        with self.lock:
            if offset > len(f.data):
                f.data.extend(bytes(offset - len(f.data)))
            f.data[offset:offset + len(data)] = data
            f.mtime = f.ctime = time.time_ns()
        return len(data)

    def statfs(self, path: str) -> dict:
        used = sum(len(f.data) for f in self.files.values()) // 4096
        total = max(self.size_limit // 4096, used)
        return dict(f_bsize=4096, f_frsize=4096, f_blocks=total, f_bfree=total - used, f_bavail=total - used,
                    f_files=len(self.files), f_ffree=1 << 20, f_namemax=255)


if __name__ == "__main__":
    sys.exit(shuntfs.main(PathMemory, description="An in-memory filesystem at MOUNTPOINT (path-based)."))
