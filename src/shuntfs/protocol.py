"""Sans-I/O FUSE protocol: bytes in, requests out; replies in, bytes out.

Nothing here touches a file descriptor, so the same code serves a /dev/fuse loop, a replayed trace or a unit test.
Each request argument type is a small NamedTuple; names are ``bytes`` as the kernel sent them (no decoding).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

from . import abi
from .abi import InitFlag, Opcode


class ProtocolError(Exception):
    """A request the decoder cannot make sense of (truncated, oversized, malformed)."""


class Request:
    """One decoded kernel request: header fields and the opcode's typed argument."""

    __slots__ = ("opcode", "unique", "nodeid", "uid", "gid", "pid", "arg", "out", "blocking")

    def __init__(self, opcode: int, unique: int, nodeid: int, uid: int, gid: int, pid: int, arg: Any) -> None:
        self.opcode = opcode
        self.unique = unique
        self.nodeid = nodeid
        self.uid = uid
        self.gid = gid
        self.pid = pid
        self.arg = arg
        #: where the transport lets a handler put a reply payload in place (a writable view of at least max_write
        #: bytes), or None; a handler that fills it returns the byte count instead of a payload
        self.out: memoryview | None = None
        #: set by the transport when the request runs again on a thread that may wait (see operations.WouldBlock)
        self.blocking = False

    def __repr__(self) -> str:
        name = abi.OPCODE_NAMES.get(self.opcode, str(self.opcode))
        return f"<{name} unique={self.unique} nodeid={self.nodeid} uid={self.uid} pid={self.pid} {self.arg!r}>"


# ---- argument types -------------------------------------------------------------------------------------------
class Empty(NamedTuple):
    pass


class Name(NamedTuple):
    name: bytes


class Forget(NamedTuple):
    nlookup: int


class BatchForget(NamedTuple):
    items: list  # [(nodeid, nlookup), ...]


class Getattr(NamedTuple):
    flags: int
    fh: int


class Setattr(NamedTuple):
    valid: int
    fh: int
    size: int
    lock_owner: int
    atime: int
    mtime: int
    ctime: int
    atimensec: int
    mtimensec: int
    ctimensec: int
    mode: int
    uid: int
    gid: int


class Symlink(NamedTuple):
    name: bytes
    target: bytes


class Mknod(NamedTuple):
    mode: int
    rdev: int
    umask: int
    name: bytes


class Mkdir(NamedTuple):
    mode: int
    umask: int
    name: bytes


class Rename(NamedTuple):
    newdir: int
    flags: int
    old: bytes
    new: bytes


class Link(NamedTuple):
    oldnodeid: int
    newname: bytes


class Open(NamedTuple):
    flags: int
    open_flags: int


class Read(NamedTuple):
    fh: int
    offset: int
    size: int
    read_flags: int
    lock_owner: int
    flags: int


class Write(NamedTuple):
    fh: int
    offset: int
    size: int
    write_flags: int
    lock_owner: int
    flags: int
    data: memoryview


class Release(NamedTuple):
    fh: int
    flags: int
    release_flags: int
    lock_owner: int


class Flush(NamedTuple):
    fh: int
    lock_owner: int


class Fsync(NamedTuple):
    fh: int
    fsync_flags: int


class Setxattr(NamedTuple):
    name: bytes
    value: bytes
    flags: int


class Getxattr(NamedTuple):
    name: bytes
    size: int


class Listxattr(NamedTuple):
    size: int


class Init(NamedTuple):
    major: int
    minor: int
    max_readahead: int
    flags: int  # 64-bit: flags | flags2 << 32


class Access(NamedTuple):
    mask: int


class Create(NamedTuple):
    flags: int
    mode: int
    umask: int
    open_flags: int
    name: bytes


class Interrupt(NamedTuple):
    unique: int


class Fallocate(NamedTuple):
    fh: int
    offset: int
    length: int
    mode: int


class Lseek(NamedTuple):
    fh: int
    offset: int
    whence: int


