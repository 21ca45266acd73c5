"""The public, inode-based filesystem API.

A filesystem subclasses :class:`Operations` and overrides what it supports; every method it leaves alone answers
ENOSYS. Handlers raise :class:`FUSEError` (or any ``OSError``) to reply with an errno. Inode numbers are the FUSE
node ids: the root is :data:`ROOT_INODE`; every other id is one a handler returned in an :class:`EntryAttributes`.

Passthrough is one argument: return ``FileInfo(fh, passthrough_fd=fd)`` from :meth:`Operations.open` or
:meth:`Operations.create`, and the kernel serves that file's data straight from ``fd``'s file. Where the kernel
cannot (no privileges, stacking depth, old kernel), the library serves READ and WRITE from ``fd`` itself.
"""

from __future__ import annotations

import errno as _errno
import os
import stat as _stat
from dataclasses import dataclass
from typing import Any, Iterable, NamedTuple, Sequence

from .abi import ROOT_ID, STATX, STATX_BASIC_STATS, STATX_SIZE
from .interrupts import current_request, interrupted
from .protocol.negotiation import Negotiated
from .protocol.requests import NOW as _NOW

ROOT_INODE = ROOT_ID

__all__ = [
    "ROOT_INODE",
    "FUSEError",
    "WouldBlock",
    "EntryAttributes",
    "SetattrFields",
    "FileInfo",
    "DirEntry",
    "StatvfsData",
    "RequestContext",
    "Operations",
]


class FUSEError(Exception):
    """Raise from a handler to answer the request with ``errno``."""

    def __init__(self, errno: int, message: str | None = None) -> None:
        # Handlers raise this on the hot path (ENOENT, ENODATA): the message is looked up only when printed.
        self.errno = errno
        self.message = message

    def __str__(self) -> str:
        return f"[Errno {self.errno}] {self.message or os.strerror(self.errno)}"


class WouldBlock(Exception):
    """Raise from a handler instead of waiting for something another user controls (a file lease, a lock held by
    someone else): the session runs the request again on a helper thread, where ``ctx.may_block`` is True and the
    handler may wait, so the threads that serve the mount never do. An INTERRUPT for the request interrupts the
    helper's system call (EINTR) when the session was made in the main thread, which alone may set the signal
    handler this needs. Not for WRITE, whose data lives in the transport's buffer only while it is served.
    """


class EntryAttributes:
    """Attributes of an inode, and how long the kernel may cache them and the name that led to it.

    ``st_ino`` is the inode (node id) the kernel will use in later requests. ``shown_ino`` is the inode number
    programs see in ``stat`` and ``readdir``; it defaults to ``st_ino``. A mirror sets it to the source's number.
    """

    __slots__ = (
        "st_ino",
        "shown_ino",
        "generation",
        "entry_timeout",
        "attr_timeout",
        "st_mode",
        "st_nlink",
        "st_uid",
        "st_gid",
        "st_rdev",
        "st_size",
        "st_blksize",
        "st_blocks",
        "st_atime_ns",
        "st_mtime_ns",
        "st_ctime_ns",
    )

    def __init__(
        self,
        st_ino: int = 0,
        st_mode: int = 0,
        st_nlink: int = 1,
        st_uid: int = 0,
        st_gid: int = 0,
        st_rdev: int = 0,
        st_size: int = 0,
        st_blksize: int = 4096,
        st_blocks: int = 0,
        st_atime_ns: int = 0,
        st_mtime_ns: int = 0,
        st_ctime_ns: int = 0,
        generation: int = 0,
        entry_timeout: float = 1.0,
        attr_timeout: float = 1.0,
        shown_ino: int | None = None,
    ) -> None:
        self.st_ino = st_ino
        self.shown_ino = shown_ino
        self.generation = generation
        self.entry_timeout = entry_timeout
        self.attr_timeout = attr_timeout
        self.st_mode = st_mode
        self.st_nlink = st_nlink
        self.st_uid = st_uid
        self.st_gid = st_gid
        self.st_rdev = st_rdev
        self.st_size = st_size
        self.st_blksize = st_blksize
        self.st_blocks = st_blocks
        self.st_atime_ns = st_atime_ns
        self.st_mtime_ns = st_mtime_ns
        self.st_ctime_ns = st_ctime_ns

    @classmethod
    def from_stat(
        cls, inode: int, st: os.stat_result, entry_timeout: float = 1.0, attr_timeout: float = 1.0
    ) -> "EntryAttributes":
        """Attributes of ``st`` served under node id ``inode``, showing ``st.st_ino`` to programs."""
        self = cls.__new__(cls)
        self.st_ino = inode
        self.shown_ino = st.st_ino
        self.generation = 0
        self.entry_timeout = entry_timeout
        self.attr_timeout = attr_timeout
        self.st_mode = st.st_mode
        self.st_nlink = st.st_nlink
        self.st_uid = st.st_uid
        self.st_gid = st.st_gid
        self.st_rdev = st.st_rdev
        self.st_size = st.st_size
        self.st_blksize = st.st_blksize
        self.st_blocks = st.st_blocks
        self.st_atime_ns = st.st_atime_ns
        self.st_mtime_ns = st.st_mtime_ns
        self.st_ctime_ns = st.st_ctime_ns
        return self

    def __repr__(self) -> str:
        return (
            f"EntryAttributes(st_ino={self.st_ino}, st_mode={oct(self.st_mode)}, st_size={self.st_size}, "
            f"st_nlink={self.st_nlink}, st_uid={self.st_uid}, st_gid={self.st_gid})"
        )


