"""The mirror filesystem: SOURCE seen through FUSE, file data passed through to the kernel.

Every known inode holds an ``O_PATH`` fd of the source inode (or, past a budget of fds, a file handle that reopens
one) and every call is made relative to such an fd with an ``*at()`` call and ``O_NOFOLLOW``, so no path is ever
resolved from a string: ``..``, symlinks and renames racing with lookups cannot lead outside SOURCE. Inodes are keyed
by the source's ``(st_dev, st_ino)``, so hard links are one inode, and forgotten (fd closed) when the kernel forgets
them.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ctypes
import errno
import fcntl
import itertools
import logging
import os
import platform
import resource
import stat
import struct
import threading
import time
from typing import Iterator, Sequence

from . import credentials
from .credentials import Caller, clear_setid_bits, may_access, may_search_all, set_thread_umask
from .libc import libc
from .mount import MS_NOATIME, MS_NODIRATIME, mount_flags
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
    StatxAttributes,
    WouldBlock,
    kept_for,
)
from .options import Config, UsageError, choice, number, on_off

log = logging.getLogger("shuntfs.mirror")

_libc = libc
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_SYMLINK_NOFOLLOW = 0x100
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2
RENAME_EXCHANGE = 2
#: in OPEN's flags: the kernel opens the file to execute it (execve), which needs execute permission, not read
_FMODE_EXEC = 0x20
O_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


_libc.utimensat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(_Timespec), ctypes.c_int]
_libc.fchownat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint, ctypes.c_uint, ctypes.c_int]
_libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
_libc.statx.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_char_p]
_libc.linkat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
_libc.openat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint]


_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


def _check(result: int) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


#: (entry/attr timeout, negative-entry timeout) per cache mode, as libfuse's passthrough_ll chooses them.
CACHE_MODES = {"none": (0.0, 0.0), "auto": (1.0, 1.0), "always": (86400.0, 86400.0)}


class Inode:
    """One known source inode. ``fd`` is its O_PATH fd, or -1 when the inode is kept as a file ``handle`` instead.
    ``parent`` is the node id of the directory it was last found in (0 for the root): the way a path walk to it
    went, whose search permissions an operation on it must pass.

    Used as a context manager it lends its fd (see :meth:`InodeTable.borrow`)."""

    __slots__ = ("nodeid", "fd", "key", "nlookup", "handle", "mount", "parent", "fresh")

    def __init__(self, nodeid: int, fd: int, key: int, nlookup: int, parent: int = 0) -> None:
        self.nodeid = nodeid
        self.fd = fd
        self.key = key
        self.nlookup = nlookup
        self.handle = b""
        self.mount = 0
        self.parent = parent
        #: until when (time.monotonic) the kernel may use the entry and attributes last given for it
        self.fresh = 0.0

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
_STATX_BUFFER = 256  # struct statx
_STATX_BASIC_STATS = 0x7FF
_HANDLE_HEAD = struct.Struct("Ii")  # struct file_handle: handle_bytes, handle_type
_libc.name_to_handle_at.argtypes = [
    ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int,
]
_libc.open_by_handle_at.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int]


class _HandleReader:
    """name_to_handle_at into buffers made once: it runs for every inode the kernel forgets. Not thread-safe: each
    InodeTable uses its own under its lock."""

    def __init__(self) -> None:
        self._buf = ctypes.create_string_buffer(_HANDLE_HEAD.size + _MAX_HANDLE_SZ)
        self._view = memoryview(self._buf).cast("B")
        self._mount_id = ctypes.c_int()

    def __call__(self, fd: int) -> tuple[bytes, int]:
        """The file handle of the inode ``fd`` refers to, and its mount id."""
        view = self._view
        _HANDLE_HEAD.pack_into(view, 0, _MAX_HANDLE_SZ, 0)
        _check(_libc.name_to_handle_at(fd, b"", self._buf, self._mount_id, AT_EMPTY_PATH))
        return view[: _HANDLE_HEAD.size + _HANDLE_HEAD.unpack_from(view)[0]].tobytes(), self._mount_id.value


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

    Up to ``forgotten`` inodes that the kernel has forgotten stay known, as handles, under their node ids (the most
    recently forgotten kept): the kernel's file handles of the mount name a node id, and it asks for one it has
    forgotten (export support) when such a handle is used. A name that leads to one again gets its old node id.
    """

    def __init__(self, root_fd: int, root_st: os.stat_result, max_fds: int | None = None, forgotten: int = 0) -> None:
        self._lock = threading.Lock()
        self._handle_of = _HandleReader()  # under the lock
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
        self.forgotten_max = forgotten if self.handles_usable else 0
        #: forgotten inodes by node id, the one forgotten longest ago first
        self._forgotten: collections.OrderedDict[int, Inode] = collections.OrderedDict()

    def _probe_handles(self, root_fd: int) -> bool:
        mount_fd = -1
        try:
            handle, mount_id = self._handle_of(root_fd)
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
        """How many inodes the kernel knows."""
        return len(self._by_id) - len(self._forgotten)

    @property
    def forgotten(self) -> int:
        return len(self._forgotten)

    def fd_of(self, nodeid: int) -> int:
        """The O_PATH fd of a known inode that keeps one; -1 for one kept as a handle, or not known (then
        :meth:`borrow` lends an fd, or says ESTALE). The common case of a call on an inode, without a context."""
        inode = self._by_id.get(nodeid)
        return -1 if inode is None else inode.fd

    def fresh(self, dev: int, ino: int, now: float) -> bool:
        """Whether the kernel holds the source inode ``(dev, ino)`` with an entry and attributes that a reply gave
        it less than their timeouts before ``now``."""
        inode = self._by_key.get((dev << 64) | ino)
        return inode is not None and inode.fresh > now and inode.nlookup > 0

    def dev_of(self, nodeid: int) -> int:
        """The source device of a known inode (ESTALE if not known)."""
        inode = self._by_id.get(nodeid)
        if inode is None:
            raise FUSEError(errno.ESTALE)
        return inode.key >> 64

    def borrow(self, nodeid: int) -> Inode | _LentFd:
        """``with table.borrow(nodeid) as fd``: the inode's O_PATH fd for the length of one call."""
        inode = self._by_id.get(nodeid)
        if inode is None:
            raise FUSEError(errno.ESTALE)
        if inode.fd >= 0:
            return inode
        # ESTALE if the inode was deleted behind our back; the request loop answers it as that errno
        return _LentFd(_open_by_handle(self._mount_fds[inode.mount], inode.handle))

    def remember(self, fd: int, st: os.stat_result, parent: int | None = 0) -> Inode:
        """Count one lookup of the inode ``fd`` refers to, found in directory ``parent`` (None: the way to it is
        not known, and a record of it stays); the table takes ``fd`` (closing it if already known)."""
        key = _key(st)
        with self._lock:
            inode = self._by_key.get(key)
            if inode is not None and (inode.fd >= 0 or self._same_file(inode, fd)):
                if not inode.nlookup:  # forgotten by the kernel; it knows the node id again
                    del self._forgotten[inode.nodeid]
                    if self.pinned < self.max_fds:
                        inode.fd, fd = fd, -1
                        self.pinned += 1
                inode.nlookup += 1
                if parent is not None:
                    inode.parent = parent
            else:
                # A new inode; or one kept as a handle (which, unlike an fd, does not keep a deleted inode from being
                # freed) whose number the source gave to a new file while the kernel still knows the old node id
                # (its FORGET on the way), or has forgotten it. The new file gets a node id of its own: the old one
                # answers ESTALE.
                if inode is not None and not inode.nlookup:
                    self._drop(inode)
                inode = Inode(self._next, fd, key, 1, parent or 0)
                self._next += 1
                self._by_id[inode.nodeid] = inode
                self._by_key[key] = inode
                if self.pinned < self.max_fds or not self.handles_usable or not self._to_handle(inode):
                    self.pinned += 1
                return inode
        if fd >= 0:
            os.close(fd)
        return inode

    def _same_file(self, inode: Inode, fd: int) -> bool:
        """Whether ``fd`` refers to the file a handle-kept inode stands for (under the lock). The handle carries the
        inode's generation, so a file that was given a deleted one's number does not match."""
        try:
            return self._handle_of(fd)[0] == inode.handle
        except OSError:
            return False

    def _to_handle(self, inode: Inode) -> bool:
        """Trade the inode's fd for its file handle (under the lock); False if it has none."""
        try:
            inode.handle, inode.mount = self._handle_of(inode.fd)
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

    def moved(self, st: os.stat_result, parent: int) -> None:
        """The source inode ``st`` is now found in directory ``parent`` (a rename through the mount)."""
        inode = self._by_key.get(_key(st))
        if inode is not None:
            inode.parent = parent

    def above(self, nodeid: int) -> list[int | _LentFd]:
        """Fds of the directories a path walk to ``nodeid`` passes through, from its parent up to the root: ints
        for inodes that hold their fd, lent fds (to close) for those kept as handles. A parent the kernel has
        forgotten ends the list: the walk is then unknown above it."""
        chain: list[int | _LentFd] = []
        by_id = self._by_id
        inode = by_id.get(nodeid)
        try:
            while inode is not None and inode.parent and len(chain) < 4096:
                inode = by_id.get(inode.parent)
                if inode is None:
                    break
                chain.append(inode.fd if inode.fd >= 0 else _LentFd(_open_by_handle(self._mount_fds[inode.mount],
                                                                                  inode.handle)))
        except OSError:
            pass  # an ancestor deleted behind the mount: the walk above it cannot be known
        return chain

    def forget(self, nodeid: int, nlookup: int) -> None:
        with self._lock:
            inode = self._by_id.get(nodeid)
            if inode is None or nodeid == ROOT_INODE or inode.nlookup <= 0:
                return
            inode.nlookup -= nlookup
            if inode.nlookup > 0:
                return
            inode.nlookup = 0
            pinned = inode.fd >= 0
            if self.forgotten_max and self._by_key.get(inode.key) is inode and (not pinned or self._to_handle(inode)):
                self.pinned -= pinned
                self._forgotten[nodeid] = inode
                if len(self._forgotten) > self.forgotten_max:
                    self._drop(self._forgotten.popitem(last=False)[1])
                return
            self._drop(inode)
            if not pinned:
                return
            self.pinned -= 1
        os.close(inode.fd)

    def open_again(self, nodeid: int, parent: bool) -> int:
        """A new O_PATH fd of the inode ``nodeid`` (``parent``: of its parent directory), for a LOOKUP by node id.
        Such a lookup may race with the FORGET of the same node id (the kernel sends it for inodes it has dropped,
        FORGET maybe still on its way), which closes the inode's fd: hence the lock. ESTALE if the node id is not
        known or its file is gone."""
        with self._lock:
            inode = self._by_id.get(nodeid)
            if inode is None:
                raise FUSEError(errno.ESTALE)
            if inode.fd >= 0:
                if not parent:
                    return os.open(_proc(inode.fd), os.O_PATH | os.O_CLOEXEC)
                return os.open("..", O_PATH_FLAGS | os.O_DIRECTORY, dir_fd=inode.fd)
            fd = _open_by_handle(self._mount_fds[inode.mount], inode.handle)
        if not parent:
            return fd
        try:
            return os.open("..", O_PATH_FLAGS | os.O_DIRECTORY, dir_fd=fd)
        finally:
            os.close(fd)

    def _drop(self, inode: Inode) -> None:
        """Let an inode go (under the lock; its fd, if any, is the caller's to close)."""
        del self._by_id[inode.nodeid]
        self._forgotten.pop(inode.nodeid, None)
        if self._by_key.get(inode.key) is inode:
            del self._by_key[inode.key]

    def inside(self, fd: int) -> bool:
        """Whether the directory ``fd`` lies below the root: a directory moved out of the source behind the mount
        is no longer the mount's, though a handle still finds it."""
        root_key = self.root.key
        key = _key(os.fstat(fd))
        up = -1
        try:
            for _ in range(4096):
                if key == root_key:
                    return True
                above = os.open("..", O_PATH_FLAGS | os.O_DIRECTORY, dir_fd=fd if up < 0 else up)
                if up >= 0:
                    os.close(up)
                up = above
                above_key = _key(os.fstat(up))
                if above_key == key:
                    return False  # the top of the tree
                key = above_key
            return False
        finally:
            if up >= 0:
                os.close(up)

    def close(self) -> None:
        with self._lock:
            for inode in self._by_id.values():
                if inode.nodeid != ROOT_INODE and inode.fd >= 0:
                    os.close(inode.fd)
            for fd in self._mount_fds.values():
                os.close(fd)
            self._mount_fds.clear()
            self._forgotten.clear()
            self._by_id = {ROOT_INODE: self.root}
            self._by_key = {self.root.key: self.root}
            self.pinned = 1