class CopyFileRange(NamedTuple):
    fh_in: int
    off_in: int
    nodeid_out: int
    fh_out: int
    off_out: int
    length: int
    flags: int


class Statx(NamedTuple):
    getattr_flags: int
    fh: int
    sx_flags: int
    sx_mask: int


class Unsupported(NamedTuple):
    """An opcode we do not implement: the session answers ENOSYS (or nothing, for replies-less ones)."""

    body: bytes


# ---- decoding ---------------------------------------------------------------------------------------------------
def _cstr(body: memoryview, start: int = 0) -> tuple[bytes, int]:
    """A NUL-terminated name at ``start``; returns it and the offset after its NUL."""
    # Names and symlink targets are at most PATH_MAX, so only that much is copied to search for the NUL.
    chunk = body[start : start + _PATH_MAX + 1].tobytes()
    end = chunk.find(b"\0")
    if end < 0:
        raise ProtocolError("name is not NUL-terminated")
    return chunk[:end], start + end + 1


_PATH_MAX = 4096


def _need(body: memoryview, size: int) -> None:
    if len(body) < size:
        raise ProtocolError(f"argument is {len(body)} bytes, need {size}")


def _d_name(body: memoryview) -> Name:
    return Name(_cstr(body)[0])


def _d_forget(body: memoryview) -> Forget:
    _need(body, abi.FORGET_IN.size)
    return Forget(*abi.FORGET_IN.unpack_from(body))


def _d_batch_forget(body: memoryview) -> BatchForget:
    _need(body, abi.BATCH_FORGET_IN.size)
    (count,) = abi.BATCH_FORGET_IN.unpack_from(body)
    _need(body, abi.BATCH_FORGET_IN.size + count * abi.FORGET_ONE.size)
    items = list(abi.FORGET_ONE.iter_unpack(body[abi.BATCH_FORGET_IN.size : abi.BATCH_FORGET_IN.size + count * 16]))
    return BatchForget(items)


def _d_getattr(body: memoryview) -> Getattr:
    if len(body) < abi.GETATTR_IN.size:  # minor < 9 sent no argument
        return Getattr(0, 0)
    return Getattr(*abi.GETATTR_IN.unpack_from(body))


def _d_setattr(body: memoryview) -> Setattr:
    _need(body, abi.SETATTR_IN.size)
    return Setattr(*abi.SETATTR_IN.unpack_from(body))


def _d_empty(body: memoryview) -> Empty:
    return _EMPTY


_EMPTY = Empty()


def _d_symlink(body: memoryview) -> Symlink:
    name, pos = _cstr(body)
    target, _ = _cstr(body, pos)
    return Symlink(name, target)


def _d_mknod(body: memoryview) -> Mknod:
    _need(body, abi.MKNOD_IN.size)
    mode, rdev, umask = abi.MKNOD_IN.unpack_from(body)
    return Mknod(mode, rdev, umask, _cstr(body, abi.MKNOD_IN.size)[0])


def _d_mkdir(body: memoryview) -> Mkdir:
    _need(body, abi.MKDIR_IN.size)
    mode, umask = abi.MKDIR_IN.unpack_from(body)
    return Mkdir(mode, umask, _cstr(body, abi.MKDIR_IN.size)[0])


def _d_rename(body: memoryview) -> Rename:
    _need(body, abi.RENAME_IN.size)
    (newdir,) = abi.RENAME_IN.unpack_from(body)
    old, pos = _cstr(body, abi.RENAME_IN.size)
    return Rename(newdir, 0, old, _cstr(body, pos)[0])


def _d_rename2(body: memoryview) -> Rename:
    _need(body, abi.RENAME2_IN.size)
    newdir, flags = abi.RENAME2_IN.unpack_from(body)
    old, pos = _cstr(body, abi.RENAME2_IN.size)
    return Rename(newdir, flags, old, _cstr(body, pos)[0])


def _d_link(body: memoryview) -> Link:
    _need(body, abi.LINK_IN.size)
    (old,) = abi.LINK_IN.unpack_from(body)
    return Link(old, _cstr(body, abi.LINK_IN.size)[0])