class SetattrFields(NamedTuple):
    """Which attributes a setattr changes. A time equal to ``NOW`` means "the current time"."""

    update_mode: bool
    update_uid: bool
    update_gid: bool
    update_size: bool
    update_atime: bool
    update_mtime: bool
    update_ctime: bool
    kill_suidgid: bool


#: A node id: how the kernel names an inode in requests (``ROOT_INODE`` for the root), as pyfuse3 calls it.
InodeT = int
#: An open file's or directory's handle, as the filesystem chose it in open/create/opendir.
FileHandleT = int

#: Value of ``st_atime_ns``/``st_mtime_ns`` in a setattr that asks for the current time (as the request decodes it).
NOW = _NOW


@dataclass
class FileInfo:
    """The answer to open/create: a file handle and how the kernel should treat the open file.

    ``passthrough_fd``: an fd of the file that backs this open. The kernel then does the data I/O on it itself
    (FUSE passthrough), or, where passthrough is unavailable, the library serves READ/WRITE from it. The handler
    keeps ownership: the fd must stay open until :meth:`Operations.release` of ``fh``. The fd must hold what the
    open asks for: opened for reading if the open reads, for writing if it writes, and not ``O_APPEND`` unless the
    open is; an open that asks for more is refused with EACCES (the kernel would otherwise open the backing file
    with the caller's flags and the daemon's credentials). Open it as the caller, or check the caller's permission
    yourself: with passthrough the kernel checks nothing on the backing file.
    """

    #: an int the kernel hands back (the inode API), or any object (a PathOperations' handle)
    fh: Any = 0
    passthrough_fd: int | None = None
    direct_io: bool = False
    keep_cache: bool = False
    nonseekable: bool = False
    noflush: bool = False


class DirEntry(NamedTuple):
    """One directory entry: its name, the inode number programs see, its DT_* type and the cookie of the next one.

    ``plus=False``: in a READDIRPLUS, send the name without looking it up (no attributes, no lookup count), as
    libfuse does for entries given without attributes; the kernel looks it up when a program asks. For a name whose
    entry and attributes the kernel got less than their timeouts ago it saves a lookup that would tell the kernel
    nothing new (the mirror and the path API do so)."""

    name: bytes
    ino: int
    type: int
    next_offset: int
    plus: bool = True


class StatvfsData(NamedTuple):
    f_bsize: int
    f_frsize: int
    f_blocks: int
    f_bfree: int
    f_bavail: int
    f_files: int
    f_ffree: int
    f_namemax: int


_NS = 1_000_000_000


