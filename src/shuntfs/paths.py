"""The path-based API: handlers that take paths, as fusepy's and libfuse's high-level API do, built on the inode API.

:class:`PathOperations` is what a filesystem overrides; :class:`PathBridge` is an :class:`~shuntfs.Operations` that
serves the kernel's inode requests with it, keeping the node table the kernel's node ids need: lookup counts and
FORGET, a directory's rename moving its whole subtree, a file unlinked while open kept working (renamed to a hidden
name until its last release, as libfuse's "hide"), open files and directories mapped back to their paths, and
READDIRPLUS without a second ``getattr`` where ``readdir`` gave the attributes. ``Session`` takes a PathOperations
directly and bridges it.

Paths are ``str``, ``"/"`` for the root, decoded with :func:`os.fsdecode` so that names that are not UTF-8
round-trip. Passthrough stays one argument: ``open`` and ``create`` may return ``FileInfo(fh, passthrough_fd=fd)``.
Handlers may be ``async def`` (``readdir`` an async generator), as with the inode API.
"""

from __future__ import annotations

import copy
import errno
import itertools
import os
import stat
import threading
import time
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from .operations import (
    NOW,
    ROOT_INODE,
    DirEntry,
    EntryAttributes,
    FileHandleT,
    FileInfo,
    FUSEError,
    InodeT,
    Operations,
    RequestContext,
    SetattrFields,
    StatvfsData,
    dtype_of,
    kept_for,
)

#: utimens values: "the current time" and "leave it as it is" (as utimensat(2)'s)
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2

RENAME_NOREPLACE = 1

#: the inode number readdir shows for a name whose attributes the filesystem did not give (libfuse's
#: FUSE_UNKNOWN_INO); lookups show the real one
UNKNOWN_INO = 0xFFFFFFFF

Attributes = Any  # os.stat_result, a mapping of st_* keys, or EntryAttributes


def _enoent() -> FUSEError:
    return FUSEError(errno.ENOENT)