def _d_open(body: memoryview) -> Open:
    _need(body, abi.OPEN_IN.size)
    return Open(*abi.OPEN_IN.unpack_from(body))


def _d_read(body: memoryview) -> Read:
    _need(body, abi.READ_IN.size)
    return Read(*abi.READ_IN.unpack_from(body))


def _d_write(body: memoryview) -> Write:
    _need(body, abi.WRITE_IN.size)
    fh, offset, size, write_flags, lock_owner, flags = abi.WRITE_IN.unpack_from(body)
    data = body[abi.WRITE_IN.size : abi.WRITE_IN.size + size]
    if len(data) != size:
        raise ProtocolError(f"WRITE carries {len(data)} bytes, header says {size}")
    return Write(fh, offset, size, write_flags, lock_owner, flags, data)


def _d_release(body: memoryview) -> Release:
    _need(body, abi.RELEASE_IN.size)
    return Release(*abi.RELEASE_IN.unpack_from(body))


def _d_flush(body: memoryview) -> Flush:
    _need(body, abi.FLUSH_IN.size)
    return Flush(*abi.FLUSH_IN.unpack_from(body))


def _d_fsync(body: memoryview) -> Fsync:
    _need(body, abi.FSYNC_IN.size)
    return Fsync(*abi.FSYNC_IN.unpack_from(body))


def _d_setxattr(body: memoryview) -> Setxattr:
    _need(body, abi.SETXATTR_IN.size)
    size, flags = abi.SETXATTR_IN.unpack_from(body)
    name, pos = _cstr(body, abi.SETXATTR_IN.size)
    value = body[pos : pos + size].tobytes()
    if len(value) != size:
        raise ProtocolError("SETXATTR value is truncated")
    return Setxattr(name, value, flags)


def _d_getxattr(body: memoryview) -> Getxattr:
    _need(body, abi.GETXATTR_IN.size)
    (size,) = abi.GETXATTR_IN.unpack_from(body)
    return Getxattr(_cstr(body, abi.GETXATTR_IN.size)[0], size)


def _d_listxattr(body: memoryview) -> Listxattr:
    _need(body, abi.GETXATTR_IN.size)
    return Listxattr(abi.GETXATTR_IN.unpack_from(body)[0])


def _d_init(body: memoryview) -> Init:
    _need(body, 16)
    if len(body) >= abi.INIT_IN.size:
        major, minor, readahead, flags, flags2 = abi.INIT_IN.unpack_from(body)
    else:
        major, minor, readahead, flags = struct.unpack_from("<IIII", body)
        flags2 = 0
    if flags & InitFlag.INIT_EXT:
        flags |= flags2 << 32
    return Init(major, minor, readahead, flags)


def _d_access(body: memoryview) -> Access:
    _need(body, abi.ACCESS_IN.size)
    return Access(abi.ACCESS_IN.unpack_from(body)[0])


def _d_create(body: memoryview) -> Create:
    _need(body, abi.CREATE_IN.size)
    flags, mode, umask, open_flags = abi.CREATE_IN.unpack_from(body)
    return Create(flags, mode, umask, open_flags, _cstr(body, abi.CREATE_IN.size)[0])


def _d_interrupt(body: memoryview) -> Interrupt:
    _need(body, abi.INTERRUPT_IN.size)
    return Interrupt(abi.INTERRUPT_IN.unpack_from(body)[0])


def _d_fallocate(body: memoryview) -> Fallocate:
    _need(body, abi.FALLOCATE_IN.size)
    return Fallocate(*abi.FALLOCATE_IN.unpack_from(body))


def _d_lseek(body: memoryview) -> Lseek:
    _need(body, abi.LSEEK_IN.size)
    return Lseek(*abi.LSEEK_IN.unpack_from(body))


def _d_copy_file_range(body: memoryview) -> CopyFileRange:
    _need(body, abi.COPY_FILE_RANGE_IN.size)
    return CopyFileRange(*abi.COPY_FILE_RANGE_IN.unpack_from(body))