class StatxAttributes(NamedTuple):
    """What :meth:`Operations.statx` answers: the fields of ``struct statx`` that FUSE carries, times in
    nanoseconds. ``mask`` says which fields are valid (STATX_* bits: STATX_BTIME 0x800 for ``btime_ns``)."""

    mask: int
    blksize: int
    attributes: int
    nlink: int
    uid: int
    gid: int
    mode: int
    ino: int
    size: int
    blocks: int
    attributes_mask: int
    atime_ns: int
    btime_ns: int
    ctime_ns: int
    mtime_ns: int
    rdev: int
    #: how long the kernel may keep them
    attr_timeout: float = 1.0

    @classmethod
    def unpack(cls, raw: bytes, attr_timeout: float = 1.0) -> StatxAttributes:
        """From a kernel ``struct statx`` (as statx(2) fills it)."""
        (mask, blksize, attributes, nlink, uid, gid, mode, ino, size, blocks, attributes_mask, asec, ansec, bsec, bnsec,
         csec, cnsec, msec, mnsec, rmajor, rminor) = STATX.unpack_from(raw)
        return cls(mask, blksize, attributes, nlink, uid, gid, mode, ino, size, blocks, attributes_mask,
                   asec * _NS + ansec, bsec * _NS + bnsec, csec * _NS + cnsec, msec * _NS + mnsec,
                   os.makedev(rmajor, rminor), attr_timeout)

    @classmethod
    def from_attributes(cls, a: EntryAttributes) -> StatxAttributes:
        """The basic fields of ``a`` (no birth time)."""
        return cls(STATX_BASIC_STATS, a.st_blksize, 0, a.st_nlink, a.st_uid, a.st_gid, a.st_mode & 0xFFFF,
                   a.st_ino if a.shown_ino is None else a.shown_ino, a.st_size, a.st_blocks, 0, a.st_atime_ns, 0,
                   a.st_ctime_ns, a.st_mtime_ns, a.st_rdev, a.attr_timeout)

    def pack(self) -> bytes:
        """As fuse_statx (256 bytes)."""
        times: list[int] = []
        for ns in (self.atime_ns, self.btime_ns, self.ctime_ns, self.mtime_ns):
            times += divmod(ns, _NS)
        head = STATX.pack(self.mask, self.blksize, self.attributes, self.nlink, self.uid, self.gid, self.mode & 0xFFFF,
                          self.ino, self.size, self.blocks, self.attributes_mask, *times, os.major(self.rdev),
                          os.minor(self.rdev))
        return head + bytes(STATX_SIZE - len(head))


class RequestContext:
    """Who is asking: the caller's uid, gid and pid (a thread id) as the kernel reported them.

    ``umask`` is the caller's umask, set for create, mkdir, mknod and tmpfile (0 for other requests). With
    :attr:`Operations.applies_umask` the kernel does not apply it: the filesystem must, unless the parent directory
    has a default ACL."""

    __slots__ = ("uid", "gid", "pid", "unique", "umask", "may_block")

    def __init__(self, uid: int, gid: int, pid: int, unique: int = 0, umask: int = 0, may_block: bool = False) -> None:
        self.uid = uid
        self.gid = gid
        self.pid = pid
        self.unique = unique
        self.umask = umask
        #: True on a helper thread, after the handler raised :class:`WouldBlock`: it may wait now
        self.may_block = may_block

    @property
    def interrupted(self) -> bool:
        """Whether the caller gave up on this request (it got a signal): a long job may stop and raise
        ``FUSEError(errno.EINTR)``. Ask it on the thread that serves the request."""
        request = current_request()
        return request is not None and request.unique == self.unique and interrupted()

    def __repr__(self) -> str:
        return f"RequestContext(uid={self.uid}, gid={self.gid}, pid={self.pid})"


def kept_for(entry_timeout: float, attr_timeout: float) -> float:
    """How long the kernel may use both the name and the attributes of an entry reply given these timeouts (0: not
    at all). Within it, a READDIRPLUS lookup of the name would tell the kernel nothing new (see DirEntry.plus)."""
    return max(0.0, min(entry_timeout, attr_timeout))


def request_context() -> RequestContext | None:
    """Who asked for the request the calling thread serves (None outside a request): for handlers that get no
    ``ctx``, such as the path-based API's."""
    request = current_request()
    if request is None:
        return None
    return RequestContext(request.uid, request.gid, request.pid, request.unique)


def dtype_of(mode: int) -> int:
    """The DT_* value of a st_mode."""
    return _stat.S_IFMT(mode) >> 12


def _nosys() -> FUSEError:
    return FUSEError(_errno.ENOSYS)