def _default_user_files() -> int:
    # An eighth of the fd limit: one user cannot take the fds that everyone else's opens and lookups need.
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return max(64, soft // 8) if soft != resource.RLIM_INFINITY else 1 << 17


def _default_max_fds() -> int:
    # Half the fd limit (raised by the CLI where it may be), the other half for open files and directories.
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return max(64, soft // 2) if soft != resource.RLIM_INFINITY else 1 << 20


class _Share:
    """The fd of one inode opened with one access mode, and how many open files use it."""

    __slots__ = ("fd", "opens")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.opens = 1


class _Open:
    """One open file: its share's key and fd, and the user it counts against (0: root, who is not counted)."""

    __slots__ = ("key", "fd", "uid")

    def __init__(self, key: tuple[int, int], fd: int, uid: int) -> None:
        self.key = key
        self.fd = fd
        self.uid = uid


class _AsCaller:
    """Run a ``with`` body as the caller, after checking that the caller may search every directory in ``chain``
    (the walk to the inode the body works on, which a call through an fd or a /proc link would skip)."""

    __slots__ = ("caller", "chain")

    def __init__(self, caller: Caller, chain: list[int | _LentFd]) -> None:
        self.caller = caller
        self.chain = chain

    def __enter__(self) -> None:
        self.caller.__enter__()
        if not may_search_all(self.chain):
            self.__exit__()
            raise FUSEError(errno.EACCES)

    def __exit__(self, *exc: object) -> None:
        self.caller.__exit__()
        for fd in self.chain:
            if type(fd) is not int:
                os.close(fd.fd)  # type: ignore[union-attr]
        self.chain = []


_AS_ROOT = contextlib.nullcontext()


class _Reservation:
    """One open file or directory of a user, counted against ``Mirror.user_files`` (see ``Mirror._reserve``)."""

    __slots__ = ("mirror", "uid")

    def __init__(self, mirror: Mirror, uid: int) -> None:
        self.mirror = mirror
        self.uid = uid

    def __enter__(self) -> None:
        self.mirror._take(self.uid)

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is not None:
            self.mirror._unreserve(self.uid)


class _DirHandle:
    """An open directory: its fd, read with getdents64 from the kernel's offset. The offsets are the source's own
    directory cookies (seekable, stable across changes), so a handle costs one fd and at most one batch of entries
    (the last getdents64, which the next READDIR usually continues), however large the directory and however many
    handles are open on it."""

    __slots__ = ("fd", "root_ino", "dev", "lock", "batch", "resume")

    def __init__(self, fd: int, root_ino: int, dev: int) -> None:
        self.fd = fd
        self.root_ino = root_ino  # the root's inode number, which its ".." shows (0 for other directories)
        self.dev = dev  # the directory's source device, which its entries' inode numbers are of
        self.lock = threading.Lock()
        self.batch: list[DirEntry] = []  # the entries of the last getdents64
        self.resume: dict[int, int] = {}  # cookie -> index in batch of the entry that follows it


def _parse_dirents(data: bytes, start: int, root_ino: int) -> tuple[list[DirEntry], dict[int, int]]:
    """The entries of a getdents64 result read from cookie ``start``, and where each cookie resumes in them."""
    entries: list[DirEntry] = []
    resume = {start: 0}
    unpack, find, pos, end = _DIRENT64.unpack_from, data.index, 0, len(data)
    while pos < end:
        ino, off, reclen, dtype = unpack(data, pos)
        name = data[pos + 19: find(b"\0", pos + 19)]
        pos += reclen
        if root_ino and name == b"..":
            ino = root_ino  # not the directory SOURCE sits in
        off &= 0xFFFFFFFFFFFFFFFF
        entries.append(DirEntry(name, ino, dtype, off))
        resume[off] = len(entries)
    return entries, resume


_GETDENTS64 = {"x86_64": 217, "aarch64": 61, "riscv64": 61, "ppc64le": 202, "s390x": 220}.get(platform.machine(), 217)
_DIRENT64 = struct.Struct("QqHB")  # d_ino, d_off, d_reclen, d_type; the name follows, NUL-terminated
_DIRENT_BUFFER = 4096
_dirent_buffers = threading.local()


def _dirent_buffer() -> ctypes.Array:
    buf = getattr(_dirent_buffers, "buf", None)
    if buf is None:
        buf = _dirent_buffers.buf = ctypes.create_string_buffer(_DIRENT_BUFFER)
    return buf


def _proc(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


class Mirror(Operations):
    """Mirror ``source``. ``cache`` is none/auto/always.

    Public, and meant to be subclassed for a mirror with a twist (hide, filter, log, rewrite): override a handler,
    call ``super()``, and use :meth:`path` to decide by name. Constructing it changes no process-wide state. The
    kernel keeps listings (``cache_listings``, on unless ``cache="none"``): a subclass whose listings depend on who
    asks, or change while the directory's mtime stays, sets it False.

    ``as_caller`` makes a root daemon do every operation that the source checks with the caller's credentials
    (needed whenever users other than root reach the mount), so the source decides each one on the real inode.
    ``posix_acl`` lets the kernel check mode bits and ACLs before it asks (FUSE_POSIX_ACL), which a mount that other
    users reach needs: the kernel answers ``stat`` below a directory they may not search from its own cache.
    ``inode_fds`` bounds the O_PATH fds held for known inodes (default: half the fd limit); see
    :class:`InodeTable`. ``user_files`` bounds the open files and directories that one user other than root may
    hold through the mount (default: an eighth of the fd limit): past it, that user's opens fail with EMFILE and
    everyone else's keep working. ``noatime`` (files and directories) and ``nodiratime`` (directories) open with
    O_NOATIME where the source lets the caller (its own files; root's opens always), so reads through the mount
    leave the source's access times alone; the kernel's passthrough opens the backing file with the reader's own
    flags, and there it cannot. ``export_inodes`` bounds the inodes the kernel has forgotten whose node ids stay
    valid for its file handles (NFS export, ``open_by_handle_at``); 0 turns export support off, as does a daemon
    without CAP_DAC_READ_SEARCH."""

    # Creations run as the caller apply its umask where the source would (not under a default ACL).
    applies_umask = True
    # The owners and modes shown are SOURCE's: uid=, gid= and umask= do not apply.
    settings = frozenset({"entry_timeout", "attr_timeout", "negative_timeout", "kernel_cache"})

    # ---- as a command (``shuntfs SOURCE MOUNTPOINT``, or ``shuntfs.main(MyMirror)`` for a subclass)
    command_options = [
        choice("cache", CACHE_MODES, "kernel caching of names and attributes", default="auto"),
        number("inode_fds", 1, 1 << 30, "known inodes that keep an O_PATH fd"),
        number("user_files", 1, 1 << 30, "open files one user other than root may hold"),
        number("export_inodes", 0, 1 << 30, "forgotten inodes kept for file handles (0: no export support)",
               default=65536),
        on_off("killpriv", "FUSE_HANDLE_KILLPRIV_V2 (default on)"),
    ]

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("source", metavar="SOURCE")
        parser.add_argument("--cache", choices=sorted(CACHE_MODES), default=argparse.SUPPRESS,
                            help="kernel caching: none, auto (default), always")

    @classmethod
    def from_arguments(cls, config: Config) -> Mirror:
        """The mirror of ``config.source``: refused in one line when SOURCE is not a directory or holds the
        mountpoint (the daemon's own lookups would enter its mount and wait on themselves for good)."""
        src = config.source
        if not os.path.exists(src):
            raise UsageError(f"source {src}: no such file or directory")
        if not os.path.isdir(src):
            raise UsageError(f"source {src}: not a directory")
        if os.path.realpath(config.mountpoint).startswith(os.path.realpath(src).rstrip("/") + "/"):
            raise UsageError(f"mountpoint {config.mountpoint}: lies inside source {src}")
        if config.fsname is None:
            config.fsname = os.path.realpath(src)
        atime = mount_flags(config.mount_words, 0)
        # Other users' permissions are checked by the kernel too (ACLs included) where they can reach the mount; a
        # mount only its owner uses spares the refreshes of directory attributes that kernel checks need.
        return cls(src, cache=config.cache, inode_fds=config.inode_fds, clears_setid_bits=config.killpriv,
                   user_files=config.user_files, posix_acl=config.allow_other or config.default_permissions,
                   noatime=bool(atime & MS_NOATIME), nodiratime=bool(atime & MS_NODIRATIME),
                   export_inodes=config.export_inodes)

    def __init__(
        self,
        source: str,
        *,
        cache: str = "auto",
        as_caller: bool = True,
        inode_fds: int | None = None,
        clears_setid_bits: bool = True,
        user_files: int | None = None,
        posix_acl: bool = True,
        noatime: bool = False,
        nodiratime: bool = False,
        export_inodes: int = 65536,
    ) -> None:
        # Every open answers with a passthrough_fd and setattr honours kill_suidgid, so HANDLE_KILLPRIV_V2 may be
        # asked for (-o killpriv=off declines it).
        self.clears_setid_bits = clears_setid_bits
        self.posix_acl = posix_acl
        self._file_noatime = os.O_NOATIME if noatime else 0
        self._dir_noatime = os.O_NOATIME if noatime or nodiratime else 0
        if cache not in CACHE_MODES:
            raise ValueError(f"cache must be one of {', '.join(CACHE_MODES)}")
        self.source = self.backing_source = os.path.realpath(source)
        self.cache = cache
        timeout, self.negative_timeout = CACHE_MODES[cache]
        self.entry_timeout = self.attr_timeout = timeout
        self.kernel_cache = cache == "always"
        self.cache_symlinks = cache != "none"
        # The source's directories change their mtime with their entries (to the nanosecond where the kernel has
        # multigrain timestamps, ext4 and tmpfs among them), so a listing the kernel keeps is checked by it.
        self.cache_listings = cache != "none"
        self.as_caller = as_caller and credentials.AVAILABLE
        root_fd = os.open(self.source, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.inodes = InodeTable(root_fd, os.fstat(root_fd), inode_fds, export_inodes)
        # File handles of the mount outlive the kernel's inode cache where the forgotten inodes can be kept.
        self.export_support = self.inodes.forgotten_max > 0
        # Node ids start again with every daemon: a handle of an earlier one must not name a file of this one.
        self.generation = int.from_bytes(os.urandom(4), "little") or 1
        self._dirs: dict[int, _DirHandle] = {}
        self._lock = threading.Lock()  # guards the records of open files and what users hold
        #: one fd per inode and access mode, shared by all its opens; and each open file by its fh
        self._shares: dict[tuple[int, int], _Share] = {}
        self._opens: dict[int, _Open] = {}
        self._next_fh = itertools.count(1).__next__
        self.user_files = _default_user_files() if user_files is None else user_files
        #: open files and directories per user other than root, and the user of each open directory
        self._held: dict[int, int] = {}
        self._holder: dict[int, int] = {}

    # ---- helpers
    def _attrs(self, nodeid: int, st: os.stat_result) -> EntryAttributes:
        attrs = EntryAttributes.from_stat(nodeid, st, self.entry_timeout, self.attr_timeout)
        if nodeid != ROOT_INODE:  # the kernel wants generation 0 for the root
            attrs.generation = self.generation
        return attrs

    def path(self, inode: int) -> str:
        """Where ``inode`` is now, relative to SOURCE ("" for SOURCE itself), for subclasses that decide by name. It
        is read from the inode's own fd, so renames made behind the mount show. ENOENT once the file has no name
        (or lies outside SOURCE), ESTALE for a node id the kernel has not been given."""
        with self.inodes.borrow(inode) as fd:
            if not os.fstat(fd).st_nlink:
                raise FUSEError(errno.ENOENT)
            where = os.readlink(_proc(fd))
        relative = os.path.relpath(where, self.source)
        if relative == ".":
            return ""
        if relative == ".." or relative.startswith("../"):
            raise FUSEError(errno.ENOENT)
        return relative

    def _caller(
        self, ctx: RequestContext, below: int = 0, capabilities: bool = False
    ) -> _AsCaller | Caller | contextlib.nullcontext:
        """Act as the caller; with ``below`` (a node id), first check that the caller may search the directories
        above that inode, as the path walk that led to it would have (the kernel's own check used cached
        attributes, and calls through an fd or a /proc link check nothing on the way). ``capabilities``: drop the
        daemon's other capabilities too (see Caller)."""
        if ctx.uid == 0 or not self.as_caller:
            return _AS_ROOT
        caller = Caller(ctx.uid, ctx.gid, ctx.pid, capabilities)
        if below:
            chain = self.inodes.above(below)
            if chain:
                return _AsCaller(caller, chain)
        return caller

    def _own_fd(self, nodeid: int, ctx: RequestContext) -> int:
        """The inode's fd when a call on it needs nothing set up and undone around it: the inode keeps its fd and
        the daemon acts as itself for this caller (root, or ``as_caller`` off). Else -1: borrow the fd and act as
        the caller. The hot handlers take this way first; with-blocks cost more than their syscalls' setup."""
        if ctx.uid and self.as_caller:
            return -1
        return self.inodes.fd_of(nodeid)

    def _reserve(self, ctx: RequestContext) -> _Reservation | contextlib.nullcontext:
        """``with self._reserve(ctx):`` around an open: one more open file or directory for the caller, or EMFILE
        past ``user_files``; given back if the body fails."""
        return _Reservation(self, ctx.uid) if ctx.uid else _AS_ROOT

    def _take(self, uid: int) -> None:
        with self._lock:
            held = self._held.get(uid, 0)
            if held >= self.user_files:
                raise FUSEError(errno.EMFILE)
            self._held[uid] = held + 1

    def _unreserve(self, uid: int) -> None:
        with self._lock:
            left = self._held[uid] - 1
            if left:
                self._held[uid] = left
            else:
                del self._held[uid]

    def _fd(self, fh: int) -> int:
        """The fd an open file's calls go to."""
        record = self._opens.get(fh)
        if record is None:
            raise FUSEError(errno.EBADF)
        return record.fd

    def _remember(self, fd: int, parent: int | None) -> EntryAttributes:
        try:
            st = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        inode = self.inodes.remember(fd, st, parent)
        kept = kept_for(self.entry_timeout, self.attr_timeout)
        if kept:
            inode.fresh = time.monotonic() + kept
        return self._attrs(inode.nodeid, st)

    def _lookup_fd(self, pfd: int, parent: int, name: bytes) -> EntryAttributes:
        """Remember ``name`` below the directory fd ``pfd`` of node ``parent``."""
        return self._remember(os.open(name, O_PATH_FLAGS, dir_fd=pfd), parent)

    # ---- names and attributes
    def lookup(self, parent: int, name: bytes, ctx: RequestContext) -> EntryAttributes:
        if name == b"." or name == b"..":
            return self._lookup_by_handle(parent, name == b"..")
        try:
            pfd = self._own_fd(parent, ctx)
            if pfd >= 0:
                fd = os.open(name, O_PATH_FLAGS, dir_fd=pfd)
            else:
                with self.inodes.borrow(parent) as pfd, self._caller(ctx):
                    fd = os.open(name, O_PATH_FLAGS, dir_fd=pfd)  # the source checks the caller's search permission
            return self._remember(fd, parent)
        except FileNotFoundError:
            if self.negative_timeout:
                return EntryAttributes(st_ino=0, entry_timeout=self.negative_timeout, attr_timeout=0)
            raise

    def _lookup_by_handle(self, nodeid: int, parent: bool) -> EntryAttributes:
        """LOOKUP of "." or ".." (export support only): the kernel is resolving a file handle of ``nodeid`` or its
        parent directory, which it has forgotten. As natively, no search permission is checked on the way; a
        deleted file, or a directory no longer below the source, is ESTALE."""
        found = self.inodes.open_again(nodeid, parent and nodeid != ROOT_INODE)
        try:
            st = os.fstat(found)
            if not st.st_nlink or (stat.S_ISDIR(st.st_mode) and not self.inodes.inside(found)):
                raise FUSEError(errno.ESTALE)
        except BaseException:
            os.close(found)
            raise
        attrs = self._remember(found, None)
        if not parent and attrs.st_ino != nodeid:  # the file is known under another node id: not this handle's
            self.inodes.forget(attrs.st_ino, 1)
            raise FUSEError(errno.ESTALE)
        return attrs

    def forget(self, inodes: Sequence[tuple[int, int]]) -> None:
        forget = self.inodes.forget
        for nodeid, nlookup in inodes:
            forget(nodeid, nlookup)

    def getattr(self, inode: int, fh: int | None, ctx: RequestContext) -> EntryAttributes:
        if fh is not None:
            return self._attrs(inode, os.fstat(self._fd(fh)))
        fd = self.inodes.fd_of(inode)
        if fd >= 0:
            return self._attrs(inode, os.fstat(fd))
        with self.inodes.borrow(inode) as fd:
            return self._attrs(inode, os.fstat(fd))

    def setattr(
        self, inode: int, attr: EntryAttributes, fields: SetattrFields, fh: int | None, ctx: RequestContext
    ) -> EntryAttributes:
        file_fd = None if fh is None else self._fd(fh)
        fd = self._own_fd(inode, ctx)
        if fd >= 0:
            if self._setattr(inode, fd, attr, fields, file_fd):
                clear_setid_bits(fd, ctx.gid, ctx.pid, ctx.uid)
            return self._attrs(inode, os.fstat(fd if file_fd is None else file_fd))
        with self.inodes.borrow(inode) as fd:
            with self._caller(ctx, inode):
                kill = self._setattr(inode, fd, attr, fields, file_fd)
            if kill:
                clear_setid_bits(fd, ctx.gid, ctx.pid, ctx.uid)
            return self._attrs(inode, os.fstat(fd if file_fd is None else file_fd))

    def _setattr(
        self, inode: int, fd: int, attr: EntryAttributes, fields: SetattrFields, file_fd: int | None
    ) -> bool:
        """Each change as the caller: the source checks ownership for chmod, chown and explicit times, write
        permission for truncate and "now" times, and clears set-id bits where the caller lacks CAP_FSETID. True if
        the set-id bits are still to be cleared as a write by the caller would (which needs root)."""
        if fields.update_mode:
            mode = stat.S_IMODE(attr.st_mode)
            if file_fd is not None:
                os.fchmod(file_fd, mode)
            else:
                os.chmod(_proc(fd), mode)
        changes = fields.update_mode or fields.update_size or fields.update_atime or fields.update_mtime
        if fields.update_uid or fields.update_gid or (fields.kill_suidgid and not changes):
            # chown(-1, -1) arrives as a SETATTR that changes nothing, as does the kernel's file_remove_privs before
            # a passthrough write; the source's chown does what chown does (or refuses a caller who may not).
            uid = attr.st_uid if fields.update_uid else 0xFFFFFFFF
            gid = attr.st_gid if fields.update_gid else 0xFFFFFFFF
            if _libc.fchownat(fd, b"", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0:
                err = ctypes.get_errno()
                if fields.update_uid or fields.update_gid or err != errno.EPERM or not self._writing(inode, fd):
                    raise OSError(err, os.strerror(err))
                return True  # the caller may not chown but writes the file through a passthrough open
        if fields.update_size:
            if file_fd is not None:
                os.ftruncate(file_fd, attr.st_size)
            else:
                os.truncate(_proc(fd), attr.st_size)
        if fields.update_atime or fields.update_mtime:
            times = (_Timespec * 2)(
                _timespec(attr.st_atime_ns) if fields.update_atime else _Timespec(0, UTIME_OMIT),
                _timespec(attr.st_mtime_ns) if fields.update_mtime else _Timespec(0, UTIME_OMIT),
            )
            _check(_libc.utimensat(fd, b"", times, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW))
        # A truncate by a caller without CAP_FSETID: done as that caller, the source cleared the bits itself.
        return fields.update_size and fields.kill_suidgid and not self.as_caller

    def _writing(self, inode: int, fd: int) -> bool:
        """Whether a caller (acting now) who may write ``inode`` has it open for writing: then an empty SETATTR
        is the kill before its passthrough write, not a chown."""
        shares = self._shares
        return ((inode, os.O_WRONLY) in shares or (inode, os.O_RDWR) in shares) and may_access(fd, os.W_OK)

    def readlink(self, inode: int, ctx: RequestContext) -> bytes:
        fd = self.inodes.fd_of(inode)
        if fd >= 0:
            return os.readlink(b"", dir_fd=fd)
        with self.inodes.borrow(inode) as fd:
            return os.readlink(b"", dir_fd=fd)

    def statx(self, inode: int, fh: int | None, mask: int, flags: int, ctx: RequestContext) -> StatxAttributes:
        buf = ctypes.create_string_buffer(_STATX_BUFFER)
        flags = AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW
        if fh is not None:
            _check(_libc.statx(self._fd(fh), b"", flags, mask | _STATX_BASIC_STATS, buf))
        else:
            with self.inodes.borrow(inode) as fd:
                _check(_libc.statx(fd, b"", flags, mask | _STATX_BASIC_STATS, buf))
        return StatxAttributes.unpack(buf.raw, self.attr_timeout)

    # ---- creating and removing names
    # Each runs as the caller on the parent's fd: the source checks write and search permission on the parent,
    # the sticky bit, and gives new names the caller's ownership and the mode its umask or default ACL says.
    def mknod(self, parent: int, name: bytes, mode: int, rdev: int, ctx: RequestContext) -> EntryAttributes:
        with self.inodes.borrow(parent) as pfd:
            with self._caller(ctx):
                set_thread_umask(ctx.umask)
                os.mknod(name, mode, rdev, dir_fd=pfd)
            return self._lookup_fd(pfd, parent, name)

    def mkdir(self, parent: int, name: bytes, mode: int, ctx: RequestContext) -> EntryAttributes:
        with self.inodes.borrow(parent) as pfd:
            with self._caller(ctx):
                set_thread_umask(ctx.umask)
                os.mkdir(name, stat.S_IMODE(mode), dir_fd=pfd)
            return self._lookup_fd(pfd, parent, name)

    def symlink(self, parent: int, name: bytes, target: bytes, ctx: RequestContext) -> EntryAttributes:
        with self.inodes.borrow(parent) as pfd:
            with self._caller(ctx):
                os.symlink(target, name, dir_fd=pfd)
            return self._lookup_fd(pfd, parent, name)

    def link(self, inode: int, new_parent: int, new_name: bytes, ctx: RequestContext) -> EntryAttributes:
        with self.inodes.borrow(inode) as fd, self.inodes.borrow(new_parent) as pfd:
            with self._caller(ctx, inode):
                # AT_EMPTY_PATH links the fd's own inode (symlinks too); it needs CAP_DAC_READ_SEARCH, so a
                # caller goes through /proc, which the kernel allows to the fd's owner.
                if _libc.linkat(fd, b"", pfd, new_name, AT_EMPTY_PATH) != 0:
                    err = ctypes.get_errno()
                    if err not in (errno.ENOENT, errno.EPERM):
                        raise OSError(err, os.strerror(err))
                    os.link(_proc(fd), new_name, dst_dir_fd=pfd, follow_symlinks=True)
            return self._lookup_fd(pfd, new_parent, new_name)

    def unlink(self, parent: int, name: bytes, ctx: RequestContext) -> None:
        pfd = self._own_fd(parent, ctx)
        if pfd >= 0:
            os.unlink(name, dir_fd=pfd)
            return
        with self.inodes.borrow(parent) as pfd, self._caller(ctx):
            os.unlink(name, dir_fd=pfd)

    def rmdir(self, parent: int, name: bytes, ctx: RequestContext) -> None:
        with self.inodes.borrow(parent) as pfd, self._caller(ctx):
            os.rmdir(name, dir_fd=pfd)

    def rename(
        self, parent_old: int, name_old: bytes, parent_new: int, name_new: bytes, flags: int, ctx: RequestContext
    ) -> None:
        with self.inodes.borrow(parent_old) as old, self.inodes.borrow(parent_new) as new:
            with self._caller(ctx):
                if flags:
                    _check(_libc.renameat2(old, name_old, new, name_new, flags))
                else:
                    os.rename(name_old, name_new, src_dir_fd=old, dst_dir_fd=new)
            if parent_old != parent_new:
                # The moved inode's walk now goes through its new parent (and, exchanged, the other one's).
                try:
                    self.inodes.moved(os.stat(name_new, dir_fd=new, follow_symlinks=False), parent_new)
                    if flags & RENAME_EXCHANGE:
                        self.inodes.moved(os.stat(name_old, dir_fd=old, follow_symlinks=False), parent_old)
                except OSError:
                    pass  # renamed again behind the mount

    # ---- files
    def _opened(self, inode: int, fd: int, flags: int, uid: int) -> FileInfo:
        """Record an open of ``inode`` by ``uid`` whose fresh ``fd`` the source has just granted it. Every open of an
        inode with one access mode shares one fd (the first's): a user opening a file a thousand times makes the
        daemon hold one fd, not a thousand. The kernel registers the inode's backing file once, from that fd."""
        key = (inode, flags & os.O_ACCMODE)
        with self._lock:
            share = self._shares.get(key)
            if share is None:
                share = self._shares[key] = _Share(fd)
                fd = -1
            else:
                share.opens += 1
            fh = self._next_fh()
            self._opens[fh] = _Open(key, share.fd, uid)
        if fd >= 0:
            os.close(fd)  # its permission check and O_TRUNC are done; the shared fd serves it
        return FileInfo(
            fh=fh,
            passthrough_fd=share.fd,
            # Served in userspace, a write-only open gains nothing from FUSE's page cache (nothing reads through it)
            # and its writes skip a copy into it; the kernel invalidates other opens' cached pages it writes over.
            direct_io=self.cache == "none" or (flags & os.O_ACCMODE) == os.O_WRONLY,
            keep_cache=self.kernel_cache,
            noflush=True,  # flush() does nothing here, and the kernel still flushes a writeback cache first
        )

    @staticmethod
    def _fd_flags(flags: int) -> int:
        # Our fd is for passthrough registration and userspace I/O at the kernel's offsets: O_APPEND, O_DIRECT and
        # the sync flags are the kernel's business (it re-opens the backing file with the user's own flags).
        return (flags & (os.O_ACCMODE | os.O_TRUNC)) | os.O_CLOEXEC

    def open(self, inode: int, flags: int, ctx: RequestContext) -> FileInfo:
        with self._reserve(ctx), self.inodes.borrow(inode) as path_fd:
            path = _proc(path_fd).encode()
            with self._caller(ctx, inode):
                if flags & _FMODE_EXEC and self.as_caller and ctx.uid:
                    # execve needs execute permission, not read: the source checks that for the caller, and the
                    # daemon opens the file for the kernel to load (an execute-only program runs, as natively).
                    if not may_access(path_fd, os.X_OK):
                        raise FUSEError(errno.EACCES)
                    fd = -1
                else:
                    fd = _open_file(path, self._fd_flags(flags) | self._file_noatime, 0, AT_FDCWD, flags, ctx)
            if fd < 0:
                fd = _open_file(path, os.O_RDONLY | os.O_CLOEXEC, 0, AT_FDCWD, flags, ctx)
            elif self._file_noatime and ctx.uid:
                fd = _without_atime(fd, flags & os.O_ACCMODE)
        return self._opened(inode, fd, flags, ctx.uid)

    def create(
        self, parent: int, name: bytes, mode: int, flags: int, ctx: RequestContext
    ) -> tuple[FileInfo, EntryAttributes]:
        with self._reserve(ctx), self.inodes.borrow(parent) as pfd, self._caller(ctx):
            set_thread_umask(ctx.umask)
            how = self._fd_flags(flags) | os.O_CREAT | os.O_NOFOLLOW | (flags & os.O_EXCL)
            fd = _open_file(name, how, stat.S_IMODE(mode), pfd, flags, ctx)
        return self._opened_new(fd, flags, parent, ctx)

    def tmpfile(self, parent: int, mode: int, flags: int, ctx: RequestContext) -> tuple[FileInfo, EntryAttributes]:
        access = flags & os.O_ACCMODE or os.O_RDWR
        tmp_flags = os.O_TMPFILE | access | os.O_CLOEXEC | (flags & os.O_EXCL)
        with self._reserve(ctx), self.inodes.borrow(parent) as pfd, self._caller(ctx):
            set_thread_umask(ctx.umask)
            fd = os.open(b".", tmp_flags, stat.S_IMODE(mode), dir_fd=pfd)
        return self._opened_new(fd, flags | access, parent, ctx)

    def _opened_new(
        self, fd: int, flags: int, parent: int, ctx: RequestContext
    ) -> tuple[FileInfo, EntryAttributes]:
        try:
            # Following the /proc magic link reaches the file itself; O_NOFOLLOW would give the link.
            attrs = self._remember(os.open(_proc(fd), os.O_PATH | os.O_CLOEXEC), parent)
        except BaseException:
            if ctx.uid:
                self._unreserve(ctx.uid)
            os.close(fd)
            raise
        return self._opened(attrs.st_ino, fd, flags, ctx.uid), attrs

    def release(self, fh: int) -> None:
        done = -1
        with self._lock:
            record = self._opens.pop(fh, None)
            if record is None:
                return
            share = self._shares[record.key]
            share.opens -= 1
            if not share.opens:
                del self._shares[record.key]
                done = share.fd
        if record.uid:
            self._unreserve(record.uid)
        if done >= 0:
            os.close(done)

    def fallocate(self, fh: int, mode: int, offset: int, length: int) -> None:
        _check(_libc.fallocate(self._fd(fh), mode, offset, length))

    def lseek(self, fh: int, offset: int, whence: int) -> int:
        return os.lseek(self._fd(fh), offset, whence)

    # ---- directories
    def opendir(self, inode: int, ctx: RequestContext) -> int:
        dev = self.inodes.dev_of(inode)
        with self._reserve(ctx), self.inodes.borrow(inode) as path_fd, self._caller(ctx, inode):
            # Through /proc, not as "." below the fd: resolving "." would need search permission on the
            # directory itself, where opendir(3) needs only read permission.
            fd = _open_noatime(_proc(path_fd), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | self._dir_noatime)
        if self._dir_noatime and ctx.uid:
            fd = _without_atime(fd, os.O_RDONLY | os.O_DIRECTORY)
        if ctx.uid:
            self._holder[fd] = ctx.uid
        root_ino = os.fstat(fd).st_ino if inode == ROOT_INODE else 0
        self._dirs[fd] = _DirHandle(fd, root_ino, dev)
        return fd

    def readdir(self, fh: int, offset: int, ctx: RequestContext) -> Iterator[DirEntry]:
        handle = self._dirs.get(fh)
        if handle is None:
            raise FUSEError(errno.EBADF)
        # A name whose inode the kernel holds fresh from an earlier reply goes without attributes (plus=False): in a
        # READDIRPLUS the lookup would only give the kernel what it has, at the cost of one per name.
        fresh = self.inodes.fresh if kept_for(self.entry_timeout, self.attr_timeout) else None
        now, dev, new = time.monotonic(), handle.dev, tuple.__new__
        while True:
            # The kernel takes what fits in its buffer and asks again from the last cookie it kept: usually one in
            # the batch read last time, else the batch is read anew from that cookie (always at 0: a rewind must
            # see the directory as it is). The lock is not held while the caller takes the entries.
            with handle.lock:
                batch = handle.batch
                index = handle.resume.get(offset, -1) if offset else -1
                if index < 0 or index >= len(batch):
                    buf = _dirent_buffer()
                    os.lseek(handle.fd, offset - (1 << 64) if offset >= 1 << 63 else offset, os.SEEK_SET)
                    n = _syscall(_GETDENTS64, handle.fd, buf, _DIRENT_BUFFER)
                    if n <= 0:
                        handle.batch, handle.resume = [], {}
                        if n < 0:
                            err = ctypes.get_errno()
                            raise OSError(err, os.strerror(err))
                        return
                    batch, handle.resume = _parse_dirents(ctypes.string_at(buf, n), offset, handle.root_ino)
                    handle.batch = batch
                    index = 0
            for entry in batch[index:] if index else batch:
                offset = entry.next_offset
                if fresh is not None and fresh(dev, entry[1], now):
                    yield new(DirEntry, (entry[0], entry[1], entry[2], offset, False))
                else:
                    yield entry

    def releasedir(self, fh: int) -> None:
        handle = self._dirs.pop(fh, None)
        if handle is not None:
            uid = self._holder.pop(fh, None)
            if uid is not None:
                self._unreserve(uid)
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
        with self.inodes.borrow(inode) as fd, self._caller(ctx, inode):
            ok = may_access(fd, mode)
        if not ok:
            raise FUSEError(errno.EACCES)

    # xattrs as the caller: the source checks read or write permission for user.*, ownership for ACLs, and
    # (the thread's other capabilities dropped too) hides and refuses trusted.* and security.* as natively.
    def setxattr(self, inode: int, name: bytes, value: bytes, flags: int, ctx: RequestContext) -> None:
        with self.inodes.borrow(inode) as fd, self._caller(ctx, inode, capabilities=True):
            os.setxattr(_proc(fd), name, value, flags)

    def getxattr(self, inode: int, name: bytes, ctx: RequestContext) -> bytes:
        fd = self._own_fd(inode, ctx)
        if fd >= 0:
            return _getxattr(fd, name)
        with self.inodes.borrow(inode) as fd, self._caller(ctx, inode, True):
            return _getxattr(fd, name)

    def listxattr(self, inode: int, ctx: RequestContext) -> list[bytes]:
        fd = self._own_fd(inode, ctx)
        if fd >= 0:
            return _listxattr(fd)
        with self.inodes.borrow(inode) as fd, self._caller(ctx, inode, capabilities=True):
            return _listxattr(fd)

    def removexattr(self, inode: int, name: bytes, ctx: RequestContext) -> None:
        with self.inodes.borrow(inode) as fd, self._caller(ctx, inode, capabilities=True):
            os.removexattr(_proc(fd), name)

    def stats(self) -> dict:
        return {"type": "mirror", "source": self.source, "cache": self.cache, "inodes": len(self.inodes),
                "inode_fds": self.inodes.pinned, "forgotten_inodes": self.inodes.forgotten,
                "open_dirs": len(self._dirs), "open_files": len(self._opens), "file_fds": len(self._shares),
                "user_files": self.user_files, "held_by_users": {str(uid): n for uid, n in list(self._held.items())}}

    def destroy(self) -> None:
        for handle in list(self._dirs.values()):
            os.close(handle.fd)
        self._dirs.clear()
        with self._lock:
            for share in self._shares.values():
                os.close(share.fd)
            self._shares.clear()
            self._opens.clear()
        self.inodes.close()


def _getxattr(fd: int, name: bytes) -> bytes:
    if not name.startswith(b"system.posix_acl_"):
        return os.getxattr(_proc(fd), name)
    try:
        return os.getxattr(_proc(fd), name)
    except OSError as e:
        # With POSIX_ACL the kernel asks for ACLs on its own; "no ACL" is ENODATA to it, any other error fails the
        # permission check that asked.
        if e.errno == errno.EOPNOTSUPP:
            raise FUSEError(errno.ENODATA) from None
        raise


def _listxattr(fd: int) -> list[bytes]:
    return [os.fsencode(n) for n in os.listxattr(_proc(fd))]


def _open_noatime(path: str | bytes, how: int, mode: int = 0, dir_fd: int | None = None) -> int:
    """``os.open``, and again without O_NOATIME if the source refuses it (only a file's owner may ask for it)."""
    try:
        return os.open(path, how, mode, dir_fd=dir_fd)
    except PermissionError as e:
        if not how & os.O_NOATIME or e.errno != errno.EPERM:
            raise
    return os.open(path, how & ~os.O_NOATIME, mode, dir_fd=dir_fd)


def _without_atime(fd: int, how: int) -> int:
    """``fd``, or the same file opened again by the daemon with O_NOATIME if the caller's own open could not have
    it (the source grants it to a file's owner only). The caller's open has passed the source's checks; reads
    through the daemon's fd then leave the access time alone. Needs root; otherwise ``fd`` stays."""
    if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NOATIME:
        return fd
    try:
        again = os.open(_proc(fd), how | os.O_NOATIME | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return fd
    os.close(fd)
    return again


def _open_file(path: bytes, how: int, mode: int, dir_fd: int, flags: int, ctx: RequestContext) -> int:
    """Open a regular file without waiting on another user: a lease on it (which only its owner can take) would
    hold the opener until the lease is given up or broken, 45 s by default, and with it the thread serving the
    mount. O_NONBLOCK makes the kernel start breaking the lease and say EWOULDBLOCK; a caller who asked for
    O_NONBLOCK gets that, as natively; for anyone else the open runs again on a helper thread (WouldBlock), where it
    waits, interruptibly: an INTERRUPT ends the wait with EINTR."""
    if ctx.may_block:
        # libc's openat, not os.open: Python retries a call that a signal interrupts, and the point is to stop
        fd = _libc.openat(dir_fd, path, how | os.O_CLOEXEC, mode)
        if fd < 0 and ctypes.get_errno() == errno.EPERM and how & os.O_NOATIME:
            fd = _libc.openat(dir_fd, path, (how & ~os.O_NOATIME) | os.O_CLOEXEC, mode)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return fd
    try:
        return _open_noatime(path, how | os.O_NONBLOCK, mode, None if dir_fd == AT_FDCWD else dir_fd)
    except BlockingIOError:
        if flags & os.O_NONBLOCK:
            raise
        raise WouldBlock() from None


def _timespec(ns: int) -> _Timespec:
    if ns == NOW:
        return _Timespec(0, UTIME_NOW)
    sec, nsec = divmod(ns, 1_000_000_000)
    return _Timespec(sec, nsec)