def _d_statx(body: memoryview) -> Statx:
    _need(body, abi.STATX_IN.size)
    return Statx(*abi.STATX_IN.unpack_from(body))


def _d_unsupported(body: memoryview) -> Unsupported:
    return Unsupported(body[:64].tobytes())


#: opcode -> argument decoder. Opcodes missing here decode as Unsupported.
DECODERS: dict[int, Callable[[memoryview], Any]] = {
    Opcode.LOOKUP: _d_name,
    Opcode.FORGET: _d_forget,
    Opcode.GETATTR: _d_getattr,
    Opcode.SETATTR: _d_setattr,
    Opcode.READLINK: _d_empty,
    Opcode.SYMLINK: _d_symlink,
    Opcode.MKNOD: _d_mknod,
    Opcode.MKDIR: _d_mkdir,
    Opcode.UNLINK: _d_name,
    Opcode.RMDIR: _d_name,
    Opcode.RENAME: _d_rename,
    Opcode.LINK: _d_link,
    Opcode.OPEN: _d_open,
    Opcode.READ: _d_read,
    Opcode.WRITE: _d_write,
    Opcode.STATFS: _d_empty,
    Opcode.RELEASE: _d_release,
    Opcode.FSYNC: _d_fsync,
    Opcode.SETXATTR: _d_setxattr,
    Opcode.GETXATTR: _d_getxattr,
    Opcode.LISTXATTR: _d_listxattr,
    Opcode.REMOVEXATTR: _d_name,
    Opcode.FLUSH: _d_flush,
    Opcode.INIT: _d_init,
    Opcode.OPENDIR: _d_open,
    Opcode.READDIR: _d_read,
    Opcode.RELEASEDIR: _d_release,
    Opcode.FSYNCDIR: _d_fsync,
    Opcode.ACCESS: _d_access,
    Opcode.CREATE: _d_create,
    Opcode.INTERRUPT: _d_interrupt,
    Opcode.BATCH_FORGET: _d_batch_forget,
    Opcode.FALLOCATE: _d_fallocate,
    Opcode.READDIRPLUS: _d_read,
    Opcode.RENAME2: _d_rename2,
    Opcode.LSEEK: _d_lseek,
    Opcode.COPY_FILE_RANGE: _d_copy_file_range,
    Opcode.TMPFILE: _d_create,
    Opcode.STATX: _d_statx,
    Opcode.COPY_FILE_RANGE_64: _d_copy_file_range,
}

#: Requests the kernel expects no reply to.
NO_REPLY = frozenset({Opcode.FORGET, Opcode.BATCH_FORGET, Opcode.INTERRUPT, Opcode.NOTIFY_REPLY})

_unpack_header = abi.IN_HEADER.unpack_from
_HEADER_SIZE = abi.IN_HEADER.size


def decode(buf: bytes | bytearray | memoryview) -> Request:
    """Decode one request (exactly what one read(2) of /dev/fuse returned).

    Raises ProtocolError for bytes that do not form a request. The returned request may reference ``buf``
    (WRITE data is a memoryview into it), so the buffer must outlive the request.
    """
    view = buf if isinstance(buf, memoryview) else memoryview(buf)
    if len(view) < _HEADER_SIZE:
        raise ProtocolError(f"request of {len(view)} bytes is shorter than the header")
    length, opcode, unique, nodeid, uid, gid, pid, extlen, _pad = _unpack_header(view)
    if length != len(view):
        raise ProtocolError(f"header says {length} bytes, read returned {len(view)}")
    end = length - extlen * 8
    if end < _HEADER_SIZE:
        raise ProtocolError("extension area overlaps the header")
    decoder = DECODERS.get(opcode, _d_unsupported)
    try:
        arg = decoder(view[_HEADER_SIZE:end])
    except (struct.error, ValueError) as e:
        raise ProtocolError(f"opcode {opcode}: {e}") from None
    return Request(opcode, unique, nodeid, uid, gid, pid, arg)