class PathOperations:
    """Override what your filesystem supports; the rest answer ENOSYS (or do nothing, where that is harmless).

    Errors: raise :class:`~shuntfs.FUSEError` or any ``OSError`` with its errno; anything else is logged and answered
    EIO. ``fh`` is what your ``open``/``create``/``opendir`` returned (None where there is no open file).
    """

    #: False (default): each path is a node of its own, as libfuse's high-level API without ``use_ino``: hard links
    #: are separate nodes, and ``st_ino`` shown to programs is yours if you give one. True: one node per ``st_ino``
    #: your ``getattr`` reports, which must then be stable and unique.
    use_ino = False

    #: True: a file unlinked while open is unlinked at once (not hidden), and the calls on its open handles get
    #: ``path=None`` (libfuse's ``nullpath_ok``). ``nopath`` as well: calls on open files and directories always
    #: get ``path=None`` (libfuse's ``nopath``), which spares working the path out.
    nullpath_ok = False
    nopath = False

    #: True: the kernel may keep each directory's listing and answer later listings from it, until a change goes
    #: through the mount or, once the attribute timeout has passed, it sees the directory's mtime moved (libfuse's
    #: ``cache_readdir`` with ``keep_cache`` on every opendir). For filesystems whose directories change their
    #: mtime with their entries and list the same to every caller, such as a loopback.
    cache_listings = False

    def init(self) -> None:
        """The mount is live."""

    def destroy(self) -> None:
        """The session ends."""

    def getattr(self, path: str, fh: FileHandleT | None = None) -> Attributes:
        """Attributes of ``path``: an ``os.stat_result``, a mapping with ``st_*`` keys (times in float seconds, or
        ``st_*time_ns`` in nanoseconds) or an EntryAttributes. ENOENT if there is no such name."""
        raise _enoent()

    def readlink(self, path: str) -> str:
        raise FUSEError(errno.ENOSYS)

    def mknod(self, path: str, mode: int, rdev: int) -> None:
        raise FUSEError(errno.ENOSYS)

    def mkdir(self, path: str, mode: int) -> None:
        raise FUSEError(errno.ENOSYS)

    def unlink(self, path: str) -> None:
        raise FUSEError(errno.ENOSYS)

    def rmdir(self, path: str) -> None:
        raise FUSEError(errno.ENOSYS)

    def symlink(self, path: str, target: str) -> None:
        """Make ``path`` a symbolic link to ``target``."""
        raise FUSEError(errno.ENOSYS)

    def rename(self, old: str, new: str, flags: int) -> None:
        """``flags``: renameat2's (RENAME_NOREPLACE 1, RENAME_EXCHANGE 2); raise EINVAL for ones you do not do."""
        raise FUSEError(errno.ENOSYS)

    def link(self, path: str, new: str) -> None:
        """Give ``path`` the further name ``new``."""
        raise FUSEError(errno.ENOSYS)

    def chmod(self, path: str, mode: int, fh: FileHandleT | None) -> None:
        raise FUSEError(errno.ENOSYS)

    def chown(self, path: str, uid: int, gid: int, fh: FileHandleT | None) -> None:
        """-1 leaves that id as it is."""
        raise FUSEError(errno.ENOSYS)

    def truncate(self, path: str, length: int, fh: FileHandleT | None) -> None:
        raise FUSEError(errno.ENOSYS)

    def utimens(self, path: str, atime_ns: int, mtime_ns: int, fh: FileHandleT | None) -> None:
        """Times in nanoseconds, or UTIME_NOW / UTIME_OMIT."""
        raise FUSEError(errno.ENOSYS)

    def open(self, path: str, flags: int) -> FileHandleT | FileInfo:
        """Open ``path`` with open(2) ``flags``: a handle for the calls on the open file, or a FileInfo (with
        ``passthrough_fd`` for the kernel to serve the data itself). Default: handle 0."""
        return 0

    def create(self, path: str, mode: int, flags: int) -> FileHandleT | FileInfo:
        """Make and open ``path``."""
        raise FUSEError(errno.ENOSYS)

    def read(self, path: str, size: int, offset: int, fh: FileHandleT) -> bytes:
        raise FUSEError(errno.ENOSYS)

    def write(self, path: str, data: bytes, offset: int, fh: FileHandleT) -> int:
        raise FUSEError(errno.ENOSYS)

    def flush(self, path: str, fh: FileHandleT) -> None:
        """A close(2) of a descriptor of the open file."""

    def release(self, path: str, fh: FileHandleT) -> None:
        """The open file is gone: ``fh`` is not used again."""

    def fsync(self, path: str, datasync: bool, fh: FileHandleT) -> None:
        """Make the data durable (default: nothing to do)."""

    def fallocate(self, path: str, mode: int, offset: int, length: int, fh: FileHandleT) -> None:
        raise FUSEError(errno.ENOSYS)

    def lseek(self, path: str, offset: int, whence: int, fh: FileHandleT) -> int:
        """SEEK_DATA and SEEK_HOLE (the kernel answers the other whences itself; without this method it takes the
        whole file for data, as if it had no holes)."""
        raise FUSEError(errno.ENOSYS)

    def ioctl(self, path: str, cmd: int, arg: int, fh: FileHandleT, flags: int, data: bytes,
              out_size: int) -> tuple[int, bytes]:
        """ioctl(2) on an open file: see :meth:`shuntfs.Operations.ioctl` (``(result, out bytes)``)."""
        raise FUSEError(errno.ENOTTY)

    def opendir(self, path: str) -> FileHandleT:
        return 0

    def readdir(self, path: str, fh: FileHandleT) -> Iterable[str | tuple[str, Attributes] | os.DirEntry]:
        """The names in directory ``path`` ("." and ".." are added when missing), or (name, attributes) pairs, or the
        entries of ``os.scandir``: those are stat'ed only for the names the kernel wants attributes of
        (READDIRPLUS), which spares a loopback a stat per name on every listing."""
        raise FUSEError(errno.ENOSYS)

    def releasedir(self, path: str, fh: FileHandleT) -> None:
        pass

    def fsyncdir(self, path: str, datasync: bool, fh: FileHandleT) -> None:
        """Make the directory durable (default: nothing to do)."""

    def statfs(self, path: str) -> StatvfsData | Mapping[str, int] | os.statvfs_result:
        return StatvfsData(4096, 4096, 0, 0, 0, 0, 0, 255)

    def access(self, path: str, mode: int) -> None:
        """Raise EACCES if the caller may not access ``path`` with ``mode`` (default: it may)."""

    def setxattr(self, path: str, name: str, value: bytes, flags: int) -> None:
        raise FUSEError(errno.ENOTSUP)

    def getxattr(self, path: str, name: str) -> bytes:
        raise FUSEError(errno.ENOTSUP)

    def listxattr(self, path: str) -> Sequence[str]:
        return []

    def removexattr(self, path: str, name: str) -> None:
        raise FUSEError(errno.ENOTSUP)


_STAT_FIELDS = ("st_mode", "st_nlink", "st_uid", "st_gid", "st_rdev", "st_size", "st_blksize", "st_blocks")


_TIMES = tuple((f"st_{kind}_ns", f"st_{kind}") for kind in ("atime", "mtime", "ctime"))


