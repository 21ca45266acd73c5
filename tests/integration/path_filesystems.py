"""Two filesystems written on the path-based API, in fusepy's idiom (dict attributes, float times, str paths):
an in-memory one and a loopback one whose opens hand the kernel their fd (passthrough)."""

from __future__ import annotations

import errno
import os
import stat
import time

from shuntfs import UTIME_NOW, UTIME_OMIT, FileInfo, FUSEError, PathOperations


class MemoryPaths(PathOperations):
    """Files and directories in dicts; a hard link shares its file's record."""

    def __init__(self) -> None:
        now = time.time()
        self.files: dict[str, dict] = {"/": dict(st_mode=stat.S_IFDIR | 0o755, st_nlink=2, st_ctime=now,
                                                 st_mtime=now, st_atime=now, data=b"")}
        self.released: list[int] = []
        self.released_dirs: list[str] = []
        self.fd = 0

    def _get(self, path):
        if path not in self.files:
            raise FUSEError(errno.ENOENT)
        return self.files[path]

    def getattr(self, path, fh=None):
        record = self._get(path)
        attrs = {key: value for key, value in record.items() if key.startswith("st_")}
        return attrs | {"st_size": len(record["data"])}

    def readdir(self, path, fh):
        prefix = path.rstrip("/") + "/"
        names = [p[len(prefix):] for p in self.files
                 if p != path and p.startswith(prefix) and "/" not in p[len(prefix):]]
        return [".", ".."] + names

    def _new(self, path, mode):
        parent = os.path.dirname(path)
        self._get(parent)
        if path in self.files:
            raise FUSEError(errno.EEXIST)
        now = time.time()
        self.files[path] = dict(st_mode=mode, st_nlink=1, st_uid=os.getuid(), st_gid=os.getgid(), st_ctime=now,
                                st_mtime=now, st_atime=now, data=b"")

    def mkdir(self, path, mode):
        self._new(path, stat.S_IFDIR | mode)
        self.files[path]["st_nlink"] = 2

    def create(self, path, mode, flags):
        self._new(path, stat.S_IFREG | mode)
        self.fd += 1
        return self.fd

    def open(self, path, flags):
        self._get(path)
        self.fd += 1
        return self.fd

    def read(self, path, size, offset, fh):
        return self._get(path)["data"][offset:offset + size]

    def write(self, path, data, offset, fh):
        record = self._get(path)
        old = record["data"]
        record["data"] = old[:offset].ljust(offset, b"\0") + data + old[offset + len(data):]
        record["st_mtime"] = time.time()
        return len(data)

    def truncate(self, path, length, fh):
        record = self._get(path)
        record["data"] = record["data"][:length].ljust(length, b"\0")

    def chmod(self, path, mode, fh):
        record = self._get(path)
        record["st_mode"] = stat.S_IFMT(record["st_mode"]) | mode

    def chown(self, path, uid, gid, fh):
        record = self._get(path)
        if uid != -1:
            record["st_uid"] = uid
        if gid != -1:
            record["st_gid"] = gid

    def utimens(self, path, atime_ns, mtime_ns, fh):
        record = self._get(path)
        for key, ns in (("st_atime", atime_ns), ("st_mtime", mtime_ns)):
            if ns == UTIME_NOW:
                record[key] = time.time()
            elif ns != UTIME_OMIT:
                record[key] = ns / 1e9

    def unlink(self, path):
        record = self._get(path)
        record["st_nlink"] -= 1
        del self.files[path]

    def rmdir(self, path):
        self._get(path)
        if self.readdir(path, 0)[2:]:
            raise FUSEError(errno.ENOTEMPTY)
        del self.files[path]

    def rename(self, old, new, flags):
        self._get(old)
        if flags:
            raise FUSEError(errno.EINVAL)
        if new in self.files and self.readdir(new, 0)[2:]:
            raise FUSEError(errno.ENOTEMPTY)
        for path in sorted(self.files):
            if path == old or path.startswith(old + "/"):
                self.files[new + path[len(old):]] = self.files.pop(path)

    def symlink(self, path, target):
        self._new(path, stat.S_IFLNK | 0o777)
        self.files[path]["data"] = os.fsencode(target)

    def readlink(self, path):
        return os.fsdecode(self._get(path)["data"])

    def link(self, path, new):
        record = self._get(path)
        self.files[new] = record
        record["st_nlink"] += 1

    def release(self, path, fh):
        self.released.append(fh)

    def releasedir(self, path, fh):
        self.released_dirs.append(path)


class LoopbackPaths(PathOperations):
    """``root`` seen through the mount; opens give the kernel their fd for passthrough."""

    def __init__(self, root: str) -> None:
        self.root = root

    def _real(self, path):
        return self.root + path

    def getattr(self, path, fh=None):
        return os.lstat(self._real(path))

    def readdir(self, path, fh):
        return [(name, os.lstat(os.path.join(self._real(path), name))) for name in os.listdir(self._real(path))]

    def mkdir(self, path, mode):
        os.mkdir(self._real(path), mode)

    def rmdir(self, path):
        os.rmdir(self._real(path))

    def unlink(self, path):
        os.unlink(self._real(path))

    def rename(self, old, new, flags):
        os.rename(self._real(old), self._real(new))

    def open(self, path, flags):
        fd = os.open(self._real(path), flags & (os.O_ACCMODE | os.O_TRUNC))
        return FileInfo(fh=fd, passthrough_fd=fd)

    def create(self, path, mode, flags):
        fd = os.open(self._real(path), (flags & (os.O_ACCMODE | os.O_TRUNC | os.O_EXCL)) | os.O_CREAT, mode)
        return FileInfo(fh=fd, passthrough_fd=fd)

    def release(self, path, fh):
        os.close(fh)

    def lseek(self, path, offset, whence, fh):
        return os.lseek(fh, offset, whence)

    def truncate(self, path, length, fh):
        os.truncate(self._real(path) if fh is None else fh, length)

    def chmod(self, path, mode, fh):
        os.chmod(self._real(path), mode)

    def utimens(self, path, atime_ns, mtime_ns, fh):
        st = os.lstat(self._real(path))
        times = [st.st_atime_ns if ns == UTIME_OMIT else time.time_ns() if ns == UTIME_NOW else ns
                 for ns in (atime_ns, mtime_ns)]
        os.utime(self._real(path), ns=tuple(times))


class ScandirLoopbackPaths(LoopbackPaths):
    """The loopback whose readdir yields ``os.scandir``'s entries as they come."""

    def readdir(self, path, fh):
        with os.scandir(self._real(path)) as entries:
            yield from entries


class NullpathLoopbackPaths(LoopbackPaths):
    """The loopback with ``nullpath_ok``: unlinks go at once; calls on open files may get path None."""

    nullpath_ok = True

    def getattr(self, path, fh=None):
        return os.fstat(fh) if path is None else super().getattr(path, fh)

    def chmod(self, path, mode, fh):
        os.chmod(fh if path is None else self._real(path), mode)