def peek_header(buf: bytes | bytearray | memoryview) -> tuple[int, int] | None:
    """(opcode, unique) of a buffer that failed to decode, so it can still be answered; None if unreadable."""
    if len(buf) < _HEADER_SIZE:
        return None
    _len, opcode, unique = struct.unpack_from("<IIQ", buf)
    return opcode, unique


# ---- FUSE over io_uring framing -----------------------------------------------------------------------------------
# A ring entry is one buffer we own: the kernel's 288-byte header at 0, scratch up to RING_PAYLOAD, the payload buffer
# from RING_PAYLOAD on. The kernel splits a request over the header (in_header, first argument) and the payload (the
# rest); laying the first two back in the scratch just before the payload makes the whole request contiguous again, so
# one decoder serves both transports.
RING_PAYLOAD = 512
_U32 = struct.Struct("<I")
_IN_LEN = 0


def ring_request(view: memoryview) -> memoryview:
    """The request in a ring entry, as one message ``decode`` takes (a view into the entry buffer)."""
    length = _U32.unpack_from(view, _IN_LEN)[0]
    payload = _U32.unpack_from(view, abi.URING_PAYLOAD_SZ)[0]
    first = length - _HEADER_SIZE - payload
    if not 0 <= first <= abi.URING_OP_IN_MAX or RING_PAYLOAD + payload > len(view):
        raise ProtocolError(f"ring entry: length {length} with payload {payload}")
    start = RING_PAYLOAD - _HEADER_SIZE - first
    view[start : start + _HEADER_SIZE] = view[:_HEADER_SIZE]
    view[RING_PAYLOAD - first : RING_PAYLOAD] = view[abi.URING_OP_IN : abi.URING_OP_IN + first]
    return view[start : RING_PAYLOAD + payload]


def ring_reply(view: memoryview, reply: bytes | list) -> None:
    """Put a reply (a whole message, or a list whose first item is the header) into a ring entry: the header goes
    in the header area, everything after it in the payload buffer. A first payload part that is a view of the entry
    itself was put in place by the handler (``Request.out`` is the entry's payload buffer) and is not copied."""
    if isinstance(reply, list):
        view[:_OUT] = reply[0]
        pos = RING_PAYLOAD
        for part in reply[1:]:
            n = len(part)
            if not (pos == RING_PAYLOAD and type(part) is memoryview and part.obj is view.obj):
                view[pos : pos + n] = part
            pos += n
        size = pos - RING_PAYLOAD
    else:
        size = len(reply) - _OUT
        view[:_OUT] = reply[:_OUT]
        view[RING_PAYLOAD : RING_PAYLOAD + size] = reply[_OUT:]
    _U32.pack_into(view, abi.URING_PAYLOAD_SZ, size)


# ---- encoding ---------------------------------------------------------------------------------------------------
_pack_out = abi.OUT_HEADER.pack
_OUT = abi.OUT_HEADER.size


def reply_error(unique: int, errno: int) -> bytes:
    """An error reply: exactly 16 bytes, error = -errno."""
    if not 0 < errno < 512:
        errno = 5  # EIO: the kernel rejects anything outside (0, 512)
    return _pack_out(_OUT, -errno, unique)


def reply_empty(unique: int) -> bytes:
    return _pack_out(_OUT, 0, unique)


def reply_bytes(unique: int, payload: bytes | bytearray | memoryview) -> bytes:
    return _pack_out(_OUT + len(payload), 0, unique) + bytes(payload)


def reply_header(unique: int, payload_len: int) -> bytes:
    """Just the header, for replies written with writev(header, payload) to avoid copying payload."""
    return _pack_out(_OUT + payload_len, 0, unique)


def _split_timeout(seconds: float) -> tuple[int, int]:
    if seconds <= 0:
        return 0, 0
    whole = int(seconds)
    return whole, int((seconds - whole) * 1e9)


