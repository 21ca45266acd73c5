"""The mirror filesystem: SOURCE seen through FUSE, file data passed through to the kernel.

Every known inode holds an ``O_PATH`` fd of the source inode (or, past a budget of fds, a file handle that reopens
one) and every call is made relative to such an fd with an ``*at()`` call and ``O_NOFOLLOW``, so no path is ever
resolved from a string: ``..``, symlinks and renames racing with lookups cannot lead outside SOURCE. Inodes are keyed
by the source's ``(st_dev, st_ino)``, so hard links are one inode, and forgotten (fd closed) when the kernel forgets
them.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import resource
import stat
import struct
import threading
from typing import Iterator, Sequence

from . import abi
from .credentials import acting_as, clear_setid_bits
from .operations import (
    NOW,
    ROOT_INODE,
    DirEntry,
    EntryAttributes,
    FileInfo,
    FUSEError,
    Operations,
    RequestContext,
    SetattrFields,
    StatvfsData,
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
    """One known source inode. ``fd`` is its O_PATH fd, or -1 when the inode is kept as a file ``handle`` instead.

    Used as a context manager it lends its fd (see :meth:`InodeTable.borrow`)."""

    __slots__ = ("nodeid", "fd", "key", "nlookup", "handle", "mount")

    def __init__(self, nodeid: int, fd: int, key: int, nlookup: int) -> None:
        self.nodeid = nodeid
        self.fd = fd
        self.key = key
        self.nlookup = nlookup
        self.handle = b""
        self.mount = 0

    def __enter__(self) -> int:
        return self.fd

    def __exit__(self, *exc: object) -> None:
        return None


class _LentFd:
    """An fd opened from a file handle for one call, closed after it."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> int:
        return self.fd

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


_MAX_HANDLE_SZ = 128
_HANDLE_HEAD = struct.Struct("Ii")  # struct file_handle: handle_bytes, handle_type
_libc.name_to_handle_at.argtypes = [
    ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int,
]
_libc.open_by_handle_at.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int]


def _name_to_handle(fd: int) -> tuple[bytes, int]:
    """The file handle of the inode ``fd`` refers to, and its mount id."""
    buf = ctypes.create_string_buffer(_HANDLE_HEAD.pack(_MAX_HANDLE_SZ, 0), _HANDLE_HEAD.size + _MAX_HANDLE_SZ)
    mount_id = ctypes.c_int()
    _check(_libc.name_to_handle_at(fd, b"", buf, ctypes.byref(mount_id), AT_EMPTY_PATH))
    size = _HANDLE_HEAD.unpack_from(buf.raw)[0]
    return buf.raw[: _HANDLE_HEAD.size + size], mount_id.value


def _open_by_handle(mount_fd: int, handle: bytes) -> int:
    fd = _libc.open_by_handle_at(mount_fd, handle, O_PATH_FLAGS)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return fd


