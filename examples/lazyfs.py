#!/usr/bin/env python3
"""A lazily fetched, locally cached, read-only tree of remote files.

The server publishes ``manifest.json`` (``{"name": size, ...}``) and the files themselves. Names and sizes come from
the manifest, so listing costs nothing; a file is downloaded into CACHE_DIR the first time it is opened, and from
then on it is passed through to the kernel: every read runs at local-disk speed and never reaches this process.

    python3 examples/lazyfs.py URL MOUNTPOINT CACHE_DIR

Runs in the foreground; prints the requests it served, as JSON, when unmounted.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

from shuntfs import ROOT_INODE, DirEntry, EntryAttributes, FileInfo, FUSEError, Operations, Session


class LazyFetch(Operations):
    def __init__(self, url: str, cache_dir: str) -> None:
        self.url = url.rstrip("/") + "/"
        self.cache_dir = cache_dir
        with urllib.request.urlopen(self.url + "manifest.json", timeout=30) as reply:
            manifest = json.load(reply)
        self.names = {os.fsencode(name): ROOT_INODE + 1 + i for i, name in enumerate(sorted(manifest))}
        self.sizes = {self.names[os.fsencode(name)]: size for name, size in manifest.items()}
        self.by_inode = {inode: name for name, inode in self.names.items()}
        self.fetch_locks = {inode: threading.Lock() for inode in self.by_inode}
        self.fetches = 0
        self.started = time.time_ns()

    def _attrs(self, inode: int) -> EntryAttributes:
        if inode == ROOT_INODE:
            mode, size = stat.S_IFDIR | 0o555, 0
        elif inode in self.sizes:
            mode, size = stat.S_IFREG | 0o444, self.sizes[inode]
        else:
            raise FUSEError(errno.ENOENT)
        t = self.started
        return EntryAttributes(st_ino=inode, st_mode=mode, st_size=size, st_nlink=1, st_atime_ns=t, st_mtime_ns=t,
                               st_ctime_ns=t, entry_timeout=60, attr_timeout=60)

    def lookup(self, parent, name, ctx):
        if parent != ROOT_INODE or name not in self.names:
            raise FUSEError(errno.ENOENT)
        return self._attrs(self.names[name])

    def getattr(self, inode, fh, ctx):
        return self._attrs(inode)

    def readdir(self, fh, offset, ctx):
        entries = [(b".", ROOT_INODE), (b"..", ROOT_INODE)] + list(self.names.items())
        for i in range(offset, len(entries)):
            name, inode = entries[i]
            yield DirEntry(name, inode, stat.S_IFMT(self._attrs(inode).st_mode) >> 12, i + 1)

    def _cached(self, inode: int) -> str:
        """The local copy of ``inode``, downloaded on first use (once, however many opens race for it)."""
        name = self.by_inode[inode]
        path = os.path.join(self.cache_dir, os.fsdecode(name))
        with self.fetch_locks[inode]:
            if not os.path.exists(path):
                url = self.url + urllib.parse.quote(os.fsdecode(name))
                handle, partial = tempfile.mkstemp(dir=self.cache_dir, prefix=".partial-")
                try:
                    with urllib.request.urlopen(url, timeout=60) as reply, os.fdopen(handle, "wb") as out:
                        shutil.copyfileobj(reply, out, 1 << 20)
                    os.rename(partial, path)  # complete files only: a crash never leaves a short copy behind
                except BaseException:
                    os.unlink(partial)
                    raise
                self.fetches += 1
        return path

    def open(self, inode, flags, ctx):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND):
            raise FUSEError(errno.EROFS)
        if inode not in self.by_inode:
            raise FUSEError(errno.ENOENT)
        try:
            path = self._cached(inode)
        except OSError as e:  # the server is unreachable or said no: the open fails, nothing is cached
            raise FUSEError(errno.EIO) from e
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        return FileInfo(fh=fd, passthrough_fd=fd)

    def release(self, fh):
        os.close(fh)

    def stats(self):
        return {"fetched": self.fetches, "files": len(self.names)}


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__.strip().splitlines()[6].strip(), file=sys.stderr)
        return 2
    url, mountpoint, cache_dir = sys.argv[1:]
    os.makedirs(cache_dir, exist_ok=True)
    fs = LazyFetch(url, cache_dir)
    session = Session(fs, mountpoint)  # passthrough where this daemon may use it
    session.serve()
    json.dump({"passthrough": session.passthrough, "requests": session.request_counts(),
               "fetched": fs.fetches}, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