def attr_fields(
    ino: int, size: int, blocks: int, atime_ns: int, mtime_ns: int, ctime_ns: int,
    mode: int, nlink: int, uid: int, gid: int, rdev: int, blksize: int,
) -> tuple:
    """fuse_attr field tuple in wire order, from nanosecond timestamps."""
    asec, ansec = divmod(atime_ns, 1_000_000_000)
    msec, mnsec = divmod(mtime_ns, 1_000_000_000)
    csec, cnsec = divmod(ctime_ns, 1_000_000_000)
    return (
        ino, size, blocks, asec & _U64, msec & _U64, csec & _U64, ansec, mnsec, cnsec,
        mode, nlink, uid, gid, rdev & 0xFFFFFFFF, blksize, 0,
    )


_U64 = 0xFFFFFFFFFFFFFFFF
NO_ATTR = (0,) * 16


_pack_entry = abi.ENTRY_OUT.pack
_pack_attr_out = abi.ATTR_OUT.pack


def entry_out(nodeid: int, generation: int, entry_timeout: float, attr_timeout: float, attr: tuple) -> bytes:
    """fuse_entry_out (128 bytes) from an attr_fields() tuple. nodeid 0 is a negative entry, cached for the timeout."""
    es, ens = _split_timeout(entry_timeout)
    as_, ans = _split_timeout(attr_timeout)
    return _pack_entry(nodeid, generation, es, as_, ens, ans, *attr)


def attr_out(attr_timeout: float, attr: tuple) -> bytes:
    as_, ans = _split_timeout(attr_timeout)
    return _pack_attr_out(as_, ans, 0, *attr)


def open_out(fh: int, open_flags: int, backing_id: int = 0) -> bytes:
    return abi.OPEN_OUT.pack(fh, open_flags, backing_id)


def write_out(size: int) -> bytes:
    return abi.WRITE_OUT.pack(size)


def statfs_out(
    blocks: int, bfree: int, bavail: int, files: int, ffree: int, bsize: int, namelen: int, frsize: int
) -> bytes:
    return abi.STATFS_OUT.pack(blocks, bfree, bavail, files, ffree, bsize, namelen, frsize)


def xattr_size_out(size: int) -> bytes:
    return abi.GETXATTR_OUT.pack(size)


def lseek_out(offset: int) -> bytes:
    return abi.LSEEK_OUT.pack(offset)


def copy_file_range_out(opcode: int, copied: int) -> bytes:
    if opcode == Opcode.COPY_FILE_RANGE_64:
        return abi.COPY_FILE_RANGE_OUT.pack(copied)
    return abi.WRITE_OUT.pack(min(copied, 0xFFFFFFFF))


def statx_out(attr_timeout: float, statx: bytes) -> bytes:
    """fuse_statx_out from a 256-byte fuse_statx (layout identical to the kernel's struct statx)."""
    if len(statx) != abi.STATX_SIZE:
        raise ValueError("fuse_statx must be 256 bytes")
    as_, ans = _split_timeout(attr_timeout)
    return abi.STATX_OUT_HEAD.pack(as_, ans, 0) + statx


def dirent_size(name: bytes) -> int:
    return (abi.DIRENT_SIZE + len(name) + 7) & ~7


def direntplus_size(name: bytes) -> int:
    return (abi.DIRENTPLUS_SIZE + len(name) + 7) & ~7


def pack_dirent(out: bytearray, ino: int, next_offset: int, dtype: int, name: bytes) -> None:
    """Append one fuse_dirent record (padded to 8 bytes) to ``out``."""
    out += abi.DIRENT.pack(ino, next_offset, len(name), dtype)
    out += name
    pad = -len(out) & 7
    if pad:
        out += b"\0" * pad


def pack_direntplus(out: bytearray, entry: bytes, ino: int, next_offset: int, dtype: int, name: bytes) -> None:
    out += entry
    pack_dirent(out, ino, next_offset, dtype, name)


# ---- notifications (unique = 0, error = code) -----------------------------------------------------------------
def _notify(code: int, payload: bytes) -> bytes:
    return _pack_out(_OUT + len(payload), code, 0) + payload


def notify_inval_inode(nodeid: int, offset: int = -1, length: int = 0) -> bytes:
    return _notify(abi.NotifyCode.INVAL_INODE, abi.NOTIFY_INVAL_INODE.pack(nodeid, offset, length))


