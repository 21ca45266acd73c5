#!/usr/bin/env python3
"""An in-memory filesystem on the shuntfs API: files, directories, symlinks, renames and hard links, gone on unmount.

    python3 examples/memoryfs.py MOUNTPOINT

It runs in the foreground; unmount (or Ctrl-C) ends it.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import threading
import time

from shuntfs import (
    NOW,
    ROOT_INODE,
    DirEntry,
    EntryAttributes,
    FileInfo,
    FUSEError,
    Operations,
    Session,
    StatvfsData,
)


class Node:
    __slots__ = ("attrs", "children", "data", "target")

    def __init__(self, attrs: EntryAttributes) -> None:
        self.attrs = attrs
        self.data = bytearray()
        self.children: dict[bytes, int] | None = {} if stat.S_ISDIR(attrs.st_mode) else None
        self.target = b""


class MemoryFS(Operations):
    def __init__(self) -> None:
        self.lock = threading.Lock()  # handlers run on several worker threads
        self.nodes: dict[int, Node] = {}
        self.next_inode = ROOT_INODE
        self._new(stat.S_IFDIR | 0o755, os.getuid(), os.getgid())

    # ---- helpers
    def _new(self, mode: int, uid: int, gid: int) -> Node:
        now = time.time_ns()
        inode, self.next_inode = self.next_inode, self.next_inode + 1
        node = Node(EntryAttributes(st_ino=inode, st_mode=mode, st_nlink=2 if stat.S_ISDIR(mode) else 1,
                                    st_uid=uid, st_gid=gid, st_atime_ns=now, st_mtime_ns=now, st_ctime_ns=now))
        self.nodes[inode] = node
        return node

    def _node(self, inode: int) -> Node:
        try:
            return self.nodes[inode]
        except KeyError:
            raise FUSEError(errno.ENOENT) from None

    def _dir(self, inode: int) -> dict[bytes, int]:
        children = self._node(inode).children
        if children is None:
            raise FUSEError(errno.ENOTDIR)
        return children

    def _touch(self, *nodes: Node) -> None:
        now = time.time_ns()
        for n in nodes:
            n.attrs.st_mtime_ns = n.attrs.st_ctime_ns = now

    def _add(self, parent: int, name: bytes, mode: int, ctx) -> Node:
        children = self._dir(parent)
        if name in children:
            raise FUSEError(errno.EEXIST)
        node = self._new(mode, ctx.uid, ctx.gid)
        children[name] = node.attrs.st_ino
        if stat.S_ISDIR(mode):
            self.nodes[parent].attrs.st_nlink += 1
        self._touch(self.nodes[parent])
        return node

    # ---- names and attributes
    def lookup(self, parent, name, ctx):
        with self.lock:
            inode = self._dir(parent).get(name)
            if inode is None:
                raise FUSEError(errno.ENOENT)
            return self.nodes[inode].attrs

    def getattr(self, inode, fh, ctx):
        with self.lock:
            a = self._node(inode).attrs
            a.st_size = len(self.nodes[inode].data) if stat.S_ISREG(a.st_mode) else a.st_size
            return a

    def setattr(self, inode, attr, fields, fh, ctx):
        with self.lock:
            node = self._node(inode)
            a = node.attrs
            if fields.update_mode:
                a.st_mode = stat.S_IFMT(a.st_mode) | stat.S_IMODE(attr.st_mode)
            if fields.update_uid:
                a.st_uid = attr.st_uid
            if fields.update_gid:
                a.st_gid = attr.st_gid
            if fields.update_size:
                del node.data[attr.st_size:]
                node.data.extend(bytes(attr.st_size - len(node.data)))
                a.st_size = attr.st_size
                self._touch(node)
            now = time.time_ns()
            if fields.update_atime:
                a.st_atime_ns = now if attr.st_atime_ns == NOW else attr.st_atime_ns
            if fields.update_mtime:
                a.st_mtime_ns = now if attr.st_mtime_ns == NOW else attr.st_mtime_ns
            a.st_ctime_ns = now
            return a

    def mkdir(self, parent, name, mode, ctx):
        with self.lock:
            return self._add(parent, name, stat.S_IFDIR | stat.S_IMODE(mode), ctx).attrs

    def mknod(self, parent, name, mode, rdev, ctx):
        with self.lock:
            return self._add(parent, name, mode, ctx).attrs

    def symlink(self, parent, name, target, ctx):
        with self.lock:
            node = self._add(parent, name, stat.S_IFLNK | 0o777, ctx)
            node.target = target
            node.attrs.st_size = len(target)
            return node.attrs

    def readlink(self, inode, ctx):
        with self.lock:
            return self._node(inode).target

    def link(self, inode, new_parent, new_name, ctx):
        with self.lock:
            children = self._dir(new_parent)
            if new_name in children:
                raise FUSEError(errno.EEXIST)
            node = self._node(inode)
            children[new_name] = inode
            node.attrs.st_nlink += 1
            node.attrs.st_ctime_ns = time.time_ns()
            return node.attrs

    def _remove(self, parent: int, name: bytes, want_dir: bool) -> None:
        children = self._dir(parent)
        inode = children.get(name)
        if inode is None:
            raise FUSEError(errno.ENOENT)
        node = self.nodes[inode]
        if want_dir:
            if node.children is None:
                raise FUSEError(errno.ENOTDIR)
            if node.children:
                raise FUSEError(errno.ENOTEMPTY)
            self.nodes[parent].attrs.st_nlink -= 1
            node.attrs.st_nlink = 0
        elif node.children is not None:
            raise FUSEError(errno.EISDIR)
        else:
            node.attrs.st_nlink -= 1
        del children[name]
        self._touch(self.nodes[parent])
        # The node itself lives on until the kernel forgets it (open files may still use it); this example keeps
        # it until unmount.

    def unlink(self, parent, name, ctx):
        with self.lock:
            self._remove(parent, name, want_dir=False)

    def rmdir(self, parent, name, ctx):
        with self.lock:
            self._remove(parent, name, want_dir=True)

    def rename(self, parent, name, new_parent, new_name, flags, ctx):
        if flags:
            raise FUSEError(errno.EINVAL)  # no RENAME_NOREPLACE/EXCHANGE in this example
        with self.lock:
            src, dst = self._dir(parent), self._dir(new_parent)
            inode = src.get(name)
            if inode is None:
                raise FUSEError(errno.ENOENT)
            if new_name in dst:
                self._remove(new_parent, new_name, want_dir=self.nodes[inode].children is not None)
            dst[new_name] = src.pop(name)
            if self.nodes[inode].children is not None and parent != new_parent:
                self.nodes[parent].attrs.st_nlink -= 1
                self.nodes[new_parent].attrs.st_nlink += 1
            self._touch(self.nodes[parent], self.nodes[new_parent])

    # ---- files
    def open(self, inode, flags, ctx):
        with self.lock:
            node = self._node(inode)
            if flags & os.O_TRUNC:
                node.data.clear()
            return FileInfo(fh=inode)

    def create(self, parent, name, mode, flags, ctx):
        with self.lock:
            node = self._add(parent, name, stat.S_IFREG | stat.S_IMODE(mode), ctx)
            return FileInfo(fh=node.attrs.st_ino), node.attrs

    def read(self, fh, offset, size):
        with self.lock:
            return bytes(self.nodes[fh].data[offset:offset + size])

    def write(self, fh, offset, data):
        with self.lock:
            node = self.nodes[fh]
            if offset > len(node.data):
                node.data.extend(bytes(offset - len(node.data)))
            node.data[offset:offset + len(data)] = data
            node.attrs.st_size = len(node.data)
            self._touch(node)
            return len(data)

    # ---- directories and the rest
    def opendir(self, inode, ctx):
        with self.lock:
            self._dir(inode)
            return inode

    def readdir(self, fh, offset, ctx):
        with self.lock:
            entries = [(b".", fh), (b"..", fh)] + list(self._dir(fh).items())
            listing = [(name, ino, stat.S_IFMT(self.nodes[ino].attrs.st_mode) >> 12) for name, ino in entries]
        for index in range(offset, len(listing)):
            name, ino, dtype = listing[index]
            yield DirEntry(name, ino, dtype, index + 1)

    def statfs(self, ctx):
        with self.lock:
            used = sum(len(n.data) for n in self.nodes.values()) // 4096 + 1
            return StatvfsData(f_bsize=4096, f_frsize=4096, f_blocks=1 << 20, f_bfree=(1 << 20) - used,
                               f_bavail=(1 << 20) - used, f_files=1 << 20, f_ffree=(1 << 20) - len(self.nodes),
                               f_namemax=255)


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    Session(MemoryFS(), sys.argv[1]).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