def _mount_fd(path_fd: int) -> int:
    """A directory fd for open_by_handle_at, which takes no O_PATH fd as its mount."""
    return os.open(f"/proc/self/fd/{path_fd}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def _key(st: os.stat_result) -> int:
    # one int rather than a (dev, ino) tuple: a third of the memory per known inode
    return (st.st_dev << 64) | st.st_ino


class InodeTable:
    """Known inodes by node id and by source ``(st_dev, st_ino)``; owns their O_PATH fds.

    Up to ``max_fds`` inodes hold an O_PATH fd; the rest are kept as file handles (``name_to_handle_at``) and
    reopened for each call that needs them, so the number of known inodes is not bounded by the fd limit. Handles
    need CAP_DAC_READ_SEARCH and a source filesystem that can export them; without either, every inode holds its fd.
    """

    def __init__(self, root_fd: int, root_st: os.stat_result, max_fds: int | None = None) -> None:
        self._lock = threading.Lock()
        root = Inode(ROOT_INODE, root_fd, _key(root_st), 1)
        self.root = root
        self._by_id: dict[int, Inode] = {ROOT_INODE: root}
        self._by_key: dict[int, Inode] = {root.key: root}
        self._next = ROOT_INODE + 1
        #: fds of one inode per mount seen below the root, for open_by_handle_at (closed with the table)
        self._mount_fds: dict[int, int] = {}
        self.pinned = 1
        self.max_fds = _default_max_fds() if max_fds is None else max_fds
        self.handles_usable = self._probe_handles(root_fd)

    def _probe_handles(self, root_fd: int) -> bool:
        mount_fd = -1
        try:
            handle, mount_id = _name_to_handle(root_fd)
            mount_fd = _mount_fd(root_fd)
            os.close(_open_by_handle(mount_fd, handle))
        except OSError as e:
            log.debug("inodes keep their fds: file handles unusable here (%s)", e.strerror)
            if mount_fd >= 0:
                os.close(mount_fd)
            return False
        self._mount_fds[mount_id] = mount_fd
        return True

    def __len__(self) -> int:
        return len(self._by_id)

    def borrow(self, nodeid: int) -> Inode | _LentFd:
        """``with table.borrow(nodeid) as fd``: the inode's O_PATH fd for the length of one call."""
        inode = self._by_id.get(nodeid)
        if inode is None:
            raise FUSEError(errno.ESTALE)
        if inode.fd >= 0:
            return inode
        # ESTALE if the inode was deleted behind our back; the request loop answers it as that errno
        return _LentFd(_open_by_handle(self._mount_fds[inode.mount], inode.handle))

    def remember(self, fd: int, st: os.stat_result) -> Inode:
        """Count one lookup of the inode ``fd`` refers to; the table takes ``fd`` (closing it if already known)."""
        key = _key(st)
        with self._lock:
            inode = self._by_key.get(key)
            if inode is not None and (inode.fd >= 0 or self._handle_alive(inode)):
                inode.nlookup += 1
            else:
                # A new inode; or one kept as a handle (which, unlike an fd, does not keep a deleted inode from being
                # freed) whose number the source gave to a new file while the kernel still knows the old node id
                # (its FORGET on the way). The new file gets a node id of its own: the old one answers ESTALE.
                inode = Inode(self._next, fd, key, 1)
                self._next += 1
                self._by_id[inode.nodeid] = inode
                self._by_key[key] = inode
                if self.pinned < self.max_fds or not self.handles_usable or not self._to_handle(inode):
                    self.pinned += 1
                return inode
        os.close(fd)
        return inode

    def _handle_alive(self, inode: Inode) -> bool:
        """Whether the file behind a handle-kept inode still exists (the handle carries its generation, so a
        reused number does not match)."""
        try:
            os.close(_open_by_handle(self._mount_fds[inode.mount], inode.handle))
        except OSError:
            return False
        return True

    def _to_handle(self, inode: Inode) -> bool:
        """Trade the inode's fd for its file handle (under the lock); False if it has none."""
        try:
            inode.handle, inode.mount = _name_to_handle(inode.fd)
        except OSError:
            return False
        if inode.mount not in self._mount_fds:
            try:
                self._mount_fds[inode.mount] = _mount_fd(inode.fd)
            except OSError:
                return False  # a mount entered at something other than a directory: keep the fd
        os.close(inode.fd)
        inode.fd = -1
        return True

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
            if inode.fd < 0:
                return
            self.pinned -= 1
        os.close(inode.fd)

    def close(self) -> None:
        with self._lock:
            for inode in self._by_id.values():
                if inode.nodeid != ROOT_INODE and inode.fd >= 0:
                    os.close(inode.fd)
            for fd in self._mount_fds.values():
                os.close(fd)
            self._mount_fds.clear()
            self._by_id = {ROOT_INODE: self.root}
            self._by_key = {self.root.key: self.root}
            self.pinned = 1


def _default_max_fds() -> int:
    # Half the fd limit (raised by the CLI where it may be), the other half for open files and directories.
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return max(64, soft // 2) if soft != resource.RLIM_INFINITY else 1 << 20


class _DirHandle:
    __slots__ = ("fd", "is_root", "entries")

    def __init__(self, fd: int, is_root: bool) -> None:
        self.fd = fd
        self.is_root = is_root
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
    with the caller's credentials (needed whenever users other than root reach the mount). ``inode_fds`` bounds
    the O_PATH fds held for known inodes (default: half the fd limit); see :class:`InodeTable`."""

    def __init__(
        self,
        source: str,
        *,
        cache: str = "auto",
        as_caller: bool = True,
        inode_fds: int | None = None,
        clears_setid_bits: bool = True,
    ) -> None:
        # Every open answers with a passthrough_fd and setattr honours kill_suidgid, so HANDLE_KILLPRIV_V2 may be
        # asked for (-o killpriv=off declines it).
        self.clears_setid_bits = clears_setid_bits
        if cache not in CACHE_MODES:
            raise ValueError(f"cache must be one of {', '.join(CACHE_MODES)}")
        self.source = os.path.realpath(source)
        self.cache = cache
        self.timeout, self.negative_timeout = CACHE_MODES[cache]
        self.as_caller = as_caller
        root_fd = os.open(self.source, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.inodes = InodeTable(root_fd, os.fstat(root_fd), inode_fds)
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

    def _lookup_fd(self, parent: int, name: bytes) -> EntryAttributes:
        """Remember ``name`` below the directory fd ``parent``."""
        return self._remember(os.open(name, O_PATH_FLAGS, dir_fd=parent))

    # ---- names and attributes
    def lookup(self, parent: int, name: bytes, ctx: RequestContext) -> EntryAttributes:
        if name == b"..":
            raise FUSEError(errno.EINVAL)  # only sent with export support, which we do not offer
        try:
            with self.inodes.borrow(parent) as pfd:
                return self._lookup_fd(pfd, name)
        except FileNotFoundError:
            if self.negative_timeout:
                return EntryAttributes(st_ino=0, entry_timeout=self.negative_timeout, attr_timeout=0)
            raise

    def forget(self, inodes: Sequence[tuple[int, int]]) -> None:
        forget = self.inodes.forget
        for nodeid, nlookup in inodes:
            forget(nodeid, nlookup)

    def getattr(self, inode: int, fh: int | None, ctx: RequestContext) -> EntryAttributes:
        if fh is not None:
            return self._attrs(inode, os.fstat(fh))
        with self.inodes.borrow(inode) as fd:
            return self._attrs(inode, os.fstat(fd))

    def setattr(
        self, inode: int, attr: EntryAttributes, fields: SetattrFields, fh: int | None, ctx: RequestContext
    ) -> EntryAttributes:
        with self.inodes.borrow(inode) as fd:
            return self._setattr(inode, fd, attr, fields, fh, ctx)

    def _setattr(
        self, inode: int, fd: int, attr: EntryAttributes, fields: SetattrFields, fh: int | None, ctx: RequestContext
    ) -> EntryAttributes:
        if fields.update_mode:
            mode = stat.S_IMODE(attr.st_mode)
            if fh is not None:
                os.fchmod(fh, mode)
            else:
                os.chmod(_proc(fd), mode)
        if fields.update_uid or fields.update_gid:
            uid = attr.st_uid if fields.update_uid else 0xFFFFFFFF
            gid = attr.st_gid if fields.update_gid else 0xFFFFFFFF
            _check(_libc.fchownat(fd, b"", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW))
        if fields.update_size:
            if fh is not None:
                os.ftruncate(fh, attr.st_size)
            else:
                os.truncate(_proc(fd), attr.st_size)
        if fields.kill_suidgid and not (fields.update_uid or fields.update_gid):
            # A truncate, or the kernel's file_remove_privs before a passthrough write, by a caller without
            # CAP_FSETID. (The kernel flags every chown too; the source's own chown above already did what it does.)
            clear_setid_bits(fd, ctx.gid, ctx.pid)
        if fields.update_atime or fields.update_mtime:
            times = (_Timespec * 2)(
                _timespec(attr.st_atime_ns) if fields.update_atime else _Timespec(0, UTIME_OMIT),
                _timespec(attr.st_mtime_ns) if fields.update_mtime else _Timespec(0, UTIME_OMIT),
            )
            _check(_libc.utimensat(fd, b"", times, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW))
        return self._attrs(inode, os.fstat(fd if fh is None else fh))

    def readlink(self, inode: int, ctx: RequestContext) -> bytes:
        with self.inodes.borrow(inode) as fd:
            return os.readlink(b"", dir_fd=fd)

    def statx(self, inode: int, fh: int | None, mask: int, flags: int, ctx: RequestContext) -> tuple[bytes, float]:
        buf = ctypes.create_string_buffer(abi.STATX_SIZE)
        flags = AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW
        if fh is not None:
            _check(_libc.statx(fh, b"", flags, mask | abi.STATX_BASIC_STATS, buf))
        else:
            with self.inodes.borrow(inode) as fd:
                _check(_libc.statx(fd, b"", flags, mask | abi.STATX_BASIC_STATS, buf))
        return buf.raw, self.timeout

    # ---- creating and removing names
    def mknod(self, parent: int, name: bytes, mode: int, rdev: int, ctx: RequestContext) -> EntryAttributes:
        with self.inodes.borrow(parent) as pfd:
            with self._caller(ctx):
                os.mknod(name, mode, rdev, dir_fd=pfd)
            return self._lookup_fd(pfd, name)

    def mkdir(self, parent: int, name: bytes, mode: int, ctx: RequestContext) -> EntryAttributes:
        with self.inodes.borrow(parent) as pfd:
            with self._caller(ctx):
                os.mkdir(name, stat.S_IMODE(mode), dir_fd=pfd)
            return self._lookup_fd(pfd, name)

    def symlink(self, parent: int, name: bytes, target: bytes, ctx: RequestContext) -> EntryAttributes:
        with self.inodes.borrow(parent) as pfd:
            with self._caller(ctx):
                os.symlink(target, name, dir_fd=pfd)
            return self._lookup_fd(pfd, name)

    def link(self, inode: int, new_parent: int, new_name: bytes, ctx: RequestContext) -> EntryAttributes:
        with self.inodes.borrow(inode) as fd, self.inodes.borrow(new_parent) as pfd:
            with self._caller(ctx):
                # AT_EMPTY_PATH links the fd's own inode (symlinks too); it needs CAP_DAC_READ_SEARCH, so a
                # non-root daemon goes through /proc, which the kernel allows to the fd's owner.
                if _libc.linkat(fd, b"", pfd, new_name, AT_EMPTY_PATH) != 0:
                    err = ctypes.get_errno()
                    if err not in (errno.ENOENT, errno.EPERM):
                        raise OSError(err, os.strerror(err))
                    os.link(_proc(fd), new_name, dst_dir_fd=pfd, follow_symlinks=True)
            return self._lookup_fd(pfd, new_name)

    def unlink(self, parent: int, name: bytes, ctx: RequestContext) -> None:
        with self.inodes.borrow(parent) as pfd:
            os.unlink(name, dir_fd=pfd)

    def rmdir(self, parent: int, name: bytes, ctx: RequestContext) -> None:
        with self.inodes.borrow(parent) as pfd:
            os.rmdir(name, dir_fd=pfd)

    def rename(
        self, parent_old: int, name_old: bytes, parent_new: int, name_new: bytes, flags: int, ctx: RequestContext
    ) -> None:
        with self.inodes.borrow(parent_old) as old, self.inodes.borrow(parent_new) as new:
            if flags:
                _check(_libc.renameat2(old, name_old, new, name_new, flags))
            else:
                os.rename(name_old, name_new, src_dir_fd=old, dst_dir_fd=new)

    # ---- files
    def _file_info(self, fd: int, flags: int) -> FileInfo:
        return FileInfo(
            fh=fd,
            passthrough_fd=fd,
            # Served in userspace, a write-only open gains nothing from FUSE's page cache (nothing reads through it)
            # and its writes skip a copy into it; the kernel invalidates other opens' cached pages it writes over.
            direct_io=self.cache == "none" or (flags & os.O_ACCMODE) == os.O_WRONLY,
            keep_cache=self.cache == "always",
            noflush=True,  # flush() does nothing here, and the kernel still flushes a writeback cache first
        )

    @staticmethod
    def _fd_flags(flags: int) -> int:
        # Our fd is for passthrough registration and userspace I/O at the kernel's offsets: O_APPEND, O_DIRECT and
        # the sync flags are the kernel's business (it re-opens the backing file with the user's own flags).
        return (flags & (os.O_ACCMODE | os.O_TRUNC)) | os.O_CLOEXEC

    def open(self, inode: int, flags: int, ctx: RequestContext) -> FileInfo:
        with self.inodes.borrow(inode) as path_fd, self._caller(ctx):
            fd = os.open(_proc(path_fd), self._fd_flags(flags))
        return self._file_info(fd, flags)

    def create(
        self, parent: int, name: bytes, mode: int, flags: int, ctx: RequestContext
    ) -> tuple[FileInfo, EntryAttributes]:
        with self.inodes.borrow(parent) as pfd, self._caller(ctx):
            fd = os.open(
                name,
                self._fd_flags(flags) | os.O_CREAT | os.O_NOFOLLOW | (flags & os.O_EXCL),
                stat.S_IMODE(mode),
                dir_fd=pfd,
            )
        return self._opened_new(fd, flags)

    def tmpfile(self, parent: int, mode: int, flags: int, ctx: RequestContext) -> tuple[FileInfo, EntryAttributes]:
        access = flags & os.O_ACCMODE or os.O_RDWR
        tmp_flags = os.O_TMPFILE | access | os.O_CLOEXEC | (flags & os.O_EXCL)
        with self.inodes.borrow(parent) as pfd, self._caller(ctx):
            fd = os.open(b".", tmp_flags, stat.S_IMODE(mode), dir_fd=pfd)
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
        with self.inodes.borrow(inode) as path_fd, self._caller(ctx):
            # Through /proc, not as "." below the fd: resolving "." would need search permission on the directory
            # itself, where opendir(3) needs only read permission.
            fd = os.open(_proc(path_fd), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._dirs[fd] = _DirHandle(fd, inode == ROOT_INODE)
        return fd

    def _list(self, handle: _DirHandle) -> list[tuple[bytes, int, int]]:
        st = os.fstat(handle.fd)
        if handle.is_root:
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
        with self.inodes.borrow(inode) as fd, self._caller(ctx):
            ok = os.access(_proc(fd), mode, effective_ids=True)
        if not ok:
            raise FUSEError(errno.EACCES)

    def setxattr(self, inode: int, name: bytes, value: bytes, flags: int, ctx: RequestContext) -> None:
        with self.inodes.borrow(inode) as fd:
            os.setxattr(_proc(fd), name, value, flags)

    def getxattr(self, inode: int, name: bytes, ctx: RequestContext) -> bytes:
        with self.inodes.borrow(inode) as fd:
            return os.getxattr(_proc(fd), name)

    def listxattr(self, inode: int, ctx: RequestContext) -> list[bytes]:
        with self.inodes.borrow(inode) as fd:
            return [os.fsencode(n) for n in os.listxattr(_proc(fd))]

    def removexattr(self, inode: int, name: bytes, ctx: RequestContext) -> None:
        with self.inodes.borrow(inode) as fd:
            os.removexattr(_proc(fd), name)

    def stats(self) -> dict:
        return {"type": "mirror", "source": self.source, "cache": self.cache, "inodes": len(self.inodes),
                "inode_fds": self.inodes.pinned, "open_dirs": len(self._dirs)}

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