def notify_inval_entry(parent: int, name: bytes, expire_only: bool = False) -> bytes:
    flags = abi.EXPIRE_ONLY if expire_only else 0
    return _notify(abi.NotifyCode.INVAL_ENTRY, abi.NOTIFY_INVAL_ENTRY.pack(parent, len(name), flags) + name + b"\0")


def notify_delete(parent: int, child: int, name: bytes) -> bytes:
    return _notify(abi.NotifyCode.DELETE, abi.NOTIFY_DELETE.pack(parent, child, len(name)) + name + b"\0")


def notify_store(nodeid: int, offset: int, data: bytes) -> bytes:
    return _notify(abi.NotifyCode.STORE, abi.NOTIFY_STORE.pack(nodeid, offset, len(data)) + data)


# ---- INIT negotiation ---------------------------------------------------------------------------------------------
@dataclass
class InitConfig:
    """What the server asks for at INIT."""

    want: int
    max_write: int = 1 << 20
    max_readahead: int = 1 << 20
    max_background: int = 64
    congestion_threshold: int = 48
    time_gran: int = 1
    max_stack_depth: int = 1


@dataclass
class Negotiated:
    """What INIT settled: the minor both speak and the capabilities both have."""

    kernel_major: int
    kernel_minor: int
    minor: int
    kernel_flags: int
    flags: int
    max_write: int
    max_readahead: int
    max_pages: int
    max_stack_depth: int
    errors: list[str] = field(default_factory=list)

    @property
    def passthrough(self) -> bool:
        return bool(self.flags & InitFlag.PASSTHROUGH)

    def has(self, flag: int) -> bool:
        return bool(self.flags & flag)


PAGE_SIZE = 4096


def negotiate(init: Init, config: InitConfig) -> tuple[Negotiated, bytes]:
    """Settle INIT: returns the outcome and the init_out payload (without header).

    A kernel with another major gets a reply with our major only; it will then refuse the connection, which is the
    documented way to say we do not speak its protocol.
    """
    if init.major != abi.KERNEL_MAJOR:
        neg = Negotiated(init.major, init.minor, 0, init.flags, 0, 0, 0, 0, 0, [f"kernel protocol major {init.major}"])
        return neg, struct.pack("<II", abi.KERNEL_MAJOR, abi.KERNEL_MINOR)
    minor = min(init.minor, abi.KERNEL_MINOR)
    flags = config.want & init.flags
    errors = []
    if minor < abi.OLDEST_MINOR:
        errors.append(f"kernel protocol 7.{init.minor} is older than 7.{abi.OLDEST_MINOR}")
    # The kernel refuses passthrough with the writeback cache, and with a depth outside 1..2.
    if flags & InitFlag.PASSTHROUGH and (flags & InitFlag.WRITEBACK_CACHE or not 1 <= config.max_stack_depth <= 2):
        flags &= ~InitFlag.PASSTHROUGH
    if flags >> 32:
        flags |= InitFlag.INIT_EXT
    if not flags & InitFlag.INIT_EXT:
        flags &= 0xFFFFFFFF
    max_pages = max(1, config.max_write // PAGE_SIZE) if flags & InitFlag.MAX_PAGES else 32
    max_write = min(config.max_write, max_pages * PAGE_SIZE)
    readahead = min(config.max_readahead, init.max_readahead)
    depth = config.max_stack_depth if flags & InitFlag.PASSTHROUGH else 0
    payload = abi.INIT_OUT.pack(
        abi.KERNEL_MAJOR,
        minor,
        readahead,
        flags & 0xFFFFFFFF,
        config.max_background,
        config.congestion_threshold,
        max_write,
        config.time_gran,
        max_pages if flags & InitFlag.MAX_PAGES else 0,
        0,
        flags >> 32,
        depth,
        0,
    )
    neg = Negotiated(init.major, init.minor, minor, init.flags, flags, max_write, readahead, max_pages, depth, errors)
    return neg, payload