def attributes_of(value: Attributes, timeout: float) -> EntryAttributes:
    """An EntryAttributes from what a path-based ``getattr`` returned."""
    if isinstance(value, EntryAttributes):
        return value
    if isinstance(value, os.stat_result):
        return EntryAttributes.from_stat(0, value, timeout, timeout)
    get = value.get if isinstance(value, Mapping) else lambda key, default=None: getattr(value, key, default)
    a = EntryAttributes(entry_timeout=timeout, attr_timeout=timeout)
    for key in _STAT_FIELDS:
        v = get(key)
        if v is not None:
            setattr(a, key, int(v))
    if not get("st_blksize"):
        a.st_blksize = 4096
    if get("st_blocks") is None:
        a.st_blocks = (a.st_size + 511) // 512
    for ns_key, seconds_key in _TIMES:
        ns = get(ns_key)
        if ns is None:
            seconds = get(seconds_key)
            ns = 0 if seconds is None else _ns(seconds)
        setattr(a, ns_key, int(ns))
    ino = get("st_ino")
    a.shown_ino = int(ino) if ino else None
    return a


def _ns(seconds: float) -> int:
    """Float seconds as nanoseconds, whole seconds apart so that no precision is lost to the float's size."""
    whole = int(seconds // 1)
    return whole * 1_000_000_000 + round((seconds - whole) * 1e9)


def seconds_of(ns: int) -> float:
    """Nanoseconds as float seconds, the inverse of the above as far as a float allows."""
    whole, rest = divmod(ns, 1_000_000_000)
    return whole + rest / 1e9


def _statvfs(value: Any) -> StatvfsData:
    """statfs's answer (StatvfsData, an ``os.statvfs_result`` or a mapping of ``f_*`` keys, any of them missing) as
    the kernel takes it: a missing block size is 512, fragment size the block size, name length 255."""
    if isinstance(value, StatvfsData):
        return value
    get = value.get if isinstance(value, Mapping) else lambda key, default=0: getattr(value, key, default)
    fields = {f: int(get(f, 0) or 0) for f in StatvfsData._fields}
    fields["f_bsize"] = fields["f_bsize"] or 512
    fields["f_frsize"] = fields["f_frsize"] or fields["f_bsize"]
    fields["f_namemax"] = fields["f_namemax"] or 255
    return StatvfsData(**fields)


class _Node:
    __slots__ = ("nodeid", "parent", "name", "nlookup", "opens", "hidden", "ino", "cached", "last", "fresh")

    def __init__(self, nodeid: int, parent: int, name: str) -> None:
        self.nodeid = nodeid
        self.ino = 0  # with use_ino: the st_ino it is known by
        self.parent = parent  # 0: no name any more (unlinked, not open)
        self.name = name
        self.nlookup = 0
        self.opens = 0
        self.hidden = False  # unlinked while open: renamed to a hidden name until its last release
        self.cached: tuple[int, int] | None = None  # with auto_cache: (mtime, size) its cached data is of
        self.last: EntryAttributes | None = None  # its attributes when last asked: for when no path leads to it
        self.fresh = 0.0  # until when (time.monotonic) the kernel may use the entry and attributes last given


class _Dir:
    __slots__ = ("nodeid", "fh", "entries")

    def __init__(self, nodeid: int, fh: int) -> None:
        self.nodeid = nodeid
        self.fh = fh
        self.entries: list[tuple[DirEntry, str, Any]] | None = None


class PathBridge(Operations):
    """Serves the inode API with a :class:`PathOperations` (``timeout``: how long the kernel may cache names and
    attributes, in seconds).

    The libfuse settings (:attr:`settings`, ``-o`` options of :func:`shuntfs.main`) are applied here, as libfuse's
    high-level API applies them: ``entry_timeout``, ``attr_timeout``, ``negative_timeout`` (0: a missing name is
    asked again each time), ``kernel_cache`` (file data stays cached across opens), ``auto_cache`` (it stays cached
    while the file's mtime and size, asked on each open, are what they were), ``direct_io`` (no page cache: every
    read and write reaches the filesystem, except on passthrough files), and ``uid``, ``gid``, ``umask``, which
    replace the owner, group and permission bits of every file's attributes."""

    settings = frozenset({"entry_timeout", "attr_timeout", "negative_timeout", "kernel_cache", "auto_cache",
                          "direct_io", "uid", "gid", "umask"})

    def __init__(self, fs: PathOperations, timeout: float = 1.0) -> None:
        self.fs = fs
        self.cache_listings = fs.cache_listings
        self.entry_timeout = self.attr_timeout = timeout
        self.negative_timeout = 0.0
        self.kernel_cache = False
        self.auto_cache = False
        self.direct_io = False
        self.uid: int | None = None
        self.gid: int | None = None
        self.umask: int | None = None
        self._lock = threading.RLock()
        root = _Node(ROOT_INODE, 0, "")
        root.nlookup = 1
        self._nodes: dict[int, _Node] = {ROOT_INODE: root}
        self._names: dict[tuple[int, str], int] = {}  # (parent, name) -> node id
        self._by_ino: dict[int, int] = {}  # with use_ino: st_ino -> node id
        self._next = itertools.count(ROOT_INODE + 1).__next__
        self._files: dict[int, tuple[int, Any]] = {}  # our fh -> (node id, the filesystem's fh)
        self._dirs: dict[int, _Dir] = {}
        self._next_fh = itertools.count(1).__next__
        #: per thread, the entry readdir gave last with its attributes: READDIRPLUS looks it up at once
        self._recent = threading.local()
        self._hidden = itertools.count(1).__next__
        self._hiding = 0  # how many files are hidden now: listings need not look for them otherwise
        #: drops the kernel's cached attributes of a node (set by the session): for changes the kernel did not ask
        #: for, such as the unlink of a hidden name at the last release, which moves its directory's times
        self.attributes_changed: Callable[[int], None] = lambda nodeid: None

    # ---- the node table
    def path(self, nodeid: InodeT) -> str:
        """The path of node ``nodeid`` (ENOENT once it has no name)."""
        with self._lock:
            parts = []
            node = self._nodes.get(nodeid)
            while node is not None and node.nodeid != ROOT_INODE:
                if not node.parent:
                    raise _enoent()
                parts.append(node.name)
                node = self._nodes.get(node.parent)
            if node is None:
                raise FUSEError(errno.ESTALE)
        return "/" + "/".join(reversed(parts))

    def _child(self, parent: int, name: str) -> str:
        base = self.path(parent)
        return base + name if base == "/" else base + "/" + name

    def _entry(self, parent: int, name: str, attrs: EntryAttributes) -> EntryAttributes:
        """Count a lookup of ``name`` in ``parent`` with these attributes; the node id goes into ``attrs``."""
        kept = kept_for(self.entry_timeout, attrs.attr_timeout)
        fresh = time.monotonic() + kept if kept else 0.0
        with self._lock:
            nodeid = self._names.get((parent, name))
            if nodeid is None and self.fs.use_ino and attrs.shown_ino:
                nodeid = self._by_ino.get(attrs.shown_ino)
            node = self._nodes.get(nodeid) if nodeid else None
            if node is None:
                node = _Node(self._next(), parent, name)
                self._nodes[node.nodeid] = node
                if self.fs.use_ino and attrs.shown_ino:
                    node.ino = attrs.shown_ino
                    self._by_ino[node.ino] = node.nodeid
            elif self.fs.use_ino:
                node.parent, node.name = parent, name  # the link it was last reached by
            self._names[(parent, name)] = node.nodeid
            node.nlookup += 1
            node.last = attrs
            node.fresh = fresh
        attrs.st_ino = node.nodeid
        if attrs.shown_ino is None:
            attrs.shown_ino = node.nodeid
        attrs.entry_timeout = self.entry_timeout
        return attrs

    def _drop_name(self, parent: int, name: str) -> None:
        """``name`` in ``parent`` is gone (under the lock)."""
        nodeid = self._names.pop((parent, name), None)
        node = self._nodes.get(nodeid) if nodeid else None
        if node is not None and node.parent == parent and node.name == name:
            node.parent = 0
            self._gone_if_unused(node)

    def _gone_if_unused(self, node: _Node) -> None:
        if node.nlookup <= 0 and node.opens <= 0 and node.nodeid != ROOT_INODE:
            self._nodes.pop(node.nodeid, None)
            if node.parent and self._names.get((node.parent, node.name)) == node.nodeid:
                del self._names[(node.parent, node.name)]
            if node.ino and self._by_ino.get(node.ino) == node.nodeid:
                del self._by_ino[node.ino]

    def forget(self, inodes: Sequence[tuple[int, int]]) -> None:
        with self._lock:
            for nodeid, nlookup in inodes:
                node = self._nodes.get(nodeid)
                if node is not None and nodeid != ROOT_INODE:
                    node.nlookup -= nlookup
                    self._gone_if_unused(node)

    # ---- names and attributes
    def init(self) -> None:
        self.fs.init()

    def destroy(self) -> None:
        self.fs.destroy()

    def _attributes(self, value: Attributes) -> EntryAttributes:
        attrs = attributes_of(value, self.attr_timeout)
        attrs.attr_timeout = self.attr_timeout
        if self.uid is not None:
            attrs.st_uid = self.uid
        if self.gid is not None:
            attrs.st_gid = self.gid
        if self.umask is not None:
            attrs.st_mode = stat.S_IFMT(attrs.st_mode) | (0o777 & ~self.umask)
        return attrs

    def _getattr(self, path: str, fh: Any = None) -> EntryAttributes:
        return self._attributes(self.fs.getattr(path, fh))

    def lookup(self, parent: InodeT, name: bytes, ctx: RequestContext) -> EntryAttributes:
        text = os.fsdecode(name)
        recent = getattr(self._recent, "entry", None)
        if recent is not None and recent[0] == parent and recent[1] == text:
            self._recent.entry = None
            attrs = recent[2]
            if attrs.__class__ is os.DirEntry:  # stat'ed now that the kernel wants the attributes
                attrs = self._attributes(attrs.stat(follow_symlinks=False))
        else:
            try:
                attrs = self._getattr(self._child(parent, text))
            except (FUSEError, OSError) as e:
                if e.errno != errno.ENOENT or not self.negative_timeout:
                    raise
                return EntryAttributes(st_ino=0, entry_timeout=self.negative_timeout, attr_timeout=0)
        return self._entry(parent, text, attrs)

    def _named(self, inode: int, fh: FileHandleT | None) -> tuple[Any, Any]:
        """(path, the filesystem's fh) for a call on ``inode`` (``fh``: the kernel's handle, if it gave one). An
        open file unlinked under ``nullpath_ok`` has no path: it is reached through one of its open handles, with
        path None; otherwise no path is ENOENT."""
        user_fh = self._files[fh][1] if fh is not None and fh in self._files else None
        try:
            return self.path(inode), user_fh
        except FUSEError:
            if not self.fs.nullpath_ok:
                raise
            if user_fh is None:  # fstat and the like come without a handle: any open one of the file will do
                user_fh = next((ufh for nodeid, ufh in list(self._files.values()) if nodeid == inode), None)
                if user_fh is None:
                    raise
            return None, user_fh

    def getattr(self, inode: InodeT, fh: FileHandleT | None, ctx: RequestContext) -> EntryAttributes:
        node = self._nodes.get(inode)
        try:
            path, user_fh = self._named(inode, fh)
        except FUSEError:
            if node is None or node.last is None:
                raise
            # A directory removed while open (a cwd, an fd): no path leads to it, and it has no links any more.
            attrs = copy.copy(node.last)
            attrs.st_nlink = 0
            return attrs
        attrs = self._getattr(path, user_fh)
        attrs.st_ino = inode
        if attrs.shown_ino is None:
            attrs.shown_ino = inode
        if node is not None:
            node.last = attrs
            if node.hidden and attrs.st_nlink:
                attrs.st_nlink -= 1  # its hidden name is no link as far as programs go: fstat shows 0, as natively
        return attrs

    def setattr(
        self, inode: InodeT, attr: EntryAttributes, fields: SetattrFields, fh: FileHandleT | None, ctx: RequestContext
    ) -> EntryAttributes:
        path, user_fh = self._named(inode, fh)
        fs = self.fs
        if fields.update_mode:
            fs.chmod(path, attr.st_mode, user_fh)
        if fields.update_uid or fields.update_gid:
            fs.chown(path, attr.st_uid if fields.update_uid else -1, attr.st_gid if fields.update_gid else -1,
                     user_fh)
        if fields.update_size:
            fs.truncate(path, attr.st_size, user_fh)
        if fields.update_atime or fields.update_mtime:
            fs.utimens(path, _utime(fields.update_atime, attr.st_atime_ns),
                       _utime(fields.update_mtime, attr.st_mtime_ns), user_fh)
        return self.getattr(inode, fh, ctx)

    def readlink(self, inode: InodeT, ctx: RequestContext) -> bytes:
        return os.fsencode(self.fs.readlink(self.path(inode)))

    def _made(self, parent: int, name: str) -> EntryAttributes:
        return self._entry(parent, name, self._getattr(self._child(parent, name)))

    def mknod(self, parent: InodeT, name: bytes, mode: int, rdev: int, ctx: RequestContext) -> EntryAttributes:
        text = os.fsdecode(name)
        self.fs.mknod(self._child(parent, text), mode, rdev)
        return self._made(parent, text)

    def mkdir(self, parent: InodeT, name: bytes, mode: int, ctx: RequestContext) -> EntryAttributes:
        text = os.fsdecode(name)
        self.fs.mkdir(self._child(parent, text), stat.S_IMODE(mode))
        return self._made(parent, text)

    def symlink(self, parent: InodeT, name: bytes, target: bytes, ctx: RequestContext) -> EntryAttributes:
        text = os.fsdecode(name)
        self.fs.symlink(self._child(parent, text), os.fsdecode(target))
        return self._made(parent, text)

    def link(self, inode: InodeT, new_parent: InodeT, new_name: bytes, ctx: RequestContext) -> EntryAttributes:
        text = os.fsdecode(new_name)
        path, new = self.path(inode), self._child(new_parent, text)
        node = self._nodes.get(inode)
        if node is None or not node.hidden:
            self.fs.link(path, new)
            return self._made(new_parent, text)
        # Only a file made with O_TMPFILE can be linked once hidden (the kernel refuses it for one unlinked while
        # open): it gets the name, and its hidden one goes, without a moment where a name that exists is replaced.
        try:
            self.fs.rename(path, new, RENAME_NOREPLACE)
        except (FUSEError, OSError) as e:
            if e.errno not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
                raise
            self.fs.link(path, new)
            self.fs.unlink(path)
        with self._lock:
            if node.hidden:
                node.hidden = False
                self._hiding -= 1
            self._names.pop((node.parent, node.name), None)
            node.parent, node.name = new_parent, text
            self._names[(new_parent, text)] = node.nodeid
        return self._made(new_parent, text)

    def unlink(self, parent: InodeT, name: bytes, ctx: RequestContext) -> None:
        text = os.fsdecode(name)
        path = self._child(parent, text)
        with self._lock:
            nodeid = self._names.get((parent, text))
            node = self._nodes.get(nodeid) if nodeid else None
            if node is not None and node.opens > 0 and not node.hidden and not self.fs.nullpath_ok:
                # Open files keep working: the file moves to a hidden name until its last release.
                hidden = f".fuse_hidden{node.nodeid:08x}{self._hidden():08x}"
                self.fs.rename(path, self._child(parent, hidden), 0)
                del self._names[(parent, text)]
                node.name, node.hidden = hidden, True
                self._hiding += 1
                self._names[(parent, hidden)] = node.nodeid
                return
        self.fs.unlink(path)
        with self._lock:
            self._drop_name(parent, text)

    def rmdir(self, parent: InodeT, name: bytes, ctx: RequestContext) -> None:
        text = os.fsdecode(name)
        self.fs.rmdir(self._child(parent, text))
        with self._lock:
            self._drop_name(parent, text)

    def rename(
        self, parent_old: InodeT, name_old: bytes, parent_new: InodeT, name_new: bytes, flags: int,
        ctx: RequestContext,
    ) -> None:
        old, new = os.fsdecode(name_old), os.fsdecode(name_new)
        self.fs.rename(self._child(parent_old, old), self._child(parent_new, new), flags)
        with self._lock:
            moving = self._names.pop((parent_old, old), None)
            replaced = self._names.pop((parent_new, new), None)
            if flags & 2:  # RENAME_EXCHANGE: the two names swap their nodes
                for nodeid, (p, n) in ((moving, (parent_new, new)), (replaced, (parent_old, old))):
                    if nodeid is not None and nodeid in self._nodes:
                        self._nodes[nodeid].parent, self._nodes[nodeid].name = p, n
                        self._names[(p, n)] = nodeid
                return
            if replaced is not None and replaced != moving and replaced in self._nodes:
                node = self._nodes[replaced]
                node.parent = 0  # a whole subtree below it, if any, goes with it
                self._gone_if_unused(node)
            if moving is not None and moving in self._nodes:
                # One node moves, and with it every node below it: paths are walked up from the nodes.
                node = self._nodes[moving]
                node.parent, node.name = parent_new, new
                self._names[(parent_new, new)] = moving

    # ---- open files
    def _opened(self, nodeid: int, answer: FileHandleT | FileInfo, fresh: EntryAttributes | None = None) -> FileInfo:
        """Our handle for what the filesystem's open gave; ``fresh``: the file's attributes as of this open."""
        info = answer if isinstance(answer, FileInfo) else FileInfo(fh=answer)
        fh = self._next_fh()
        with self._lock:
            self._files[fh] = (nodeid, info.fh)
            node = self._nodes[nodeid]
            node.opens += 1
            keep = info.keep_cache or self.kernel_cache
            if fresh is not None:  # auto_cache: the cached data stays if the file has not changed since
                now = (fresh.st_mtime_ns, fresh.st_size)
                keep = keep or node.cached == now
                node.cached = now
        direct = info.direct_io or (self.direct_io and info.passthrough_fd is None)
        return FileInfo(fh=fh, passthrough_fd=info.passthrough_fd, direct_io=direct, keep_cache=keep,
                        nonseekable=info.nonseekable, noflush=info.noflush)

    def open(self, inode: InodeT, flags: int, ctx: RequestContext) -> FileInfo:
        path = self.path(inode)
        answer = self.fs.open(path, flags)
        fresh = None
        if self.auto_cache:
            try:
                fresh = self._getattr(path, answer.fh if isinstance(answer, FileInfo) else answer)
            except BaseException:
                self.fs.release(path, answer.fh if isinstance(answer, FileInfo) else answer)
                raise
        return self._opened(inode, answer, fresh)

    def create(
        self, parent: InodeT, name: bytes, mode: int, flags: int, ctx: RequestContext
    ) -> tuple[FileInfo, EntryAttributes]:
        text = os.fsdecode(name)
        path = self._child(parent, text)
        answer = self.fs.create(path, stat.S_IMODE(mode), flags)
        attrs = self._made(parent, text)
        return self._opened(attrs.st_ino, answer), attrs

    def tmpfile(
        self, parent: InodeT, mode: int, flags: int, ctx: RequestContext
    ) -> tuple[FileInfo, EntryAttributes]:
        """O_TMPFILE, as libfuse's hide: ``create`` under a hidden name that listings leave out, unlinked with the
        last release unless ``link`` gave the file a name first."""
        hidden = f".fuse_hidden{parent:08x}{self._hidden():08x}"
        # O_EXCL means "never to be linked" here, which the kernel enforces; for the hidden name it means new
        flags = (flags & ~(os.O_TMPFILE | os.O_EXCL)) | os.O_CREAT | os.O_EXCL
        answer = self.fs.create(self._child(parent, hidden), stat.S_IMODE(mode), flags)
        try:
            attrs = self._made(parent, hidden)
        except BaseException:
            path = self._child(parent, hidden)
            self.fs.release(path, answer.fh if isinstance(answer, FileInfo) else answer)
            self.fs.unlink(path)
            raise
        info = self._opened(attrs.st_ino, answer)
        with self._lock:
            node = self._nodes[attrs.st_ino]
            node.hidden = True
            self._hiding += 1
        if attrs.st_nlink:
            attrs.st_nlink -= 1
        return info, attrs

    def _file(self, fh: FileHandleT) -> tuple[Any, Any]:
        record = self._files.get(fh)
        if record is None:
            raise FUSEError(errno.EBADF)
        return self._open_path(record[0]), record[1]

    def _open_path(self, nodeid: int, closing: bool = False) -> Any:  # str, or None (see nullpath_ok)
        """The path given to calls on an open file or directory: None where the filesystem takes none. A release
        is never refused for want of a path (the handle would leak): it gets "-" then, as with libfuse."""
        fs = self.fs
        if fs.nopath:
            return None
        if not fs.nullpath_ok and not closing:
            return self.path(nodeid)
        try:
            return self.path(nodeid)
        except FUSEError:
            return None if fs.nullpath_ok else "-"  # removed while open

    def read(self, fh: FileHandleT, offset: int, size: int) -> bytes:
        path, user_fh = self._file(fh)
        return self.fs.read(path, size, offset, user_fh)

    def write(self, fh: FileHandleT, offset: int, data: memoryview) -> int:
        path, user_fh = self._file(fh)
        return self.fs.write(path, bytes(data), offset, user_fh)

    def flush(self, fh: FileHandleT) -> None:
        path, user_fh = self._file(fh)
        self.fs.flush(path, user_fh)

    def release(self, fh: FileHandleT) -> None:
        record = self._files.pop(fh, None)
        if record is None:
            return
        nodeid, user_fh = record
        try:
            self.fs.release(self._open_path(nodeid, closing=True), user_fh)
        finally:
            hidden_path, place = None, (0, "")
            with self._lock:
                node = self._nodes.get(nodeid)
                if node is not None:
                    node.opens -= 1
                    if node.opens <= 0 and node.hidden:
                        hidden_path, place = self.path(nodeid), (node.parent, node.name)
                        node.hidden = False
                        self._hiding -= 1
                    else:
                        self._gone_if_unused(node)
            if hidden_path is not None:  # its last open is gone: so is the file (outside the lock: it may be slow)
                try:
                    self.fs.unlink(hidden_path)
                finally:
                    with self._lock:
                        self._drop_name(*place)
                    self.attributes_changed(place[0])

    def fsync(self, fh: FileHandleT, datasync: bool) -> None:
        path, user_fh = self._file(fh)
        self.fs.fsync(path, datasync, user_fh)

    def fallocate(self, fh: FileHandleT, mode: int, offset: int, length: int) -> None:
        path, user_fh = self._file(fh)
        self.fs.fallocate(path, mode, offset, length, user_fh)

    def lseek(self, fh: FileHandleT, offset: int, whence: int) -> int:
        path, user_fh = self._file(fh)
        return self.fs.lseek(path, offset, whence, user_fh)

    def ioctl(self, fh: FileHandleT, cmd: int, arg: int, data: bytes, out_size: int, flags: int) -> tuple[int, bytes]:
        path, user_fh = self._file(fh)
        return self.fs.ioctl(path, cmd, arg, user_fh, flags, data, out_size)

    # ---- directories
    def opendir(self, inode: InodeT, ctx: RequestContext) -> FileHandleT:
        user_fh = self.fs.opendir(self.path(inode))
        fh = self._next_fh()
        self._dirs[fh] = _Dir(inode, user_fh)
        return fh

    def readdir(self, fh: FileHandleT, offset: int, ctx: RequestContext) -> Iterator[DirEntry]:
        handle = self._dirs.get(fh)
        if handle is None:
            raise FUSEError(errno.EBADF)
        if handle.entries is None or offset == 0:
            handle.entries = self._listing(handle)
        entries = handle.entries
        recent = self._recent
        parent = handle.nodeid
        # A name the kernel holds fresh from an earlier reply goes without attributes (plus=False): in a READDIRPLUS
        # its lookup would only give the kernel what it has.
        names = self._names if kept_for(self.entry_timeout, self.attr_timeout) else None
        nodes, now, new = self._nodes, time.monotonic(), tuple.__new__
        for index in range(offset, len(entries)):
            entry, name, attrs = entries[index]
            if attrs is not None:
                node = nodes.get(names.get((parent, name), 0)) if names is not None else None
                if node is not None and node.fresh > now and node.nlookup > 0:
                    yield new(DirEntry, (entry[0], entry[1], entry[2], entry[3], False))
                    continue
                recent.entry = (parent, name, attrs)  # READDIRPLUS looks it up next: no getattr
            yield entry

    def _listing(self, handle: _Dir) -> list[tuple[DirEntry, str, Any]]:
        """The directory's entries as the kernel gets them, with their names and the attributes readdir gave (an
        ``os.DirEntry`` stays one until the kernel asks for its attributes)."""
        parent = handle.nodeid
        hiding = self._hiding > 0
        dots = {".", ".."}
        items: list[tuple[str, Any]] = []
        append = items.append
        item: Any  # narrowed by class below (faster than isinstance, which mypy would follow)
        attrs: Any
        for item in self.fs.readdir(self._open_path(parent), handle.fh):
            kind = item.__class__
            if kind is str:
                name, attrs = item, None
            elif kind is os.DirEntry:
                name, attrs = os.fsdecode(item.name), item
            else:
                name, attrs = item[0], item[1] if len(item) > 1 else None
            if name in dots:
                dots.discard(name)
            elif hiding and self._is_hidden(parent, name):
                continue  # an unlinked file kept for its open handles: gone, as far as names go
            append((name, attrs))
        if dots:  # the filesystem left out "." or "..": they come first, as everywhere
            items[:0] = [(dot, None) for dot in (".", "..") if dot in dots]
        attributes = self._attributes
        fsencode = os.fsencode
        new = tuple.__new__  # a DirEntry without the Python-level __new__ of named tuples: a third of the cost
        entries: list[tuple[DirEntry, str, Any]] = []
        add = entries.append
        for index, (name, attrs) in enumerate(items, 1):
            if attrs is None:  # no inode number to show: libfuse's "unknown" (readdir(3) skips an entry with 0)
                add((new(DirEntry, (fsencode(name), UNKNOWN_INO, 0, index, False)), name, None))
            elif attrs.__class__ is os.DirEntry:
                add((new(DirEntry, (fsencode(name), attrs.inode(), _dirent_type(attrs), index, True)), name, attrs))
            else:
                attrs = attributes(attrs)
                entry = new(DirEntry, (fsencode(name), attrs.shown_ino or 0, dtype_of(attrs.st_mode), index, True))
                add((entry, name, attrs))
        return entries

    def _is_hidden(self, parent: int, name: str) -> bool:
        nodeid = self._names.get((parent, name))
        node = self._nodes.get(nodeid) if nodeid else None
        return node is not None and node.hidden

    def releasedir(self, fh: FileHandleT) -> None:
        handle = self._dirs.pop(fh, None)
        if handle is not None:
            self.fs.releasedir(self._open_path(handle.nodeid, closing=True), handle.fh)

    def fsyncdir(self, fh: FileHandleT, datasync: bool) -> None:
        handle = self._dirs.get(fh)
        if handle is None:
            raise FUSEError(errno.EBADF)
        path = self._open_path(handle.nodeid, closing=True)
        if path != "-":  # a directory removed while open has nothing left to make durable
            self.fs.fsyncdir(path, datasync, handle.fh)

    # ---- the rest
    def statfs(self, ctx: RequestContext) -> StatvfsData:
        return _statvfs(self.fs.statfs("/") or {})

    def access(self, inode: InodeT, mode: int, ctx: RequestContext) -> None:
        self.fs.access(self.path(inode), mode)

    def setxattr(self, inode: InodeT, name: bytes, value: bytes, flags: int, ctx: RequestContext) -> None:
        self.fs.setxattr(self.path(inode), os.fsdecode(name), value, flags)

    def getxattr(self, inode: InodeT, name: bytes, ctx: RequestContext) -> bytes:
        return self.fs.getxattr(self.path(inode), os.fsdecode(name))

    def listxattr(self, inode: InodeT, ctx: RequestContext) -> list[bytes]:
        return [os.fsencode(name) for name in self.fs.listxattr(self.path(inode))]

    def removexattr(self, inode: InodeT, name: bytes, ctx: RequestContext) -> None:
        self.fs.removexattr(self.path(inode), os.fsdecode(name))


def _dirent_type(entry: os.DirEntry) -> int:
    """The DT_* value of a scandir entry, from what getdents gave (no stat)."""
    if entry.is_symlink():
        return stat.S_IFLNK >> 12
    if entry.is_dir(follow_symlinks=False):
        return stat.S_IFDIR >> 12
    if entry.is_file(follow_symlinks=False):
        return stat.S_IFREG >> 12
    return 0  # DT_UNKNOWN: a device, fifo or socket; the kernel learns which on lookup


def _utime(changed: bool, ns: int) -> int:
    if not changed:
        return UTIME_OMIT
    return UTIME_NOW if ns == NOW else ns
