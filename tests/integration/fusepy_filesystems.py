"""Filesystems written as fusepy users write them (dict stat results, float times, str paths, integer handles),
importing nothing but ``fuse``'s names: run through shuntfs.fusepy by the tests."""

from __future__ import annotations

import errno
import importlib.util
import os
import stat
import threading
import time
from collections import defaultdict
from pathlib import Path

from shuntfs.fusepy import ENOATTR, FuseOSError, LoggingMixIn, fuse_get_context

_EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _example(name: str):
    spec = importlib.util.spec_from_file_location(name, _EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ExampleLoopback = _example("fusepy_loopback").Loopback
ExampleMemory = _example("fusepy_memory").Memory


class Memory(LoggingMixIn, ExampleMemory):
    """examples/fusepy_memory.py (fusepy's classic idiom: a dict of attributes per path) with LoggingMixIn, extended
    attributes, symlinks, owners, renamed subtrees and a record of fuse_get_context()."""

    def __init__(self) -> None:
        super().__init__()
        self.xattrs: dict[str, dict[str, bytes]] = defaultdict(dict)
        self.contexts: list[tuple[int, int, int]] = []
        self.lock = threading.Lock()

    def access(self, path, amode):
        self.getattr(path)
        return 0

    def chown(self, path, uid, gid):
        attrs = self.getattr(path)
        if uid != -1:
            attrs["st_uid"] = uid
        if gid != -1:
            attrs["st_gid"] = gid

    def create(self, path, mode, fi=None):
        self.contexts.append(fuse_get_context())
        now = time.time()
        uid, gid, _pid = fuse_get_context()
        self.files[path] = dict(st_mode=(stat.S_IFREG | mode), st_nlink=1, st_size=0, st_ctime=now, st_mtime=now,
                                st_atime=now, st_uid=uid, st_gid=gid)
        self.fd += 1
        return self.fd

    def getxattr(self, path, name, position=0):
        try:
            return self.xattrs[path][name]
        except KeyError:
            raise FuseOSError(ENOATTR) from None

    def listxattr(self, path):
        return list(self.xattrs[path])

    def mkdir(self, path, mode):
        now = time.time()
        self.files[path] = dict(st_mode=(stat.S_IFDIR | mode), st_nlink=2, st_size=0, st_ctime=now, st_mtime=now,
                                st_atime=now)
        self.files[os.path.dirname(path)]["st_nlink"] += 1

    def open(self, path, flags):
        self.getattr(path)
        self.fd += 1
        return self.fd

    def readlink(self, path):
        return self.data[path].decode()

    def removexattr(self, path, name):
        try:
            del self.xattrs[path][name]
        except KeyError:
            raise FuseOSError(ENOATTR) from None

    def rename(self, old, new):
        moved = {p: a for p, a in self.files.items() if p == old or p.startswith(old + "/")}
        for p in list(self.files):
            if p == new or p.startswith(new + "/"):
                del self.files[p]
        for p, attrs in moved.items():
            del self.files[p]
            target = new + p[len(old):]
            self.files[target] = attrs
            if p in self.data:
                self.data[target] = self.data.pop(p)

    def rmdir(self, path):
        if any(p.startswith(path + "/") for p in self.files):
            raise FuseOSError(errno.ENOTEMPTY)
        self.files.pop(path)
        self.files[os.path.dirname(path)]["st_nlink"] -= 1

    def setxattr(self, path, name, value, options, position=0):
        self.xattrs[path][name] = value

    def statfs(self, path):
        return dict(f_bsize=512, f_blocks=4096, f_bavail=2048)

    def symlink(self, target, source):
        self.files[target] = dict(st_mode=(stat.S_IFLNK | 0o777), st_nlink=1, st_size=len(source))
        self.data[target] = source.encode()

    def write(self, path, data, offset, fh):
        with self.lock:
            old = self.data[path]
            self.data[path] = old[:offset].ljust(offset, b"\0") + data + old[offset + len(data):]
            self.files[path]["st_size"] = len(self.data[path])
        return len(data)


class Loopback(ExampleLoopback):
    """examples/fusepy_loopback.py (fusepy's loopback idiom: ``__call__`` puts every path below ``root``; handles
    are real fds), with fusepy's two-argument ``create`` and a count of the reads that reach it."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.reads = 0

    def create(self, path, mode):  # fusepy's two-argument form
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)

    def read(self, path, size, offset, fh):
        self.reads += 1
        return super().read(path, size, offset, fh)
