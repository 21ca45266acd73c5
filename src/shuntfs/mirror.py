"""The mirror filesystem: SOURCE seen through FUSE, file data passed through to the kernel.

Every known inode holds an ``O_PATH`` fd of the source inode and every call is made relative to such an fd with an
``*at()`` call and ``O_NOFOLLOW``, so no path is ever resolved from a string: ``..``, symlinks and renames racing
with lookups cannot lead outside SOURCE. Inodes are keyed by the source's ``(st_dev, st_ino)``, so hard links are
one inode, and forgotten (fd closed) when the kernel forgets them.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import stat
import threading
from typing import Iterator, Sequence

from . import abi
from .credentials import acting_as
from .operations import (
    NOW,
    DirEntry,
    EntryAttributes,
    FileInfo,
    FUSEError,
    Operations,
    RequestContext,
    SetattrFields,
    StatvfsData,
    ROOT_INODE,
)

log = logging.getLogger("shuntfs.mirror")

_libc = ctypes.CDLL(None, use_errno=True)
AT_EMPTY_PATH = 0x1000
AT_SYMLINK_NOFOLLOW = 0x100
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2
O_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


_libc.utimensat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(_Timespec), ctypes.c_int]
_libc.fchownat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint, ctypes.c_uint, ctypes.c_int]
_libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
_libc.statx.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_char_p]
_libc.linkat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]


def _check(result: int) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


#: (entry/attr timeout, negative-entry timeout) per cache mode, as libfuse's passthrough_ll chooses them.
CACHE_MODES = {"none": (0.0, 0.0), "auto": (1.0, 1.0), "always": (86400.0, 86400.0)}


class Inode:
    __slots__ = ("nodeid", "fd", "key", "nlookup")

    def __init__(self, nodeid: int, fd: int, key: tuple[int, int], nlookup: int) -> None:
        self.nodeid = nodeid
        self.fd = fd
        self.key = key
        self.nlookup = nlookup


class InodeTable:
    """Known inodes by node id and by source ``(st_dev, st_ino)``; owns their O_PATH fds."""

    def __init__(self, root_fd: int, root_st: os.stat_result) -> None:
        self._lock = threading.Lock()
        root = Inode(ROOT_INODE, root_fd, (root_st.st_dev, root_st.st_ino), 1)
        self.root = root
        self._by_id: dict[int, Inode] = {ROOT_INODE: root}
        self._by_key: dict[tuple[int, int], Inode] = {root.key: root}
        self._next = ROOT_INODE + 1

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, nodeid: int) -> Inode:
        inode = self._by_id.get(nodeid)
        if inode is None:
            raise FUSEError(errno.ESTALE)
        return inode

    def remember(self, fd: int, st: os.stat_result) -> Inode:
        """Count one lookup of the inode ``fd`` refers to; the table takes ``fd`` (closing it if already known)."""
        key = (st.st_dev, st.st_ino)
        with self._lock:
            inode = self._by_key.get(key)
            if inode is not None:
                inode.nlookup += 1
            else:
                inode = Inode(self._next, fd, key, 1)
                self._next += 1
                self._by_id[inode.nodeid] = inode
                self._by_key[key] = inode
                return inode
        os.close(fd)
        return inode

    def forget(self, nodeid: int, nlookup: int) -> None:
        with self._lock:
            inode = self._by_id.get(nodeid)
            if inode is None or nodeid == ROOT_INODE:
                return
            inode.nlookup -= nlookup
            if inode.nlookup > 0:
                return
            del self._by_id[nodeid]
            if self._by_key.get(inode.key) is inode:
                del self._by_key[inode.key]
        os.close(inode.fd)

    def close(self) -> None:
        with self._lock:
            for inode in self._by_id.values():
                if inode.nodeid != ROOT_INODE:
                    os.close(inode.fd)
            self._by_id = {ROOT_INODE: self.root}
            self._by_key = {self.root.key: self.root}


class _DirHandle:
    __slots__ = ("fd", "inode", "entries")

    def __init__(self, fd: int, inode: Inode) -> None:
        self.fd = fd
        self.inode = inode
        self.entries: list[tuple[bytes, int, int]] | None = None


def _proc(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


def _dtype(entry: os.DirEntry) -> int:
    # DirEntry answers these from d_type without a syscall; other types are reported as DT_UNKNOWN.
    try:
        if entry.is_dir(follow_symlinks=False):
            return stat.S_IFDIR >> 12
        if entry.is_file(follow_symlinks=False):
            return stat.S_IFREG >> 12
        if entry.is_symlink():
            return stat.S_IFLNK >> 12
    except OSError:
        pass
    return 0


class Mirror(Operations):
    """Mirror ``source``. ``cache`` is none/auto/always; ``as_caller`` makes a root daemon create and open files
    with the caller's credentials (needed whenever users other than root reach the mount)."""

    def __init__(self, source: str, *, cache: str = "auto", as_caller: bool = True) -> None:
        if cache not in CACHE_MODES:
            raise ValueError(f"cache must be one of {', '.join(CACHE_MODES)}")
        self.source = os.path.realpath(source)
        self.cache = cache
        self.timeout, self.negative_timeout = CACHE_MODES[cache]
        self.as_caller = as_caller
        root_fd = os.open(self.source, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.inodes = InodeTable(root_fd, os.fstat(root_fd))
        self._dirs: dict[int, _DirHandle] = {}
        # The kernel applied the caller's umask to every mode it sends; ours must not mask it again.
        os.umask(0)

    # ---- helpers
    def _attrs(self, nodeid: int, st: os.stat_result) -> EntryAttributes:
        t = self.timeout
        return EntryAttributes.from_stat(nodeid, st, t, t)

    def _caller(self, ctx: RequestContext):
        if self.as_caller:
            return acting_as(ctx.uid, ctx.gid, ctx.pid)
        return acting_as(0, 0, 0)

    def _remember(self, fd: int) -> EntryAttributes:
        try:
            st = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        inode = self.inodes.remember(fd, st)
        return self._attrs(inode.nodeid, st)

    def _lookup_fd(self, parent: Inode, name: bytes) -> EntryAttributes:
        return self._remember(os.open(name, O_PATH_FLAGS, dir_fd=parent.fd))

    # ---- names and attributes
    def lookup(self, parent: int, name: bytes, ctx: RequestContext) -> EntryAttributes:
        p = self.inodes.get(parent)
        if name == b"..":
            raise FUSEError(errno.EINVAL)  # only sent with export support, which we do not offer
        try:
            return self._lookup_fd(p, name)
        except FileNotFoundError:
            if self.negative_timeout:
                return EntryAttributes(st_ino=0, entry_timeout=self.negative_timeout, attr_timeout=0)
            raise

    def forget(self, inodes: Sequence[tuple[int, int]]) -> None:
        forget = self.inodes.forget
        for nodeid, nlookup in inodes:
            forget(nodeid, nlookup)

    def getattr(self, inode: int, fh: int | None, ctx: RequestContext) -> EntryAttributes:
        return self._attrs(inode, os.fstat(self.inodes.get(inode).fd if fh is None else fh))

    def setattr(
        self, inode: int, attr: EntryAttributes, fields: SetattrFields, fh: int | None, ctx: RequestContext
    ) -> EntryAttributes:
        node = self.inodes.get(inode)
        if fields.update_mode:
            mode = stat.S_IMODE(attr.st_mode)
            if fh is not None:
                os.fchmod(fh, mode)
            else:
                os.chmod(_proc(node.fd), mode)
        if fields.update_uid or fields.update_gid:
            uid = attr.st_uid if fields.update_uid else 0xFFFFFFFF
            gid = attr.st_gid if fields.update_gid else 0xFFFFFFFF
            _check(_libc.fchownat(node.fd, b"", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW))
        if fields.update_size:
            if fh is not None:
                os.ftruncate(fh, attr.st_size)
            else:
                os.truncate(_proc(node.fd), attr.st_size)
        if fields.update_atime or fields.update_mtime:
            times = (_Timespec * 2)(
                _timespec(attr.st_atime_ns) if fields.update_atime else _Timespec(0, UTIME_OMIT),
                _timespec(attr.st_mtime_ns) if fields.update_mtime else _Timespec(0, UTIME_OMIT),
            )
            _check(_libc.utimensat(node.fd, b"", times, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW))
        return self._attrs(inode, os.fstat(node.fd if fh is None else fh))

    def readlink(self, inode: int, ctx: RequestContext) -> bytes:
        return os.readlink(b"", dir_fd=self.inodes.get(inode).fd)

    def statx(self, inode: int, fh: int | None, mask: int, flags: int, ctx: RequestContext) -> tuple[bytes, float]:
        buf = ctypes.create_string_buffer(abi.STATX_SIZE)
        fd = self.inodes.get(inode).fd if fh is None else fh
        _check(_libc.statx(fd, b"", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, mask | abi.STATX_BASIC_STATS, buf))
        return buf.raw, self.timeout

    # ---- creating and removing names
    def mknod(self, parent: int, name: bytes, mode: int, rdev: int, ctx: RequestContext) -> EntryAttributes:
        p = self.inodes.get(parent)
        with self._caller(ctx):
            os.mknod(name, mode, rdev, dir_fd=p.fd)
        return self._lookup_fd(p, name)

    def mkdir(self, parent: int, name: bytes, mode: int, ctx: RequestContext) -> EntryAttributes:
        p = self.inodes.get(parent)
        with self._caller(ctx):
            os.mkdir(name, stat.S_IMODE(mode), dir_fd=p.fd)
        return self._lookup_fd(p, name)

    def symlink(self, parent: int, name: bytes, target: bytes, ctx: RequestContext) -> EntryAttributes:
        p = self.inodes.get(parent)
        with self._caller(ctx):
            os.symlink(target, name, dir_fd=p.fd)
        return self._lookup_fd(p, name)

    def link(self, inode: int, new_parent: int, new_name: bytes, ctx: RequestContext) -> EntryAttributes:
        node, p = self.inodes.get(inode), self.inodes.get(new_parent)
        with self._caller(ctx):
            # AT_EMPTY_PATH links the fd's own inode (symlinks too); it needs CAP_DAC_READ_SEARCH, so a non-root
            # daemon goes through /proc, which the kernel allows to the fd's owner.
            if _libc.linkat(node.fd, b"", p.fd, new_name, AT_EMPTY_PATH) != 0:
                err = ctypes.get_errno()
                if err not in (errno.ENOENT, errno.EPERM):
                    raise OSError(err, os.strerror(err))
                os.link(_proc(node.fd), new_name, dst_dir_fd=p.fd, follow_symlinks=True)
        return self._lookup_fd(p, new_name)

    def unlink(self, parent: int, name: bytes, ctx: RequestContext) -> None:
        os.unlink(name, dir_fd=self.inodes.get(parent).fd)

    def rmdir(self, parent: int, name: bytes, ctx: RequestContext) -> None:
        os.rmdir(name, dir_fd=self.inodes.get(parent).fd)

    def rename(
        self, parent_old: int, name_old: bytes, parent_new: int, name_new: bytes, flags: int, ctx: RequestContext
    ) -> None:
        old, new = self.inodes.get(parent_old), self.inodes.get(parent_new)
        if flags:
            _check(_libc.renameat2(old.fd, name_old, new.fd, name_new, flags))
        else:
            os.rename(name_old, name_new, src_dir_fd=old.fd, dst_dir_fd=new.fd)

    # ---- files
    def _file_info(self, fd: int, flags: int) -> FileInfo:
        return FileInfo(
            fh=fd,
            passthrough_fd=fd,
            direct_io=self.cache == "none",
            keep_cache=self.cache == "always",
            noflush=(flags & os.O_ACCMODE) == os.O_RDONLY,
        )

    @staticmethod
    def _fd_flags(flags: int) -> int:
        # Our fd is for passthrough registration and userspace I/O at the kernel's offsets: O_APPEND, O_DIRECT and
        # the sync flags are the kernel's business (it re-opens the backing file with the user's own flags).
        return (flags & (os.O_ACCMODE | os.O_TRUNC)) | os.O_CLOEXEC

    def open(self, inode: int, flags: int, ctx: RequestContext) -> FileInfo:
        node = self.inodes.get(inode)
        with self._caller(ctx):
            fd = os.open(_proc(node.fd), self._fd_flags(flags))
        return self._file_info(fd, flags)

    def create(
        self, parent: int, name: bytes, mode: int, flags: int, ctx: RequestContext
    ) -> tuple[FileInfo, EntryAttributes]:
        p = self.inodes.get(parent)
        with self._caller(ctx):
            fd = os.open(
                name,
                self._fd_flags(flags) | os.O_CREAT | os.O_NOFOLLOW | (flags & os.O_EXCL),
                stat.S_IMODE(mode),
                dir_fd=p.fd,
            )
        return self._opened_new(fd, flags)

    def tmpfile(self, parent: int, mode: int, flags: int, ctx: RequestContext) -> tuple[FileInfo, EntryAttributes]:
        p = self.inodes.get(parent)
        access = flags & os.O_ACCMODE or os.O_RDWR
        with self._caller(ctx):
            fd = os.open(b".", os.O_TMPFILE | access | os.O_CLOEXEC | (flags & os.O_EXCL), stat.S_IMODE(mode), dir_fd=p.fd)
        return self._opened_new(fd, flags)

    def _opened_new(self, fd: int, flags: int) -> tuple[FileInfo, EntryAttributes]:
        try:
            # Following the /proc magic link reaches the file itself; O_NOFOLLOW would give the link.
            attrs = self._remember(os.open(_proc(fd), os.O_PATH | os.O_CLOEXEC))
        except BaseException:
            os.close(fd)
            raise
        return self._file_info(fd, flags), attrs

    def release(self, fh: int) -> None:
        os.close(fh)

    def fallocate(self, fh: int, mode: int, offset: int, length: int) -> None:
        _check(_libc.fallocate(fh, mode, offset, length))

    def lseek(self, fh: int, offset: int, whence: int) -> int:
        return os.lseek(fh, offset, whence)

    # ---- directories
    def opendir(self, inode: int, ctx: RequestContext) -> int:
        node = self.inodes.get(inode)
        with self._caller(ctx):
            # Through /proc, not as "." below the fd: resolving "." would need search permission on the directory
            # itself, where opendir(3) needs only read permission.
            fd = os.open(_proc(node.fd), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._dirs[fd] = _DirHandle(fd, node)
        return fd

    def _list(self, handle: _DirHandle) -> list[tuple[bytes, int, int]]:
        st = os.fstat(handle.fd)
        if handle.inode.nodeid == ROOT_INODE:
            parent_ino = st.st_ino
        else:
            parent_ino = os.stat(b"..", dir_fd=handle.fd, follow_symlinks=False).st_ino
        entries = [(b".", st.st_ino, stat.S_IFDIR >> 12), (b"..", parent_ino, stat.S_IFDIR >> 12)]
        os.lseek(handle.fd, 0, os.SEEK_SET)
        with os.scandir(handle.fd) as it:
            for entry in it:
                entries.append((os.fsencode(entry.name), entry.inode(), _dtype(entry)))
        return entries

    def readdir(self, fh: int, offset: int, ctx: RequestContext) -> Iterator[DirEntry]:
        handle = self._dirs.get(fh)
        if handle is None:
            raise FUSEError(errno.EBADF)
        # A listing is a snapshot taken at offset 0 (opendir or rewinddir), so cookies are stable indexes.
        if offset == 0 or handle.entries is None:
            handle.entries = self._list(handle)
        entries = handle.entries
        for index in range(offset, len(entries)):
            name, ino, dtype = entries[index]
            yield DirEntry(name, ino, dtype, index + 1)

    def releasedir(self, fh: int) -> None:
        handle = self._dirs.pop(fh, None)
        if handle is not None:
            os.close(handle.fd)

    def fsyncdir(self, fh: int, datasync: bool) -> None:
        handle = self._dirs.get(fh)
        if handle is not None:
            (os.fdatasync if datasync else os.fsync)(handle.fd)

    # ---- the rest
    def statfs(self, ctx: RequestContext) -> StatvfsData:
        s = os.fstatvfs(self.inodes.root.fd)
        return StatvfsData(s.f_bsize, s.f_frsize, s.f_blocks, s.f_bfree, s.f_bavail, s.f_files, s.f_ffree, s.f_namemax)

    def access(self, inode: int, mode: int, ctx: RequestContext) -> None:
        node = self.inodes.get(inode)
        with self._caller(ctx):
            ok = os.access(_proc(node.fd), mode, effective_ids=True)
        if not ok:
            raise FUSEError(errno.EACCES)

    def setxattr(self, inode: int, name: bytes, value: bytes, flags: int, ctx: RequestContext) -> None:
        os.setxattr(_proc(self.inodes.get(inode).fd), name, value, flags)

    def getxattr(self, inode: int, name: bytes, ctx: RequestContext) -> bytes:
        return os.getxattr(_proc(self.inodes.get(inode).fd), name)

    def listxattr(self, inode: int, ctx: RequestContext) -> list[bytes]:
        return [os.fsencode(n) for n in os.listxattr(_proc(self.inodes.get(inode).fd))]

    def removexattr(self, inode: int, name: bytes, ctx: RequestContext) -> None:
        os.removexattr(_proc(self.inodes.get(inode).fd), name)

    def stats(self) -> dict:
        return {"type": "mirror", "source": self.source, "cache": self.cache, "inodes": len(self.inodes),
                "open_dirs": len(self._dirs)}

    def destroy(self) -> None:
        for handle in list(self._dirs.values()):
            os.close(handle.fd)
        self._dirs.clear()
        self.inodes.close()


def _timespec(ns: int) -> _Timespec:
    if ns == NOW:
        return _Timespec(0, UTIME_NOW)
    sec, nsec = divmod(ns, 1_000_000_000)
    return _Timespec(sec, nsec)