class Operations:
    """Base class of a filesystem. Override the methods you support; the others answer ENOSYS.

    Handlers run on the session's worker threads, possibly several at once: protect shared state.
    """

    #: Set by the session once INIT is done: the negotiated connection (see :class:`shuntfs.protocol.Negotiated`).
    connection: Negotiated | None = None

    #: True if :meth:`setattr` clears S_ISUID (and S_ISGID on group-executable files, or for a caller outside the
    #: file's group) when ``fields.kill_suidgid`` is set, and every file that can be written is opened with a
    #: ``passthrough_fd``. The session then negotiates FUSE_HANDLE_KILLPRIV_V2: the kernel stops asking for
    #: ``security.capability`` before every write of a passthrough file (one round trip per write) and leaves
    #: clearing set-id bits to the server. The library does it on userspace writes and O_TRUNC opens of
    #: ``passthrough_fd`` files; before a passthrough write by a caller without CAP_FSETID the kernel sends a SETATTR
    #: that changes nothing, which reaches :meth:`setattr` with ``kill_suidgid``. Leave it False if :meth:`write`
    #: serves data.
    clears_setid_bits: bool = False

    #: True if the filesystem stores POSIX ACLs in ``system.posix_acl_access``/``_default`` xattrs and enforces
    #: them. The session then negotiates FUSE_POSIX_ACL: the kernel checks permissions itself, mode bits and ACLs
    #: (which it caches), as with ``default_permissions``, which it turns on; it then also refreshes a directory's
    #: attributes after each change in it, one GETATTR more per create or unlink.
    posix_acl: bool = False

    #: True if the kernel may keep each directory's listing and answer later listings from it (FOPEN_CACHE_DIR and
    #: FOPEN_KEEP_CACHE on every opendir). It drops the listing when a change goes through the mount, and when the
    #: directory's mtime has changed the next time it fetches its attributes (after ``attr_timeout``): right for a
    #: filesystem whose directories change their mtime with their entries and list the same to every caller.
    cache_listings: bool = False

    #: True if create, mkdir, mknod and tmpfile apply ``ctx.umask`` themselves, except where the parent directory
    #: has a default ACL (which then decides the mode). The session negotiates FUSE_DONT_MASK: the kernel sends the
    #: mode unmasked, so that default ACLs work.
    applies_umask: bool = False

    #: True if :meth:`lookup` answers the name ``"."`` (the inode ``parent`` itself) and ``".."`` (its parent
    #: directory) for any node id it has ever given, forgotten or not, with the same ``generation`` for the same
    #: file, and ESTALE once the file is gone. The session negotiates FUSE_EXPORT_SUPPORT: the kernel's file handles
    #: of the mount (``open_by_handle_at``, NFS export) then keep working after it has forgotten their inodes.
    export_support: bool = False

    #: The libfuse-style ``-o`` settings this filesystem honours when :func:`shuntfs.main` runs it: each one given is
    #: set as the attribute of that name (``entry_timeout``, ``attr_timeout``, ``negative_timeout`` in seconds;
    #: ``kernel_cache`` True; ``uid``, ``gid``, ``umask`` as numbers). Others are refused with a one-line reason.
    settings: frozenset[str] = frozenset()

    #: False: the kernel asks :meth:`readlink` every time instead of caching link targets (FUSE_CACHE_SYMLINKS).
    cache_symlinks: bool = True

    #: The directory the filesystem's ``passthrough_fd`` files come from, if one: the session then raises the
    #: kernel's stacking depth when it lies on a stacked filesystem (overlayfs, FUSE), which backing files there need.
    backing_source: str | None = None

    def init(self) -> None:
        """Called once INIT is negotiated, before any other request."""

    def destroy(self) -> None:
        """Called when the session ends."""

    def stats(self) -> dict:
        """Figures of this filesystem's own, shown under "filesystem" in ``shuntfs-ctl stats``."""
        return {}

    def lookup(self, parent: InodeT, name: bytes, ctx: RequestContext) -> EntryAttributes:
        """Look ``name`` up in directory ``parent``. A successful answer adds one to the inode's lookup count, which
        :meth:`forget` takes back. Raise ENOENT, or return ``st_ino=0`` with an ``entry_timeout`` for a negative
        entry the kernel may cache. With :attr:`export_support`, ``"."`` and ``".."`` come too (see there)."""
        raise FUSEError(_errno.ENOENT)

    def forget(self, inodes: Sequence[tuple[int, int]]) -> None:
        """The kernel dropped ``nlookup`` references to each ``(inode, nlookup)``; at zero it will not name the inode
        again (unless a lookup gives it anew). No reply: this must not fail."""

    def getattr(self, inode: InodeT, fh: FileHandleT | None, ctx: RequestContext) -> EntryAttributes:
        """Attributes of ``inode`` (``fh``: the open file's handle when the call came through one, e.g. fstat)."""
        raise _nosys()

    def setattr(
        self, inode: InodeT, attr: EntryAttributes, fields: SetattrFields, fh: FileHandleT | None, ctx: RequestContext
    ) -> EntryAttributes:
        """Change the attributes ``fields`` names to their values in ``attr``; return the attributes after. ``fh``
        as for :meth:`getattr` (ftruncate, futimens)."""
        raise _nosys()

    def readlink(self, inode: InodeT, ctx: RequestContext) -> bytes:
        """The target of the symbolic link ``inode``."""
        raise _nosys()

    def mknod(self, parent: InodeT, name: bytes, mode: int, rdev: int, ctx: RequestContext) -> EntryAttributes:
        """Make a file, FIFO, socket or device ``name`` in ``parent``. This and the other calls that make a name
        (:meth:`mkdir`, :meth:`symlink`, :meth:`link`, :meth:`create`, :meth:`tmpfile`) add one to the new
        inode's lookup count, as :meth:`lookup` does."""
        raise _nosys()

    def mkdir(self, parent: InodeT, name: bytes, mode: int, ctx: RequestContext) -> EntryAttributes:
        """Make directory ``name`` in ``parent`` (``mode`` includes S_IFDIR)."""
        raise _nosys()

    def symlink(self, parent: InodeT, name: bytes, target: bytes, ctx: RequestContext) -> EntryAttributes:
        """Make symbolic link ``name`` in ``parent`` pointing at ``target``."""
        raise _nosys()

    def unlink(self, parent: InodeT, name: bytes, ctx: RequestContext) -> None:
        """Remove ``name`` from ``parent``. The inode lives on while the kernel knows it (until :meth:`forget`) and
        while files are open on it."""
        raise _nosys()

    def rmdir(self, parent: InodeT, name: bytes, ctx: RequestContext) -> None:
        """Remove the empty directory ``name`` from ``parent``."""
        raise _nosys()

    def rename(
        self, parent_old: InodeT, name_old: bytes, parent_new: InodeT, name_new: bytes, flags: int, ctx: RequestContext
    ) -> None:
        """Rename; ``flags`` are renameat2's (RENAME_NOREPLACE 1, RENAME_EXCHANGE 2, RENAME_WHITEOUT 4)."""
        raise _nosys()

    def link(self, inode: InodeT, new_parent: InodeT, new_name: bytes, ctx: RequestContext) -> EntryAttributes:
        """Give ``inode`` the further name ``new_name`` in ``new_parent``."""
        raise _nosys()

    def open(self, inode: InodeT, flags: int, ctx: RequestContext) -> FileInfo:
        """Open ``inode`` with open(2) ``flags``. The returned ``fh`` is what read, write, flush, fsync and
        release get; a ``passthrough_fd`` lets the kernel serve the data itself (see :class:`FileInfo`)."""
        raise _nosys()

    def create(
        self, parent: InodeT, name: bytes, mode: int, flags: int, ctx: RequestContext
    ) -> tuple[FileInfo, EntryAttributes]:
        """Make and open ``name`` in ``parent`` (open(2) with O_CREAT); as :meth:`open` and :meth:`mknod`."""
        raise _nosys()

    def tmpfile(self, parent: InodeT, mode: int, flags: int, ctx: RequestContext) -> tuple[FileInfo, EntryAttributes]:
        """Make and open a file without a name in ``parent`` (O_TMPFILE)."""
        raise _nosys()

    def read(self, fh: FileHandleT, offset: int, size: int) -> bytes:
        """Data of an open file. Not called for opens answered with a ``passthrough_fd``."""
        raise _nosys()

    def write(self, fh: FileHandleT, offset: int, data: memoryview) -> int:
        """Write ``data`` (valid only during the call); return the count written. Not called for passthrough opens."""
        raise _nosys()

    def flush(self, fh: FileHandleT) -> None:
        """A close(2) of a descriptor of the open file (one per close, so one open may see several; not sent when
        the open answered ``noflush``)."""

    def release(self, fh: FileHandleT) -> None:
        """The open file's last descriptor and mapping are gone: ``fh`` is never used again. No error reaches
        anyone."""

    def fsync(self, fh: FileHandleT, datasync: bool) -> None:
        """Make the open file's data (and, unless ``datasync``, metadata) durable."""
        raise _nosys()

    def fallocate(self, fh: FileHandleT, mode: int, offset: int, length: int) -> None:
        """fallocate(2) on the open file (``mode``: FALLOC_FL_* flags)."""
        raise _nosys()

    def lseek(self, fh: FileHandleT, offset: int, whence: int) -> int:
        """SEEK_DATA/SEEK_HOLE (the kernel answers the other whences itself)."""
        raise _nosys()

    def copy_file_range(
        self, fh_in: FileHandleT, off_in: int, fh_out: FileHandleT, off_out: int, length: int, flags: int
    ) -> int:
        """Copy ``length`` bytes between two open files; return the count copied."""
        raise _nosys()

    def ioctl(self, fh: FileHandleT, cmd: int, arg: int, data: bytes, out_size: int, flags: int) -> tuple[int, bytes]:
        """An ioctl(2) on an open file: ``cmd`` (unsigned) and ``arg`` as the caller gave them (``arg`` is an address
        in the caller, not ours to read); ``data`` is what the kernel copied in for a command that writes
        (``_IOC_WRITE``: ``_IOC_SIZE(cmd)`` bytes). Return ``(result, out)``: ioctl(2)'s return value and at most
        ``out_size`` bytes to copy back for a command that reads (``_IOC_READ``). ENOSYS/ENOTTY: not supported."""
        raise _nosys()

    def opendir(self, inode: InodeT, ctx: RequestContext) -> FileHandleT:
        """Open a directory; returns a handle for readdir/releasedir."""
        return 0

    def readdir(self, fh: FileHandleT, offset: int, ctx: RequestContext) -> Iterable[DirEntry]:
        """Entries from cookie ``offset`` on (0 is the start). Each names the cookie of the entry after it.

        The library stops iterating when the kernel's buffer is full and asks again from the last cookie sent.
        For READDIRPLUS, it calls :meth:`lookup` for each entry it sends (except ``.`` and ``..``).
        """
        raise _nosys()

    def releasedir(self, fh: FileHandleT) -> None:
        """The directory handle from :meth:`opendir` is never used again."""

    def fsyncdir(self, fh: FileHandleT, datasync: bool) -> None:
        """Make the directory's changes durable."""

    def statfs(self, ctx: RequestContext) -> StatvfsData:
        """Figures of the whole filesystem (statvfs)."""
        return StatvfsData(4096, 4096, 0, 0, 0, 0, 0, 255)

    def access(self, inode: InodeT, mode: int, ctx: RequestContext) -> None:
        """Raise EACCES if ``ctx`` may not access ``inode`` with ``mode``. Not sent with default_permissions."""

    def setxattr(self, inode: InodeT, name: bytes, value: bytes, flags: int, ctx: RequestContext) -> None:
        """Set extended attribute ``name`` (``flags``: XATTR_CREATE 1, XATTR_REPLACE 2). ENOSYS once makes the
        kernel stop asking for any xattr call of its kind."""
        raise _nosys()

    def getxattr(self, inode: InodeT, name: bytes, ctx: RequestContext) -> bytes:
        """The value of ``name``, whole (the library answers size queries and ERANGE); ENODATA if it has none."""
        raise _nosys()

    def listxattr(self, inode: InodeT, ctx: RequestContext) -> Sequence[bytes]:
        """The names of the inode's extended attributes."""
        raise _nosys()

    def removexattr(self, inode: InodeT, name: bytes, ctx: RequestContext) -> None:
        """Remove ``name``; ENODATA if it has none."""
        raise _nosys()

    def statx(
        self, inode: InodeT, fh: FileHandleT | None, mask: int, flags: int, ctx: RequestContext
    ) -> StatxAttributes:
        """statx(2) of ``inode`` (``mask``: the fields asked for; ``flags``: AT_STATX_* sync flags). Left alone, the
        answer is built from :meth:`getattr` (without birth time)."""
        raise _nosys()
