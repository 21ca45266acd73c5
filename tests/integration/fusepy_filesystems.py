"""Filesystems written as fusepy users write them (dict stat results, float times, str paths, integer handles),
importing nothing but ``fuse``'s names: run through shuntfs.fusepy by the tests."""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from collections import defaultdict

from shuntfs.fusepy import ENOATTR, FuseOSError, LoggingMixIn, Operations, fuse_get_context


class Memory(LoggingMixIn, Operations):
    """An in-memory filesystem in fusepy's classic style: one dict of attributes per path, data per path."""

    def __init__(self) -> None:
        now = time.time()
        self.files: dict[str, dict] = {"/": dict(st_mode=stat.S_IFDIR | 0o755, st_ctime=now, st_mtime=now,
                                                 st_atime=now, st_nlink=2)}
        self.data: dict[str, bytes] = defaultdict(bytes)
        self.xattrs: dict[str, dict[str, bytes]] = defaultdict(dict)
        self.fd = 0
        self.contexts: list[tuple[int, int, int]] = []
        self.lock = threading.Lock()

    def _attrs(self, path):
        if path not in self.files:
            raise FuseOSError(errno.ENOENT)
        return self.files[path]

    def getattr(self, path, fh=None):
        return self._attrs(path)

    def access(self, path, amode):
        self._attrs(path)
        return 0

    def chmod(self, path, mode):
        attrs = self._attrs(path)
        attrs["st_mode"] = (attrs["st_mode"] & 0o170000) | mode
        return 0

    def chown(self, path, uid, gid):
        attrs = self._attrs(path)
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
        self._attrs(path)
        self.fd += 1
        return self.fd

    def read(self, path, size, offset, fh):
        return self.data[path][offset:offset + size]

    def readdir(self, path, fh):
        prefix = path.rstrip("/") + "/"
        return [".", ".."] + [p[len(prefix):] for p in self.files
                              if p != "/" and p.startswith(prefix) and "/" not in p[len(prefix):]]

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

    def truncate(self, path, length, fh=None):
        self.data[path] = self.data[path][:length].ljust(length, b"\0")
        self.files[path]["st_size"] = length

    def unlink(self, path):
        self.files.pop(path)
        self.data.pop(path, None)

    def utimens(self, path, times=None):
        now = time.time()
        atime, mtime = times if times else (now, now)
        self.files[path]["st_atime"] = atime
        self.files[path]["st_mtime"] = mtime

    def write(self, path, data, offset, fh):
        with self.lock:
            old = self.data[path]
            self.data[path] = old[:offset].ljust(offset, b"\0") + data + old[offset + len(data):]
            self.files[path]["st_size"] = len(self.data[path])
        return len(data)


class Loopback(Operations):
    """fusepy's loopback idiom: ``__call__`` turns every path into one below ``root``; handles are real fds."""

    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(root)
        self.rwlock = threading.Lock()
        self.reads = 0

    def __call__(self, op, path, *args):
        return super().__call__(op, self.root + path, *args)

    def access(self, path, mode):
        if not os.access(path, mode):
            raise FuseOSError(errno.EACCES)

    chmod = os.chmod
    chown = os.chown

    def create(self, path, mode):  # fusepy's two-argument form
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)

    def flush(self, path, fh):
        return os.fsync(fh)

    def fsync(self, path, datasync, fh):
        return os.fdatasync(fh) if datasync else os.fsync(fh)

    def getattr(self, path, fh=None):
        st = os.lstat(path)
        return {key: getattr(st, key) for key in ("st_atime", "st_ctime", "st_gid", "st_mode", "st_mtime",
                                                   "st_nlink", "st_size", "st_uid", "st_ino")}

    def link(self, target, source):
        return os.link(self.root + source, target)

    mkdir = os.mkdir
    mknod = os.mknod
    open = os.open

    def read(self, path, size, offset, fh):
        self.reads += 1
        with self.rwlock:
            os.lseek(fh, offset, 0)
            return os.read(fh, size)

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
        with open(path, "r+") as f:
            f.truncate(length)

    unlink = os.unlink
    utimens = os.utime

    def write(self, path, data, offset, fh):
        with self.rwlock:
            os.lseek(fh, offset, 0)
            return os.write(fh, data)
